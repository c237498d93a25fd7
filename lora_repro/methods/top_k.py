"""FT^Top2 (paper Table 3, after Li & Liang 2021): only the last k transformer blocks train, the rest is frozen."""
import torch.nn as nn
from lora_repro.targets import architecture, block_lists


def check_k(k: int, n_blocks: int) -> None:
    """k at most the model's depth: checked from its config before a run (lora_repro.config.check) and on the model (apply)."""
    if k > n_blocks:
        raise ValueError(f"method.k={k} is invalid; valid choices: an integer in [1, {n_blocks}] (the model's blocks)")


def apply(model: nn.Module, cfg) -> nn.Module:
    """Freeze everything, then unfreeze the last method.k blocks of each block list (the final LayerNorm stays frozen)."""
    k = cfg.k
    kind = architecture(model)
    lists = block_lists(model, kind)
    if not lists:
        raise ValueError(f"found no transformer blocks ({kind}) in this model for method.name={cfg.name!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    for path in lists:
        blocks = model.get_submodule(path)
        check_k(k, len(blocks))
        for block in list(blocks)[-k:]:
            for p in block.parameters():
                p.requires_grad_(True)
    return model
