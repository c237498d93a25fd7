"""analysis/make_figures.py: on a small subspace sweep it writes every figure, and Table 7 with finite numbers."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
FIGURES = ["rank_ablation", "fig3_subspace_ranks", "fig4_subspace_seeds", "table7_amplification"]
TABLE7 = ["r", "seed", "delta_norm", "w_norm", "proj_delta", "proj_w", "proj_random", "factor"]


def run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    folder = tmp_path_factory.mktemp("subspace")
    run("-m", "lora_repro.run", "+experiment=subspace", "task.n_train=512", "train.epochs=1",
        f"hydra.sweep.dir={folder}")
    return folder


@pytest.fixture(scope="module")
def figures(sweep):
    """The script run once with its default --out (RESULTS_DIR/figures); its folder and stdout."""
    stdout = run("analysis/make_figures.py", str(sweep))
    return sweep / "figures", stdout


def test_subspace_sweep_has_r8_and_r64_at_two_seeds(sweep):
    table = pd.read_csv(sweep / "results.csv")
    assert sorted(zip(table.r, table.seed)) == [(8, 0), (8, 1), (64, 0), (64, 1)]
    assert (table.targets == "q,v").all()


def test_every_figure_is_written_as_png_and_pdf_in_results_figures(figures):
    out, stdout = figures
    for name in FIGURES:
        for ext in ("png", "pdf"):
            assert (out / f"{name}.{ext}").stat().st_size > 1000, f"{name}.{ext}"
    assert "skip weight_type" in stdout  # no weight_type_ablation runs here: skipped with a reason, no crash


def test_amplification_table_has_a_finite_row_per_run(figures):
    table = pd.read_csv(figures[0] / "table7_amplification.csv")
    assert set(TABLE7) <= set(table.columns) and len(table) == 4
    assert np.isfinite(table[TABLE7].to_numpy(dtype=float)).all()
    assert table.w_norm.nunique() == 1  # the same rebuilt W0 for every seed and rank
    full = table[table.r == 64]  # r = width: every subspace is the whole space, so all projections are ||W||_F
    assert np.allclose(full.proj_delta, full.w_norm) and np.allclose(full.proj_random, full.w_norm)
    low = table[table.r == 8]
    assert (low.proj_w > low.proj_random).all()  # W's own top directions carry more of W than random ones


def test_empty_folder_skips_every_figure_without_crashing(tmp_path):
    stdout = run("analysis/make_figures.py", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert "every figure is skipped" in stdout and "0 files" in stdout
