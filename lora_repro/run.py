"""Hydra entry point, one run = backbone x task x method x seed: python -m lora_repro.run [+experiment=NAME] [-m]."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

from lora_repro.methods import apply_method, count_head, count_trainable
from lora_repro.models import load_model, load_tokenizer, source
from lora_repro.record import Logger, save_adapter, task_name, write_json
from lora_repro.tasks import load_task, num_labels
from lora_repro.train import pick_device, seed_everything, train

log = logging.getLogger("lora_repro")


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Build, train and record one run; returns what metrics.json holds."""
    device = pick_device(cfg.device)
    log.info("model %s from %s; task %s; method %s", cfg.model.name, source(cfg.model), task_name(cfg), cfg.method.name)
    torch.manual_seed(int(cfg.model.get("init_seed", 0)))  # the "pre-trained" W0 of a tiny model: same for every seed
    model = load_model(cfg.model, "classification", num_labels(cfg.task), cfg.task.get("problem_type"))
    tokenizer = load_tokenizer(cfg.model) if cfg.task.name != "synthetic" else None
    data = load_task(cfg.task, model, tokenizer)
    seed_everything(int(cfg.seed))
    apply_method(model, cfg.method)
    logger = Logger(run_dir, cfg)
    counts = {"trainable_params": count_trainable(model), "head_params": count_head(model),
              "total_params": sum(p.numel() for p in model.parameters())}
    logger.summary(counts)
    result = train(model, data, cfg.train, device, logger)
    record = {"experiment": cfg.experiment, "task": task_name(cfg), "model": cfg.model.name, "method": cfg.method.name,
              "r": cfg.method.get("r"), "alpha": cfg.method.get("alpha"),
              "targets": list(cfg.method.targets) if "targets" in cfg.method else None, "seed": int(cfg.seed),
              "main_metric": data.main_metric, "eval_split": next(iter(data.evals)), **counts, **result,
              "config": OmegaConf.to_container(cfg, resolve=True)}
    write_json(run_dir / "metrics.json", record)
    save_adapter(run_dir / "adapter.safetensors", model, data.extras,
                 {k: record[k] for k in ("model", "task", "method", "r", "alpha", "targets")})
    logger.summary({f"best/{k}": v for k, v in result["metrics"].items()})
    logger.close()
    return record


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float:
    run_dir = Path(HydraConfig.get().runtime.output_dir)
    start = time.perf_counter()
    record = run(cfg, run_dir)
    value = record["metrics"][record["main_metric"]]
    print(f"[{record['task']} {record['method']} r={record['r']} seed={record['seed']}] "
          f"{record['main_metric']}={value:.4f} (best epoch {record['best_epoch']}), "
          f"trainable={record['trainable_params']:,} (+head {record['head_params']:,}), "
          f"{time.perf_counter() - start:.1f}s -> {run_dir}")
    return value


if __name__ == "__main__":
    main()
