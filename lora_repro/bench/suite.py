"""python -m lora_repro.bench suite --out FILE [--smoke]: every performance figure in one process and one JSON.

On CUDA (one prepared command for a scarce GPU): the `train` comparison (full FT, floor, ours, PEFT; q,v and
q,k,v,o; r 8 and 64) on the RoBERTa-base and GPT-2 medium shapes under bf16 autocast, the paper's Table 1 latency grid,
the end-to-end loop (ours vs Trainer + PEFT, RoBERTa-base shape on generated token data: nothing to download), peak
memory, the device and library versions, and `ratios` against the issue's GPU targets. `--smoke` runs the same code
paths with tiny shapes on CPU, in seconds (tested in CI); its figures say nothing about speed.
"""
from __future__ import annotations

import platform
import time

import torch

from lora_repro.bench.latency import print_latency, run_latency
from lora_repro.bench.loop import print_loop, run_loop
from lora_repro.bench.machine import machine
from lora_repro.bench.step import print_train, run_train
from lora_repro.errors import ConfigError
from lora_repro.train import peak_memory_mb

# What each part runs: train presets (lora_repro.bench.step), the latency grid, the loop preset (loop.py), and the
# smoke run's reduced counts (steps/trials/rounds) so CI takes seconds.
PARTS = {
    "gpu": dict(train=("roberta-base", "gpt2-medium"), latency="paper", loop="roberta-base", counts={}),
    "smoke": dict(train=("tiny", "tiny-gpt2"), latency="tiny", loop="smoke",
                  counts=dict(steps=2, warmup=0, latency_trials=2, loop_rounds=1)),
}
# The targets, worst case over settings (GPU, bf16); on CPU only the loop has one (<= 1.0).
GPU_TARGETS = {"ours_over_peft": 0.9, "ours_over_floor": 1.05, "merged_over_base_latency": 1.01,
               "loop_ours_over_hf_trainer": 0.95}


def versions() -> dict:
    """Library versions and, on CUDA, the device's name, memory, compute capability and the CUDA/cuDNN builds."""
    import accelerate
    info = {**machine(), "python": platform.python_version(), "accelerate": accelerate.__version__}
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                    gpu_memory_gb=props.total_memory / 2**30, capability=f"{props.major}.{props.minor}",
                    gpu_count=torch.cuda.device_count())
    return info


def run_suite(device: torch.device, smoke: bool = False) -> dict:
    """Train-step, latency and loop comparisons on one device, their ratios, peak memory and timings of each part."""
    if not smoke and device.type != "cuda":
        raise ConfigError(f"bench suite without --smoke runs the GPU shapes (RoBERTa-base, GPT-2 medium, the paper's "
                          f"latency grid) and needs a CUDA device; this one is {device}. On CPU: bench suite --smoke")
    parts, wall = PARTS["smoke" if smoke else "gpu"], {}
    counts = parts["counts"]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    train = {}
    for preset in parts["train"]:
        train[preset] = run_train(preset, device, counts.get("steps"), counts.get("warmup"))
        wall[f"train/{preset}"] = time.perf_counter() - start - sum(wall.values())
        if device.type == "cuda":
            torch.cuda.empty_cache()  # the next preset's variants start from an empty cache
    latency = run_latency(device, parts["latency"], counts.get("latency_trials"))
    wall["latency"] = time.perf_counter() - start - sum(wall.values())
    loop = run_loop(parts["loop"], device, counts.get("loop_rounds"))
    wall["loop"] = time.perf_counter() - start - sum(wall.values())
    ratios = {key: max(t["ratios"][key] for t in train.values()) for key in ("ours_over_peft", "ours_over_floor")}
    ratios["merged_over_base_latency"] = latency["ratios"]["merged_over_base_latency"]
    ratios["loop_ours_over_hf_trainer"] = loop["ratios"]["loop_ours_over_hf_trainer"]
    targets = GPU_TARGETS if device.type == "cuda" else {"loop_ours_over_hf_trainer": 1.0}
    return dict(command="suite", smoke=smoke, device=str(device), machine=versions(), wall_s=wall,
                wall_s_total=time.perf_counter() - start,
                peak_mem_mb=peak_memory_mb(device),
                peak_mem_note="CUDA: max allocated over the whole suite; CPU: peak RSS of the process (per-variant "
                              "training state: train.<preset>.variants)",
                ratios=ratios, ratios_note="ours_over_peft and ours_over_floor: worst case (max) over presets and "
                                           "(targets, r) settings; merged_over_base_latency: worst over the Table 1 "
                                           "grid (paired); loop: median over rounds",
                ratios_by_preset={p: t["ratios"] for p, t in train.items()},
                targets=targets, targets_met={k: ratios[k] <= v for k, v in targets.items()},
                targets_note="the issue's targets; a smoke run's tiny shapes say nothing about them" if smoke else
                             "the issue's targets",
                train=train, latency=latency, loop=loop)


def print_suite(result: dict) -> None:
    for part in result["train"].values():
        print_train(part)
    print_latency(result["latency"])
    print_loop(result["loop"])
    m = result["machine"]
    print(f"suite on {m['device']} (torch {m['torch']}, transformers {m['transformers']}, peft {m.get('peft')}): "
          f"{result['wall_s_total']:.0f} s, peak memory {result['peak_mem_mb']:.0f} MB")
    for key, value in result["ratios"].items():
        target = result["targets"].get(key)
        print(f"  {key:<28}{value:.3f}" + (f"  target <= {target} {'met' if value <= target else 'MISSED'}"
                                             if target else ""))
