"""Bottleneck adapters (paper Sec. 3 and 5.1: Adapter^H, ^P, ^L, ^D), inserted by hooks on existing sublayers."""
from __future__ import annotations

import torch
import torch.nn as nn
from transformers.activations import ACT2FN

from lora_repro.targets import ARCHITECTURES, architecture, block_lists

# Where an adapter may sit, per architecture, as paths inside one block (from targets.ARCHITECTURES):
# "attention" = the attention output projection (Wo), "ffn" = the MLP's output projection. Both outputs then go to
# the residual add (and, for BERT/RoBERTa, the post-LayerNorm), so adapter(sublayer(x)) sits where Houlsby puts it.
SUPPORTED = ("bert", "roberta", "gpt2")
SITES = ("attention", "ffn")


class Adapter(nn.Module):
    """h + up(act(down(LN(h)))): a d -> bottleneck -> d residual block; LN only for Adapter^L (Lin et al. 2020)."""

    def __init__(self, d: int, bottleneck: int, activation: str, layernorm: bool, init_std: float,
                 device=None, dtype=None):
        super().__init__()
        self.norm = nn.LayerNorm(d, device=device, dtype=dtype) if layernorm else nn.Identity()
        self.down = nn.Linear(d, bottleneck, device=device, dtype=dtype)  # (bottleneck, d)
        self.act = ACT2FN[activation]
        self.up = nn.Linear(bottleneck, d, device=device, dtype=dtype)    # (d, bottleneck)
        # near-zero up-projection: the adapter starts as (almost) the identity (Houlsby et al. 2019, Sec. 2.1)
        nn.init.normal_(self.up.weight, std=init_std)
        nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (batch, seq, d)
        return h + self.up(self.act(self.down(self.norm(h))))


def _adapt_output(module: nn.Module, inputs, output: torch.Tensor) -> torch.Tensor:
    """Forward hook: the sublayer's output passes through its adapter (module-level so the model still pickles)."""
    return module.adapter(output)


def _width(module: nn.Module) -> int:
    """Output width of a projection: nn.Linear's out_features or GPT-2 Conv1D's nf."""
    return module.out_features if isinstance(module, nn.Linear) else module.nf


def site_paths(kind: str) -> dict[str, str]:
    """Per site name, the path inside one block of the projection whose output the adapter takes."""
    table = ARCHITECTURES[kind][1]
    return {"attention": table["o"], "ffn": table["mlp"][-1]}


def dropped_blocks(cfg, n_blocks: int) -> int:
    """How many of the lowest blocks get no adapter: method.drop_layers if set (an error if it leaves none), else
    method.drop_fraction of the depth, rounded and capped at n_blocks - 1 (AdapterDrop's 5 of 12 fits any depth)."""
    drop = cfg.drop_layers
    if drop is None:
        return min(round(cfg.drop_fraction * n_blocks), n_blocks - 1)
    if drop >= n_blocks:  # the config keeps it an integer >= 0; the depth is the model's
        raise ValueError(f"method.drop_layers={drop!r} must leave at least one of the {n_blocks} blocks with "
                         f"adapters; valid choices: 0..{n_blocks - 1}, or null for method.drop_fraction of them")
    return drop


def apply(model: nn.Module, cfg) -> nn.Module:
    """Freeze the backbone and add an adapter after each of method.sites in every block above method.drop_layers."""
    kind = architecture(model)
    if kind not in SUPPORTED:
        raise ValueError(f"method.name={cfg.name!r} has no adapter placement for architecture {kind!r}; "
                         f"supported: {list(SUPPORTED)}")
    for p in model.parameters():
        p.requires_grad_(False)
    paths = site_paths(kind)
    for blocks in block_lists(model, kind):
        drop = dropped_blocks(cfg, len(model.get_submodule(blocks)))
        for block in list(model.get_submodule(blocks))[drop:]:  # AdapterDrop: none in the lowest drop_layers blocks
            for site in cfg.sites:
                sub = block.get_submodule(paths[site])
                weight = sub.weight
                sub.adapter = Adapter(_width(sub), cfg.bottleneck, cfg.activation, cfg.layernorm, cfg.init_std,
                                      device=weight.device, dtype=weight.dtype)
                sub.register_forward_hook(_adapt_output)
    return model
