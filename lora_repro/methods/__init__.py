"""Adaptation methods by name (method.name): each decides which weights train; the task head always trains."""
from __future__ import annotations

import torch.nn as nn
from omegaconf import DictConfig

from lora_repro.methods import adapters, bitfit, full, lora, prefix, top_k
from lora_repro.models import is_head

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


def check_name(method_cfg: DictConfig) -> str:
    name = method_cfg.get("name")
    if name not in METHODS:
        raise ValueError(f"method.name={name!r} is not a method; valid choices: {sorted(METHODS)}")
    return name


def apply_method(model: nn.Module, method_cfg: DictConfig) -> nn.Module:
    """Apply method_cfg.name to the model in place (freezing what it freezes), then unfreeze the task head."""
    METHODS[check_name(method_cfg)](model, method_cfg)
    for param_name, p in model.named_parameters():
        if is_head(param_name):
            p.requires_grad_(True)
    return model


def count_trainable(model: nn.Module) -> int:
    """Trainable parameters of the method, the task head excluded, as the paper's tables count them."""
    return sum(p.numel() for n, p in model.named_parameters() if p.requires_grad and not is_head(n))


def count_head(model: nn.Module) -> int:
    """Parameters of the task head (classifier), trained by every method and reported beside the count."""
    return sum(p.numel() for n, p in model.named_parameters() if is_head(n))
