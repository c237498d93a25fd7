"""LoRA as a method: frozen backbone, rank-r updates on method.targets (see lora_repro/lora.py)."""
import torch.nn as nn
from lora_repro.lora import apply_lora


def apply(model: nn.Module, cfg) -> nn.Module:
    """LoRA with the method config's targets, r, alpha, dropout, init and init_std (lora_repro.config.LoraMethod)."""
    return apply_lora(model, targets=cfg.targets, r=cfg.r, alpha=cfg.alpha, dropout=cfg.dropout, init=cfg.init,
                      init_std=cfg.init_std)
