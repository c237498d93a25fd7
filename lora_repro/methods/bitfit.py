"""BitFit (Ben Zaken et al. 2021; paper Tables 2 and 4): only the bias terms train, LayerNorm biases included."""
import torch.nn as nn


def apply(model: nn.Module, cfg=None) -> nn.Module:
    """Only parameters named *.bias train (BitFit has no knobs)."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.rsplit(".", 1)[-1] == "bias")
    return model
