"""LoRA as a method: frozen backbone, rank-r updates on method.targets (see lora_repro/lora.py)."""
import torch.nn as nn
from omegaconf import DictConfig

from lora_repro.lora import apply_lora


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    return apply_lora(model, targets=list(cfg.targets), r=int(cfg.r), alpha=float(cfg.alpha),
                      dropout=float(cfg.dropout), init=cfg.get("init", "kaiming"),
                      init_std=float(cfg.get("init_std", 0.02)))
