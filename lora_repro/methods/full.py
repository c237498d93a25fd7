"""Full fine-tuning: every weight of the backbone trains (the FT rows of the paper's tables)."""
import torch.nn as nn
from omegaconf import DictConfig


def apply(model: nn.Module, cfg: DictConfig) -> nn.Module:
    for p in model.parameters():
        p.requires_grad_(True)
    return model
