"""The paper's weight names (Wq, Wk, Wv, Wo, and the MLP) resolved to module paths of each architecture."""
from __future__ import annotations

from dataclasses import dataclass

import torch.nn as nn

# Per architecture (config.model_type): the ModuleList of transformer blocks, and per paper name the path of
# the projection(s) inside one block. GPT-2 keeps q, k and v in one fused Conv1D: (path, which of its 3 slices).
_BERT = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
         "o": "attention.output.dense", "mlp": ["intermediate.dense", "output.dense"]}
_LLAMA = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
          "mlp": ["mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]}
ARCHITECTURES = {
    "bert": ("encoder.layer", _BERT),
    "roberta": ("encoder.layer", _BERT),
    "deberta-v2": ("encoder.layer", {"q": "attention.self.query_proj", "k": "attention.self.key_proj",
                                     "v": "attention.self.value_proj", "o": "attention.output.dense",
                                     "mlp": ["intermediate.dense", "output.dense"]}),
    "gpt2": ("h", {"q": ("attn.c_attn", 0), "k": ("attn.c_attn", 1), "v": ("attn.c_attn", 2),
                   "o": "attn.c_proj", "mlp": ["mlp.c_fc", "mlp.c_proj"]}),
    "llama": ("layers", _LLAMA),
    "mistral": ("layers", _LLAMA),
    "qwen2": ("layers", _LLAMA),
}
TARGET_NAMES = ("q", "k", "v", "o", "mlp")


@dataclass(frozen=True)
class Site:
    """One module to adapt: its path, and which of its n_slices output slices (q/k/v of a fused c_attn)."""
    module: str
    slices: tuple[int, ...] = (0,)
    n_slices: int = 1


def check_targets(targets) -> list[str]:
    """Paper names as a list, or a ValueError listing the unknown ones and the valid choices."""
    names = [targets] if isinstance(targets, str) else list(targets)
    unknown = [t for t in names if t not in TARGET_NAMES]
    if unknown or not names:
        raise ValueError(f"method.targets={names} has unknown name(s) {unknown}; valid choices: {list(TARGET_NAMES)}")
    return names


def architecture(model: nn.Module) -> str:
    """The model's architecture name (config.model_type), if the suite knows where its projections are."""
    kind = getattr(getattr(model, "config", None), "model_type", None)
    if kind not in ARCHITECTURES:
        raise ValueError(f"model architecture {kind!r} has no known LoRA targets; supported: {sorted(ARCHITECTURES)}")
    return kind


def block_lists(model: nn.Module, kind: str) -> list[str]:
    """Paths of the ModuleList(s) holding the transformer blocks."""
    suffix = ARCHITECTURES[kind][0]
    return [n for n, m in model.named_modules()
            if isinstance(m, nn.ModuleList) and (n == suffix or n.endswith("." + suffix))]


def resolve_targets(model: nn.Module, targets) -> list[Site]:
    """Paper names (e.g. ["q", "v"]) -> the modules to adapt in every block, fused slices grouped by module."""
    kind = architecture(model)
    names = check_targets(targets)
    table = ARCHITECTURES[kind][1]
    lists = block_lists(model, kind)
    if not lists:
        raise ValueError(f"found no transformer blocks ({ARCHITECTURES[kind][0]}) in this {kind} model")
    slices: dict[str, set[int]] = {}
    for blocks in lists:
        for i in range(len(model.get_submodule(blocks))):
            for name in names:
                entry = table[name]
                for part in entry if isinstance(entry, list) else [entry]:
                    path, index = part if isinstance(part, tuple) else (part, None)
                    full = f"{blocks}.{i}.{path}"
                    slices.setdefault(full, set())
                    if index is not None:
                        slices[full].add(index)
    # a fused q/k/v projection has 3 output slices; any other module is adapted whole
    return [Site(full, tuple(sorted(idx)), 3) if idx else Site(full) for full, idx in slices.items()]
