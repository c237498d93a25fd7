"""Pick each method's learning rate from an lr_search sweep: python -m lora_repro.analysis.lr_select SWEEP --out DIR.

Every run must have been scored on the split carved from its training data (task.carved_validation), so a rate is
never chosen on the dev or test set a report scores. Per method, the best carved score wins; equal scores go to the
smaller rate. Writes DIR/lr_search.csv (every point, the chosen ones marked), DIR/lr_search.png (score against
rate per method, the choice marked) and DIR/lr/selected.yaml, which a seed sweep composes with
`--config-dir DIR +lr=selected` (train.lr becomes the selected rate of the run's method)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from lora_repro.errors import ConfigError, cli
from lora_repro.results import collect

CARVED = "carved"  # the split name tasks give task.carved_validation's rows


def search_table(folder: str | Path) -> pd.DataFrame:
    """One row per run of the sweep: model, task, method, lr, seed, the carved score; refuses a run scored elsewhere."""
    frame = collect(folder)
    if frame.empty:
        raise ConfigError(f"no metrics.json under {folder}: run python -m lora_repro.run +experiment=lr_search first")
    records = [json.loads((Path(d) / "metrics.json").read_text()) for d in frame.run_dir]
    frame["lr"] = [rec["config"]["train"]["lr"] for rec in records]
    frame["eval_split"] = [rec["eval_split"] for rec in records]
    elsewhere = frame[frame.eval_split != CARVED]
    if len(elsewhere):
        raise ConfigError(f"{elsewhere.run_dir.iloc[0]} was scored on {elsewhere.eval_split.iloc[0]!r}, not on rows "
                          f"carved from its training data; a learning rate is selected only on task.carved_validation")
    cells = frame[["model", "task"]].drop_duplicates()
    if len(cells) > 1:
        raise ConfigError(f"{folder} holds runs of {len(cells)} (model, task) pairs; select one search at a time")
    return frame[["model", "task", "method", "lr", "seed", "main_metric", "score", "run_dir"]]


def select(table: pd.DataFrame) -> pd.DataFrame:
    """The table with `chosen` marking, per method, the best score (mean over seeds of a rate), ties to the smaller lr."""
    points = table.groupby(["method", "lr"], as_index=False).agg(score=("score", "mean"), seeds=("seed", "count"),
                                                                  main_metric=("main_metric", "first"))
    best = points.sort_values(["method", "score", "lr"], ascending=[True, False, True]).groupby("method").head(1)
    points["chosen"] = points.index.isin(best.index)
    grid = points.groupby("method").lr
    points["at_edge"] = points.chosen & (points.lr.eq(grid.transform("min")) | points.lr.eq(grid.transform("max")))
    return points


def selected_yaml(points: pd.DataFrame, source: str) -> str:
    """A Hydra config that sets train.lr to the run's method's selected rate (through repro_lr)."""
    chosen = points[points.chosen].sort_values("method")
    rates = "".join(f"  {m}: {lr!r}\n" for m, lr in zip(chosen.method, chosen.lr))
    return (f"# @package _global_\n# selected by python -m lora_repro.analysis.lr_select from {source}: per method,\n"
            f"# the best score on the carved validation rows (ties: the smaller rate)\n"
            f"train:\n  lr: ${{repro_lr.${{method.name}}}}\nrepro_lr:\n{rates}")


def plot(points: pd.DataFrame, title: str, out: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6, 4))
    for method, group in points.groupby("method"):
        line, = ax.plot(group.lr, group.score, marker="o", label=method)
        pick = group[group.chosen]
        ax.plot(pick.lr, pick.score, marker="*", markersize=16, color=line.get_color(), linestyle="none")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"{points.main_metric.iloc[0]} on the carved validation rows")
    ax.set_title(title, fontsize=9)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(prog="python -m lora_repro.analysis.lr_select", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("sweep", help="the lr_search sweep folder (searched for metrics.json)")
    parser.add_argument("--out", required=True, help="folder for lr_search.csv, lr_search.png and lr/selected.yaml")
    args = parser.parse_args(argv)
    table = search_table(args.sweep)
    points = select(table)
    out = Path(args.out)
    (out / "lr").mkdir(parents=True, exist_ok=True)
    points.to_csv(out / "lr_search.csv", index=False)
    (out / "lr" / "selected.yaml").write_text(selected_yaml(points, args.sweep))
    model, task = table.model.iloc[0], table.task.iloc[0]
    plot(points, f"{model}, {task}: score against learning rate (star: selected)", out / "lr_search.png")
    print(points.to_string(index=False, formatters={"lr": "{:g}".format}, float_format="%.4f"))  # lr 2e-05, not 0.0000
    for method, lr in zip(points[points.at_edge].method, points[points.at_edge].lr):
        print(f"note: {method}'s best rate {lr:g} is at the edge of its grid; the optimum may lie beyond it: "
              f"extend train.lr past it and search again")
    print(f"wrote {out / 'lr_search.csv'}, {out / 'lr_search.png'}, {out / 'lr' / 'selected.yaml'} "
          f"(compose it: --config-dir {out} +lr=selected)")
    return points


if __name__ == "__main__":
    cli(main)()
