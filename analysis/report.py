"""REPRODUCTION.md's tables, rendered from the committed CSVs so that the report cannot drift from its data.

    python analysis/report.py            # exit 1 and show the difference when a table is out of date
    python analysis/report.py --write    # rewrite every table of REPRODUCTION.md from the CSVs

Each table sits in REPRODUCTION.md between `<!-- table:NAME -->` and `<!-- /table -->`. The CSVs:
results/repro/runs.csv (one row per run, `python -m lora_repro.results results/repro --out ...`) and the read-off
CSVs that `python analysis/make_figures.py results/repro` writes under results/repro/figures/.
"""
from __future__ import annotations

import argparse
import difflib
import json
import re
import sys
from pathlib import Path

import pandas as pd

from lora_repro.analysis.paired import paired_differences
from lora_repro.analysis.tables import paper_numbers, table5_order

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "REPRODUCTION.md"
RESULTS = ROOT / "results" / "repro"
E2E_METRICS = ("bleu", "nist", "meteor", "rouge_l", "cider")  # Table 3's columns
BLOCK = re.compile(r"(<!-- table:(\w+) -->\n)(.*?)(<!-- /table -->)", re.S)


def markdown(frame: pd.DataFrame) -> str:
    """A pipe table, every cell as already formatted text."""
    head = "| " + " | ".join(frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(str(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *body]) + "\n"


def cell(scores: pd.Series) -> str:
    """The paper's GLUE statistic: median over seeds, with its min-max when there are several."""
    if len(scores) == 1:
        return f"{scores.iloc[0]:.4f}"
    return f"{scores.median():.4f} [{scores.min():.4f}, {scores.max():.4f}]"


def spread(scores: pd.Series) -> str:
    """A cell with its seed count."""
    return f"{cell(scores)} " + ("(1 seed)" if len(scores) == 1 else f"(n={len(scores)})")


def runs(experiment: str) -> pd.DataFrame:
    frame = pd.read_csv(RESULTS / "runs.csv")
    return frame[frame.experiment == experiment]


def stage_key(run_dir: str) -> str:
    """A third-edition run's task key or base model, the folder under its experiment (runs/<experiment>/<key>/...):
    cola-e10 (CoLA at its own budget) apart from cola."""
    parts = Path(run_dir).parts
    return parts[parts.index("runs") + 2]


def dagger(note) -> str:
    """Table 2 marks with a dagger the rows run in Houlsby et al.'s restricted setup (seq 128, fixed batch)."""
    return " †" if "restricted" in str(note) else ""


def methods() -> str:
    """Table 2 analogue: every method's median accuracy with its spread and trainable parameters, beside the paper."""
    frame = runs("repro_methods")
    paper = paper_numbers()
    paper = paper[(paper.table == "2") & (paper.task == "glue/sst2")]
    rows = []
    for method, group in sorted(frame.groupby("method"), key=lambda kv: kv[1].trainable_params.iloc[0]):
        cited = paper[paper.method == method]
        rows.append({"method": method, "trainable params (ours)": f"{int(group.trainable_params.iloc[0]):,}",
                     "SST-2 dev accuracy, ours": spread(group.score),
                     "paper (SST-2)": "; ".join(f"{r.value:.3f} ({r.model}, {r.params}{dagger(r.note)})"
                                                for r in cited.itertuples()) or "-"})
    return markdown(pd.DataFrame(rows))


def paired_rows(frame: pd.DataFrame, reference: str, label: str) -> list[dict]:
    """`reference` minus each other setting on the same seeds (columns method, seed, score): t interval, sign test."""
    return [{label: r.method, "seeds": r.n,
             "mean [95% t interval]": f"{r.mean_diff:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
             "median": f"{r.median_diff:+.4f}", "wins / ties / losses": f"{r.wins} / {r.ties} / {r.losses}",
             "sign test p": f"{r.sign_p:.4f}"} for r in paired_differences(frame, reference).itertuples()]


def paired() -> str:
    """Table 2's comparisons seed by seed: LoRA minus each method on the same seeds, t interval and sign test."""
    return markdown(pd.DataFrame(paired_rows(runs("repro_methods")[["method", "seed", "score"]], "lora",
                                             "LoRA minus")))


def params() -> str:
    """Figure 2 analogue read off: each (method, size) with its trainable parameters and the seeds' spread."""
    frame = pd.read_csv(RESULTS / "figures" / "fig2_params.csv").sort_values(["label", "trainable_params"])
    rows = [{"method": r.label, "trainable params": f"{int(r.trainable_params):,}",
             "SST-2 dev accuracy": f"{r.median:.4f} [{r.min:.4f}, {r.max:.4f}] (n={r.seeds})"}
            for r in frame.itertuples()]
    return markdown(pd.DataFrame(rows))


def rank() -> str:
    """Table 6 analogue: rows r, columns the adapted weights, each cell the median [min, max] over seeds."""
    frame = runs("repro_rank_ablation")
    table = frame.pivot_table(index="r", columns="targets", values="score", aggfunc=cell, sort=False).sort_index()
    table = table[sorted(table.columns, key=len)].fillna("-")  # q, then q,v, then q,k,v,o
    table.insert(0, "r", [f"{v:g}" for v in table.index])  # r = 1, 2, 4, 8, 64 (not 1.0)
    return markdown(table.reset_index(drop=True))


def rank_paired() -> str:
    """Table 6 seed by seed: within each set of adapted weights, r=1 minus each higher r on the same seeds."""
    frame = runs("repro_rank_ablation")
    rows = []
    for targets, group in sorted(frame.groupby("targets"), key=lambda kv: len(kv[0])):
        settings = group.assign(method=group.r.map(lambda r: f"r={r:g}"))[["method", "seed", "score"]]
        ranked = sorted(paired_rows(settings, "r=1", "r=1 minus"), key=lambda row: int(row["r=1 minus"][2:]))
        rows += [{"adapted weights": targets, **row} for row in ranked]
    return markdown(pd.DataFrame(rows))


def weight_type() -> str:
    """Table 5 analogue: one row per adapted-weight set at the fixed budget, median [min, max] over seeds."""
    frame = runs("repro_weight_type_ablation")
    groups = sorted(frame.groupby("targets"), key=lambda kv: table5_order(kv[0]))
    rows = [{"adapted weights": t, "r": int(g.r.iloc[0]), "trainable params": f"{int(g.trainable_params.iloc[0]):,}",
             "SST-2 dev accuracy": spread(g.score)} for t, g in groups]
    return markdown(pd.DataFrame(rows))


def weight_type_paired() -> str:
    """Table 5 seed by seed: all four matrices at r=2 minus each other set at the same budget."""
    frame = runs("repro_weight_type_ablation")
    settings = frame.assign(method=frame.targets)[["method", "seed", "score"]]
    rows = paired_rows(settings, "q,k,v,o", "q,k,v,o minus")
    return markdown(pd.DataFrame(sorted(rows, key=lambda row: table5_order(row["q,k,v,o minus"]))))


def subspace() -> str:
    """Figures 3 and 4 read off: phi(1, 1) and the top-k block."""
    frames = [pd.read_csv(RESULTS / "figures" / f"{name}.csv").assign(figure=fig)
              for name, fig in (("fig3_subspace_ranks", "Fig. 3"), ("fig3_subspace_ranks_long", "Fig. 3, long runs"),
                                ("fig4_subspace_seeds", "Fig. 4"))]
    frame = pd.concat(frames)
    rows = [{"figure": r.figure, "panel": r.panel, "φ(1,1)": f"{r.phi_1_1:.3f}",
             "φ(k,k), k": f"{r.phi_k_k:.3f}, {r.k}", "mean φ over i,j ≤ k": f"{r.block_mean:.3f}"}
            for r in frame.itertuples()]
    return markdown(pd.DataFrame(rows))


def amplification() -> str:
    """Table 7 analogue, as make_figures writes it."""
    frame = pd.read_csv(RESULTS / "figures" / "table7_amplification.csv")
    numbers = [c for c in frame.columns if c not in ("r", "seed", "target", "layer", "run_dir")]
    frame = frame[["r", "seed", *numbers]].copy()
    for c in numbers:
        frame[c] = frame[c].map(lambda v: f"{v:.3f}")
    return markdown(frame)


def curve() -> str:
    """Table 7 against steps: ||ΔW||_F, the amplification factor and A's overlap with its init, per weight and rank."""
    frame = pd.read_csv(RESULTS / "figures" / "table7_curve.csv")
    table = frame.pivot_table(index=["target", "step"], columns="r", values=["delta_norm", "factor", "a_init_overlap"],
                              aggfunc="first", sort=True)
    rows = []
    for (target, step), row in table.iterrows():
        cells = {"weight": f"W{target}", "step": int(step)}
        for r in sorted(frame.r.unique()):
            cells[f"‖ΔW‖_F, r={r}"] = f"{row['delta_norm', r]:.3f}"
            cells[f"factor, r={r}"] = "-" if pd.isna(row["factor", r]) else f"{row['factor', r]:.3f}"
            cells[f"φ(A₀, A), r={r}"] = f"{row['a_init_overlap', r]:.3f}"
        rows.append(cells)
    return markdown(pd.DataFrame(rows))


def e2e() -> str:
    """Table 3 analogue: the five metrics, mean over seeds (the paper's E2E statistic), with the seeds' std."""
    frame = runs("repro_e2e")
    rows = []
    for method, group in sorted(frame.groupby("method"), key=lambda kv: kv[1].trainable_params.iloc[0]):
        row = {"method": method, "trainable params": f"{int(group.trainable_params.iloc[0]):,}", "seeds": len(group)}
        for m in E2E_METRICS:
            values = group[f"metric.{m}"]
            row[m] = f"{values.mean():.4f} ± {values.std():.4f}" if len(values) > 1 else f"{values.iloc[0]:.4f}"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


# --- third edition: learning rates searched on the carved rows, budgets that stop on them ---
SEARCH = RESULTS / "search"  # lr_select's output per GLUE task: SEARCH/<task>/lr_search.csv


def search() -> str:
    """Each task's search: per method, the carved-rows score at every rate of its grid, the selected one starred."""
    rows = []
    for path in sorted(SEARCH.glob("*/lr_search.csv")):
        frame = pd.read_csv(path)
        for method, group in frame.groupby("method", sort=True):
            grid = " · ".join(f"{r.lr:g}: {r.score:.4f}{'*' if r.chosen else ''}" for r in group.itertuples())
            pick = group[group.chosen].iloc[0]
            rows.append({"task": path.parent.name, "method": method, "metric": pick.main_metric,
                         "rate: carved-rows score (* selected)": grid, "selected": f"{pick.lr:g}",
                         "at the grid's edge": "yes" if pick.at_edge else "no"})
    return markdown(pd.DataFrame(rows)) if rows else "no search has run yet\n"


def convergence() -> str:
    """Per experiment, the share of runs whose best epoch is their last (still improving when they stopped)."""
    frame = pd.read_csv(RESULTS / "runs.csv")
    scored = frame[frame.experiment != "repro_e2e"]  # the second edition's E2E is decoded once, after its last epoch
    rows = [{"experiment": experiment, "runs": len(group),
             "best epoch is the last": f"{int(group.best_is_last.sum())} ({group.best_is_last.mean():.0%})",
             "stopped early (train.patience)": int(group.stopped_early.fillna(False).sum())}
            for experiment, group in scored.groupby("experiment", sort=True)]
    return markdown(pd.DataFrame(rows))


def dev_score(frame: pd.DataFrame) -> pd.Series:
    """The dev score of seed runs scored on the carved rows first: metric.<main>_validation (the official dev
    split), at the epoch the carved rows picked."""
    return frame.apply(lambda run: run[f"metric.{run.main_metric}_validation"], axis=1)


def seeds3() -> str:
    """Claim 1 re-judged: per task and method, the dev score at the selected rate, median [min, max] over seeds."""
    frame = runs("repro3_glue")
    if frame.empty:
        return "no seed run has finished yet\n"
    frame = frame.assign(dev=dev_score(frame), key=frame.run_dir.map(stage_key))
    rows = [{"task": task, "method": method, "trainable params": f"{int(group.trainable_params.iloc[0]):,}",
             "dev score (metric), median [min, max]": f"{spread(group.dev)} ({group.main_metric.iloc[0]})",
             "best epoch is the last": int(group.best_is_last.sum())}
            for (task, method), group in frame.groupby(["key", "method"], sort=True)]
    return markdown(pd.DataFrame(rows))


def seeds3_paired() -> str:
    """LoRA minus each method, seed by seed, on the dev score, per task: t interval and sign test."""
    frame = runs("repro3_glue")
    rows = []
    for task, group in frame.groupby(frame.run_dir.map(stage_key), sort=True):
        if group.method.eq("lora").any() and group.method.nunique() > 1:
            scored = group.assign(score=dev_score(group))[["method", "seed", "score"]]
            rows += [{"task": task, **row} for row in paired_rows(scored, "lora", "LoRA minus")]
    return markdown(pd.DataFrame(rows)) if rows else "no pair of methods has seed runs yet\n"


def cpu_time() -> str:
    """CPU time of each third-edition stage: the runs' train_cpu_s summed (training and per-epoch scoring)."""
    frame = pd.read_csv(RESULTS / "runs.csv")
    stages = {"repro3_search": "search", "repro3_glue": "seeds", "repro3_e2e_search": "E2E search",
              "repro3_e2e": "E2E seeds"}
    frame = frame[frame.experiment.isin(list(stages))]
    frame = frame.assign(task=[f"e2e ({stage_key(d)})" if e.startswith("repro3_e2e") else stage_key(d)
                               for d, e in zip(frame.run_dir, frame.experiment)])
    rows = [{"stage": stages[experiment], "task": task,
             "runs": len(group), "CPU hours": f"{group.train_cpu_s.sum() / 3600:.2f}",
             "per run, minutes (median)": f"{group.train_cpu_s.median() / 60:.1f}"}
            for (experiment, task), group in frame.groupby(["experiment", "task"], sort=True)]
    return markdown(pd.DataFrame(rows)) if rows else "no stage has run yet\n"


def placement() -> str:
    """How much the adapters' reference placement (December 2026) moves claim 1's second-edition numbers: the same
    protocol, rates and seeds, the adapters placed before (repro_methods) and as the reference code (after)."""
    before, after = runs("repro_methods"), runs("repro_adapters_placed")
    rows = []
    for method, placed in after.groupby("method", sort=True):
        was = before[before.method == method]
        pairs = pd.concat([was.assign(method="before"), placed.assign(method="reference")])[["method", "seed", "score"]]
        diff = paired_differences(pairs, "reference").iloc[0]
        rows.append({"method": method, "second edition (before the dropout)": spread(was.score),
                     "reference placement": spread(placed.score),
                     "reference minus before, mean [95% t interval]":
                         f"{diff.mean_diff:+.4f} [{diff.ci_low:+.4f}, {diff.ci_high:+.4f}] (n={diff.n})"})
    return markdown(pd.DataFrame(rows))


# --- claim 5 as a scaling question: the base-model ladder, E2E trained on the training set, scored on test ---
PRETRAIN = RESULTS / "pretrain"  # each LM pretrained here: its pretrain.json, as <lm>.json


def ladder() -> str:
    """The base models of claim 5's ladder: size, where their pretraining came from, held-out perplexity."""
    rows = []
    for path in sorted(PRETRAIN.glob("*.json"), key=lambda p: json.loads(p.read_text())["params"]):
        rec = json.loads(path.read_text())
        rows.append({"base model": rec["lm"], "parameters": f"{rec['params']:,}",
                     "pretraining": f"here: {rec['steps']} steps on {rec['train_blocks']:,} blocks of "
                                    f"{rec['block']} tokens, {rec['train_time_s'] / 60:.0f} min on one thread",
                     "held-out perplexity (WikiText-2 tail, its own 4,096 BPE)": f"{rec['heldout_perplexity']:.1f}"})
    here = {row["base model"] for row in rows}
    frame = runs("repro3_e2e")
    for model, group in frame.groupby("model", sort=True):
        if Path(model).name not in here:
            full = group[group.method == "full"]
            size = int(full.total_params.iloc[0]) if not full.empty else None
            rows.append({"base model": Path(model).name, "parameters": f"{size:,}" if size else "-",
                         "pretraining": "elsewhere (see ../shared/models/PROVENANCE.md)",
                         "held-out perplexity (WikiText-2 tail, its own 4,096 BPE)": "- (another vocabulary)"})
    return markdown(pd.DataFrame(rows)) if rows else "no base model has been pretrained yet\n"


def e2e3() -> str:
    """Claim 5 per base model: each method at its selected rate, the five test metrics (metric.<m>_test: the carved
    MRs picked the epoch), mean ± std over seeds."""
    frame = runs("repro3_e2e")
    if frame.empty:
        return "no ladder run has finished yet\n"
    rows = []
    for (model, method), group in frame.groupby(["model", "method"], sort=True):
        row = {"base model": Path(model).name, "method": method,
               "trainable params": f"{int(group.trainable_params.iloc[0]):,}", "seeds": len(group),
               "best epoch is the last": int(group.best_is_last.sum())}
        for m in E2E_METRICS:
            values = group[f"metric.{m}_test"]
            row[m] = f"{values.mean():.4f} ± {values.std():.4f}" if len(values) > 1 else f"{values.iloc[0]:.4f}"
        rows.append(row)
    return markdown(pd.DataFrame(rows))


def e2e3_paired() -> str:
    """The gap figure read off (figures/claim5_gap.csv): LoRA minus each method per base model and test metric."""
    path = RESULTS / "figures" / "claim5_gap.csv"
    if not path.is_file():
        return "no base model has LoRA and another method on the same seeds yet\n"
    frame = pd.read_csv(path)
    rows = [{"base model": Path(r.model).name, "base params": f"{int(r.base_params):,}", "LoRA minus": r.other,
             "metric": r.metric, "seeds": r.n,
             "mean [95% t interval]": f"{r.mean_diff:+.4f} [{r.ci_low:+.4f}, {r.ci_high:+.4f}]",
             "LoRA wins / losses": f"{r.wins} / {r.losses}"}
            for r in frame.sort_values(["other", "metric", "base_params"]).itertuples()]
    return markdown(pd.DataFrame(rows))


TABLES = {"methods": methods, "paired": paired, "params": params, "rank": rank, "rank_paired": rank_paired,
          "weight_type": weight_type, "weight_type_paired": weight_type_paired, "subspace": subspace,
          "amplification": amplification, "curve": curve, "e2e": e2e, "search": search, "convergence": convergence,
          "seeds3": seeds3, "seeds3_paired": seeds3_paired, "cpu_time": cpu_time,
          "placement": placement, "ladder": ladder, "e2e3": e2e3, "e2e3_paired": e2e3_paired}


def render(text: str) -> str:
    """The report with every table block re-rendered from the CSVs; an unknown block name is an error."""
    def one(match: re.Match) -> str:
        name = match.group(2)
        if name not in TABLES:
            raise ValueError(f"REPRODUCTION.md: table:{name} is not a table; valid choices: {list(TABLES)}")
        return match.group(1) + TABLES[name]() + match.group(4)
    return BLOCK.sub(one, text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="rewrite the tables in REPRODUCTION.md")
    args = parser.parse_args()
    text = REPORT.read_text()
    fresh = render(text)
    if args.write:
        REPORT.write_text(fresh)
        print(f"wrote {len(BLOCK.findall(fresh))} tables into {REPORT}")
    elif fresh != text:
        sys.stdout.writelines(difflib.unified_diff(text.splitlines(True), fresh.splitlines(True), "REPRODUCTION.md",
                                                   "from the CSVs"))
        sys.exit(1)
    else:
        print(f"{REPORT.name}: every table matches the CSVs")


if __name__ == "__main__":
    main()
