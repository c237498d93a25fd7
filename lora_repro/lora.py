"""LoRA itself (paper Sec. 4.1): a frozen W0 plus a trainable low-rank update (alpha / r) * B A."""
from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from transformers.pytorch_utils import Conv1D

from lora_repro.errors import ConfigError
from lora_repro.targets import resolve_targets


INITS = ("kaiming", "gaussian", "normal")  # A's init: loralib's, the paper's text, the DeBERTa-v2 reference's


def check_hparams(r, alpha, dropout, init: str = "kaiming", init_std: float = 0.02) -> None:
    """LoRA's knobs in their ranges, for callers that pass Python values (a run's config checks them before)."""
    problems = [(f"r={r!r}", "an integer >= 1") if isinstance(r, bool) or not isinstance(r, int) or r < 1 else None,
                (f"alpha={alpha!r}", "a number > 0") if not isinstance(alpha, (int, float)) or alpha <= 0 else None,
                (f"dropout={dropout!r}", "a number in [0, 1)") if not 0 <= dropout < 1 else None,
                (f"init={init!r}", str(list(INITS))) if init not in INITS else None,
                (f"init_std={init_std!r}", "a number > 0") if not init_std > 0 else None]
    for problem in filter(None, problems):
        raise ValueError(f"method.{problem[0]} is invalid; valid choices: {problem[1]}")


def check_rank(r: int, width: int, layer: str = "") -> None:
    """r at most the width a layer allows (min(d_in, d_out) of each slice): checked from the model's config before
    a run (lora_repro.config.check) and on each adapted layer (apply_lora)."""
    if r > width:
        where = f"the layer {layer} is" if layer else "its layers are"
        raise ValueError(f"method.r={r} is larger than the model allows: {where} {width} wide, so valid choices are "
                         f"1..{width}")


class LoRALinear(nn.Module):
    """A frozen nn.Linear / GPT-2 Conv1D with a trainable rank-r update on the output slices it adapts.

    h = W0 x + (alpha / r) * B A dropout(x)                                   (paper eq. 3)
    For a plain layer `slices` is (0,) of 1. For GPT-2's fused c_attn (q, k, v in one Conv1D) the output has
    3 slices and each adapted slice gets its own rank-r A and B, as loralib's MergedLinear(enable_lora=...):
    lora_A: (n * r, d_in) stacks the A_i; lora_B: (n * d_slice, r) stacks the B_i; n = len(slices).
    """

    def __init__(self, base: nn.Module, r: int, alpha: float, dropout: float = 0.0, init: str = "kaiming",
                 slices: tuple[int, ...] = (0,), n_slices: int = 1, init_std: float = 0.02):
        super().__init__()
        check_hparams(r, alpha, dropout, init, init_std)
        # Keep the base layer's own Parameters (same names in the state dict: weight, bias), frozen.
        self.weight, self.bias = base.weight, base.bias
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        self.fan_in_fan_out = isinstance(base, Conv1D)  # Conv1D stores W as (d_in, d_out)
        d_in, d_out = self.weight.shape[::-1] if not self.fan_in_fan_out else self.weight.shape
        if d_out % n_slices:
            raise ValueError(f"output size {d_out} does not split into {n_slices} slices")
        self.d_in, self.d_out, self.n_slices = d_in, d_out, n_slices
        self.d_slice = d_out // n_slices
        self.slices = tuple(slices)
        self.r, self.alpha, self.scaling = r, alpha, alpha / r
        n, kw = len(self.slices), dict(device=self.weight.device, dtype=self.weight.dtype)
        self.lora_A = nn.Parameter(torch.empty(n * r, d_in, **kw))  # (n r, d_in)
        self.lora_B = nn.Parameter(torch.zeros(n * self.d_slice, r, **kw))  # (n d_slice, r): B = 0, so ΔW = 0 at start
        if init == "kaiming":  # the reference code: nn.Linear's default init, U(-1/sqrt(d_in), 1/sqrt(d_in))
            nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        elif init == "gaussian":  # the paper's text: "random Gaussian initialization for A"; std 1/r as in PEFT
            nn.init.normal_(self.lora_A, std=1.0 / r)
        else:  # "normal": the DeBERTa-v2 reference's _init_weights, A ~ N(0, initializer_range = 0.02) (PAPER.md 1.3)
            nn.init.normal_(self.lora_A, std=init_std)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        # the adapted output slices as an index, made once (not per forward); not part of the state dict
        self.register_buffer("slice_index", torch.tensor(self.slices, device=self.weight.device), persistent=False)
        self.merged = False

    # Speed switch. True: a whole layer adds its update with one accumulating GEMM, torch.addmm(out, x A^T, B^T), so
    # no elementwise pass over out and no Python in backward; a fused layer's slices go through _LoRAUpdate (GEMMs that
    # accumulate into the slices in place). False: reference_update, the same math in plain autograd ops. Same outputs
    # and gradients (tests/test_bench.py).
    fast: bool = True

    def base_forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight.T if self.fan_in_fan_out else self.weight, self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.merged:  # W already holds W0 + ΔW: a plain linear layer, no extra inference cost
            if self.training and torch.is_grad_enabled() and (self.lora_A.requires_grad or self.lora_B.requires_grad):
                raise RuntimeError("training a merged LoRA layer: W holds W0 + BA, so A and B get no gradient and "
                                   "the update does not train; call unmerge_lora(model) before training "
                                   "(merge_lora is for inference)")
            return self.base_forward(x)
        if not self.fast:
            return self.reference_update(self.base_forward(x), x)
        x2 = x.reshape(-1, self.d_in)
        # (tokens, d_out) from a 2-D base GEMM is a fresh tensor, not a view, so updating it in place costs autograd
        # no copy-slices bookkeeping (a zero fill and copies of the whole gradient in backward)
        out = self.base_forward(x2)
        if self.n_slices == 1:  # out + scaling * (x A^T) B^T, the GEMM accumulating into out; backward all in C++
            A, B = self.lora_A.to(out.dtype), self.lora_B.to(out.dtype)  # no-ops unless A, B are kept in fp32
            out = torch.addmm(out, F.linear(self.dropout(x2).to(out.dtype), A), B.T, alpha=self.scaling)
        else:
            out = _LoRAUpdate.apply(out, self.dropout(x2), self.lora_A, self.lora_B, self.slices, self.scaling)
        return out.view(*x.shape[:-1], self.d_out)

    def reference_update(self, out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """out + (alpha / r) B A dropout(x) on the adapted slices, in plain autograd ops (what _LoRAUpdate computes)."""
        # x: (..., d_in) -> xa: (..., n, r); B viewed as (n, d_slice, r) -> delta: (..., n, d_slice)
        xa = (self.dropout(x) @ self.lora_A.T).unflatten(-1, (len(self.slices), self.r))
        delta = torch.einsum("...nr,ndr->...nd", xa, self.lora_B.view(len(self.slices), self.d_slice, self.r))
        if len(self.slices) == self.n_slices:
            return out + self.scaling * delta.flatten(-2)
        return out.unflatten(-1, (self.n_slices, self.d_slice)).index_add(-2, self.slice_index, delta,
                                                                         alpha=self.scaling).flatten(-2)

    def delta_weight(self) -> torch.Tensor:
        """ΔW = (alpha / r) B A, laid out like self.weight (so W0 + ΔW is the merged weight)."""
        delta = torch.zeros(self.n_slices, self.d_slice, self.d_in, device=self.weight.device, dtype=self.weight.dtype)
        A = self.lora_A.view(len(self.slices), self.r, self.d_in)
        B = self.lora_B.view(len(self.slices), self.d_slice, self.r)
        delta[list(self.slices)] = B @ A
        delta = self.scaling * delta.flatten(0, 1)  # (d_out, d_in)
        return delta.T if self.fan_in_fan_out else delta

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.weight -= self.delta_weight()
            self.merged = False

    def extra_repr(self) -> str:
        return f"d_in={self.d_in}, d_out={self.d_out}, r={self.r}, alpha={self.alpha}, slices={self.slices}, merged={self.merged}"


class _LoRAUpdate(torch.autograd.Function):
    """out[..., slice s_i] += scaling * x A_i^T B_i^T for each adapted slice i, in place, as a few GEMMs.

    out: (..., n_slices * d_slice), the base layer's output (fresh, so writing into it is safe); x: (..., d_in) after
    dropout; A: (n r, d_in); B: (n d_slice, r). Each slice of out is a column block of the 2-D (tokens, d_out) view
    with row stride d_out, which BLAS reads and writes in place: no copy of out, no ΔW, no index_add, no extra mul.
    Under autocast the GEMMs run in out's dtype (bf16), as F.linear's would; gradients come back in each input's dtype.
    Saved for backward: x in out's dtype (what PEFT's lora_A saves) and xa (T, n r), nothing of size d_out.
    """

    @staticmethod
    def forward(ctx, out, x, A, B, slices, scaling):
        n = len(slices)
        r, d_slice = A.shape[0] // n, B.shape[0] // n
        o2 = out.view(-1, out.shape[-1])  # (T, d_out)
        x2 = x.reshape(-1, x.shape[-1]).to(out.dtype)  # (T, d_in)
        xa = x2 @ A.to(out.dtype).T  # (T, n r): one GEMM for the A of every slice
        B_ = B.to(out.dtype)
        for i, s in enumerate(slices):  # out_s += scaling * xa_i B_i^T, accumulated by the GEMM itself
            o2[:, s * d_slice:(s + 1) * d_slice].addmm_(xa[:, i * r:(i + 1) * r], B_[i * d_slice:(i + 1) * d_slice].T,
                                                          alpha=scaling)
        ctx.mark_dirty(out)
        ctx.save_for_backward(x2, xa, A, B)
        ctx.slices, ctx.scaling, ctx.x_shape, ctx.x_dtype = slices, scaling, x.shape, x.dtype
        return out

    @staticmethod
    def backward(ctx, grad):
        x2, xa, A, B = ctx.saved_tensors
        n = len(ctx.slices)
        r, d_slice = A.shape[0] // n, B.shape[0] // n
        g2 = grad.reshape(-1, grad.shape[-1]).to(xa.dtype)  # (T, d_out)
        B_ = B.to(xa.dtype)
        g_xa, g_B = [], []
        for i, s in enumerate(ctx.slices):
            g_s = g2[:, s * d_slice:(s + 1) * d_slice]  # (T, d_slice): a strided view, no copy
            g_xa.append(g_s @ B_[i * d_slice:(i + 1) * d_slice])  # (T, r)
            if ctx.needs_input_grad[3]:
                g_B.append(g_s.T @ xa[:, i * r:(i + 1) * r])  # (d_slice, r)
        g_xa = torch.cat(g_xa, dim=1).mul_(ctx.scaling)  # (T, n r)
        g_A = (g_xa.T @ x2).to(A.dtype) if ctx.needs_input_grad[2] else None
        g_x = (g_xa @ A.to(xa.dtype)).view(ctx.x_shape).to(ctx.x_dtype) if ctx.needs_input_grad[1] else None
        g_B = torch.cat(g_B).mul_(ctx.scaling).to(B.dtype) if g_B else None
        return grad, g_x, g_A, g_B, None, None


def apply_lora(model: nn.Module, targets=("q", "v"), r: int = 8, alpha: float = 8, dropout: float = 0.0,
               init: str = "kaiming", init_std: float = 0.02) -> nn.Module:
    """Freeze every weight of `model` and put a trainable LoRA update on each target (paper names q k v o mlp)."""
    check_hparams(r, alpha, dropout, init, init_std)
    for p in model.parameters():
        p.requires_grad_(False)
    for site in resolve_targets(model, targets):
        base = model.get_submodule(site.module)
        d_out, d_in = base.weight.shape[::-1] if isinstance(base, Conv1D) else base.weight.shape
        check_rank(r, min(d_in, d_out // site.n_slices), site.module)
        parent, _, child = site.module.rpartition(".")
        layer = LoRALinear(base, r, alpha, dropout, init, site.slices, site.n_slices, init_std)
        setattr(model.get_submodule(parent) if parent else model, child, layer)
    return model


def lora_layers(model: nn.Module) -> list[LoRALinear]:
    return [m for m in model.modules() if isinstance(m, LoRALinear)]


def merge_lora(model: nn.Module) -> nn.Module:
    """W = W0 + (alpha / r) B A in every LoRA layer, in place; merging twice changes nothing."""
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge_lora(model: nn.Module) -> nn.Module:
    """W = W - (alpha / r) B A: back to W0, so another task's A and B can be loaded (task switching)."""
    for layer in lora_layers(model):
        layer.unmerge()
    return model


def lora_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter: every lora_A / lora_B plus whatever else trains (the task head); never the frozen W0."""
    return {name: p.detach().contiguous() for name, p in model.named_parameters()
            if ".lora_" in name or p.requires_grad}


def save_lora(model: nn.Module, path: str | Path, metadata: dict | None = None) -> None:
    """Write lora_state_dict(model) as safetensors (tensors only, no pickle), with string metadata."""
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    save_file(lora_state_dict(model), str(path), metadata=meta)


def read_adapter(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of an adapter file; a missing, truncated or corrupted file is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"adapter file {path} does not exist")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:
        raise ConfigError(f"adapter file {path} is not a readable safetensors file ({err})") from None


def load_lora(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an adapter file into a LoRA model; refuse it, naming the first tensor, if it does not fit."""
    if any(layer.merged for layer in lora_layers(model)):
        raise RuntimeError("the model's LoRA weights are merged: call unmerge_lora(model) before load_lora")
    tensors, expected = read_adapter(path), lora_state_dict(model)
    missing = sorted({n for n in expected if ".lora_" in n} - tensors.keys())
    if missing:
        raise ConfigError(f"adapter {path} does not fit the model: it has no tensor {missing[0]} "
                          f"(other architecture, targets or method?)")
    check_fit(tensors, expected, f"adapter {path}")
    model.load_state_dict(tensors, strict=False)
    return model


def check_fit(tensors: dict[str, torch.Tensor], expected: dict[str, torch.Tensor], source: str) -> None:
    """Every saved tensor has a place of its shape in the model; else one error naming the first that does not."""
    for name, t in sorted(tensors.items()):
        if name not in expected:
            raise ConfigError(f"{source} does not fit the model: tensor {name} has no place in it "
                              f"(other architecture, targets or method?)")
        if t.shape != expected[name].shape:
            raise ConfigError(f"{source} does not fit the model: tensor {name} has shape {tuple(t.shape)}, "
                              f"the model expects {tuple(expected[name].shape)} (other r or task head?)")
