"""Score an existing adapter, no training: python -m lora_repro.evaluate adapter.path=SRC [model=... task=...]."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

from lora_repro import formats
from lora_repro.methods import count_head, count_trainable
from lora_repro.models import is_head, source
from lora_repro.record import task_name, write_json
from lora_repro.run import build
from lora_repro.train import evaluate, peak_memory_mb, pick_device
from lora_repro.validate import typed_config, validate

log = logging.getLogger("lora_repro")


def score(cfg: DictConfig, run_dir: Path) -> dict:
    """Put cfg.adapter on the backbone, score the task's eval split(s), write metrics.json; returns its record."""
    typed = typed_config(cfg)
    top = typed["top"]
    adapter = formats.read(top.adapter.path, top.adapter.r, top.adapter.alpha, top.adapter.targets)
    device = pick_device(top.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    log.info("model %s from %s; task %s; adapter %s (%s, r=%d, alpha=%g, targets %s)", typed["model"].name,
             source(typed["model"]), task_name(cfg), top.adapter.path, adapter.meta["format"], adapter.r,
             adapter.alpha, ",".join(adapter.targets))
    if typed["task"].name == "glue":  # the training split is not used: tokenize one row of it, not 393k (MNLI)
        with open_dict(cfg):
            cfg.task.max_train_samples = 1
    model, data = build(cfg)  # as lora_repro.run builds them (the synthetic teacher planted in W0, before LoRA)
    formats.into_model(adapter, model)
    for name, p in model.named_parameters():  # what the adapter trained, counted as a run counts it
        p.requires_grad_(".lora_" in name or is_head(name))
    start = time.perf_counter()
    metrics = evaluate(model.to(device), data, typed["train"], device, run_dir, "eval")
    record = {"experiment": top.experiment, "task": task_name(cfg), "model": typed["model"].name, "method": "lora",
              "r": adapter.r, "alpha": adapter.alpha, "targets": adapter.targets, "seed": top.seed,
              "main_metric": data.main_metric, "eval_split": next(iter(data.evals)), "metrics": metrics,
              "best_epoch": None, "steps": 0, "train_time_s": 0.0, "eval_time_s": time.perf_counter() - start,
              "tokens_per_s": None, "peak_mem_mb": peak_memory_mb(device),
              "trainable_params": count_trainable(model), "head_params": count_head(model),
              "total_params": sum(p.numel() for p in model.parameters()),
              "adapter": {"path": top.adapter.path, **adapter.meta},
              "config": OmegaConf.to_container(cfg, resolve=True)}
    write_json(run_dir / "metrics.json", record)
    return record


@hydra.main(version_base="1.3", config_path="../conf", config_name="evaluate")
def main(cfg: DictConfig) -> float:
    """One scoring run; a wrong config, adapter or data file prints one line and exits 1."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    try:
        validate(cfg)
        record = score(cfg, run_dir)
    except (ValueError, FileNotFoundError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    value = record["metrics"][record["main_metric"]]
    print(f"[{record['task']} {record['adapter']['format']} adapter r={record['r']}] {record['main_metric']}="
          f"{value:.4f} on {record['eval_split']} -> {run_dir}")
    return value


if __name__ == "__main__":
    main()
