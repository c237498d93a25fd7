"""Our numbers beside the paper's (results/paper.csv): python -m lora_repro.analysis.tables RUNS_DIR --table 2."""
from __future__ import annotations

import argparse
import math
import re
from pathlib import Path

import pandas as pd

from lora_repro.errors import ConfigError, cli
from lora_repro.results import collect, paper_stat

PAPER_CSV = Path(__file__).resolve().parents[2] / "results" / "paper.csv"
KEYS = ["method", "task", "targets", "r", "metric"]
CELL_KEYS = ["model", *KEYS, "size", "dagger"]  # one cell of ours: its runs differ by seed only


def table5_order(targets: str) -> tuple[int, int]:
    """Sort key of the paper's Table 5 rows for a comma-joined target set: single matrices q, k, v, o, then the pairs
    qk, qv, then all four (any other set after its size's rows)."""
    last = targets.split(",")[-1]
    return targets.count(","), "qkvo".index(last) if last in ("q", "k", "v", "o") else 4


def paper_numbers(path: str | Path = PAPER_CSV) -> pd.DataFrame:
    """The paper's numbers, one row per (table, model, method, params, task, targets, r, metric); `size` is the
    method's size knob where the paper's count pins it (adapter bottlenecks), `dagger` marks Table 2's † rows."""
    frame = pd.read_csv(path, dtype={"table": str, "targets": str, "params": str, "note": str})
    frame["r"] = frame.r.astype("Int64")
    frame["size"] = frame["size"].astype("Int64")
    frame["dagger"] = frame.note.fillna("").str.contains("dagger")
    return frame


def params_count(printed) -> float:
    """The paper's printed count ("0.8M", "125.0M") as a number; NaN when there is none."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*M\s*", str(printed))
    return float(match.group(1)) * 1e6 if match else float("nan")


def our_scores(runs: pd.DataFrame) -> pd.DataFrame:
    """Per cell (KEYS + size + dagger): the paper's statistic over seeds (median for GLUE, mean for E2E), the spread
    (min-max), the count, and the median trainable parameters."""
    frame = runs.rename(columns={"main_metric": "metric"}).copy()
    for column, default in (("model", None), ("size", None), ("dagger", False), ("trainable_params", float("nan"))):
        if column not in frame:
            frame[column] = default
    frame["r"] = frame.r.astype("Int64")
    frame["size"] = pd.to_numeric(frame["size"]).astype("Int64")
    frame["dagger"] = frame.dagger.fillna(False).astype(bool)
    frame["targets"] = frame.targets.fillna("")
    rows = []
    for keys, group in frame.groupby(CELL_KEYS, dropna=False, sort=True):
        row = dict(zip(CELL_KEYS, keys))
        how = paper_stat(row["task"])
        row.update(stat=how, ours=group.score.agg(how), ours_min=group.score.min(), ours_max=group.score.max(),
                   seeds=len(group), trainable_params=group.trainable_params.median())
        rows.append(row)
    cells = pd.DataFrame(rows, columns=[*CELL_KEYS, "stat", "ours", "ours_min", "ours_max", "seeds",
                                        "trainable_params"])
    return cells.astype({"r": "Int64", "size": "Int64", "trainable_params": float})


def side_by_side(runs: pd.DataFrame, table: str, paper_model: str | None = None,
                 paper: pd.DataFrame | None = None) -> pd.DataFrame:
    """Join each cell of our runs to one row of one of the paper's tables; columns ours, paper, difference.

    The keys the table fixes must agree (method, task, metric, and targets, r where it gives them), and † cells
    join † rows only. Of several rows left (a method at two sizes), the one of our cell's size when the paper's
    count pins it, else the one nearest in trainable parameters. Our model is usually smaller than the paper's
    (e.g. MiniLM for RoBERTa): `paper_model` picks which of the table's models to compare against.
    """
    paper = paper_numbers() if paper is None else paper
    rows = paper[paper.table == str(table)]
    if rows.empty:
        raise ValueError(f"table={table!r} is not in paper.csv; choose one of {sorted(paper.table.unique())}")
    if paper_model is not None:
        if paper_model not in set(rows.model):
            raise ValueError(f"paper_model={paper_model!r} is not in table {table}; "
                             f"choose one of {sorted(set(rows.model))}")
        rows = rows[rows.model == paper_model]
    keys = [k for k in KEYS if k == "metric" or rows[k].notna().any()]  # a table fixes only some of the keys
    rows = rows.assign(targets=rows.targets.fillna(""), paper_params=rows.params.map(params_count))
    rows = rows.rename(columns={"value": "paper", "model": "paper_model", "size": "paper_size"})
    ours = our_scores(runs)
    joined = ours.merge(rows[keys + ["dagger", "paper_model", "params", "paper_params", "paper_size", "paper"]],
                        on=keys + ["dagger"], how="inner")
    sized = joined.paper_size.notna() & joined["size"].notna()
    same = (joined.paper_size == joined["size"]).fillna(False).astype(bool)
    joined = joined[~sized | same].copy()
    joined["distance"] = (joined.trainable_params / joined.paper_params).map(
        lambda ratio: abs(math.log(ratio)) if ratio > 0 else math.inf).fillna(math.inf)
    joined = joined.sort_values("distance", kind="stable").groupby(CELL_KEYS, dropna=False, sort=False).head(1)
    joined["difference"] = joined.ours - joined.paper
    return joined.drop(columns=["distance", "paper_params"]).sort_values(CELL_KEYS).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", help="a folder of run directories (searched for metrics.json)")
    parser.add_argument("--table", required=True, help="the paper's table: 2, 3, 5, 6, 7 or 18")
    parser.add_argument("--paper-model", help="which of the table's models to compare against, e.g. roberta-base")
    args = parser.parse_args()
    table = side_by_side(collect(args.runs), args.table, args.paper_model)
    if table.empty:
        raise ConfigError(f"none of the runs under {args.runs} match a row of table {args.table}")
    print(table.to_string(index=False, float_format="%.4f"))


if __name__ == "__main__":
    cli(main)()
