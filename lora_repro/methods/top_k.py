"""FT^Top2 (paper Table 3, after Li & Liang 2021): only the last k transformer blocks train, the rest is frozen."""
import torch.nn as nn
from omegaconf import DictConfig

from lora_repro import schema
from lora_repro.targets import architecture, block_lists


def apply(model: nn.Module, cfg: DictConfig | schema.TopKMethod) -> nn.Module:
    """Freeze everything, then unfreeze the last method.k blocks of each block list (the final LayerNorm stays frozen)."""
    cfg = schema.typed(schema.TopKMethod, cfg, "method")
    k = cfg.k
    kind = architecture(model)
    lists = block_lists(model, kind)
    if not lists:
        raise ValueError(f"found no transformer blocks ({kind}) in this model for method.name={cfg.name!r}")
    for p in model.parameters():
        p.requires_grad_(False)
    for path in lists:
        blocks = model.get_submodule(path)
        if not 0 < k <= len(blocks):
            raise ValueError(f"method.k={k} must be between 1 and the number of blocks ({len(blocks)})")
        for block in list(blocks)[-k:]:
            for p in block.parameters():
                p.requires_grad_(True)
    return model
