"""Hydra entry point, one run = backbone x task x method x seed: python -m lora_repro.run [+experiment=NAME] [-m]."""
from __future__ import annotations

import logging
import os
import sys
import time
import traceback
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from lora_repro import distributed
from lora_repro.init_adapter import init_from_adapter
from lora_repro.methods import apply_method, count_head, count_trainable, lora_knobs, method_size
from lora_repro.models import load_model, load_tokenizer, source
from lora_repro.record import Logger, save_adapter, task_name, write_json
from lora_repro.tasks import TaskData, head, load_task
from lora_repro.train import NonFiniteLoss, pick_device, seed_everything, train
from lora_repro.validate import check_resume, store_config, typed_config, validate

log = logging.getLogger("lora_repro")
USER_ERRORS = (ValueError, FileNotFoundError, NonFiniteLoss)  # a wrong config or data: one line, no traceback


def build(cfg: DictConfig) -> tuple[torch.nn.Module, TaskData]:
    """The backbone (with its task head) and the task's data, before any method: what a run and an evaluation share.

    The run seed drives the head init, the method's init, dropout and (train.data_order_seed) the data order, as HF
    Trainer's set_seed before model creation; model.init_seed fixes only a tiny model's W0 (models.load_model)."""
    typed = typed_config(cfg)
    seed_everything(typed["top"].seed)
    task = typed["task"]
    synthetic = task.name == "synthetic"  # its head belongs to the planted teacher, fixed with W0
    model = load_model(typed["model"], *head(task), fresh_head=not synthetic)
    tokenizer = load_tokenizer(typed["model"]) if not synthetic else None
    return model, load_task(task, model, tokenizer)


def run(cfg: DictConfig, run_dir: Path) -> dict:
    """Build, train and record one run; returns what metrics.json holds. Under torchrun / accelerate launch, every
    rank trains and evaluates, and rank 0 alone writes metrics.json, the adapter and the logs."""
    typed = typed_config(cfg)
    top, method = typed["top"], typed["method"]
    device = distributed.setup(pick_device(top.device))
    run_dir = distributed.broadcast(run_dir)  # rank 0's folder: the checkpoint every rank resumes from
    check_resume(cfg, run_dir)  # before anything loads: a changed field refuses the resume
    if distributed.is_main():
        store_config(cfg, run_dir)
    log.info("model %s from %s; task %s; method %s", typed["model"].name, source(typed["model"]), task_name(cfg),
             method.name)
    model, data = build(cfg)
    apply_method(model, cfg.method)
    started = None
    if method.init_adapter:  # App. D.1: MRPC, RTE, STS-B start from the MNLI adapter
        started = init_from_adapter(model, method.init_adapter, method.init_keep_head)
        log.info("started from %s: %d tensors loaded, head %s", started["path"], started["tensors_loaded"],
                 started["head"])
    logger = Logger(run_dir, cfg)
    counts = {"trainable_params": count_trainable(model), "head_params": count_head(model),
              "total_params": sum(p.numel() for p in model.parameters())}
    logger.summary(counts)
    # what an adapter file says of itself (lora_repro.formats reads it), the snapshots' (train.snapshot_steps) too
    meta = {"task": task_name(cfg), "model": typed["model"].name, "method": method.name, **lora_knobs(method)}
    try:  # a failed run keeps its train_log.jsonl up to the failure, and writes no metrics.json
        result = train(model, data, typed["train"], device, logger, run_dir, top.resume, meta)
        record = {"experiment": top.experiment, **meta, "seed": top.seed,
                  "size": method_size(method), "dagger": top.dagger,
                  "main_metric": data.main_metric, "eval_split": next(iter(data.evals)), "init_adapter": started,
                  **counts, **result,
                  "config": OmegaConf.to_container(cfg, resolve=True)}
        if distributed.is_main():
            write_json(run_dir / "metrics.json", record)
            save_adapter(run_dir / "adapter.safetensors", model, data.extras, meta)
            logger.artifact(run_dir / "adapter.safetensors", "adapter",
                            {k: record[k] for k in ("experiment", "model", "task", "method", "r", "alpha", "targets",
                                                    "seed", "metrics")})
        logger.summary({f"best/{k}": v for k, v in result["metrics"].items()})
    finally:
        logger.close()
        distributed.teardown()
    return record


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """One run. A failed job of a multirun writes failed.json and lets the others go on; a single run exits 1."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    start = time.perf_counter()
    try:
        distributed.from_submitit()
        validate(cfg)
        record = run(cfg, run_dir)
    except Exception as err:
        if not multirun and not isinstance(err, USER_ERRORS):
            raise  # a bug, not a user error: the full traceback
        message = str(err) or type(err).__name__
        if multirun:
            write_json(run_dir / "failed.json", {"error": message, "type": type(err).__name__,
                                                 "overrides": list(hydra_cfg.overrides.task),
                                                 "traceback": traceback.format_exc()})
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            print(f"error: job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}) failed: {message}",
                  file=sys.stderr)
            return None
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {message}", file=sys.stderr)
        sys.exit(1)
    value = record["metrics"][record["main_metric"]]
    if not distributed.is_main():
        return value
    print(f"[{record['task']} {record['method']} r={record['r']} seed={record['seed']}] "
          f"{record['main_metric']}={value:.4f} (best epoch {record['best_epoch']}), "
          f"trainable={record['trainable_params']:,} (+head {record['head_params']:,}), "
          f"{time.perf_counter() - start:.1f}s -> {run_dir}")
    return value


if __name__ == "__main__":
    main()
