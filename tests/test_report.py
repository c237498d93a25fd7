"""REPRODUCTION.md: every table in it is what analysis/report.py renders from the committed CSVs of results/repro/."""
import shutil

import pandas as pd
import pytest

from conftest import script


@pytest.fixture(scope="module")
def report():
    return script("report")


def test_every_table_of_the_report_matches_the_committed_csvs(report):
    text = report.REPORT.read_text()
    assert report.render(text) == text, "REPRODUCTION.md is out of date: python analysis/report.py --write"


def test_the_report_has_a_table_for_each_claim(report):
    names = [name for _, name, _, _ in report.BLOCK.findall(report.REPORT.read_text())]
    assert sorted(set(names)) == sorted(report.TABLES)


@pytest.mark.parametrize("experiment, tables", [("repro_methods", ["methods", "paired"]),
                                               ("repro_rank_ablation", ["rank", "rank_paired"]),
                                               ("repro_weight_type_ablation", ["weight_type", "weight_type_paired"])])
def test_a_changed_score_in_the_csv_changes_the_report(report, tmp_path, monkeypatch, experiment, tables):
    """The check above can fail: one run's score moved in runs.csv is seen in each table made from its experiment."""
    copy = tmp_path / "repro"
    shutil.copytree(report.RESULTS, copy, ignore=shutil.ignore_patterns("runs"))
    runs = pd.read_csv(copy / "runs.csv")
    run = runs.index[runs.experiment == experiment][0]
    before = {name: report.TABLES[name]() for name in tables}
    runs.loc[run, "score"] = 0.123456
    runs.to_csv(copy / "runs.csv", index=False)
    monkeypatch.setattr(report, "RESULTS", copy)
    for name in tables:
        assert report.TABLES[name]() != before[name], name
    text = report.REPORT.read_text()
    assert report.render(text) != text


def test_an_unknown_table_name_is_refused_with_the_valid_choices(report):
    with pytest.raises(ValueError, match="valid choices"):
        report.render("<!-- table:nope -->\nx\n<!-- /table -->")
