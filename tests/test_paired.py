"""Paired differences (lora_repro/analysis/paired.py): Table 2's comparisons seed by seed, with their uncertainty."""
import numpy as np
import pandas as pd
import pytest
from scipy import stats

from lora_repro.analysis.paired import paired_differences


def table(scores: dict[str, list[float]], seeds=None) -> pd.DataFrame:
    return pd.DataFrame([{"method": m, "seed": s, "score": v} for m, values in scores.items()
                         for s, v in zip(seeds or range(len(values)), values)])


def test_the_interval_is_the_paired_t_interval_of_scipy():
    rng = np.random.default_rng(0)
    lora, full = rng.normal(0.80, 0.01, 5), rng.normal(0.81, 0.01, 5)
    row = paired_differences(table({"lora": lora, "full": full})).iloc[0]
    expected = stats.ttest_rel(lora, full).confidence_interval(0.95)
    assert (row.method, row.n) == ("full", 5)
    assert row.mean_diff == pytest.approx((lora - full).mean())
    assert (row.ci_low, row.ci_high) == pytest.approx((expected.low, expected.high))


def test_five_wins_of_five_seeds_is_not_significant_by_signs():
    row = paired_differences(table({"lora": [0.9] * 5, "bitfit": [0.8, 0.7, 0.85, 0.6, 0.75]})).iloc[0]
    assert (row.wins, row.ties, row.losses) == (5, 0, 0)
    assert row.sign_p == pytest.approx(2 / 2 ** 5)  # 0.0625: the floor at 5 seeds


def test_only_the_seeds_both_methods_ran_are_paired_and_ties_are_counted():
    runs = pd.concat([table({"lora": [0.8, 0.7, 0.9]}, seeds=[0, 1, 2]), table({"full": [0.8, 0.6]}, seeds=[0, 1])])
    row = paired_differences(runs).iloc[0]
    assert (row.n, row.wins, row.ties, row.losses) == (2, 1, 1, 0)
    assert row.mean_diff == pytest.approx(0.05) and row.sign_p == 1.0


def test_a_missing_reference_or_a_duplicated_seed_is_refused():
    with pytest.raises(ValueError, match=r"reference='lora' has no runs; valid choices: \['full'\]"):
        paired_differences(table({"full": [0.8]}))
    with pytest.raises(ValueError, match="share a seed"):
        paired_differences(table({"lora": [0.8, 0.9], "full": [0.7, 0.6]}, seeds=[0, 0]))
