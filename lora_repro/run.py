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
from omegaconf import DictConfig

from lora_repro import config, distributed
from lora_repro.errors import cli
from lora_repro.init_adapter import init_from_adapter
from lora_repro.methods import apply_method, count_head, count_trainable
from lora_repro.models import load_model, load_tokenizer, source
from lora_repro.record import Logger, check_resume, save_adapter, store_config, write_json
from lora_repro.tasks import TaskData, head, load_task
from lora_repro.train import pick_device, seed_everything, train

log = logging.getLogger("lora_repro")


def build(run: config.RunConfig) -> tuple[torch.nn.Module, TaskData]:
    """The backbone (with its task head) and the task's data, before any method: what a run and an evaluation share.

    The run seed drives the head init, the method's init, dropout and (train.data_order_seed) the data order, as HF
    Trainer's set_seed before model creation; model.init_seed fixes only a tiny model's W0 (models.load_model)."""
    seed_everything(run.seed)
    synthetic = run.task.name == "synthetic"  # its head belongs to the planted teacher, fixed with W0
    model = load_model(run.model, *head(run.task), fresh_head=not synthetic)
    tokenizer = load_tokenizer(run.model) if not synthetic else None
    return model, load_task(run.task, model, tokenizer)


def run(cfg: config.RunConfig, run_dir: Path) -> dict:
    """Build, train and record one run; returns what metrics.json holds. Under torchrun / accelerate launch, every
    rank trains and evaluates, and rank 0 alone writes metrics.json, the adapter and the logs."""
    method, plain = cfg.method, cfg.model_dump(mode="json")
    device = distributed.setup(pick_device(cfg.device))
    run_dir = distributed.broadcast(run_dir)  # rank 0's folder: the checkpoint every rank resumes from
    check_resume(plain, run_dir)  # before anything loads: a changed field refuses the resume
    if distributed.is_main():
        store_config(plain, run_dir)
    log.info("model %s from %s; task %s; method %s", cfg.model.name, source(cfg.model), cfg.task_name, method.name)
    model, data = build(cfg)
    apply_method(model, method)
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
    meta = {"task": cfg.task_name, "model": cfg.model.name, "method": method.name, **method.lora_knobs()}
    try:  # a failed run keeps its train_log.jsonl up to the failure, and writes no metrics.json
        result = train(model, data, cfg.train, device, logger, run_dir, cfg.resume, meta)
        record = {"experiment": cfg.experiment, **meta, "seed": cfg.seed, "size": method.size, "dagger": cfg.dagger,
                  "main_metric": data.main_metric, "eval_split": next(iter(data.evals)), "init_adapter": started,
                  **counts, **result, "config": plain}
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


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@cli
def main(cfg: DictConfig) -> float | None:
    """One run. A failed job of a multirun writes failed.json and lets the others go on; a single run's wrong input
    is one line and exit 2 (errors.cli), any other failure a traceback."""
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    start = time.perf_counter()
    try:
        distributed.from_submitit()
        record = run(config.from_hydra(cfg), run_dir)
    except Exception as err:
        if not multirun:
            raise
        message = str(err) or type(err).__name__
        write_json(run_dir / "failed.json", {"error": message, "type": type(err).__name__,
                                             "overrides": list(hydra_cfg.overrides.task),
                                             "traceback": traceback.format_exc()})
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}) failed: {message}",
              file=sys.stderr)
        return None
    value = record["metrics"][record["main_metric"]]
    if not distributed.is_main():
        return value
    print(f"[{record['task']} {record['method']} r={record['r']} seed={record['seed']}] "
          f"{record['main_metric']}={value:.4f} (best epoch {record['best_epoch']}), "
          f"trainable={record['trainable_params']:,} (+head {record['head_params']:,}), "
          f"{time.perf_counter() - start:.1f}s -> {run_dir}")
    return value


if __name__ == "__main__":
    cli(config.refuse_unknown_keys)(sys.argv[1:], config.RunConfig)
    main()
