"""Bottleneck adapters (paper Sec. 3 and 5.1: Adapter^H, ^P, ^L, ^D), inserted by hooks where the reference code puts
them: microsoft/LoRA's examples/NLU modeling_roberta.py for Houlsby and Pfeiffer, Lin et al.'s VGLM modeling_gpt2.py
for Adapter^L (PAPER.md, "Adapter scripts")."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from transformers.activations import ACT2FN

from lora_repro.targets import architecture, block_lists

SUPPORTED = ("bert", "roberta", "gpt2", "llama")
# Where an adapter may sit, as the path inside one block of the module whose output it takes:
#   attention      after the attention sublayer's output dropout, before the residual add (and BERT's LayerNorm):
#                  Houlsby's first adapter, RobertaSelfOutput's `adapter(dropout(dense(h)))`
#   ffn            after the FFN's output dropout, before the residual add: Houlsby's second, in RobertaOutput
#   ffn_layernorm  inside the FFN's post-LayerNorm: LN(s + adapter(LN(s))) with s = h + x, RobertaOutput's
#                  Pfeiffer branch `adapter(LN(h + x), residual=h)` then the same LN (post-LN models only)
#   block          on the block's output, the residual stream: Lin et al.'s `x = adapter_block(x)` after the MLP
SITES = {
    "bert": {"attention": "attention.output.dropout", "ffn": "output.dropout", "ffn_layernorm": "output.LayerNorm",
             "block": ""},
    "gpt2": {"attention": "attn.resid_dropout", "ffn": "mlp.dropout", "block": ""},
    # pre-norm as GPT-2, with no dropout module after its sublayers: their output projections, before the residual add
    "llama": {"attention": "self_attn.o_proj", "ffn": "mlp.down_proj", "block": ""},
}
SITES["roberta"] = SITES["bert"]


class Adapter(nn.Module):
    """up(act(down(LN(h)))), the d -> bottleneck -> d branch whose output the site adds to its residual; LN only for
    Adapter^L. init_std=None: nn.Linear's default init as both reference codes; a number: the up-projection drawn
    with that std and its bias zero, near the identity (Houlsby et al. 2019, Sec. 2.1)."""

    def __init__(self, d: int, bottleneck: int, activation: str, layernorm: bool, init_std: float | None,
                 device=None, dtype=None):
        super().__init__()
        self.norm = nn.LayerNorm(d, device=device, dtype=dtype) if layernorm else nn.Identity()
        self.down = nn.Linear(d, bottleneck, device=device, dtype=dtype)  # (bottleneck, d)
        self.act = ACT2FN[activation]
        self.up = nn.Linear(bottleneck, d, device=device, dtype=dtype)    # (d, bottleneck)
        if init_std is not None:
            nn.init.normal_(self.up.weight, std=init_std)
            nn.init.zeros_(self.up.bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:  # h: (batch, seq, d)
        return self.up(self.act(self.down(self.norm(h))))


# forward hooks, module-level so the model still pickles
def _residual_adapter(module: nn.Module, inputs, output):
    """attention, ffn, block: output + adapter(output); a block that returns a tuple keeps the rest of it."""
    if isinstance(output, tuple):
        return (output[0] + module.adapter(output[0]),) + output[1:]
    return output + module.adapter(output)


def _inside_layernorm(module: nn.LayerNorm, inputs, output):
    """ffn_layernorm: the LayerNorm's input s, its output LN(s): LN(s + adapter(LN(s)))."""
    s = inputs[0]
    return F.layer_norm(s + module.adapter(output), module.normalized_shape, module.weight, module.bias, module.eps)


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
    """Freeze the backbone and add an adapter at each of method.sites in every block above method.drop_layers."""
    kind = architecture(model)
    if kind not in SUPPORTED:
        raise ValueError(f"method.name={cfg.name!r} has no adapter placement for architecture {kind!r}; "
                         f"supported: {list(SUPPORTED)}")
    unplaced = [site for site in cfg.sites if site not in SITES[kind]]
    if unplaced:
        raise ValueError(f"method.sites={list(cfg.sites)} holds {unplaced[0]!r}, which {kind} has no place for; "
                         f"valid choices for {kind}: {list(SITES[kind])}")
    for p in model.parameters():
        p.requires_grad_(False)
    d = model.config.hidden_size
    for blocks in block_lists(model, kind):
        drop = dropped_blocks(cfg, len(model.get_submodule(blocks)))
        for block in list(model.get_submodule(blocks))[drop:]:  # AdapterDrop: none in the lowest drop_layers blocks
            for site in cfg.sites:
                sub = block.get_submodule(SITES[kind][site])
                weight = next(block.parameters())
                sub.adapter = Adapter(d, cfg.bottleneck, cfg.activation, cfg.layernorm, cfg.init_std,
                                      device=weight.device, dtype=weight.dtype)
                sub.register_forward_hook(_inside_layernorm if site == "ffn_layernorm" else _residual_adapter)
    return model
