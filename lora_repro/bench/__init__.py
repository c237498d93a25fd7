"""python -m lora_repro.bench {train,latency,loop,suite}: what LoRA costs, ours vs PEFT vs the frozen-base floor.

One module per measurement, each timed round-robin with paired ratios and 95% confidence intervals (timing.py):
  step.py      `train`: one optimizer step of full FT, the frozen-base floor, our LoRA and PEFT's; FLOPs, memory
  latency.py   `latency`: the paper's Table 1, forward latency of base, LoRA merged/unmerged, Adapter^L/H
  loop.py      `loop`: our whole training loop (lora_repro.train) against transformers' Trainer + PEFT
  suite.py     `suite`: all of them in one process and one JSON (GPU), or `--smoke` (tiny shapes, CPU)
  machine.py   where the figures come from (device, library versions)

On CPU the default is one thread (--threads): on a shared machine, OpenMP's 2-thread barriers wait on descheduled
threads and small GEMMs (LoRA's) become slower than on one thread; one thread gives steadier, fairer timings.
"""
from lora_repro.bench.cli import main
from lora_repro.bench.latency import run_latency
from lora_repro.bench.loop import run_loop
from lora_repro.bench.machine import machine, require_peft
from lora_repro.bench.step import PRESETS, TARGETS, Variant, make_batch, make_variants, run_train, train_step
from lora_repro.bench.suite import run_suite
from lora_repro.bench.timing import median_ci, paired_ci, paired_ratio, time_round_robin

__all__ = ["PRESETS", "TARGETS", "Variant", "machine", "main", "make_batch", "make_variants", "median_ci",
           "paired_ci", "paired_ratio", "require_peft", "run_latency", "run_loop", "run_suite", "run_train",
           "time_round_robin", "train_step"]
