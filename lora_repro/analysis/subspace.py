"""Subspace similarity between learned LoRA matrices (paper Sec. 7.2, eq. 4, Figures 3 and 4)."""
from __future__ import annotations

from pathlib import Path

import torch

from lora_repro.formats import Adapter, read
from lora_repro.lora import read_adapter
from lora_repro.targets import ARCHITECTURES

SIDES = ("A", "B")


def singular_directions(M, side: str = "A") -> torch.Tensor:
    """The directions eq. 4 compares, as columns, strongest first: right-singular of A (r x d), left-singular of B (d x r)."""
    if side not in SIDES:
        raise ValueError(f"side={side!r}; choose one of {list(SIDES)} (A: right-singular vectors, B: left-singular)")
    M = torch.as_tensor(M)  # NumPy arrays and other array-likes too
    if M.dim() != 2:
        raise ValueError(f"expected a 2-d matrix, got shape {tuple(M.shape)}")
    U, _, Vh = torch.linalg.svd(M.detach().double(), full_matrices=False)  # U: (rows, k); Vh: (k, cols)
    return Vh.T if side == "A" else U  # (d, k), k = min(r, d)


def _check(name: str, value: int, limit: int) -> None:
    if not 1 <= value <= limit:
        raise ValueError(f"{name}={value} is out of range: the matrix has {limit} singular directions, so 1 <= {name} <= {limit}")


def subspace_similarity(M1, M2, i: int, j: int, side: str = "A") -> float:
    """phi(M1, M2, i, j) = ||U1[:, :i]^T U2[:, :j]||_F^2 / min(i, j) in [0, 1] (paper eq. 4; side="B": its footnote)."""
    U1, U2 = singular_directions(M1, side), singular_directions(M2, side)  # (d, k1), (d, k2)
    if U1.shape[0] != U2.shape[0]:
        raise ValueError(f"the matrices live in different spaces: dimension {U1.shape[0]} vs {U2.shape[0]}")
    _check("i", i, U1.shape[1])
    _check("j", j, U2.shape[1])
    return (U1[:, :i].T @ U2[:, :j]).pow(2).sum().item() / min(i, j)


def similarity_grid(M1, M2, side: str = "A") -> torch.Tensor:
    """All of eq. 4 at once: grid[i-1, j-1] = phi(M1, M2, i, j) for i <= k1, j <= k2 (one SVD each)."""
    return grid_of_directions(singular_directions(M1, side), singular_directions(M2, side))


def grid_of_directions(U1, U2) -> torch.Tensor:
    """Eq. 4's grid from orthonormal directions given as columns, strongest first: U1 (d, k1), U2 (d, k2)."""
    U1, U2 = torch.as_tensor(U1).double(), torch.as_tensor(U2).double()
    if U1.shape[0] != U2.shape[0]:
        raise ValueError(f"the matrices live in different spaces: dimension {U1.shape[0]} vs {U2.shape[0]}")
    overlap = (U1.T @ U2).pow(2)  # (k1, k2): squared cosines between single directions
    total = overlap.cumsum(0).cumsum(1)  # total[i-1, j-1] = ||U1^i^T U2^j||_F^2
    i = torch.arange(1, U1.shape[1] + 1, dtype=total.dtype)[:, None]
    j = torch.arange(1, U2.shape[1] + 1, dtype=total.dtype)[None, :]
    return (total / torch.minimum(i, j)).float()


def random_gaussian(r: int, d: int, seed: int = 0) -> torch.Tensor:
    """The Figure 4 control: an r x d standard Gaussian matrix, shares no directions with anything in expectation."""
    return torch.randn(r, d, generator=torch.Generator().manual_seed(seed))


def module_for(names: list[str], layer: int, target: str) -> tuple[str, int | None, str]:
    """The adapter's module path for (layer, target), the fused slice index if any, and the architecture matched."""
    if target not in ("q", "k", "v", "o"):
        raise ValueError(f"target={target!r}; choose one of ['q', 'k', 'v', 'o']")
    found = {}
    for kind, (blocks, table) in ARCHITECTURES.items():
        path, index = table[target] if isinstance(table[target], tuple) else (table[target], None)
        tail = f"{blocks}.{layer}.{path}"
        for name in names:
            module = name.rsplit(".", 1)[0]
            if module == tail or module.endswith("." + tail):
                found[module] = (index, kind)
    if len(found) != 1:
        what = "no module" if not found else f"several modules {sorted(found)}"
        modules = sorted({n.rsplit(".", 1)[0] for n in names})
        raise KeyError(f"{what} for layer {layer}, target {target!r}; the file has {modules}")
    (module, (index, kind)), = found.items()
    return module, index, kind


def adapter_matrices(src, layer: int, target: str, r: int | None = None, alpha: float | None = None,
                     targets=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A (r, d_in) and B (d_out, r) of one layer's target (q, k, v or o), from an adapter in any format
    (lora_repro.formats: a run directory or file of ours, a PEFT folder, a loralib file with r and alpha given)."""
    adapter = src if isinstance(src, Adapter) else read(src, r, alpha, targets)
    module, index, _ = module_for([f"{m}.lora_A" for m in adapter.modules], layer, target)
    for s, A, B in adapter.factors(module):  # a fused c_attn: one (A_i, B_i) per adapted slice
        if s == index:
            return A, B
    raise KeyError(f"adapter {src} does not adapt {target!r} (its targets: {adapter.targets})")


def planted_delta(path: str | Path, layer: int, target: str) -> torch.Tensor:
    """The synthetic task's planted ΔW* (d_out, d_in) for one layer's target, as stored beside the adapter."""
    tensors = read_adapter(path)
    planted = {n.removeprefix("planted."): n for n in tensors if n.startswith("planted.")}
    bases = {k.split(":")[0] + ".planted" for k in planted}  # fake tensor names so module_for can match modules
    module, index, _ = module_for(sorted(bases), layer, target)
    key = module if index is None else f"{module}:{index}"
    if key not in planted:
        raise KeyError(f"no planted ΔW* for {key}; the file has {sorted(planted)}")
    return tensors[planted[key]]
