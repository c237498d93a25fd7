"""Tasks by name (task.name): each gives train/eval datasets, a collate function and its paper metric."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from omegaconf import DictConfig

TASKS = ("glue", "synthetic", "e2e")


@dataclass
class TaskData:
    """What the training loop needs from a task."""
    train: torch.utils.data.Dataset
    evals: dict[str, torch.utils.data.Dataset]  # split name -> dataset; the first is the one the paper reports
    collate: Callable
    score: Callable[[torch.Tensor, torch.Tensor], dict[str, float]] | None  # (logits, labels) -> {metric: value}
    main_metric: str
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # tensors worth keeping (the planted ΔW*)
    loss: Callable | None = None  # (model, batch) -> loss, when not the model's own (E2E: label smoothing)
    evaluate: Callable | None = None  # (model, device, batch_size, out_dir, tag) -> metrics, when not logits + score


def check_name(cfg: DictConfig) -> str:
    if cfg.get("name") not in TASKS:
        raise ValueError(f"task.name={cfg.get('name')!r} is not a task; valid choices: {list(TASKS)}")
    return cfg.name


def head_kind(cfg: DictConfig) -> str:
    """The model head the task needs: a language-model head for generation tasks, else a classifier."""
    return "causal_lm" if check_name(cfg) == "e2e" else "classification"


def num_labels(cfg: DictConfig) -> int:
    """Output size of the task head (1 = regression), known before any data is read."""
    if check_name(cfg) == "glue":
        from lora_repro.tasks.glue import subset
        return subset(cfg).num_labels
    return int(cfg.get("num_labels", 0))


def load_task(cfg: DictConfig, model: torch.nn.Module, tokenizer) -> TaskData:
    """Build the task's data; the synthetic task plants its teacher in a copy of `model` (call before the method)."""
    if check_name(cfg) in ("glue", "e2e"):
        from importlib import import_module
        return import_module(f"lora_repro.tasks.{cfg.name}").load(cfg, tokenizer)
    from lora_repro.tasks.synthetic import load
    return load(cfg, model)
