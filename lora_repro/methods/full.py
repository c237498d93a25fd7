"""Full fine-tuning: every weight of the backbone trains (the FT rows of the paper's tables)."""
import torch.nn as nn
from omegaconf import DictConfig

from lora_repro import schema


def apply(model: nn.Module, cfg: DictConfig | schema.FullMethod) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model
