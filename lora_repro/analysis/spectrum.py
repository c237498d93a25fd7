"""How low is a learned update's rank: the singular values of ΔW = (alpha / r) B A per layer and target, and how
alike the updates' subspaces are within and across layers (paper Sec. 7, for any adapter; no base weights needed).

python -m lora_repro.analysis.spectrum SRC [--r R --alpha A --targets q,v] --out DIR writes spectrum.csv,
similarity.csv and spectrum.png for SRC in any format lora_repro.formats reads.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd
import torch

from lora_repro.analysis.subspace import grid_of_directions
from lora_repro.errors import cli
from lora_repro.formats import Adapter, block_site, read
from lora_repro.targets import ARCHITECTURES

PAPER_NAMES = ("q", "k", "v", "o")


def delta_svd(A, B, scaling: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """SVD of ΔW = scaling B A without forming it: U (d_out, r), S (r,), V (d_in, r), strongest first.

    A: (r, d_in); B: (d_out, r). With B = Q_B R_B and A^T = Q_A R_A, ΔW = Q_B (R_B R_A^T) Q_A^T, so the SVD of the
    r x r core gives ΔW's: exact, and O(d r^2) instead of O(d^2 r).
    """
    A, B = torch.as_tensor(A).double(), torch.as_tensor(B).double()
    if A.dim() != 2 or B.dim() != 2 or A.shape[0] != B.shape[1]:
        raise ValueError(f"A {tuple(A.shape)} and B {tuple(B.shape)} are not (r, d_in) and (d_out, r)")
    QB, RB = torch.linalg.qr(B)
    QA, RA = torch.linalg.qr(A.T)
    Uc, S, Vch = torch.linalg.svd(RB @ RA.T)
    return QB @ Uc, abs(scaling) * S, QA @ Vch.T


def updates(adapter: Adapter) -> list[tuple[int, str, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(layer, paper name, U, S, V) of every attention update of the adapter (q, k, v, o), by target, then layer."""
    fused_names = ("q", "k", "v")
    out = []
    for module in adapter.modules:
        kind, layer, path = block_site(module)
        for s, A, B in adapter.factors(module):
            name = fused_names[s] if s is not None else _paper_name(kind, path)
            if name in PAPER_NAMES:
                out.append((layer, name, *delta_svd(A, B, adapter.alpha / adapter.r)))
    return sorted(out, key=lambda u: (PAPER_NAMES.index(u[1]), u[0]))


def _paper_name(kind: str, path: str) -> str | None:
    return next((n for n, e in ARCHITECTURES[kind][1].items() if e == path), None)


def spectrum_table(adapter: Adapter) -> pd.DataFrame:
    """One row per singular value: layer, target, k, sigma, sigma / sigma_1, the share of ||ΔW||_F^2 in the top k,
    and per update its stable rank ||ΔW||_F^2 / sigma_1^2 (1 = one direction carries it all; r = flat)."""
    rows = []
    for layer, target, _, S, _ in updates(adapter):
        energy = S.pow(2).cumsum(0) / S.pow(2).sum()
        stable = (S.pow(2).sum() / S[0] ** 2).item()
        rows += [{"layer": layer, "target": target, "k": k + 1, "sigma": S[k].item(),
                  "sigma_rel": (S[k] / S[0]).item(), "energy_top_k": energy[k].item(), "stable_rank": stable}
                 for k in range(len(S))]
    return pd.DataFrame(rows)


def similarity_table(adapter: Adapter, ks=(1, 2, 4, 8)) -> pd.DataFrame:
    """phi (paper eq. 4, i = j = k) between the top-k singular directions of every pair of updates: input side
    (right-singular, the A side) and output side (left-singular, the B side). A random pair of k-dim subspaces of
    R^d scores k / d on average."""
    found = updates(adapter)
    rows = []
    for side in ("input", "output"):
        for a, (la, ta, Ua_out, _, Ua_in) in enumerate(found):
            for lb, tb, Ub_out, _, Ub_in in found[a:]:
                Ua, Ub = (Ua_in, Ub_in) if side == "input" else (Ua_out, Ub_out)
                if Ua.shape[0] != Ub.shape[0]:
                    continue
                grid = grid_of_directions(Ua, Ub)
                for k in ks:
                    if k <= min(grid.shape):
                        rows.append({"side": side, "layer_a": la, "target_a": ta, "layer_b": lb, "target_b": tb,
                                     "k": k, "phi": grid[k - 1, k - 1].item(), "random": k / Ua.shape[0]})
    return pd.DataFrame(rows)


def plot(spectrum: pd.DataFrame, similarity: pd.DataFrame, out: Path, title: str, k: int = 1) -> None:
    """Left: sigma_k / sigma_1 per layer for each target; right: phi at i = j = k over all (target, layer) pairs."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.colors import LogNorm

    targets = [t for t in PAPER_NAMES if t in set(spectrum.target)]
    fig, axes = plt.subplots(1, len(targets) + 2, figsize=(4.2 * (len(targets) + 2), 3.9))
    layers = sorted(set(spectrum.layer))
    colors = plt.cm.viridis(np.linspace(0, 0.95, len(layers)))
    for ax, t in zip(axes, targets):
        for layer, color in zip(layers, colors):
            rows = spectrum[(spectrum.target == t) & (spectrum.layer == layer)]
            ax.plot(rows.k, rows.sigma_rel, "o-", color=color, ms=3, lw=1, label=f"layer {layer}")
        ax.set(title=f"singular values of ΔW$_{t}$", xlabel="k", ylabel="σ$_k$ / σ$_1$", ylim=(0, 1.05))
        ax.set_xticks(sorted(set(spectrum.k)))
    axes[0].legend(fontsize=6, ncol=2)
    keys = [(t, layer) for t in targets for layer in layers]
    for ax, side in zip(axes[len(targets):], ("input", "output")):
        grid = np.full((len(keys), len(keys)), np.nan)
        rows = similarity[(similarity.side == side) & (similarity.k == k)]
        for row in rows.itertuples():
            a, b = keys.index((row.target_a, row.layer_a)), keys.index((row.target_b, row.layer_b))
            if a != b:  # an update against itself is 1: left blank, so the scale shows the rest
                grid[a, b] = grid[b, a] = row.phi
        # log scale: a random pair scores k / d (0.001 for k = 1 in R^768), a shared direction 1
        image = ax.imshow(grid, norm=LogNorm(vmin=1e-4, vmax=1), cmap="magma")
        ticks = [i for i, (_, layer) in enumerate(keys) if layer in (layers[0], layers[len(layers) // 2])]
        ax.set_xticks(ticks, [f"{t}{layer}" for t, layer in (keys[i] for i in ticks)], fontsize=7)
        ax.set_yticks(ticks, [f"{t}{layer}" for t, layer in (keys[i] for i in ticks)], fontsize=7)
        random = f"; random pair: {rows['random'].iloc[0]:.3f}" if len(rows) else ""
        ax.set_title(f"φ of the top-{k} {side} directions, pairs of updates\n(diagonal: itself; {random.lstrip('; ')})",
                     fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.046)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m lora_repro.analysis.spectrum", description=__doc__)
    parser.add_argument("src", help="an adapter in any format (a run directory, a PEFT folder, a loralib file, ...)")
    parser.add_argument("--r", type=int)
    parser.add_argument("--alpha", type=float)
    parser.add_argument("--targets")
    parser.add_argument("--out", required=True, help="folder for spectrum.csv, similarity.csv, spectrum.png")
    parser.add_argument("--k", type=int, default=1, help="the heat maps compare top-k directions (default 1)")
    args = parser.parse_args(argv)
    adapter = read(args.src, args.r, args.alpha, args.targets)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    spectrum, similarity = spectrum_table(adapter), similarity_table(adapter)
    spectrum.to_csv(out / "spectrum.csv", index=False, float_format="%.6g")
    similarity.to_csv(out / "similarity.csv", index=False, float_format="%.6g")
    plot(spectrum, similarity, out / "spectrum", f"{Path(args.src).name}: r={adapter.r}, alpha={adapter.alpha:g}",
         args.k)
    per_update = spectrum.groupby(["target", "layer"]).first()
    print(per_update.groupby("target")[["stable_rank", "energy_top_k"]].describe().T.round(3).to_string())
    print(f"wrote {out / 'spectrum.csv'}, {out / 'similarity.csv'}, {out / 'spectrum.png'}")


if __name__ == "__main__":
    cli(main)()
