"""Tasks by name (task.name): each gives train/eval datasets, a collate function and its paper metric."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

TASKS = ("glue", "synthetic", "e2e")  # what load_task builds; lora_repro.config.UNIONS["task"] agrees


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


def head_kind(task) -> str:
    """The model head the task needs: a language-model head for generation tasks, else a classifier."""
    return "causal_lm" if task.name == "e2e" else "classification"


def num_labels(task) -> int:
    """Output size of the task head (1 = regression; 0 for E2E's language-model head), known before any data is read."""
    if task.name == "glue":
        from lora_repro.tasks.glue import subset
        return subset(task).num_labels
    return task.num_labels if task.name == "synthetic" else 0


def head(task) -> tuple[str, int, str | None]:
    """load_model's (kind, num_labels, problem_type) for the task: the synthetic task's MSE head says its problem
    type; GLUE's follows from num_labels (1 = STS-B's regression), as transformers infers it."""
    return head_kind(task), num_labels(task), task.problem_type if task.name == "synthetic" else None


def load_task(task, model: torch.nn.Module, tokenizer) -> TaskData:
    """Build the task's data; the synthetic task plants its teacher in a copy of `model` (call before the method)."""
    if task.name in ("glue", "e2e"):
        from importlib import import_module
        return import_module(f"lora_repro.tasks.{task.name}").load(task, tokenizer)
    from lora_repro.tasks.synthetic import load
    return load(task, model)
