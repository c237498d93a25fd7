"""Score an existing adapter, no training: python -m lora_repro.evaluate adapter.path=SRC [model=... task=...]."""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from lora_repro import config, formats
from lora_repro.errors import cli
from lora_repro.methods import count_head, count_trainable
from lora_repro.models import is_head, load_model, load_tokenizer, source
from lora_repro.record import write_json
from lora_repro.tasks import head, load_task
from lora_repro.train import evaluate, peak_memory_mb, pick_device, seed_everything

log = logging.getLogger("lora_repro")


def score(cfg: config.EvaluateConfig, run_dir: Path) -> dict:
    """Put cfg.adapter on the backbone, score the task's eval split(s), write metrics.json; returns its record."""
    adapter = formats.read(cfg.adapter.path, cfg.adapter.r, cfg.adapter.alpha, cfg.adapter.targets)
    device = pick_device(cfg.device)
    run_dir.mkdir(parents=True, exist_ok=True)
    log.info("model %s from %s; task %s; adapter %s (%s, r=%d, alpha=%g, targets %s)", cfg.model.name,
             source(cfg.model), cfg.task_name, cfg.adapter.path, adapter.meta["format"], adapter.r,
             adapter.alpha, ",".join(adapter.targets))
    task = cfg.task
    if task.name == "glue":  # the training split is not used: tokenize one row of it, not 393k (MNLI)
        task = task.model_copy(update={"max_train_samples": 1})
    seed_everything(cfg.seed)  # as lora_repro.run builds the backbone (the synthetic teacher planted in W0)
    synthetic = task.name == "synthetic"
    model = load_model(cfg.model, *head(task), fresh_head=not synthetic)
    data = load_task(task, model, load_tokenizer(cfg.model) if not synthetic else None)
    formats.into_model(adapter, model)
    for name, p in model.named_parameters():  # what the adapter trained, counted as a run counts it
        p.requires_grad_(".lora_" in name or is_head(name))
    start = time.perf_counter()
    metrics = evaluate(model.to(device), data, cfg.train, device, run_dir, "eval")
    record = {"experiment": cfg.experiment, "task": cfg.task_name, "model": cfg.model.name, "method": "lora",
              "r": adapter.r, "alpha": adapter.alpha, "targets": adapter.targets, "seed": cfg.seed,
              "main_metric": data.main_metric, "eval_split": next(iter(data.evals)), "metrics": metrics,
              "best_epoch": None, "steps": 0, "train_time_s": 0.0, "eval_time_s": time.perf_counter() - start,
              "tokens_per_s": None, "peak_mem_mb": peak_memory_mb(device),
              "trainable_params": count_trainable(model), "head_params": count_head(model),
              "total_params": sum(p.numel() for p in model.parameters()),
              "adapter": {"path": cfg.adapter.path, **adapter.meta}, "config": cfg.model_dump(mode="json")}
    write_json(run_dir / "metrics.json", record)
    return record


@hydra.main(version_base="1.3", config_path="conf", config_name="evaluate")
@cli
def main(cfg: DictConfig) -> float:
    """One scoring run; a wrong config, adapter or data file is one line and exit 2 (errors.cli)."""
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    record = score(config.from_hydra(cfg, config.EvaluateConfig), run_dir)
    value = record["metrics"][record["main_metric"]]
    print(f"[{record['task']} {record['adapter']['format']} adapter r={record['r']}] {record['main_metric']}="
          f"{value:.4f} on {record['eval_split']} -> {run_dir}")
    return value


if __name__ == "__main__":
    cli(config.refuse_unknown_keys)(sys.argv[1:], config.EvaluateConfig)
    main()
