"""Adaptation methods by name (method.name): each decides which weights train; the task head always trains."""
from __future__ import annotations

import torch.nn as nn
from omegaconf import DictConfig

from lora_repro.methods import adapters, bitfit, full, lora, prefix, top_k
from lora_repro.models import is_head
from lora_repro.schema import method_names

METHODS = {"full": full.apply, "lora": lora.apply, "ft_top2": top_k.apply, "ft_topk": top_k.apply,
           "bitfit": bitfit.apply, "adapter_h": adapters.apply, "adapter_p": adapters.apply,
           "adapter_l": adapters.apply, "adapter_d": adapters.apply,
           "prefix_embed": prefix.apply_embed, "prefix_layer": prefix.apply_layer}


def method_size(method_cfg: DictConfig) -> int | None:
    """The knob that sets a method's size (one results cell per size, joined to the paper row of that size): the
    adapter bottleneck, the number of prefix + infix tokens, the top-k blocks, LoRA's r; None for full FT, BitFit."""
    cfg = method_cfg
    if "bottleneck" in cfg:
        return int(cfg.bottleneck)
    if "prefix_len" in cfg:
        return int(cfg.prefix_len) + int(cfg.get("infix_len", 0))
    for key in ("k", "r"):
        if key in cfg:
            return int(cfg[key])
    return None


def method_parts(method_cfg: DictConfig) -> list[DictConfig]:
    """The method configs a run applies: method_cfg itself, or for a composition (method.name=A+B, e.g.
    lora+prefix_embed) the sub-configs method.A and method.B, in that order."""
    name = method_cfg.get("name")
    if not (isinstance(name, str) and "+" in name):
        return [method_cfg]
    names = name.split("+")
    absent = [n for n in names if n not in method_cfg]
    if absent:
        raise ValueError(f"method.name={name!r} composes {names}, but method.{absent[0]} (that method's config) is "
                         f"absent; conf/method/lora+prefix_embed.yaml shows the layout")
    return [method_cfg[n] for n in names]


def check_name(method_cfg: DictConfig) -> str:
    name = method_cfg.get("name")
    if len(method_names(name)) > 1:
        for part in method_parts(method_cfg):
            if part.get("name") not in METHODS or "+" in part.name:
                raise ValueError(f"method.name={name!r}: the part config {part.get('name')!r} is not a method")
    return name


def apply_method(model: nn.Module, method_cfg: DictConfig) -> nn.Module:
    """Apply method_cfg.name to the model in place (freezing what it freezes), then unfreeze the task head.
    A composition applies each part in turn; what any part trains stays trainable (each part freezes the rest)."""
    check_name(method_cfg)
    trainable: set[int] = set()
    for part in method_parts(method_cfg):
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
