"""The command line: python -m lora_repro.bench {train,latency,loop,suite}; see lora_repro/bench/__init__.py."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch

from lora_repro.bench.latency import print_latency, run_latency
from lora_repro.bench.loop import LOOP_PRESETS, print_loop, run_loop
from lora_repro.bench.step import PRESETS, print_train, run_train
from lora_repro.bench.suite import print_suite, run_suite


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m lora_repro.bench", description="what LoRA costs: ours vs Hugging Face PEFT vs the frozen-base floor")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="step time and memory: full FT, floor, ours, PEFT")
    train.add_argument("--preset", default="cpu-small", choices=sorted(PRESETS))
    train.add_argument("--steps", type=int, help="timed rounds (default: the preset's)")
    train.add_argument("--warmup", type=int, help="untimed rounds first (default: the preset's)")
    train.add_argument("--reference", action="store_true",
                       help="time our LoRA's plain reference forward instead of the fast path (before/after)")
    lat = sub.add_parser("latency", help="paper Table 1: forward latency of base, LoRA, adapters")
    lat.add_argument("--grid", default="auto", choices=["auto", "paper", "reduced", "tiny"],
                     help="auto: the paper's on CUDA, reduced on CPU; tiny: for tests")
    lat.add_argument("--trials", type=int)
    lat.add_argument("--layers", type=int, help="GPT-2 medium blocks to keep (default: 24, 2 on the reduced grid)")
    loop = sub.add_parser("loop", help="the whole training loop: ours (lora_repro.train) vs transformers' Trainer + PEFT")
    loop.add_argument("--preset", default="cpu-minilm", choices=sorted(LOOP_PRESETS))
    loop.add_argument("--rounds", type=int, help="timed rounds, each running both loops (default: the preset's)")
    loop.add_argument("--examples", type=int, help="training examples (default: the preset's)")
    loop.add_argument("--model-dir", help="local Hugging Face model folder (sst2 presets)")
    loop.add_argument("--data-dir", help="folder of the GLUE SST-2 TSVs (sst2 presets)")
    suite = sub.add_parser("suite", help="everything in one process and one JSON (GPU), or --smoke (tiny, CPU)")
    suite.add_argument("--smoke", action="store_true", help="tiny shapes on CPU: the same code paths in seconds")
    for p in (train, lat, loop, suite):
        p.add_argument("--out", type=Path, help="write the result as JSON here")
        p.add_argument("--device", default="auto", help="auto | cpu | cuda (suite --smoke: auto = cpu)")
        p.add_argument("--threads", type=int, default=1,
                       help="CPU threads (default 1: steadier on a shared machine; see lora_repro/bench/__init__.py)")
    args = parser.parse_args(argv)
    auto = "cuda" if torch.cuda.is_available() and not getattr(args, "smoke", False) else "cpu"
    device = torch.device(auto if args.device == "auto" else args.device)
    if device.type == "cpu":
        torch.set_num_threads(args.threads)
    if args.command == "train":
        result = run_train(args.preset, device, args.steps, args.warmup, fast=not args.reference)
        print_train(result)
    elif args.command == "latency":
        result = run_latency(device, args.grid, args.trials, layers=args.layers)
        print_latency(result)
    elif args.command == "loop":
        result = run_loop(args.preset, device, args.rounds, args.examples, args.model_dir, args.data_dir)
        print_loop(result)
    else:
        result = run_suite(device, args.smoke)
        print_suite(result)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=float) + "\n")
    for key, value in result["ratios"].items():
        if not (math.isfinite(value) and value > 0):
            raise FloatingPointError(f"ratio {key} = {value}: the timing went wrong")
    return result

