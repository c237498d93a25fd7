"""Our numbers beside the paper's (results/paper.csv): python -m lora_repro.analysis.tables RUNS_DIR --table 2."""
from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from lora_repro.results import collect

PAPER_CSV = Path(__file__).resolve().parents[2] / "results" / "paper.csv"
KEYS = ["method", "task", "targets", "r", "metric"]


def paper_numbers(path: str | Path = PAPER_CSV) -> pd.DataFrame:
    """The paper's numbers, one row per (table, model, method, params, task, targets, r, metric)."""
    frame = pd.read_csv(path, dtype={"table": str, "targets": str, "params": str, "note": str})
    frame["r"] = frame.r.astype("Int64")
    return frame


def our_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Median, spread (min-max) and count over seeds of each (method, task, targets, r): the paper's statistic."""
    frame = runs.rename(columns={"main_metric": "metric"}).copy()
    frame["r"] = frame.r.astype("Int64")
    frame["targets"] = frame.targets.fillna("")
    grouped = frame.groupby(KEYS, dropna=False).score
    return grouped.agg(ours="median", ours_min="min", ours_max="max", seeds="count").reset_index()


def side_by_side(runs: pd.DataFrame, table: str, paper_model: str | None = None,
                 paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Join our runs to one of the paper's tables on the keys that table fixes; columns ours, paper, difference.

    Our model is usually smaller than the paper's (e.g. MiniLM for RoBERTa): `paper_model` picks which of the
    table's models to compare against; the task, method, targets and r must agree.
    """
    paper = paper_numbers() if paper is None else paper
    rows = paper[paper.table == str(table)]
    if rows.empty:
        raise ValueError(f"table={table!r} is not in paper.csv; choose one of {sorted(paper.table.unique())}")
    if paper_model is not None:
        if paper_model not in set(rows.model):
            raise ValueError(f"paper_model={paper_model!r} is not in table {table}; choose one of {sorted(set(rows.model))}")
        rows = rows[rows.model == paper_model]
    keys = [k for k in KEYS if k == "metric" or rows[k].notna().any()]  # a table fixes only some of the keys
    rows = rows.assign(targets=rows.targets.fillna("")).rename(columns={"value": "paper"})
    ours = our_scores(runs)
    joined = ours.merge(rows[keys + ["model", "params", "paper"]].rename(columns={"model": "paper_model"}),
                        on=keys, how="inner")
    joined["difference"] = joined.ours - joined.paper
    return joined


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", help="a folder of run directories (searched for metrics.json)")
    parser.add_argument("--table", required=True, help="the paper's table: 2, 3, 5, 6, 7 or 18")
    parser.add_argument("--paper-model", help="which of the table's models to compare against, e.g. roberta-base")
    args = parser.parse_args()
    table = side_by_side(collect(args.runs), args.table, args.paper_model)
    if table.empty:
        raise SystemExit(f"none of the runs under {args.runs} match a row of table {args.table}")
    print(table.to_string(index=False, float_format="%.4f"))


if __name__ == "__main__":
    main()
