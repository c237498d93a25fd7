"""The planted low-rank task: targets come from the frozen backbone plus a known rank-k ΔW* (DESIGN.md).

A teacher is the run's own backbone W0 with ΔW* = s * ||W0||_F * U V^T / sqrt(k) added to the planted targets
(U, V random orthonormal, k = task.planted_rank). Inputs are random token sequences; the target is the teacher's
output vector (task.num_labels values, fitted by MSE), scored by R^2. The student starts from the same W0 and
head, so the only thing to learn is ΔW*: LoRA's claims (a small r suffices, learned A aligns with ΔW*) have
ground truth here. R^2 = 1 means the student reproduces the teacher; the untrained student scores below 0.
"""
from __future__ import annotations

import copy

import torch
from torch.utils.data import TensorDataset

from lora_repro.targets import resolve_targets
from lora_repro.tasks import TaskData


def orthonormal(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    """n x k with orthonormal columns."""
    return torch.linalg.qr(torch.randn(n, k, generator=gen))[0]


@torch.no_grad()
def plant(model: torch.nn.Module, targets, rank: int, scale: float, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Add a rank-`rank` ΔW* to every target of `model` in place; return them as {module[:slice]: (d_out, d_in)}."""
    planted = {}
    for site in resolve_targets(model, targets):
        layer = model.get_submodule(site.module)
        fan_in_fan_out = type(layer).__name__ == "Conv1D"  # (d_in, d_out) storage
        weight = layer.weight.T if fan_in_fan_out else layer.weight  # (d_out, d_in) view
        d_slice = weight.shape[0] // site.n_slices
        for s in site.slices:
            rows = weight[s * d_slice:(s + 1) * d_slice]
            delta = orthonormal(d_slice, rank, gen) @ orthonormal(weight.shape[1], rank, gen).T
            delta *= scale * rows.norm() / rank ** 0.5  # ||ΔW*||_F = scale * ||W0||_F
            rows += delta
            planted[site.module if site.n_slices == 1 else f"{site.module}:{s}"] = delta.clone()
    return planted


@torch.no_grad()
def teacher_outputs(teacher: torch.nn.Module, ids: torch.Tensor, batch: int = 256) -> torch.Tensor:
    teacher.eval()
    return torch.cat([teacher(input_ids=ids[i:i + batch]).logits for i in range(0, len(ids), batch)])


def load(cfg, model: torch.nn.Module) -> TaskData:
    """Random token sequences with the planted teacher's outputs as targets; scored by R^2 (and argmax agreement)."""
    gen = torch.Generator().manual_seed(cfg.data_seed)
    teacher = copy.deepcopy(model)
    planted = plant(teacher, cfg.planted_targets, cfg.planted_rank, cfg.planted_scale, gen)
    n_train, n_eval, vocab = cfg.n_train, cfg.n_eval, model.config.vocab_size
    ids = torch.randint(5, vocab, (n_train + n_eval, cfg.seq_len), generator=gen)  # 0..4: special tokens
    labels = teacher_outputs(teacher, ids)
    del teacher
    train = TensorDataset(ids[:n_train], labels[:n_train])
    evals = {"validation": TensorDataset(ids[n_train:], labels[n_train:])}
    if cfg.carved_validation:  # the first sequences of train, held out, scored first (they pick the epoch)
        n = cfg.carved_validation  # < n_train (the config's rule)
        train = TensorDataset(ids[n:n_train], labels[n:n_train])
        evals = {"carved": TensorDataset(ids[:n], labels[:n]), **({} if cfg.carved_only else evals)}

    def collate(rows):
        ids, labels = map(torch.stack, zip(*rows))
        return {"input_ids": ids, "labels": labels}

    def score(outputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        r2 = 1 - (outputs - targets).pow(2).sum() / (targets - targets.mean(0)).pow(2).sum()
        return {"r2": r2.item(), "accuracy": (outputs.argmax(-1) == targets.argmax(-1)).float().mean().item()}

    return TaskData(train, evals, collate, score, "r2", extras={f"planted.{k}": v for k, v in planted.items()})
