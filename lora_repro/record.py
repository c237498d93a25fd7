"""A run's records: metrics.json, adapter.safetensors, train_log.jsonl in its run directory, and W&B."""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf
from safetensors.torch import save_file

from lora_repro import distributed, schema
from lora_repro.lora import lora_state_dict
from lora_repro.methods import lora_knobs


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a killed run never leaves half a file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, path)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_adapter(path: Path, model: torch.nn.Module, extras: dict[str, torch.Tensor], metadata: dict) -> None:
    """The trainable tensors only (LoRA's A and B, the head; for full FT, everything), as safetensors."""
    tensors = {**lora_state_dict(model), **{k: v.contiguous() for k, v in extras.items()}}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
    os.replace(tmp, path)


class Logger:
    """train_log.jsonl in the run directory, and W&B when logger.name=wandb (offline unless logger.mode says).
    On ranks other than 0 of a distributed run it records nothing."""

    def __init__(self, run_dir: Path, cfg: DictConfig):
        self.file, self.wandb = None, None
        if not distributed.is_main():
            return
        self.file = open(run_dir / "train_log.jsonl", "a")
        if cfg.logger.name == "wandb":
            import wandb
            name = run_name(cfg)  # a W&B group holds the seeds of one cell: the name without its seed
            self.wandb = wandb.init(project=cfg.logger.project, mode=cfg.logger.mode, dir=str(run_dir),
                                    name=name, group=name.rpartition("/")[0], job_type=str(cfg.experiment),
                                    config=OmegaConf.to_container(cfg, resolve=True))

    def __call__(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.wandb:
            self.wandb.log(record, step=record.get("step"))

    def summary(self, values: dict) -> None:
        if self.wandb:
            self.wandb.summary.update(values)

    def artifact(self, path: Path, kind: str, metadata: dict) -> None:
        """Log a file (the adapter) as a W&B artifact of type `kind`, named after the run."""
        if self.wandb:
            import wandb
            art = wandb.Artifact(f"{kind}-{self.wandb.id}", type=kind, metadata=metadata)
            art.add_file(str(path))
            self.wandb.log_artifact(art)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.wandb:
            self.wandb.finish()


def run_name(cfg: DictConfig) -> str:
    """experiment/model/task/method/r/seed: what a reader needs to tell runs apart."""
    r = lora_knobs(cfg.method)["r"]
    parts = (cfg.experiment, cfg.model.name, task_name(cfg), cfg.method.name, f"r{r}" if r else "", f"seed{cfg.seed}")
    return "/".join(str(p) for p in parts if p)


def task_name(cfg: DictConfig) -> str:
    """The task as results name it: glue/<subset>, synthetic or e2e."""
    task = schema.task_config(cfg.task)
    return f"{task.name}/{task.subset}" if task.name == "glue" else task.name
