"""BitFit (Ben Zaken et al. 2021; paper Tables 2 and 4): only the bias terms train, LayerNorm biases included."""
import torch.nn as nn
from omegaconf import DictConfig

from lora_repro import schema


def apply(model: nn.Module, cfg: DictConfig | schema.BitfitMethod) -> nn.Module:
    for name, p in model.named_parameters():
        p.requires_grad_(name.rsplit(".", 1)[-1] == "bias")
    return model
