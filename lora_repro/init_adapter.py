"""Start a run from a saved adapter (method.init_adapter): the paper's MNLI-init of MRPC, RTE and STS-B (App. D.1)."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn

from lora_repro.lora import check_fit, read_adapter
from lora_repro.models import is_head

ADAPTER_FILE = "adapter.safetensors"  # what lora_repro.run writes in every run directory
LORALIB_SUFFIXES = (".bin", ".pt", ".pth")  # torch.save of a state dict, as microsoft/LoRA ships its checkpoints


def read_foreign(path: Path) -> dict[str, torch.Tensor]:
    """Another library's adapter as {our parameter name: tensor}; the one place a new format plugs in.

    loralib (microsoft/LoRA, e.g. roberta_base_lora_mnli.bin): a pickled state dict read with weights_only=True
    (tensors only, no code). Its RoBERTa / DeBERTa names are Hugging Face's module paths plus `.lora_A` (r, d_in)
    and `.lora_B` (d_out, r), which are ours (LoRALinear replaces the module it adapts), so no renaming is needed.
    PEFT folders are read by lora_repro.formats (names, fan_in_fan_out and fused q/k/v layouts converted)."""
    if path.is_file() and path.suffix in LORALIB_SUFFIXES:
        try:
            state = torch.load(path, weights_only=True, map_location="cpu")
        except Exception as err:  # a truncated zip, a pickle with code in it: the message says which
            raise ValueError(f"method.init_adapter={str(path)!r} is not a readable loralib checkpoint "
                             f"({err})") from None
        if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
            raise ValueError(f"method.init_adapter={str(path)!r} holds no state dict of tensors")
        return {k.removeprefix("module."): v for k, v in state.items()}  # a DDP-wrapped save
    if path.is_dir() and (path / "adapter_config.json").is_file():
        from lora_repro.formats import read_peft  # PEFT names and layouts (a fused c_attn included) made ours
        return read_peft(path).tensors
    raise ValueError(f"method.init_adapter={str(path)!r} is neither a run directory (holding {ADAPTER_FILE}), a "
                     f".safetensors adapter file, a PEFT folder (adapter_config.json) nor a loralib checkpoint "
                     f"({', '.join(LORALIB_SUFFIXES)})")


def read_tensors(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a run directory of ours, one of our adapter files, or a foreign adapter (read_foreign)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"method.init_adapter={str(path)!r} does not exist; valid choices: a run directory, "
                                f"an {ADAPTER_FILE} file or a loralib checkpoint")
    if path.is_dir() and (path / ADAPTER_FILE).is_file():
        path = path / ADAPTER_FILE
    if path.is_file() and path.suffix == ".safetensors":
        return read_adapter(path)
    return read_foreign(path)


@torch.no_grad()
def init_from_adapter(model: nn.Module, path: str | Path, keep_head: bool = False) -> dict:
    """Load a saved adapter's method tensors into `model` (the method applied); returns what was done.

    Every trainable tensor of the method must be in the file, with its shape. The file's task head is dropped and
    the model keeps the head it was built with (the run seed's), unless keep_head: then the head is loaded, and a
    head of another shape (MNLI's 3 labels into STS-B's 1) is an error. RoBERTa's loader drops the whole head when
    out_proj's shape differs (PAPER.md 2.2), which is keep_head=False here."""
    tensors, params = read_tensors(path), dict(model.named_parameters())
    head = {k: v for k, v in tensors.items() if is_head(k)}
    body = {k: v for k, v in tensors.items() if not is_head(k)}
    check_fit(body, params, f"method.init_adapter={str(path)!r}")
    missing = sorted(n for n, p in params.items() if p.requires_grad and not is_head(n) and n not in body)
    if missing:
        raise ValueError(f"method.init_adapter={str(path)!r} lacks {len(missing)} of the method's trainable tensors, "
                         f"e.g. {missing[0]} (another method or targets?)")
    if keep_head:
        model_head = {n: p for n, p in params.items() if is_head(n)}
        for name, p in sorted(model_head.items()):
            if name not in head or head[name].shape != p.shape:
                found = tuple(head[name].shape) if name in head else "none"
                raise ValueError(f"method.init_keep_head=true, but the head of method.init_adapter={str(path)!r} "
                                 f"does not fit this task: {name} has shape {found}, the task needs {tuple(p.shape)}; "
                                 f"set method.init_keep_head=false to start from a new head")
        body.update(head)
    for name, t in body.items():
        params[name].copy_(t.to(params[name].dtype))
    return {"path": str(path), "tensors_loaded": len(body),
            "head": "loaded" if keep_head else ("reinitialised" if head else "absent from the file")}
