"""Paired differences between methods run on the same seeds: how sure a comparison of Table 2 is at our spread."""
from __future__ import annotations

import pandas as pd
from scipy import stats


def paired_differences(runs: pd.DataFrame, reference: str = "lora", confidence: float = 0.95) -> pd.DataFrame:
    """One row per other method: reference minus that method, seed by seed, over the seeds both ran.

    Columns: n (paired seeds), mean and median difference, the t interval of the mean at `confidence`, wins / ties /
    losses of the reference, and the exact two-sided sign test's p (ties dropped). With 5 seeds the smallest
    possible sign-test p is 2 / 2^5 = 0.0625: no 5-seed comparison is significant at 0.05 by signs alone."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence} is invalid; valid choices: a number in (0, 1)")
    methods = sorted(runs.method.unique()) if not runs.empty else []
    if reference not in methods:
        raise ValueError(f"reference={reference!r} has no runs; valid choices: {methods}")
    if runs.duplicated(["method", "seed"]).any():
        raise ValueError("two runs of one method share a seed: pass the runs of one setting (one cell per method)")
    scores = runs.pivot(index="seed", columns="method", values="score")  # (seeds, methods)
    rows = []
    for other in (m for m in methods if m != reference):
        diff = (scores[reference] - scores[other]).dropna()
        n, wins, losses = len(diff), int((diff > 0).sum()), int((diff < 0).sum())
        row = {"reference": reference, "method": other, "n": n, "mean_diff": diff.mean(),
               "median_diff": diff.median(), "ci_low": float("nan"), "ci_high": float("nan"),
               "wins": wins, "ties": n - wins - losses, "losses": losses,
               "sign_p": stats.binomtest(wins, wins + losses).pvalue if wins + losses else 1.0}
        if n >= 2:
            half = stats.t.ppf((1 + confidence) / 2, n - 1) * diff.std(ddof=1) / n ** 0.5
            row.update(ci_low=diff.mean() - half, ci_high=diff.mean() + half)
        rows.append(row)
    return pd.DataFrame(rows)
