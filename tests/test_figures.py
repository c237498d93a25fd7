"""analysis/make_figures.py: on a small subspace sweep it writes every figure, and Table 7 with finite numbers."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import ROOT, run_python as run, script

FIGURES = ["rank_ablation", "fig3_subspace_ranks", "fig4_subspace_seeds", "table7_amplification", "table7_curve",
           "fig2_params"]
TABLE7 = ["r", "seed", "delta_norm", "w_norm", "proj_delta", "proj_w", "proj_random", "factor"]


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


def test_the_curve_starts_at_a_init_and_ends_at_table_7(figures):
    # step 0: B = 0, so ΔW = 0 and A is its init; the last snapshot is the run's adapter, so Table 7's row
    curve = pd.read_csv(figures[0] / "table7_curve.csv")
    table7 = pd.read_csv(figures[0] / "table7_amplification.csv")
    assert sorted(curve.step.unique()) == [0, 8, 16] and set(curve.target) == {"q", "v"} and len(curve) == 4 * 2 * 3
    start = curve[curve.step == 0]
    assert (start.delta_norm == 0).all() and start.factor.isna().all()
    assert np.allclose(start.a_change, 0) and np.allclose(start.a_init_overlap, 1)
    moved = curve[curve.step == 16]
    assert (moved.delta_norm > 0).all() and (moved.a_change > 0).all()
    end = moved[moved.target == "q"].merge(table7, on=["r", "seed"], suffixes=("", "_table7"))
    assert len(end) == 4
    for column in ("delta_norm", "proj_delta", "factor"):
        assert np.allclose(end[column], end[f"{column}_table7"]), column
    full = curve[(curve.r == 64) & (curve.step > 0)]  # r = width (64): A spans the whole space at every step
    assert np.allclose(full.a_init_overlap, 1)


def test_figure_2_has_one_point_per_rank_with_its_seeds(figures):
    points = pd.read_csv(figures[0] / "fig2_params.csv")
    assert list(points.label) == ["lora (q,v)"] * 2 and list(points.seeds) == [2, 2]
    assert sorted(points.r) == [8, 64] and points.trainable_params.is_monotonic_increasing


def test_empty_folder_skips_every_figure_without_crashing(tmp_path):
    stdout = run("analysis/make_figures.py", str(tmp_path / "nothing"), "--out", str(tmp_path / "out"))
    assert "every figure is skipped" in stdout and "0 files" in stdout


def weight_type_runs(sweep: Path, folder: Path) -> dict[tuple[str, int], float]:
    """A weight_type_ablation sweep as run.py records it: every conf/weight_type/ entry at seeds 0 and 1.

    Each metrics.json is a real one from the subspace sweep with the experiment, targets, r, seed and score changed;
    returns the expected median score per (targets, r).
    """
    record = json.loads((sweep / "0" / "metrics.json").read_text())
    expected, job = {}, 0
    for n, spec in enumerate(sorted((ROOT / "conf" / "weight_type").glob("*.yaml"))):
        method = OmegaConf.load(spec).method
        scores = [0.1 * n, 0.1 * n + 0.04]  # seeds 0 and 1: median 0.1 n + 0.02
        for seed, score in enumerate(scores):
            rec = {**record, "experiment": "weight_type_ablation", "targets": list(method.targets), "r": method.r,
                   "seed": seed, "metrics": {**record["metrics"], record["main_metric"]: score}}
            (folder / str(job)).mkdir(parents=True)
            (folder / str(job) / "metrics.json").write_text(json.dumps(rec, indent=1))
            job += 1
        expected[(",".join(method.targets), int(method.r))] = sum(scores) / 2
    return expected


def test_weight_type_bar_chart_has_a_row_per_weight_type(sweep, tmp_path):
    expected = weight_type_runs(sweep, tmp_path / "runs")
    assert len(expected) == 7  # Table 5's columns: q, k, v, o (r=8), qk, qv (r=4), qkvo (r=2)
    stdout = run("analysis/make_figures.py", str(tmp_path / "runs"), "--out", str(tmp_path / "out"))
    assert "wrote" in stdout and "weight_type.png" in stdout
    for ext in ("png", "pdf"):
        assert (tmp_path / "out" / f"weight_type.{ext}").stat().st_size > 1000
    table = pd.read_csv(tmp_path / "out" / "weight_type.csv")
    assert list(table.columns) == ["targets", "r", "median", "min", "max", "seeds"]
    assert list(table.targets) == ["q", "k", "v", "o", "q,k", "q,v", "q,k,v,o"]  # the paper's Table 5 rows
    assert {(t, int(r)): m for t, r, m in zip(table.targets, table.r, table["median"])} == pytest.approx(expected)
    assert (table.seeds == 2).all() and np.allclose(table["max"] - table["min"], 0.04)


@pytest.fixture(scope="module")
def make_figures():
    return script("make_figures")


def ladder_frame(gaps: dict[str, float]) -> pd.DataFrame:
    """runs.csv rows of claim 5's ladder: two base models x (lora, full) x 3 seeds, carved-picked, scored on test
    with LoRA ahead of full FT by gaps[model] + seed / 100 on every metric; plus one search run (carved only)."""
    rows, metrics = [], ("bleu", "nist", "meteor", "rouge_l", "cider")
    for model, size in (("outputs/pretrained/small", 1000), ("outputs/pretrained/big", 50000)):
        for seed in range(3):
            for method, trainable in (("full", size), ("lora", 10)):
                lift = gaps[model] + seed / 100 if method == "lora" else 0.0
                rows.append({"experiment": "repro3_e2e", "model": model, "task": "e2e", "method": method,
                             "seed": seed, "eval_split": "carved", "trainable_params": trainable,
                             "total_params": size + (trainable if method == "lora" else 0), "head_params": 0,
                             **{f"metric.{m}": 0.9 for m in metrics},
                             **{f"metric.{m}_test": 0.3 + lift for m in metrics}})
    rows.append({**rows[0], "experiment": "repro3_e2e_search", **{f"metric.{m}_test": float("nan") for m in metrics}})
    return pd.DataFrame(rows)


def test_claim5_gap_is_lora_minus_full_ft_per_base_size_with_its_paired_interval(make_figures, tmp_path):
    gaps = {"outputs/pretrained/small": -0.2, "outputs/pretrained/big": 0.05}
    written = make_figures.e2e_gap(ladder_frame(gaps), tmp_path)
    assert {p.name for p in written} == {"claim5_gap.csv", "claim5_gap.png", "claim5_gap.pdf"}
    table = pd.read_csv(tmp_path / "claim5_gap.csv")
    assert len(table) == 2 * 5 and set(table.other) == {"full"} and (table.n == 3).all()
    by_model = table.groupby("model").first()
    assert by_model.base_params.to_dict() == {"outputs/pretrained/big": 50000, "outputs/pretrained/small": 1000}
    for model, gap in gaps.items():  # the test scores, not the carved ones (equal for every run): mean of the lifts
        assert np.allclose(table[table.model == model].mean_diff, gap + 0.01)
    assert (table.ci_low < table.mean_diff).all() and (table.mean_diff < table.ci_high).all()


def test_the_e2e_table_reports_test_scores_and_leaves_out_carved_only_search_runs(make_figures, tmp_path):
    make_figures.e2e_table(ladder_frame({"outputs/pretrained/small": 0.0, "outputs/pretrained/big": 0.1}), tmp_path)
    table = pd.read_csv(tmp_path / "e2e_table.csv")
    assert set(table.experiment) == {"repro3_e2e"} and (table.seeds == 3).all()
    big_lora = table[(table.model == "outputs/pretrained/big") & (table.method == "lora")]
    assert big_lora.bleu.item() == pytest.approx(0.3 + 0.1 + 0.01)
