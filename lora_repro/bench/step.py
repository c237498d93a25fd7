"""python -m lora_repro.bench train: one optimizer step of each variant, ours vs Hugging Face PEFT vs the floor.

Every variant trains the same model shape on the same batch and sequence length, in one process, round-robin
(lora_repro.bench.timing):
  full              full fine-tuning (every weight trains; AdamW)
  floor             the frozen-base floor: every weight frozen, only the input embeddings' output requires grad, so
                    forward + backward computes activation gradients and no weight gradient: the least work any
                    LoRA step can do (no optimizer step: nothing to update)
  ours-<t>-r<r>     lora_repro.lora.apply_lora(targets t, rank r, alpha = r)
  peft-<t>-r<r>     peft's LoRA with the same r, alpha, dropout 0 and modules. GPT-2 keeps q, k, v in one fused
                    c_attn and PEFT can only adapt the whole of it, so peft-qv on GPT-2 adapts c_attn with one rank-r
                    pair (same parameter count and FLOPs as our q and v slices; different function); peft-qkvo has
                    6rd per block where ours has 8rd. On BERT/RoBERTa the two are the same function.
Step time is the median over the timed rounds, after warm-up rounds; tokens/s = batch * seq / step time. Ratios
(ours/PEFT, ours/floor, merged/base) are the median over rounds of the ratio within a round: two variants timed in the
same round share its noise; `*_ci` is a 95% confidence interval for that median (order statistics, no assumption on
the noise's distribution), so "at parity" can be told from "slower". `gflop` is the work of one forward + backward,
counted by torch.utils.flop_counter (matrix products only), and `flops_*` its ratios: what a time ratio should be if
every kernel ran equally fast (below 1 against the floor at small r: a LoRA model's backward stops at the first
adapted layer, the floor's goes on to the input embeddings).

Memory. On CUDA: peak allocated during a step minus what was allocated before it, plus the optimizer state
(`peak_mem_mb`; the frozen weights, the same for every variant, are left out). On CPU no allocator reports a peak
(tracemalloc does not see torch's allocations; peak RSS of one process holds every variant and never goes down), so we
count what a step adds to memory, by variant, exactly: the bytes autograd saves for backward (unique storages, seen
through saved_tensors_hooks, parameters excluded), plus the parameter gradients, plus the optimizer state
(`train_state_mb`, also reported on CUDA). It is deterministic, so ours/PEFT memory is not noisy.

On CUDA every forward runs under bf16 autocast (fp32 weights and optimizer state, bf16 matrix products).
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass, field

import torch
import torch.nn as nn
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from lora_repro.bench.machine import machine, require_peft
from lora_repro.bench.timing import iqr, paired_ci, paired_ratio, time_round_robin
from lora_repro.lora import apply_lora, lora_layers, merge_lora

# Model shapes (random init from transformers configs; dropout off so every variant does the same work), batch, seq,
# LoRA ranks and round counts. Dropout-free BERT/GPT-2 blocks; heads: sequence classification (BERT/RoBERTa) or LM.
_NO_DROPOUT = {"bert": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
               "roberta": dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
               "gpt2": dict(resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)}
PRESETS = {
    "tiny": dict(arch="bert", config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                          intermediate_size=64, vocab_size=100), batch=2, seq=8, ranks=(2, 4),
                 warmup=1, steps=3, latency_trials=3),
    "tiny-gpt2": dict(arch="gpt2", config=dict(n_embd=32, n_layer=2, n_head=2, vocab_size=100), batch=2, seq=8,
                      ranks=(2, 4), warmup=1, steps=3, latency_trials=3),
    # BERT-base width (r / d small, as in the paper's models), 2 blocks, 256 tokens: about a minute on one CPU core
    "cpu-small": dict(arch="bert", config=dict(hidden_size=768, num_hidden_layers=2, num_attention_heads=12,
                                               intermediate_size=3072, vocab_size=1000), batch=4, seq=64,
                      ranks=(8, 64), warmup=2, steps=20, latency_trials=30),
    # GPT-2 small width with the fused c_attn, 4 blocks, 512 tokens, small vocabulary (the LM head is not the point)
    "cpu": dict(arch="gpt2", config=dict(n_embd=768, n_layer=4, n_head=12, vocab_size=2048), batch=4, seq=64,
                ranks=(8, 64), warmup=2, steps=20, latency_trials=30),
    "roberta-base": dict(arch="roberta", config=dict(), batch=16, seq=256, ranks=(8, 64), warmup=5, steps=50,
                         latency_trials=50),
    "gpt2-medium": dict(arch="gpt2", config=dict(n_embd=1024, n_layer=24, n_head=16), batch=8, seq=512,
                        ranks=(8, 64), warmup=5, steps=50, latency_trials=50),
}
TARGETS = {"qv": ("q", "v"), "qkvo": ("q", "k", "v", "o")}
# PEFT module names for the paper's names (suffix match); GPT-2's q, k, v are one fused c_attn (see module docstring)
PEFT_MODULES = {"bert": {"q": "query", "k": "key", "v": "value", "o": "attention.output.dense"},
                "gpt2": {"q": "c_attn", "k": "c_attn", "v": "c_attn", "o": "attn.c_proj"}}
PEFT_MODULES["roberta"] = PEFT_MODULES["bert"]



def build_model(preset: dict, seed: int = 0) -> nn.Module:
    """A random-init model of the preset's shape, the same weights for the same seed."""
    torch.manual_seed(seed)
    arch = preset["arch"]
    if arch == "gpt2":
        config = AutoConfig.for_model(arch, pad_token_id=0, bos_token_id=0, eos_token_id=0, **{**_NO_DROPOUT[arch], **preset["config"]})
        return AutoModelForCausalLM.from_config(config)
    config = AutoConfig.for_model(arch, num_labels=2, **{**_NO_DROPOUT[arch], **preset["config"]})
    return AutoModelForSequenceClassification.from_config(config)


def make_batch(preset: dict, model: nn.Module, device: torch.device) -> dict:
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(5, model.config.vocab_size, (preset["batch"], preset["seq"]), generator=gen)
    labels = ids if preset["arch"] == "gpt2" else torch.randint(0, 2, (preset["batch"],), generator=gen)
    return {"input_ids": ids.to(device), "labels": labels.to(device)}


@dataclass
class Variant:
    """One way to train the same model: its model, optimizer (None: nothing to update) and how it takes a batch."""
    name: str
    model: nn.Module
    optimizer: torch.optim.Optimizer | None
    floor: bool = False
    targets: str = ""
    r: int = 0
    times: list[float] = field(default_factory=list)

    def trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)


def make_variants(preset: dict, device: torch.device, with_peft: bool = True) -> list[Variant]:
    """full, floor, then ours and PEFT for each (targets, r)."""
    def fresh():
        return build_model(preset).to(device).train()

    def adamw(model):
        return torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)

    full = fresh()
    floor = fresh().requires_grad_(False)
    out = [Variant("full", full, adamw(full)), Variant("floor", floor, None, floor=True)]
    peft = require_peft() if with_peft else None
    for t, names in TARGETS.items():
        for r in preset["ranks"]:
            ours = apply_lora(fresh(), targets=names, r=r, alpha=r)
            out.append(Variant(f"ours-{t}-r{r}", ours, adamw(ours), targets=t, r=r))
            if peft is not None:
                modules = sorted({PEFT_MODULES[preset["arch"]][n] for n in names})
                cfg = peft.LoraConfig(r=r, lora_alpha=r, lora_dropout=0.0, target_modules=modules, bias="none",
                                      fan_in_fan_out=preset["arch"] == "gpt2")
                theirs = peft.get_peft_model(fresh(), cfg)
                out.append(Variant(f"peft-{t}-r{r}", theirs, adamw(theirs), targets=t, r=r))
    return out


def forward_loss(v: Variant, batch: dict) -> torch.Tensor:
    """The variant's training loss on the batch; the floor feeds embeddings that require grad (weights all frozen)."""
    device = batch["input_ids"].device
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        if v.floor:
            with torch.no_grad():
                embeds = v.model.get_input_embeddings()(batch["input_ids"])
            return v.model(inputs_embeds=embeds.requires_grad_(), labels=batch["labels"]).loss
        return v.model(**batch).loss


def train_step(v: Variant, batch: dict) -> None:
    forward_loss(v, batch).backward()
    if v.optimizer is not None:
        v.optimizer.step()
        v.optimizer.zero_grad(set_to_none=True)




def nbytes(tensors) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def step_memory(v: Variant, batch: dict) -> dict:
    """Training-state bytes one step adds (saved activations + grads + optimizer state) and, on CUDA, peak bytes."""
    device = batch["input_ids"].device
    params = {p.untyped_storage().data_ptr() for p in v.model.parameters()}
    saved: dict[int, int] = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in params:
            saved[storage.data_ptr()] = storage.nbytes()
        return t

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss = forward_loss(v, batch)
    loss.backward()
    grads = nbytes(p.grad for p in v.model.parameters() if p.grad is not None)
    if v.optimizer is not None:
        v.optimizer.step()
    state = nbytes(t for s in (v.optimizer.state.values() if v.optimizer else []) for t in s.values()
                   if torch.is_tensor(t))
    row = {"saved_activations_mb": sum(saved.values()) / 2**20, "grads_mb": grads / 2**20,
           "optimizer_state_mb": state / 2**20}
    row["train_state_mb"] = row["saved_activations_mb"] + row["grads_mb"] + row["optimizer_state_mb"]
    if device.type == "cuda":
        row["peak_mem_mb"] = (torch.cuda.max_memory_allocated(device) - before + state) / 2**20
    if v.optimizer is not None:
        v.optimizer.zero_grad(set_to_none=True)
    return row


def step_gflop(v: Variant, batch: dict) -> float:
    """GFLOP of one forward + backward (matrix products, as torch.utils.flop_counter counts them); no update."""
    with FlopCounterMode(display=False) as counter:
        forward_loss(v, batch).backward()
    v.model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 1e9


def latency_ratio(preset: dict, device: torch.device, trials: int) -> dict:
    """Quick check on the train shape: forward latency of LoRA (q, v, r = 8) merged over the base model's."""
    base = build_model(preset).to(device).eval()
    merged = merge_lora(apply_lora(build_model(preset), targets=("q", "v"), r=min(preset["ranks"]))).to(device).eval()
    batch = make_batch(preset, base, device)
    ids = batch["input_ids"]
    with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
        times = time_round_robin({"base": lambda: base(input_ids=ids), "merged": lambda: merged(input_ids=ids)},
                                 warmup=3, trials=trials, device=device)
    return {**{k: statistics.median(v) for k, v in times.items()},
            "merged_over_base": paired_ratio(times["merged"], times["base"])}


def run_train(preset_name: str, device: torch.device, steps: int | None = None, warmup: int | None = None,
              with_peft: bool = True, fast: bool = True) -> dict:
    """Every variant's step time, tokens/s and memory, the ratios against the targets, and where it ran."""
    preset = PRESETS[preset_name]
    steps, warmup = steps or preset["steps"], preset["warmup"] if warmup is None else warmup
    variants = make_variants(preset, device, with_peft)
    for v in variants:  # our LoRA's forward: the fast path, or the plain reference path (for before/after)
        for layer in lora_layers(v.model):
            layer.fast = fast
    batch = make_batch(preset, variants[0].model, device)
    times = time_round_robin({v.name: (lambda v=v: train_step(v, batch)) for v in variants}, warmup, steps, device)
    tokens = preset["batch"] * preset["seq"]
    rows = {}
    for v in variants:
        med = statistics.median(times[v.name])
        rows[v.name] = dict(step_ms=1e3 * med, step_ms_iqr=1e3 * iqr(times[v.name]), tokens_per_s=tokens / med,
                            trainable_params=v.trainable(), targets=v.targets, r=v.r, gflop=step_gflop(v, batch),
                            **step_memory(v, batch))
    mem_key = "peak_mem_mb" if device.type == "cuda" else "train_state_mb"
    by_setting = {}
    for t in TARGETS:
        for r in preset["ranks"]:
            name, ours = f"ours-{t}-r{r}", rows[f"ours-{t}-r{r}"]
            entry = {"ours_over_floor": paired_ratio(times[name], times["floor"]),
                     "ours_over_floor_ci": paired_ci(times[name], times["floor"]),
                     "flops_ours_over_floor": ours["gflop"] / rows["floor"]["gflop"]}
            if f"peft-{t}-r{r}" in rows:
                peft = rows[f"peft-{t}-r{r}"]
                entry["ours_over_peft"] = paired_ratio(times[name], times[f"peft-{t}-r{r}"])
                entry["ours_over_peft_ci"] = paired_ci(times[name], times[f"peft-{t}-r{r}"])
                entry["flops_ours_over_peft"] = ours["gflop"] / peft["gflop"]
                entry["ours_over_peft_mem"] = ours[mem_key] / peft[mem_key]
            by_setting[f"{t}-r{r}"] = entry
    lat = latency_ratio(preset, device, preset["latency_trials"])
    ratios = {key: max(e[key] for e in by_setting.values()) for key in ("ours_over_peft", "ours_over_floor",
                                                                       "ours_over_peft_mem") if all(key in e for e in by_setting.values())}
    ratios["merged_over_base_latency"] = lat["merged_over_base"]
    return dict(command="train", preset=preset_name, arch=preset["arch"], shape=preset["config"],
                batch=preset["batch"], seq=preset["seq"], warmup=warmup, steps=steps, memory=mem_key,
                lora_path="fast" if fast else "reference",
                timing="median per variant; ratios: median over rounds of the per-round ratio; " +
                       ("wall time (CUDA synchronized)" if device.type == "cuda" else "process CPU time"),
                machine=machine(), ratios=ratios, ratios_note="worst case (max) over the (targets, r) settings",
                ratios_by_setting=by_setting, latency_s=lat, variants=rows)



def print_train(result: dict) -> None:
    print(f"preset {result['preset']} ({result['arch']}, batch {result['batch']} x seq {result['seq']}, "
          f"{result['steps']} timed rounds, LoRA {result['lora_path']} path, {result['timing'].split('; ')[-1]}) on {result['machine']['device']} / {result['machine']['cpu']}, "
          f"{result['machine']['threads']} thread(s), torch {result['machine']['torch']}")
    mem = result["memory"]
    print(f"{'variant':<16}{'step ms':>10}{'iqr':>8}{'tok/s':>10}{'GFLOP':>9}{mem:>16}{'trainable':>12}")
    for name, row in result["variants"].items():
        print(f"{name:<16}{row['step_ms']:>10.1f}{row['step_ms_iqr']:>8.1f}{row['tokens_per_s']:>10.0f}"
              f"{row['gflop']:>9.2f}{row[mem]:>16.1f}{row['trainable_params']:>12,}")
    print("ratios by setting: time (median of per-round ratios) [95% CI]; FLOPs; memory")
    for setting, e in result["ratios_by_setting"].items():
        print(f"  {setting:<9} ours/floor {e['ours_over_floor']:.3f} [{e['ours_over_floor_ci'][0]:.3f}, "
              f"{e['ours_over_floor_ci'][1]:.3f}] flops {e['flops_ours_over_floor']:.3f}" +
              (f"   ours/PEFT {e['ours_over_peft']:.3f} [{e['ours_over_peft_ci'][0]:.3f}, "
               f"{e['ours_over_peft_ci'][1]:.3f}] flops {e['flops_ours_over_peft']:.3f} "
               f"memory {e['ours_over_peft_mem']:.3f}" if "ours_over_peft" in e else ""))
    print("ratios (" + result["ratios_note"] + "): " + ", ".join(f"{k} {v:.3f}" for k, v in result["ratios"].items()))


