"""Full fine-tuning: every weight of the backbone trains (the FT rows of the paper's tables)."""
import torch.nn as nn


def apply(model: nn.Module, cfg=None) -> nn.Module:
    """Every parameter trains (full fine-tuning has no knobs)."""
    for p in model.parameters():
        p.requires_grad_(True)
    return model
