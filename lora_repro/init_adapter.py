"""Start a run from a saved adapter (method.init_adapter): the paper's MNLI-init of MRPC, RTE and STS-B (App. D.1)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from lora_repro.errors import ConfigError
from lora_repro.formats import read_tensors
from lora_repro.lora import check_fit
from lora_repro.models import is_head


CARRIED = ("pooler.",)  # head modules that move with the adapter: not label-shaped, trained with the method


@torch.no_grad()
def init_from_adapter(model: nn.Module, path: str | Path, keep_head: bool = False) -> dict:
    """Load a saved adapter's method tensors into `model` (the method applied); returns what was done.

    Every trainable tensor of the method must be in the file, with its shape (DeBERTa's pooler included: it carries
    over as the reference's start does). The file's task classifier is dropped and
    the model keeps the head it was built with (the run seed's), unless keep_head: then the head is loaded, and a
    head of another shape (MNLI's 3 labels into STS-B's 1) is an error. RoBERTa's loader drops the whole head when
    out_proj's shape differs (PAPER.md 2.2), which is keep_head=False here."""
    try:  # any format lora_repro.formats reads: a run directory, our file, a PEFT folder, a loralib checkpoint
        tensors = read_tensors(path)
    except ConfigError as err:
        raise ConfigError(f"method.init_adapter: {err}") from None
    params = dict(model.named_parameters())
    # DeBERTa's pooler sits outside the backbone and trains with the method, and its shape does not depend on the
    # labels: the reference's --lora_path start loads it (split_lora.py keeps every non-backbone tensor), so it
    # carries over with the LoRA tensors; only the classifier is the task's own
    head = {k: v for k, v in tensors.items() if is_head(k) and not k.startswith(CARRIED)}
    body = {k: v for k, v in tensors.items() if not is_head(k) or k.startswith(CARRIED)}
    check_fit(body, params, f"method.init_adapter={str(path)!r}")
    carried = [n for n in params if not is_head(n) or n.startswith(CARRIED)]
    missing = sorted(n for n in carried if params[n].requires_grad and n not in body)
    if missing:
        raise ConfigError(f"method.init_adapter={str(path)!r} lacks {len(missing)} of the method's trainable tensors, "
                          f"e.g. {missing[0]} (another method or targets?)")
    if keep_head:
        model_head = {n: p for n, p in params.items() if n not in carried}
        for name, p in sorted(model_head.items()):
            if name not in head or head[name].shape != p.shape:
                found = tuple(head[name].shape) if name in head else "none"
                raise ConfigError(f"method.init_keep_head=true, but the head of method.init_adapter={str(path)!r} "
                                  f"does not fit this task: {name} has shape {found}, the task needs {tuple(p.shape)}; "
                                  f"set method.init_keep_head=false to start from a new head")
        body.update(head)
    for name, t in body.items():
        params[name].copy_(t.to(params[name].dtype))
    return {"path": str(path), "tensors_loaded": len(body),
            "head": "loaded" if keep_head else ("reinitialised" if head else "absent from the file")}
