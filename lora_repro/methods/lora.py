"""LoRA as a method: frozen backbone, rank-r updates on method.targets (see lora_repro/lora.py)."""
import torch.nn as nn
from omegaconf import DictConfig

from lora_repro import schema
from lora_repro.lora import apply_lora


def apply(model: nn.Module, cfg: DictConfig | schema.LoraMethod) -> nn.Module:
    """LoRA on the typed method config (schema.LoraMethod: its defaults and ranges)."""
    cfg = schema.typed(schema.LoraMethod, cfg, "method")
    return apply_lora(model, targets=cfg.targets, r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, init=cfg.init,
                      init_std=cfg.init_std)
