"""Gather every metrics.json under a folder into one table per run and one per cell (the paper's statistic over
seeds), failed runs apart: python -m lora_repro.results DIR [--stat median|mean|auto]."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd
from hydra.experimental.callback import Callback

from lora_repro.errors import ConfigError, cli

COLUMNS = ["experiment", "model", "task", "method", "targets", "r", "size", "dagger", "alpha", "seed",
           "trainable_params", "total_params", "head_params", "best_epoch", "main_metric", "score", "steps",
           "train_time_s", "tokens_per_s", "peak_mem_mb", "train_cpu_s", "eval_split", "best_is_last", "stopped_early"]
# one cell of a paper table: its runs differ by seed only. size (the adapter bottleneck, prefix length, ...) keeps
# each size of a method apart (Adpt^H 6M and 0.8M are two rows); dagger keeps Table 2's † setup apart
CELL = ["experiment", "model", "task", "method", "targets", "r", "size", "dagger"]
STATS = ("median", "mean", "auto")


def collect(folder: str | Path) -> pd.DataFrame:
    """One row per run: its settings, its best-epoch metrics (metric.<name>) and `score`, the paper's metric."""
    rows = []
    for path in sorted(Path(folder).rglob("metrics.json")):
        rec = json.loads(path.read_text())
        row = {k: rec.get(k) for k in COLUMNS if k != "score"}
        row["targets"] = ",".join(rec["targets"]) if rec.get("targets") else None
        row["dagger"] = bool(rec.get("dagger", False))  # runs recorded before the field: the paper's own setup
        if rec.get("best_is_last") is None and rec.get("history"):  # recorded before the field: from the history
            row["best_is_last"] = rec["best_epoch"] == rec["history"][-1]["epoch"]
            row["stopped_early"] = False  # train.patience did not exist then
        row["score"] = rec["metrics"][rec["main_metric"]]
        row.update({f"metric.{k}": v for k, v in rec["metrics"].items()})
        row["run_dir"] = str(path.parent)
        rows.append(row)
    return pd.DataFrame(rows)


def collect_failed(folder: str | Path) -> list[dict]:
    """One entry per failed job of a multirun (its failed.json): run_dir, overrides and the error message."""
    return [{"run_dir": str(path.parent), **json.loads(path.read_text())}
            for path in sorted(Path(folder).rglob("failed.json"))]


def failed_report(failed: list[dict]) -> str:
    """The failed runs as lines under a heading, or nothing when none failed."""
    if not failed:
        return ""
    lines = [f"\nfailed runs ({len(failed)}):"]
    lines += [f"  {f['run_dir']} [{' '.join(f.get('overrides', []))}]: {f['error']}" for f in failed]
    return "\n".join(lines)


def paper_stat(task: str) -> str:
    """The paper's statistic over seeds: mean for E2E (Table 3, tasks named e2e*), else median (GLUE, Table 2)."""
    return "mean" if str(task).startswith("e2e") else "median"


def summarize(frame: pd.DataFrame, stat: str = "auto") -> pd.DataFrame:
    """One row per cell: `stat` over its seeds of the score (each run's best epoch) and of every metric, with the
    spread of the score (std, min, max) and the number of seeds n; stat auto = the paper's (paper_stat)."""
    if stat not in STATS:
        raise ValueError(f"stat={stat!r} is not a statistic; valid choices: {list(STATS)}")
    metrics = [c for c in frame if c.startswith("metric.")]
    rows = []
    for keys, group in frame.groupby(CELL, dropna=False, sort=True):
        row = dict(zip(CELL, keys))
        how = paper_stat(row["task"]) if stat == "auto" else stat
        score = group.score
        row.update(stat=how, score=score.agg(how), std=score.std(), min=score.min(), max=score.max(), n=len(group),
                   seeds=",".join(str(s) for s in sorted(group.seed)))
        row.update({m: group[m].agg(how) for m in metrics})
        rows.append(row)
    return pd.DataFrame(rows)


def rank_table(frame: pd.DataFrame) -> pd.DataFrame:
    """The paper's Table 6 layout: rows r, columns the adapted weights, cells the median score over seeds."""
    return frame.pivot_table(index="r", columns="targets", values="score", aggfunc="median")


class SweepSummary(Callback):
    """At the end of a multirun, print its table and write results.csv in the sweep folder."""

    def on_multirun_end(self, config, **kwargs) -> None:
        folder = Path(config.hydra.sweep.dir)
        frame, failed = collect(folder), failed_report(collect_failed(folder))
        if frame.empty:
            print(f"no finished runs under {folder}{failed}")
            return
        frame.to_csv(folder / "results.csv", index=False)
        summarize(frame).to_csv(folder / "summary.csv", index=False)
        print(f"\n{len(frame)} runs in {folder} (tables: {folder / 'results.csv'}, per cell {folder / 'summary.csv'})")
        if frame.r.nunique() > 1 or frame.targets.nunique() > 1:
            print(rank_table(frame).to_string(float_format="%.4f"))
        else:
            print(frame[["method", "targets", "r", "seed", "score"]].to_string(index=False))
        if failed:
            print(failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("folder", help="a run or sweep directory (searched for metrics.json and failed.json)")
    parser.add_argument("--out", help="write the per-run table as CSV here (one row per run)")
    parser.add_argument("--summary-out", help="write the per-cell table as CSV here")
    parser.add_argument("--stat", choices=STATS, default="auto",
                        help="statistic over seeds per cell; auto: the paper's (mean for e2e*, median otherwise)")
    args = parser.parse_args()
    frame, failed = collect(args.folder), failed_report(collect_failed(args.folder))
    if frame.empty:
        raise ConfigError(f"no metrics.json under {args.folder}{failed}")
    cells = summarize(frame, args.stat)
    if args.out:
        frame.to_csv(args.out, index=False)
    if args.summary_out:
        cells.to_csv(args.summary_out, index=False)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(frame[[c for c in COLUMNS if c in frame]].to_string(index=False))
        print("\nper cell (score: the statistic over seeds of each run's best epoch; std, min, max: its spread):")
        print(cells[CELL + ["stat", "score", "std", "min", "max", "n"]].to_string(index=False, float_format="%.4f"))
    if failed:
        print(failed)


if __name__ == "__main__":
    cli(main)()
