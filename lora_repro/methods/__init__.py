"""Adaptation methods by name (method.name): each decides which weights train; the task head always trains."""
from __future__ import annotations

import torch.nn as nn

from lora_repro.methods import adapters, bitfit, full, lora, prefix, top_k
from lora_repro.models import is_head

METHODS = {"full": full.apply, "lora": lora.apply, "ft_top2": top_k.apply, "ft_topk": top_k.apply,
           "bitfit": bitfit.apply, "adapter_h": adapters.apply, "adapter_p": adapters.apply,
           "adapter_l": adapters.apply, "adapter_d": adapters.apply,
           "prefix_embed": prefix.apply_embed, "prefix_layer": prefix.apply_layer}


def apply_method(model: nn.Module, method) -> nn.Module:
    """Apply the method (a lora_repro.config method config) to the model in place, freezing what it freezes, then
    unfreeze the task head. A composition (method.name=A+B, e.g. lora+prefix_embed) applies method.A, then method.B;
    what any part trains stays trainable (each part freezes the rest)."""
    trainable: set[int] = set()
    for part in method.parts:
        METHODS[part.name](model, part)
        trainable |= {id(p) for p in model.parameters() if p.requires_grad}
    for param_name, p in model.named_parameters():
        if is_head(param_name) or id(p) in trainable:
            p.requires_grad_(True)
    return model


def count_trainable(model: nn.Module) -> int:
    """Trainable parameters of the method, the task head excluded, as the paper's tables count them."""
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not is_head(n))


def count_head(model: nn.Module) -> int:
    """Parameters of the task head (classifier), trained by every method and reported beside the count."""
    return sum(p.numel() for n, p in model.named_parameters() if is_head(n))
