"""python -m lora_repro.bench latency: the paper's Table 1, forward latency of base, LoRA merged/unmerged, adapters.

One forward pass of GPT-2 medium (random init, no LM head) for base, LoRA merged, LoRA unmerged, Adapter^L and
Adapter^H (conf/method/adapter_{l,h}.yaml), warm-up then many trials, round-robin; mean, std and overhead in % of base
(of the means, as the paper; and paired: median over trials of the per-trial ratio). The paper's grid (batch/seq
32/512, 16/256, 1/128) on CUDA, in bf16 autocast; on CPU a reduced grid (2 blocks of GPT-2 medium's width, short
sequences) unless --grid paper.
"""
from __future__ import annotations

import statistics

import torch
import torch.nn as nn
from transformers import GPT2Config, GPT2Model

from lora_repro.bench.machine import machine
from lora_repro.bench.timing import paired_ratio, time_round_robin
from lora_repro.lora import apply_lora, merge_lora
from lora_repro.config import compose
from lora_repro.methods import apply_method

PAPER_GRID = ((32, 512), (16, 256), (1, 128))
CPU_GRID = ((1, 8), (1, 32), (1, 128))  # batch 1 / short sequences: where adapters' extra sequential work shows


def latency_models(layers: int | None, device: torch.device) -> dict[str, nn.Module]:
    """GPT-2 medium (random init; `layers` blocks if given) as base, LoRA merged / unmerged, Adapter^L, Adapter^H."""
    def fresh():
        torch.manual_seed(0)
        # no LM head: the vocabulary only sets the embedding table's size (init time), not the forward's work
        cfg = GPT2Config(n_embd=1024, n_head=16, n_layer=layers or 24, vocab_size=1024, bos_token_id=0, eos_token_id=0,
                         resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
        return GPT2Model(cfg)

    def lora():
        model = apply_lora(fresh(), targets=("q", "v"), r=4, alpha=32)  # the paper's GPT-2 M setting (Sec. 6.3)
        with torch.no_grad():  # a trained B is non-zero; make the unmerged path do real work
            for name, p in model.named_parameters():
                if name.endswith("lora_B"):
                    p.normal_(std=0.01)
        return model

    models = {"base": fresh(), "lora_merged": merge_lora(lora()), "lora_unmerged": lora(),
              "adapter_l": apply_method(fresh(), compose("method=adapter_l").method),  # conf/method/adapter_l.yaml
              "adapter_h": apply_method(fresh(), compose("method=adapter_h").method)}
    return {k: m.to(device).eval() for k, m in models.items()}


def run_latency(device: torch.device, grid: str = "auto", trials: int | None = None, warmup: int = 3,
                layers: int | None = None) -> dict:
    """Forward latency of each Table 1 variant at each (batch, seq): mean, std, median, overhead % of base."""
    paper = grid == "paper" or (grid == "auto" and device.type == "cuda")
    if grid == "tiny":
        settings, layers = ((1, 8),), layers or 1
    elif paper:
        settings = PAPER_GRID
    else:
        settings, layers = CPU_GRID, layers or 2
    trials = trials or (100 if device.type == "cuda" else 50)
    models = latency_models(layers, device)
    table = []
    for batch, seq in settings:
        ids = torch.randint(0, 1000, (batch, seq), generator=torch.Generator().manual_seed(0)).to(device)
        fns = {k: (lambda m=m: m(input_ids=ids)) for k, m in models.items()}
        with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            times = time_round_robin(fns, warmup, trials, device)
        base = statistics.mean(times["base"])
        for k, ts in times.items():
            table.append(dict(batch=batch, seq=seq, variant=k, mean_ms=1e3 * statistics.mean(ts),
                              std_ms=1e3 * statistics.stdev(ts) if len(ts) > 1 else 0.0,
                              median_ms=1e3 * statistics.median(ts), overhead_pct=100 * (statistics.mean(ts) / base - 1),
                              paired_overhead_pct=100 * (paired_ratio(ts, times["base"]) - 1)))
    merged = [1 + r["paired_overhead_pct"] / 100 for r in table if r["variant"] == "lora_merged"]
    note = ("the paper's grid, GPT-2 medium (24 blocks)" if paper else
            f"reduced grid for CPU: GPT-2 medium width, {layers} of its 24 blocks, (batch, seq) in {list(settings)}; "
            "--grid paper for the paper's")
    return dict(command="latency", grid=note, layers=layers or 24, trials=trials, warmup=warmup, machine=machine(),
                ratios={"merged_over_base_latency": max(merged)}, table=table)


def print_latency(result: dict) -> None:
    print(f"forward latency, {result['grid']}; {result['trials']} trials on {result['machine']['device']} / "
          f"{result['machine']['cpu']}, {result['machine']['threads']} thread(s)")
    print(f"{'batch':>5}{'seq':>6}  {'variant':<14}{'mean ms':>10}{'std':>8}{'median':>9}{'overhead %':>12}"
          f"{'paired %':>10}")
    for r in result["table"]:
        print(f"{r['batch']:>5}{r['seq']:>6}  {r['variant']:<14}{r['mean_ms']:>10.2f}{r['std_ms']:>8.2f}"
              f"{r['median_ms']:>9.2f}{r['overhead_pct']:>12.1f}{r['paired_overhead_pct']:>10.1f}")

