"""The paper's figures and Table 7 from a folder of runs: python analysis/make_figures.py [RESULTS_DIR] [--out DIR]."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from lora_repro.analysis.amplification import amplification, frozen_weight, init_drift  # noqa: E402
from lora_repro.analysis.paired import paired_differences  # noqa: E402
from lora_repro.analysis.subspace import module_for, adapter_matrices, random_gaussian, similarity_grid  # noqa: E402
from lora_repro.analysis.tables import side_by_side, table5_order  # noqa: E402
from lora_repro.lora import read_adapter  # noqa: E402
from lora_repro.results import collect  # noqa: E402

LAYER = 0  # the paper's Figures 3-4 show one layer (48th of GPT-3); ours: the first
ZOOM = 8   # the zoomed panels: the first 8 x 8 directions


def save(fig: plt.Figure, out: Path, name: str) -> list[Path]:
    """Write one figure as PNG and PDF; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.{ext}" for ext in ("png", "pdf")]
    for path in paths:
        fig.savefig(path, bbox_inches="tight", dpi=150)
    plt.close(fig)
    print(f"wrote {paths[0]} (+ .pdf)")
    return paths


def skip(name: str, why: str) -> list[Path]:
    print(f"skip {name}: {why}")
    return []


def of_experiment(runs: pd.DataFrame, suffix: str) -> pd.DataFrame:
    """The runs of the experiments named *suffix (e.g. repro_rank_ablation for rank_ablation) when there are any,
    else every run: a folder of one sweep needs no naming, a folder of several keeps each figure to its own."""
    if runs.empty:
        return runs
    mine = runs[runs.experiment.astype(str).str.endswith(suffix)]
    return mine if not mine.empty else runs


def lora_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The LoRA runs that saved an adapter (of the subspace experiment, when the folder has one)."""
    runs = of_experiment(runs, "subspace")
    if runs.empty:
        return runs
    keep = (runs.method == "lora") & runs.run_dir.map(lambda d: (Path(d) / "adapter.safetensors").is_file())
    return runs[keep]


def rank_ablation(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Table 6 as a plot: score vs r per target set, median over seeds, min-max bars."""
    runs = of_experiment(runs, "rank_ablation")
    lora = runs[runs.method == "lora"] if not runs.empty else runs
    if lora.empty or lora.r.nunique() < 2:
        return skip("rank_ablation", "needs LoRA runs at two or more ranks")
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for targets, group in lora.groupby("targets"):
        stats = group.groupby("r").score.agg(["median", "min", "max"]).sort_index()
        ax.errorbar(stats.index, stats["median"], yerr=[stats["median"] - stats["min"], stats["max"] - stats["median"]],
                    marker="o", capsize=3, label=targets)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("rank r")
    ax.set_ylabel(f"score ({lora.main_metric.iloc[0]})")
    ax.set_title("Effect of the rank r (cf. paper Table 6)")
    ax.legend(title="adapted weights")
    return save(fig, out, "rank_ablation")


def weight_type(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Table 5 as a plot: score per target set at the fixed parameter budget, the paper's row order, median over
    seeds with min-max bars (points, not bars from zero: the differences are a few points)."""
    group = runs[runs.experiment.astype(str).str.endswith("weight_type_ablation")] if not runs.empty else runs
    if group.empty:
        return skip("weight_type", "no runs of experiment weight_type_ablation")
    stats = group.groupby(["targets", "r"]).score.agg(["median", "min", "max", "count"]).reset_index()
    stats = stats.sort_values("targets", key=lambda column: column.map(table5_order))
    out.mkdir(parents=True, exist_ok=True)
    stats.rename(columns={"count": "seeds"}).to_csv(out / "weight_type.csv", index=False)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{t}\nr={r:g}" for t, r in zip(stats.targets, stats.r)]
    ax.errorbar(labels, stats["median"], yerr=[stats["median"] - stats["min"], stats["max"] - stats["median"]],
                fmt="o", capsize=3)
    ax.set_xlabel("adapted weights (rank)")
    ax.set_ylabel(f"score ({group.main_metric.iloc[0]})")
    ax.set_title("Which weights to adapt at a fixed budget (cf. paper Table 5)")
    return [out / "weight_type.csv"] + save(fig, out, "weight_type")


def methods(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Table 2 as a bar chart: score per method (median over seeds, min-max bars), trainable parameters in the labels.

    E2E runs are left to e2e_table (five metrics, mean over seeds)."""
    glue = runs[~runs.task.astype(str).str.startswith("e2e")] if not runs.empty else runs
    group = of_experiment(glue, "methods")
    if group.empty or group.method.nunique() < 2:
        return skip("methods", "needs runs of two or more methods")
    stats = (group.groupby("method").agg(median=("score", "median"), min=("score", "min"), max=("score", "max"),
                                         seeds=("seed", "count"), trainable_params=("trainable_params", "first"))
             .sort_values("trainable_params").reset_index())
    out.mkdir(parents=True, exist_ok=True)
    stats.to_csv(out / "methods.csv", index=False)
    fig, ax = plt.subplots(figsize=(6, 3.5))
    labels = [f"{m}\n{p / 1e6:.3g}M" for m, p in zip(stats.method, stats.trainable_params)]
    ax.bar(labels, stats["median"], yerr=[stats["median"] - stats["min"], stats["max"] - stats["median"]], capsize=3)
    low = float(stats["min"].min())
    ax.set_ylim(max(0.0, low - 0.05), min(1.0, float(stats["max"].max()) + 0.02))
    ax.set_xlabel("method (trainable parameters, head excluded)")
    ax.set_ylabel(f"score ({group.main_metric.iloc[0]}), median over seeds")
    ax.set_title("Methods side by side (cf. paper Table 2)")
    return [out / "methods.csv"] + save(fig, out, "methods")


E2E_METRICS = ["bleu", "nist", "meteor", "rouge_l", "cider"]


def test_metrics(e2e: pd.DataFrame) -> pd.DataFrame:
    """The E2E runs scored on their test set, metric.<m> their test scores: a run that picked its epoch on carved
    training MRs has them as metric.<m>_test (metric.<m> is its carved score); a search run (carved only) has none."""
    e2e = e2e.copy()
    carved = e2e.eval_split == "carved"
    for m in E2E_METRICS:
        test = e2e[f"metric.{m}_test"] if f"metric.{m}_test" in e2e else pd.Series(float("nan"), index=e2e.index)
        e2e[f"metric.{m}"] = test.where(carved, e2e.get(f"metric.{m}"))
    return e2e[e2e["metric.bleu"].notna()]


def e2e_table(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Table 3 analogue: the five E2E metrics per (model, method), mean over seeds as the paper reports."""
    e2e = test_metrics(runs[runs.task.astype(str).str.startswith("e2e")]) if not runs.empty else runs
    if e2e.empty:
        return skip("e2e_table", "no E2E run scored on its test set")
    columns = [f"metric.{m}" for m in E2E_METRICS if f"metric.{m}" in e2e]
    table = e2e.groupby(["experiment", "model", "method"]).agg(
        seeds=("seed", "count"), trainable_params=("trainable_params", "first"),
        **{c.removeprefix("metric."): (c, "mean") for c in columns},
        **{f"{c.removeprefix('metric.')}_std": (c, "std") for c in columns}).reset_index()
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "e2e_table.csv", index=False)
    print(table.to_string(index=False, float_format="%.4f"))
    shown = table[["experiment", "model", "method", "trainable_params", "seeds"]
                  + [c.removeprefix("metric.") for c in columns]]
    fig, ax = plt.subplots(figsize=(9, 0.4 * len(shown) + 1))
    ax.axis("off")
    cells = [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in row] for row in shown.itertuples(index=False)]
    ax.table(cellText=cells, colLabels=list(shown.columns), loc="center")
    ax.set_title("E2E NLG test set, mean over seeds (cf. paper Table 3)")
    return [out / "e2e_table.csv"] + save(fig, out, "e2e_table")


def heatmaps(panels: list[tuple[str, torch.Tensor]], title: str) -> plt.Figure:
    """One row of subspace-similarity grids, phi(i, j) with i, j counted from 1."""
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.2), squeeze=False)
    for ax, (name, grid) in zip(axes[0], panels):
        k1, k2 = grid.shape
        image = ax.imshow(grid.numpy(), vmin=0, vmax=1, cmap="viridis", aspect="auto", origin="upper",
                          extent=(0.5, k2 + 0.5, k1 + 0.5, 0.5))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("j")
        ax.set_ylabel("i")
    fig.colorbar(image, ax=axes[0].tolist(), shrink=0.8, label="φ(i, j)")
    fig.suptitle(title, y=1.04)  # above the panels' own titles
    return fig


def one_run(frame: pd.DataFrame, **where) -> pd.Series | None:
    """The first run matching every column=value, or None."""
    for key, value in where.items():
        frame = frame[frame[key] == value]
    return None if frame.empty else frame.sort_values("run_dir").iloc[0]


def adapter(run: pd.Series) -> Path:
    return Path(run.run_dir) / "adapter.safetensors"


def read_off(panels: list[tuple[str, torch.Tensor]], out: Path, name: str) -> Path:
    """The values a reader takes from a heatmap, as CSV: phi(1, 1), phi(k, k) at the corner of the zoomed block,
    and the block's mean (k = min(ZOOM, the grid's sides))."""
    rows = []
    for panel, grid in panels:
        k = min(ZOOM, *grid.shape)
        rows.append({"panel": panel, "rows": grid.shape[0], "cols": grid.shape[1], "phi_1_1": float(grid[0, 0]),
                     "k": k, "phi_k_k": float(grid[k - 1, k - 1]), "block_mean": float(grid[:k, :k].mean())})
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / f"{name}.csv", index=False)
    return out / f"{name}.csv"


def has_target(run: pd.Series, target: str) -> bool:
    return target in str(run.targets).split(",")


def figure3(runs: pd.DataFrame, out: Path, low: int = 8, high: int = 64, name: str = "fig3_subspace_ranks",
            lora: pd.DataFrame | None = None, steps: str = "") -> list[Path]:
    """Figure 3: A of r=8 vs A of r=64 (same seed) for q and v, full grid and zoomed first 8 x 8 (of the subspace
    runs, or of the `lora` runs given)."""
    lora = lora_runs(runs) if lora is None else lora
    for seed in sorted(lora.seed.unique()) if not lora.empty else []:
        a, b = one_run(lora, r=low, seed=seed), one_run(lora, r=high, seed=seed)
        if a is None or b is None:
            continue
        targets = [t for t in ("q", "v") if has_target(a, t) and has_target(b, t)]
        if not targets:
            continue
        panels = []
        for t in targets:
            grid = similarity_grid(adapter_matrices(adapter(a), LAYER, t)[0], adapter_matrices(adapter(b), LAYER, t)[0])
            panels += [(f"W{t}: A(r={low}) vs A(r={high})", grid), (f"W{t}: zoom i, j <= {ZOOM}", grid[:ZOOM, :ZOOM])]
        table = read_off([p for p in panels if "zoom" not in p[0]], out, name)
        title = f"Subspace similarity across ranks, layer {LAYER}, seed {seed}{steps} (cf. paper Fig. 3)"
        fig = heatmaps(panels, title)
        return [table] + save(fig, out, name)
    return skip(name, f"needs LoRA runs at r={low} and r={high} with the same seed")


def figure3_long(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Figure 3 again on the runs trained longer (the amplification experiment): does the shared top direction of A
    at r=8 and r=64 grow with training?"""
    long = runs[runs.experiment.astype(str).str.endswith("amplification") & (runs.method == "lora")] \
        if not runs.empty else runs
    if long.empty:
        return skip("fig3_subspace_ranks_long", "no LoRA runs of an amplification experiment")
    steps = f", {int(long.steps.max())} steps"
    return figure3(runs, out, name="fig3_subspace_ranks_long", lora=long, steps=steps)


def figure4(runs: pd.DataFrame, out: Path, rank: int = 64) -> list[Path]:
    """Figure 4: A of two seeds at r=64 for q and v, beside two random Gaussian matrices (the control)."""
    lora = lora_runs(runs)
    at_rank = lora[lora.r == rank] if not lora.empty else lora
    seeds = sorted(at_rank.seed.unique()) if not at_rank.empty else []
    if len(seeds) < 2:
        return skip("fig4_subspace_seeds", f"needs LoRA runs at r={rank} with two seeds")
    a, b = one_run(at_rank, seed=seeds[0]), one_run(at_rank, seed=seeds[1])
    panels, d = [], None
    for t in ("q", "v"):
        if has_target(a, t) and has_target(b, t):
            A1, A2 = adapter_matrices(adapter(a), LAYER, t)[0], adapter_matrices(adapter(b), LAYER, t)[0]
            panels.append((f"W{t}: seed {seeds[0]} vs seed {seeds[1]}", similarity_grid(A1, A2)))
            d = A1.shape[1]
    if not panels:
        return skip("fig4_subspace_seeds", "the runs adapt neither q nor v")
    control = similarity_grid(random_gaussian(rank, d, seed=0), random_gaussian(rank, d, seed=1))
    panels.append(("random Gaussian vs random Gaussian", control))
    table = read_off(panels, out, "fig4_subspace_seeds")
    fig = heatmaps(panels, f"Subspace similarity across seeds at r={rank}, layer {LAYER} (cf. paper Fig. 4)")
    return [table] + save(fig, out, "fig4_subspace_seeds")


def lora_delta(path: Path, target: str) -> tuple[torch.Tensor, tuple[str, int | None]]:
    """B A (d_out, d_in) of one target of layer LAYER, and where it sits: (module path, fused slice index or None)."""
    tensors = read_adapter(path)
    names = [n for n in tensors if n.endswith((".lora_A", ".lora_B"))]
    module, index, _ = module_for(names, LAYER, target)  # GPT-2's c_attn: the slice of q, k or v
    A, B = adapter_matrices(path, LAYER, target)  # (r, d_in), (d_out, r)
    return B @ A, (module, index)


def scaling(run) -> float:
    """alpha / r of a LoRA run: h = W0 x + (alpha / r) B A x."""
    return float(run.alpha) / float(run.r) if pd.notna(run.alpha) else 1.0


def w0(run, site: tuple[str, int | None], cache: dict) -> torch.Tensor:
    """The run's frozen W0 of one (module, fused slice), rebuilt once per (model config, site)."""
    key = (json.dumps(json.loads((Path(run.run_dir) / "metrics.json").read_text())["config"]["model"]), site)
    if key not in cache:
        cache[key] = frozen_weight(run.run_dir, *site)
    return cache[key]


def amplification_table(runs: pd.DataFrame, out: Path, target: str = "q") -> list[Path]:
    """Table 7: how much ΔW of q (layer LAYER) amplifies directions of W0, one row per LoRA run."""
    lora = lora_runs(runs)
    lora = lora[lora.targets.map(lambda t: target in str(t).split(","))] if not lora.empty else lora
    if lora.empty:
        return skip("table7_amplification", f"no LoRA runs adapting {target} with a saved adapter")
    rows, cache = [], {}
    for run in lora.sort_values(["r", "seed"]).itertuples():
        try:
            delta, site = lora_delta(adapter(run), target)
            stats = amplification(scaling(run) * delta, w0(run, site, cache), int(run.r))
        except (ValueError, KeyError, FileNotFoundError) as err:
            print(f"skip {run.run_dir} in table7_amplification: {err}")
            continue
        rows.append({"r": int(run.r), "seed": int(run.seed), "target": target, "layer": LAYER, **stats,
                     "run_dir": run.run_dir})
    if not rows:
        return skip("table7_amplification", "no run's W0 could be rebuilt")
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table7_amplification.csv", index=False)
    shown = table.drop(columns=["run_dir", "target", "layer"])
    print(shown.to_string(index=False, float_format="%.3f"))
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(shown) + 1))
    ax.axis("off")
    cells = [[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row] for row in shown.itertuples(index=False)]
    ax.table(cellText=cells, colLabels=list(shown.columns), loc="center")
    ax.set_title(f"||U^T W{target} V^T||_F, U, V from ΔW / W / random; layer {LAYER} (cf. paper Table 7)")
    return [out / "table7_amplification.csv"] + save(fig, out, "table7_amplification")


def snapshots(run_dir) -> list[tuple[int, Path]]:
    """(step, file) of a run's train.snapshot_steps, in step order; [] when it saved none."""
    folder = Path(run_dir) / "snapshots"
    return sorted((int(p.stem.removeprefix("step")), p) for p in folder.glob("step*.safetensors"))


def amplification_curve(runs: pd.DataFrame, out: Path, targets: tuple[str, ...] = ("q", "v")) -> list[Path]:
    """Table 7 against training steps: ||ΔW||_F, the amplification factor and how far A moved from its init, for
    every snapshot of the LoRA runs that saved them (train.snapshot_steps, step 0 included: A's init)."""
    lora = runs[runs.method == "lora"] if not runs.empty else runs
    lora = lora[lora.run_dir.map(lambda d: [s for s, _ in snapshots(d)][:1] == [0])] if not lora.empty else lora
    if lora.empty:
        return skip("table7_curve", "no LoRA runs with snapshots from step 0 (train.snapshot_steps=[0,...])")
    rows, cache = [], {}
    for run in lora.sort_values(["r", "seed"]).itertuples():
        steps = snapshots(run.run_dir)
        for target in (t for t in targets if has_target(run, t)):
            try:
                A0 = adapter_matrices(steps[0][1], LAYER, target)[0]
                for step, path in steps:
                    delta, site = lora_delta(path, target)
                    row = {"r": int(run.r), "seed": int(run.seed), "target": target, "layer": LAYER, "step": step,
                           **init_drift(A0, adapter_matrices(path, LAYER, target)[0])}
                    delta = scaling(run) * delta  # (d_out, d_in); exactly 0 at step 0 (B = 0): no directions yet
                    if delta.abs().max() > 0:
                        row.update(amplification(delta, w0(run, site, cache), int(run.r)))
                    else:
                        row["delta_norm"] = 0.0
                    rows.append({**row, "run_dir": run.run_dir})
            except (ValueError, KeyError, FileNotFoundError) as err:
                print(f"skip {run.run_dir} ({target}) in table7_curve: {err}")
    if not rows:
        return skip("table7_curve", "no run's snapshots could be read")
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table7_curve.csv", index=False)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for (r, seed, target), group in table.groupby(["r", "seed", "target"]):
        for ax, column in zip(axes, ("delta_norm", "factor", "a_init_overlap")):
            ax.plot(group.step, group[column], marker="o", markersize=3, label=f"W{target}, r={r}, seed {seed}")
    for r, chance in table.groupby("r").a_init_chance.first().items():
        axes[2].axhline(chance, linestyle="--", color="grey", linewidth=0.8)
        axes[2].annotate(f"chance, r={r}", (table.step.max(), chance), fontsize=7, ha="right", va="bottom")
    for ax, label in zip(axes, ("||ΔW||_F", "amplification factor ||ΔW||_F / ||U^T W V^T||_F",
                                "φ(A_0, A, r, r): A's overlap with its init")):
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(label, fontsize=8)
    axes[2].set_ylim(0, 1.05)
    axes[0].legend(fontsize=7)
    fig.suptitle(f"ΔW against training steps, layer {LAYER} (cf. paper Table 7, Sec. 7.3)")
    fig.tight_layout()
    return [out / "table7_curve.csv"] + save(fig, out, "table7_curve")


FIG2_EXPERIMENTS = ("methods", "sizes", "rank_ablation")  # one protocol, every method at every size it ran


def params_vs_score(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Figure 2 analogue: score against trainable parameters (log axis), every method at each size it ran, median
    over seeds with min-max bars. A setting run by two experiments (LoRA r=8 on q,v) counts each seed once."""
    glue = runs[~runs.task.astype(str).str.startswith("e2e")] if not runs.empty else runs
    if glue.empty:
        return skip("fig2_params", "no GLUE runs")
    mine = glue[glue.experiment.astype(str).str.endswith(FIG2_EXPERIMENTS)]
    group = (mine if not mine.empty else glue).copy()
    group["label"] = [f"lora ({t})" if m == "lora" else m for m, t in zip(group.method, group.targets)]
    group = group.drop_duplicates(["label", "trainable_params", "seed"])
    stats = (group.groupby(["label", "trainable_params"])
             .agg(median=("score", "median"), min=("score", "min"), max=("score", "max"), seeds=("seed", "count"),
                  sizes=("size", "first"), r=("r", "first")).reset_index())
    if len(stats) < 2:
        return skip("fig2_params", "needs two or more (method, size) settings")
    out.mkdir(parents=True, exist_ok=True)
    stats.to_csv(out / "fig2_params.csv", index=False)
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for label, points in stats.groupby("label"):
        points = points.sort_values("trainable_params")
        ax.errorbar(points.trainable_params, points["median"], marker="o", capsize=3, label=label,
                    yerr=[points["median"] - points["min"], points["max"] - points["median"]])
    ax.set_xscale("log")
    ax.set_xlabel("trainable parameters (head excluded), log scale")
    ax.set_ylabel(f"score ({group.main_metric.iloc[0]}), median over seeds")
    ax.set_title("Score against trainable parameters (cf. paper Figure 2)")
    ax.legend(fontsize=7)
    return [out / "fig2_params.csv"] + save(fig, out, "fig2_params")


def ours_vs_paper(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Table 6 beside the paper's numbers, when our runs match its keys."""
    if runs.empty:
        return skip("table6_ours_vs_paper", "no runs")
    try:
        table = side_by_side(runs, "6")
    except (ValueError, FileNotFoundError) as err:
        return skip("table6_ours_vs_paper", str(err))
    if table.empty:
        return skip("table6_ours_vs_paper", "no run matches a row of the paper's Table 6 (task, targets, r)")
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "table6_ours_vs_paper.csv", index=False)
    print(table.to_string(index=False, float_format="%.4f"))
    return [out / "table6_ours_vs_paper.csv"]


LADDER_EXPERIMENT = "repro3_e2e"  # claim 5's ladder: each base model's E2E runs at the searched rates


def base_params(group: pd.DataFrame) -> int:
    """The base model's size: every parameter of a fully fine-tuned run, else a run's total less what it trained."""
    full = group[group.method == "full"]
    if not full.empty:
        return int(full.total_params.iloc[0])
    run = group.iloc[0]
    return int(run.total_params - run.trainable_params - run.head_params)


def e2e_gap(runs: pd.DataFrame, out: Path) -> list[Path]:
    """Claim 5 as a scaling question: LoRA minus each other method on every E2E test metric, seed by seed, against the
    base model's size (log axis), with the paired 95% t interval per size."""
    if runs.empty:
        return skip("claim5_gap", "no runs")
    ladder, rows = runs[runs.experiment == LADDER_EXPERIMENT], []
    for model, group in ladder.groupby("model", sort=True):
        for other in sorted(set(group.method) - {"lora"}):
            pair = group[group.method.isin(["lora", other])]
            if pair.method.nunique() < 2:
                continue
            for metric in E2E_METRICS:
                scores = pair.assign(score=pair[f"metric.{metric}_test"])[["method", "seed", "score"]]
                diff = paired_differences(scores, "lora").iloc[0]
                rows.append({"model": model, "base_params": base_params(group), "other": other, "metric": metric,
                             "n": diff.n, "mean_diff": diff.mean_diff, "ci_low": diff.ci_low,
                             "ci_high": diff.ci_high, "wins": diff.wins, "losses": diff.losses})
    if not rows:
        return skip("claim5_gap", f"no base model of {LADDER_EXPERIMENT} has LoRA and another method on the same seeds")
    table = pd.DataFrame(rows).sort_values(["other", "metric", "base_params"])
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "claim5_gap.csv", index=False)
    fig, axes = plt.subplots(1, len(E2E_METRICS), figsize=(3 * len(E2E_METRICS), 3.2), sharex=True)
    for ax, metric in zip(axes, E2E_METRICS):
        for other, points in table[table.metric == metric].groupby("other"):
            ax.errorbar(points.base_params, points.mean_diff, marker="o", capsize=3, label=f"LoRA - {other}",
                        yerr=[points.mean_diff - points.ci_low, points.ci_high - points.mean_diff])
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(metric)
        ax.set_xlabel("base model parameters")
    axes[0].set_ylabel("paired difference, mean [95% t]")
    axes[0].legend(fontsize=7)
    fig.suptitle("E2E test set: LoRA minus each method against base-model size (claim 5)")
    return [out / "claim5_gap.csv"] + save(fig, out, "claim5_gap")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("results", nargs="?", default="outputs", help="a folder of run directories (default outputs)")
    parser.add_argument("--out", help="where to write (default RESULTS_DIR/figures)")
    args = parser.parse_args()
    results = Path(args.results)
    out = Path(args.out) if args.out else results / "figures"
    runs = collect(results) if results.is_dir() else pd.DataFrame()
    if runs.empty:
        print(f"no metrics.json under {results}: every figure is skipped")
    written = []
    for make in (methods, params_vs_score, rank_ablation, weight_type, figure3, figure3_long, figure4,
                 amplification_table, amplification_curve, ours_vs_paper, e2e_table, e2e_gap):
        written += make(runs, out)
    print(f"{len(written)} files in {out}")


if __name__ == "__main__":
    main()
