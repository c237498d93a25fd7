"""How much ΔW amplifies directions of W (paper Sec. 7.3, Table 7, Appendix H.4)."""
from __future__ import annotations

import json
from pathlib import Path

import torch
from transformers.pytorch_utils import Conv1D

from lora_repro.analysis.subspace import subspace_similarity
from lora_repro.config import RunConfig, validated
from lora_repro.formats import FUSED
from lora_repro.models import load_model
from lora_repro.tasks import head


def projection_norm(W, U, Vh) -> float:
    """||U^T W Vh^T||_F: W (d_out, d_in) projected onto an r-dim left (U: d_out x r) and right (Vh: r x d_in) subspace."""
    W, U, Vh = (torch.as_tensor(x).double() for x in (W, U, Vh))
    return torch.linalg.matrix_norm(U.T @ W @ Vh.T).item()  # (r, r)


def top_singular(M, r: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The top-r left (d_out, r) and right (r, d_in) singular vectors of M."""
    U, _, Vh = torch.linalg.svd(torch.as_tensor(M), full_matrices=False)
    return U[:, :r], Vh[:r]


def random_orthonormal(d_out: int, d_in: int, r: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A random r-dim left (d_out, r) and right (r, d_in) subspace: the 'random' column of Table 7."""
    gen = torch.Generator().manual_seed(seed)
    U = torch.linalg.qr(torch.randn(d_out, r, generator=gen, dtype=torch.float64))[0]
    V = torch.linalg.qr(torch.randn(d_in, r, generator=gen, dtype=torch.float64))[0]
    return U, V.T


def amplification(delta, W, r: int, seed: int = 0) -> dict[str, float]:
    """Table 7 for one weight: ||U^T W V^T||_F with U, V from ΔW, from W, and random; factor = ||ΔW||_F / proj_delta."""
    delta, W = torch.as_tensor(delta), torch.as_tensor(W)  # NumPy arrays and other array-likes too
    if delta.shape != W.shape or delta.dim() != 2:
        raise ValueError(f"ΔW {tuple(delta.shape)} and W {tuple(W.shape)} must be matrices of one shape (d_out, d_in)")
    if not 1 <= r <= min(W.shape):
        raise ValueError(f"r={r} must be in [1, {min(W.shape)}] for a {tuple(W.shape)} matrix")
    delta, W = delta.detach().double(), W.detach().double()  # (d_out, d_in)
    proj_delta = projection_norm(W, *top_singular(delta, r))
    return {"delta_norm": torch.linalg.matrix_norm(delta).item(),
            "w_norm": torch.linalg.matrix_norm(W).item(),
            "proj_delta": proj_delta,
            "proj_w": projection_norm(W, *top_singular(W, r)),
            "proj_random": projection_norm(W, *random_orthonormal(*W.shape, r, seed)),
            "factor": torch.linalg.matrix_norm(delta).item() / proj_delta}  # Appendix H.4: 21.5 at r=4 on GPT-3


def init_drift(A0, A) -> dict[str, float]:
    """How far LoRA's A moved from its random init (Sec. 7.3 reads that A keeps much of it): ||A - A0||_F / ||A0||_F,
    and eq. 4's φ(A0, A, r, r), the overlap of their whole row spaces: 1 = A spans its init's directions still,
    r / d_in (a_init_chance) expected for unrelated ones."""
    A0, A = torch.as_tensor(A0).double(), torch.as_tensor(A).double()  # (r, d_in)
    if A0.shape != A.shape:
        raise ValueError(f"A0 {tuple(A0.shape)} and A {tuple(A.shape)} must have one shape (r, d_in)")
    r = min(A.shape)
    return {"a_change": (torch.linalg.matrix_norm(A - A0) / torch.linalg.matrix_norm(A0)).item(),
            "a_init_overlap": subspace_similarity(A0, A, r, r), "a_init_chance": r / A.shape[1]}


def frozen_weight(run_dir: str | Path, module: str, slice_index: int | None = None) -> torch.Tensor:
    """A run's frozen W0 (d_out, d_in) of one module, rebuilt from its config as lora_repro/run.py builds it; of a
    fused q/k/v module (GPT-2's c_attn, a Conv1D storing W as (d_in, 3 d)), the rows of slice `slice_index`."""
    run = validated(RunConfig, json.loads((Path(run_dir) / "metrics.json").read_text())["config"])
    layer = load_model(run.model, *head(run.task)).get_submodule(module)
    if isinstance(layer, Conv1D):
        W = layer.weight.detach().T  # (d_out, d_in)
    elif isinstance(layer, torch.nn.Linear):
        W = layer.weight.detach()
    else:
        raise ValueError(f"{module} is a {type(layer).__name__}; W0 is rebuilt for nn.Linear and Conv1D weights")
    fused = next((names for path, names in FUSED.values() if module.endswith("." + path)), None)
    if fused is None or slice_index is None:
        return W
    d = W.shape[0] // len(fused)
    return W[slice_index * d:(slice_index + 1) * d]
