"""One LoRA adapter in three formats: ours (safetensors + metadata), Hugging Face PEFT folders, loralib checkpoints.

The common form is ours (lora_repro/lora.py): per adapted module `{m}.lora_A` (n r, d_in) stacks the A_i of its n
adapted output slices and `{m}.lora_B` (n d_slice, r) stacks the B_i, so ΔW_i = (alpha / r) B_i A_i; the task
head's tensors sit beside them under the model's own names. loralib (the paper's release) has this layout already,
GPT-2's MergedLinear(enable_lora=[True, False, True]) included; PEFT trains one A and B per module, so GPT-2's fused
c_attn becomes one adapter of rank n r whose B is block-placed with zeros: the same ΔW, exactly.
"""
from __future__ import annotations

import json
import logging
import pickle
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from lora_repro.errors import ConfigError
from lora_repro.lora import apply_lora, check_hparams, read_adapter
from lora_repro.models import CAUSAL_TYPES
from lora_repro.targets import ARCHITECTURES, check_targets

log = logging.getLogger("lora_repro")
FORMATS = ("lora_repro", "peft", "loralib")
PEFT_PREFIX = "base_model.model."
FUSED = {"gpt2": ("attn.c_attn", ("q", "k", "v"))}  # module path in a block, the paper names of its 3 slices
PREFIXES = {"roberta": "roberta", "bert": "bert", "deberta": "deberta-v2", "transformer": "gpt2", "model": "llama"}


@dataclass
class Adapter:
    """LoRA tensors in our layout (module docstring), one r and alpha for all, the paper names they adapt."""
    tensors: dict[str, torch.Tensor]
    r: int
    alpha: float
    targets: list[str]
    meta: dict = field(default_factory=dict)  # what the source said besides: model, task, method, base model

    @property
    def modules(self) -> list[str]:
        """The adapted modules' paths, in the model's own naming."""
        return sorted(n.removesuffix(".lora_A") for n in self.tensors if n.endswith(".lora_A"))

    @property
    def head(self) -> dict[str, torch.Tensor]:
        """The task head's tensors (classifier.*): trained with the adapter, needed to score it."""
        return {n: t for n, t in self.tensors.items() if ".lora_" not in n}

    @property
    def arch(self) -> str:
        return architecture_of(self.modules)

    def slices(self, module: str) -> tuple[int, ...] | None:
        """For a fused q/k/v module (GPT-2 c_attn) the indices of its adapted slices, in our stacking order; else None."""
        fused = FUSED.get(self.arch)
        if fused is None or not module.endswith("." + fused[0]):
            return None
        return tuple(i for i, name in enumerate(fused[1]) if name in self.targets)

    def factors(self, module: str) -> list[tuple[int | None, torch.Tensor, torch.Tensor]]:
        """(slice index or None, A_i (r, d_in), B_i (d_slice, r)) for each adapted slice of `module`."""
        A, B = self.tensors[f"{module}.lora_A"], self.tensors[f"{module}.lora_B"]
        slices = self.slices(module)
        if slices is None:
            return [(None, A, B)]
        d = B.shape[0] // len(slices)
        return [(s, A[i * self.r:(i + 1) * self.r], B[i * d:(i + 1) * d]) for i, s in enumerate(slices)]


# ---------------------------------------------------------------------------------------------------- names
def block_site(module: str) -> tuple[str, int, str] | None:
    """(architecture, layer, path in the block) of a module path, if it is a LoRA target of a known architecture."""
    for kind, (blocks, table) in ARCHITECTURES.items():
        for entry in table.values():
            for part in entry if isinstance(entry, list) else [entry]:
                path = part[0] if isinstance(part, tuple) else part
                found = re.search(rf"(?:^|\.){re.escape(blocks)}\.(\d+)\.{re.escape(path)}$", module)
                if found:
                    return kind, int(found.group(1)), path
    return None


def architecture_of(modules: list[str]) -> str:
    """The architecture (config.model_type) an adapter's module names belong to; BERT-style names by their prefix."""
    kinds = set()
    for m in modules:
        site = block_site(m)
        if site is None:
            raise ConfigError(f"module {m} is not a LoRA target of a supported architecture ({sorted(ARCHITECTURES)})")
        kinds.add(PREFIXES.get(m.split(".", 1)[0], site[0]) if site[0] in ("bert", "roberta") else site[0])
    if len(kinds) != 1:
        raise ConfigError(f"the adapter's modules belong to {sorted(kinds) or 'no'} architecture(s); expected one")
    kind = kinds.pop()
    return "llama" if kind in ("mistral", "qwen2") else kind  # the same module names


def paper_names(modules: list[str], fused_slices: set[int] | None = None) -> list[str]:
    """The paper's names (q, k, v, o, mlp) of the adapted modules; a fused module adds its adapted slices' names."""
    names = set()
    for m in modules:
        kind, _, path = block_site(m)
        for name, entry in ARCHITECTURES[kind][1].items():
            parts = entry if isinstance(entry, list) else [entry]
            if any((p[0] if isinstance(p, tuple) else p) == path for p in parts):
                if isinstance(entry, tuple):  # fused: only the slices that carry an update
                    if fused_slices is not None and entry[1] in fused_slices:
                        names.add(name)
                else:
                    names.add(name)
    return [t for t in ("q", "k", "v", "o", "mlp") if t in names]


def canonical(name: str) -> str:
    """A tensor name as a model's own state dict has it: no DDP `module.`, GPT-2's blocks under `transformer.`."""
    name = name.removeprefix("module.")
    return "transformer." + name if re.match(r"h\.\d+\.", name) else name


# ---------------------------------------------------------------------------------------------------- reading
def detect(src: str | Path) -> str:
    """The format of SRC: a PEFT folder, a run directory or adapter file of ours, or a loralib .bin / .pt."""
    src = Path(src)
    if src.is_dir():
        if (src / "adapter_config.json").is_file():
            return "peft"
        if (src / "adapter.safetensors").is_file():
            return "lora_repro"
        raise ConfigError(f"{src} is neither a PEFT folder (adapter_config.json) nor a run directory "
                          "(adapter.safetensors)")
    if not src.is_file():
        raise ConfigError(f"adapter {src} does not exist")
    if src.suffix == ".safetensors":
        return "peft" if (src.parent / "adapter_config.json").is_file() else "lora_repro"
    if src.suffix in (".bin", ".pt", ".pth"):
        return "loralib"
    raise ConfigError(f"{src}: unknown adapter format; valid choices: a run directory, a .safetensors file of ours, "
                      "a PEFT folder, a loralib .bin/.pt")


def read(src: str | Path, r: int | None = None, alpha: float | None = None, targets=None) -> Adapter:
    """Read an adapter in any format; r, alpha, targets fill in what the file lacks (loralib files carry none)."""
    kind = detect(src)
    src = Path(src)
    if kind == "peft":
        adapter = read_peft(src if src.is_dir() else src.parent)
    elif kind == "lora_repro":
        adapter = read_ours(src / "adapter.safetensors" if src.is_dir() else src)
    else:
        adapter = read_loralib(src, r, alpha, targets)
    for name, given in (("r", r), ("alpha", alpha)):
        if given is not None and float(given) != float(getattr(adapter, name)):
            raise ConfigError(f"--{name} {given} contradicts the adapter's own {name}={getattr(adapter, name)} ({src})")
    if targets is not None and set(check_targets(_as_list(targets))) != set(adapter.targets):
        raise ConfigError(f"--targets {_as_list(targets)} contradicts the adapter's own targets {adapter.targets} ({src})")
    adapter.meta["format"] = kind
    return adapter


def _as_list(targets) -> list[str]:
    return targets.split(",") if isinstance(targets, str) else list(targets)


def read_ours(path: Path) -> Adapter:
    """Our adapter.safetensors: LoRA tensors and head, with r, alpha, targets in its metadata (planted ΔW* left out)."""
    tensors = read_adapter(path)
    with safe_open(str(path), framework="pt") as f:
        meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    if not any(n.endswith(".lora_A") for n in tensors):
        raise ConfigError(f"{path} holds no LoRA tensors (method {meta.get('method')!r}): nothing to convert")
    missing = [k for k in ("r", "alpha", "targets") if meta.get(k) is None]
    if missing:
        raise ConfigError(f"{path} has no {missing} metadata; it was not written by lora_repro.run / export")
    kept = {n: t for n, t in tensors.items() if not n.startswith("planted.")}  # the synthetic task's ground truth
    return _checked(Adapter(kept, int(meta["r"]), float(meta["alpha"]), list(meta["targets"]),
                            {k: meta[k] for k in ("model", "task", "method", "base") if k in meta}), path)


def read_loralib(path: Path, r: int | None, alpha: float | None, targets=None) -> Adapter:
    """A loralib checkpoint (torch.save of lora_state_dict; maybe {'model_state_dict': ...}, DDP's `module.`)."""
    if r is None or alpha is None:
        raise ConfigError(f"{path} is a loralib checkpoint, which stores no r or alpha: give them (--r R --alpha A; "
                          "the paper's: RoBERTa/DeBERTa r=8 alpha=16, GPT-2 r=4 alpha=32)")
    check_hparams(int(r), float(alpha), 0.0)
    kept = loralib_tensors(path)
    modules = sorted(n.removesuffix(".lora_A") for n in kept if n.endswith(".lora_A"))
    if not modules:
        raise ConfigError(f"{path} holds no lora_A tensors: not a LoRA checkpoint")
    fused = FUSED.get(architecture_of(modules))
    fused_rows = {kept[f"{m}.lora_A"].shape[0] for m in modules if fused and m.endswith("." + fused[0])}
    if targets is None:
        if fused_rows and fused_rows != {3 * int(r)}:
            raise ConfigError(f"{path}: the fused {fused[0]} adapts {sorted(fused_rows)[0] // int(r)} of q, k, v, and a "
                              "loralib file does not say which: give --targets (the paper's GPT-2 adapters: q,v)")
        targets = paper_names(modules, {0, 1, 2})
    return _checked(Adapter(kept, int(r), float(alpha), check_targets(_as_list(targets))), path)


def torch_file(path: Path) -> dict[str, torch.Tensor]:
    """A torch.save'd state dict (loralib's, PEFT's .bin), read with weights_only=True: tensors, never pickled code.
    The reference code's GPT-2 checkpoints wrap it as {'model_state_dict': ...} (examples/NLG/src/gpt2_ft.py)."""
    try:
        state = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        if "Unsupported global" in str(err):  # weights_only refuses what a state dict never holds: classes, code
            raise ConfigError(f"{path} holds pickled objects besides tensors, which are never loaded (torch.load "
                              f"weights_only=True); save a state dict of tensors") from None
        raise ConfigError(f"{path} is not a readable torch checkpoint (no torch.save pickle of tensors)") from None
    except (RuntimeError, OSError, EOFError) as err:  # truncated zip, not a torch file at all
        raise ConfigError(f"{path} is not a readable torch checkpoint ({str(err).splitlines()[0]})") from None
    if isinstance(state, dict) and "model_state_dict" in state:
        state = state["model_state_dict"]
    if not isinstance(state, dict) or not all(isinstance(t, torch.Tensor) for t in state.values()):
        raise ConfigError(f"{path} is not a state dict of tensors (a loralib checkpoint is one)")
    return state


def loralib_tensors(path: Path) -> dict[str, torch.Tensor]:
    """A loralib checkpoint's LoRA and head tensors under our names: its RoBERTa / DeBERTa names are Hugging Face's
    module paths plus .lora_A (r, d_in) / .lora_B (d_out, r), which are ours; GPT-2's gain `transformer.`."""
    tensors = {canonical(n): t.float().contiguous() for n, t in torch_file(path).items()}
    # the LoRA tensors and every tensor outside the backbone (the head; DeBERTa's pooler), as the reference code's
    # examples/NLU/utils/split_lora.py keeps them; lm_head is GPT-2's tied embedding, not trained
    kept = {n: t for n, t in tensors.items()
            if ".lora_" in n or n.split(".", 1)[0] not in (*PREFIXES, "lm_head")}
    if len(kept) < len(tensors):  # a full state dict (the reference code's last checkpoint): W0 is not the adapter
        log.info("%s: kept %d LoRA and head tensors of %d", path, len(kept), len(tensors))
    return kept


def read_tensors(src: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of an adapter in any format, under the model's own parameter names (head included): what
    method.init_adapter loads. Needs no r or alpha, so a loralib file is read as it is."""
    kind, src = detect(src), Path(src)
    if kind == "peft":
        return read_peft(src if src.is_dir() else src.parent).tensors
    if kind == "lora_repro":
        return read_adapter(src / "adapter.safetensors" if src.is_dir() else src)
    return loralib_tensors(src)


def _peft_pattern(pattern: dict, module: str, default):
    """PEFT's rank_pattern / alpha_pattern lookup: the key matching the end of the module's name."""
    for key, value in pattern.items():
        if re.match(rf"(.*\.)?({key})$", module):
            return value
    return default


def read_peft(folder: Path) -> Adapter:
    """A PEFT LoRA folder (adapter_config.json + adapter_model.safetensors or .bin), on a supported architecture."""
    config = json.loads((folder / "adapter_config.json").read_text())
    if config.get("peft_type") != "LORA":
        raise ConfigError(f"{folder}: peft_type={config.get('peft_type')!r}; only LORA adapters convert")
    for key, plain in (("use_dora", False), ("bias", "none"), ("lora_bias", False)):
        if config.get(key, plain) != plain:
            raise ConfigError(f"{folder}: {key}={config[key]!r} is not plain LoRA (h = W0 x + s B A x); not convertible")
    if (folder / "adapter_model.safetensors").is_file():
        raw = load_file(str(folder / "adapter_model.safetensors"))
    elif (folder / "adapter_model.bin").is_file():
        raw = torch_file(folder / "adapter_model.bin")
    else:
        raise ConfigError(f"{folder} has no adapter_model.safetensors (or .bin)")
    raw = {n.removeprefix(PEFT_PREFIX): t for n, t in raw.items()}
    modules = sorted(n.removesuffix(".lora_A.weight") for n in raw if n.endswith(".lora_A.weight"))
    if not modules:
        raise ConfigError(f"{folder} holds no lora_A weights")
    arch = architecture_of(modules)
    tensors = {n: t for n, t in raw.items() if ".lora_" not in n}  # the head (modules_to_save)
    ranks, scalings, fused_slices = set(), set(), set()
    for m in modules:
        A, B = raw[f"{m}.lora_A.weight"], raw[f"{m}.lora_B.weight"]  # (R, d_in), (d_out, R): fan_in_fan_out or not
        R = A.shape[0]
        a = float(_peft_pattern(config.get("alpha_pattern") or {}, m, config["lora_alpha"]))
        scaling = a / R ** 0.5 if config.get("use_rslora") else a / R
        if FUSED.get(arch) and m.endswith("." + FUSED[arch][0]):
            slices, r, A, B = split_fused(A, B)
            fused_slices.add(slices)
        else:
            r = R
        tensors[f"{m}.lora_A"], tensors[f"{m}.lora_B"] = A.contiguous(), B.contiguous()
        ranks.add(r)
        scalings.add(round(scaling, 12))
    if len(ranks) > 1 or len(scalings) > 1 or len(fused_slices) > 1:
        raise ConfigError(f"{folder}: modules differ in rank {sorted(ranks)}, scale {sorted(scalings)} or adapted "
                          f"slices {sorted(fused_slices)}; our format holds one r, alpha and target set")
    r, scaling = ranks.pop(), scalings.pop()
    targets = paper_names(modules, set(fused_slices.pop()) if fused_slices else None)
    meta = {"base": config.get("base_model_name_or_path")}
    return _checked(Adapter(tensors, r, scaling * r, targets, meta), folder)


def split_fused(A: torch.Tensor, B: torch.Tensor, n_slices: int = 3):
    """One PEFT adapter on a fused q/k/v module as our per-slice form: (slices, r, A (n r, d_in), B (n d_slice, r)).

    ΔW's slice s is B_s A, B_s the s-th row block of B (d_slice, R); slices whose B_s is zero carry no update.
    If slice i uses only the i-th block of R / n columns (what our export writes), that block is its own rank-R/n
    adapter; otherwise every slice keeps all R: A repeated, exact either way (the scale alpha / r is kept by the caller).
    """
    R, d = A.shape[0], B.shape[0] // n_slices
    blocks = B.view(n_slices, d, R)
    used = tuple(s for s in range(n_slices) if blocks[s].any()) or tuple(range(n_slices))
    n = len(used)
    if R % n == 0:
        r = R // n
        cols = [blocks[s].ne(0).any(0) for s in used]  # (R,) which columns of B each slice uses
        if all(not c[:i * r].any() and not c[(i + 1) * r:].any() for i, c in enumerate(cols)):
            return used, r, A, torch.cat([blocks[s][:, i * r:(i + 1) * r] for i, s in enumerate(used)])
    return used, R, A.repeat(n, 1), torch.cat([blocks[s] for s in used])


def _checked(adapter: Adapter, src) -> Adapter:
    """Shapes agree with r and the targets (a wrong --r for a loralib file is caught here, not in a matmul)."""
    for m in adapter.modules:
        A, B = adapter.tensors[f"{m}.lora_A"], adapter.tensors[f"{m}.lora_B"]
        n = len(adapter.slices(m) or (None,))
        if A.dim() != 2 or B.dim() != 2 or A.shape[0] != n * adapter.r or B.shape[1] != adapter.r:
            raise ConfigError(f"{src}: {m} has lora_A {tuple(A.shape)} and lora_B {tuple(B.shape)}, which do not fit "
                              f"r={adapter.r} on {n} slice(s) (targets {adapter.targets}); is r right?")
    return adapter


# ---------------------------------------------------------------------------------------------------- writing
def write(adapter: Adapter, to: str, out: str | Path, base: str | None = None) -> Path:
    """Write the adapter as `to` (lora_repro | peft | loralib) at `out`; returns the path written."""
    if to not in FORMATS:
        raise ConfigError(f"--to {to!r} is not a format; valid choices: {list(FORMATS)}")
    out = Path(out)
    base = base or adapter.meta.get("base")
    if to == "peft":
        return write_peft(adapter, out, base)
    if to == "loralib":  # loralib's lora_state_dict, as the paper's checkpoints: a flat dict of tensors
        out.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(sorted(adapter.tensors.items())), out)
        return out
    path = out / "adapter.safetensors" if out.suffix != ".safetensors" else out
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {**{k: v for k, v in adapter.meta.items() if k in ("model", "task", "method")}, "base": base,
            "method": "lora", "r": adapter.r, "alpha": adapter.alpha, "targets": adapter.targets}
    save_file({n: t.contiguous() for n, t in adapter.tensors.items()}, str(path),
              metadata={k: json.dumps(v) for k, v in meta.items()})
    return path


def peft_tensors(adapter: Adapter) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, float]]]:
    """PEFT's tensors and each module's (rank, lora_alpha): a fused module's slices as one block-placed adapter."""
    tensors, ranks = {}, {}
    for m in adapter.modules:
        A, B = adapter.tensors[f"{m}.lora_A"], adapter.tensors[f"{m}.lora_B"]
        slices = adapter.slices(m)
        rank, alpha = adapter.r, adapter.alpha
        if slices is not None:  # B_big (3 d_slice, n r): slice s's rows hold B_i in the i-th block of r columns
            n, r, d = len(slices), adapter.r, B.shape[0] // len(slices)
            big = B.new_zeros(3 * d, n * r)
            for i, s in enumerate(slices):
                big[s * d:(s + 1) * d, i * r:(i + 1) * r] = B[i * d:(i + 1) * d]
            B, rank, alpha = big, n * r, n * adapter.alpha  # lora_alpha / rank = alpha / r: the same scale
        tensors[f"{PEFT_PREFIX}{m}.lora_A.weight"] = A.contiguous()
        tensors[f"{PEFT_PREFIX}{m}.lora_B.weight"] = B.contiguous()
        ranks[m] = (rank, alpha)
    for name, t in adapter.head.items():
        tensors[PEFT_PREFIX + name] = t.contiguous()
    return tensors, ranks


def _number(x: float) -> int | float:
    return int(x) if float(x).is_integer() else float(x)


def write_peft(adapter: Adapter, folder: Path, base: str | None) -> Path:
    """adapter_config.json + adapter_model.safetensors that PeftModel.from_pretrained loads onto the base model."""
    tensors, ranks = peft_tensors(adapter)
    rank, alpha = Counter(ranks.values()).most_common(1)[0][0]
    arch = adapter.arch
    config = {
        "peft_type": "LORA", "task_type": "CAUSAL_LM" if arch in CAUSAL_TYPES else "SEQ_CLS",
        "base_model_name_or_path": base, "r": rank, "lora_alpha": _number(alpha),
        "rank_pattern": {m: ra[0] for m, ra in ranks.items() if ra[0] != rank},
        "alpha_pattern": {m: _number(ra[1]) for m, ra in ranks.items() if ra[1] != alpha},
        "target_modules": adapter.modules,  # full paths: exactly these modules, whatever else shares their names
        "modules_to_save": sorted({n.split(".", 1)[0] for n in adapter.head}) or None,
        "fan_in_fan_out": arch == "gpt2",  # GPT-2's Conv1D stores W as (d_in, d_out)
        "lora_dropout": 0.0, "bias": "none", "use_rslora": False, "use_dora": False, "init_lora_weights": True,
        "inference_mode": True,
    }
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    save_file(tensors, str(folder / "adapter_model.safetensors"), metadata={"format": "pt"})
    return folder


# ---------------------------------------------------------------------------------------------------- models
def into_model(adapter: Adapter, model: nn.Module) -> nn.Module:
    """Put the adapter on a base model: apply_lora with its r, alpha, targets, then its tensors (head included)."""
    apply_lora(model, adapter.targets, adapter.r, adapter.alpha)
    own = dict(model.named_parameters())
    state = {}
    for name, t in adapter.tensors.items():
        matches = [n for n in own if n == name or n.endswith("." + name)]
        if len(matches) != 1:
            raise ConfigError(f"the adapter's tensor {name} has {'no' if not matches else 'no single'} place in this "
                              f"{type(model).__name__} (other architecture or targets?)")
        if own[matches[0]].shape != t.shape:
            raise ConfigError(f"the adapter's tensor {name} has shape {tuple(t.shape)}, the model's "
                              f"{tuple(own[matches[0]].shape)} (other model size or number of labels?)")
        state[matches[0]] = t
    lora = {n for n in own if ".lora_" in n}
    if lora - state.keys():
        raise ConfigError(f"the adapter has no tensor for {sorted(lora - state.keys())[0]} (other targets or depth?)")
    model.load_state_dict(state, strict=False)
    return model
