"""results/paper.csv holds the paper's tables; our runs join to them side by side."""
import pandas as pd
import pytest

from lora_repro.analysis.tables import paper_numbers, side_by_side


def test_paper_csv_holds_the_headline_numbers():
    paper = paper_numbers()
    lora_base = paper[(paper.table == "2") & (paper.model == "roberta-base") & (paper.method == "lora")]
    assert dict(zip(lora_base.task, lora_base.value))["glue/rte"] == pytest.approx(0.866)
    t6 = paper[(paper.table == "6") & (paper.task == "wikisql") & (paper.targets == "q,v")]
    assert list(t6.sort_values("r").value) == pytest.approx([0.734, 0.733, 0.737, 0.738, 0.735])
    t7 = paper[(paper.table == "7") & (paper.metric == "factor")]
    assert dict(zip(t7.r, t7.value))[4] == pytest.approx(21.5938, abs=1e-3)
    assert set(paper.table) == {"2", "3", "5", "6", "7", "18"}


def test_our_median_over_seeds_sits_beside_the_papers_number():
    runs = pd.DataFrame({"method": ["lora"] * 3 + ["bitfit"], "task": ["glue/sst2"] * 4, "targets": ["q,v"] * 3 + [None],
                         "r": [8, 8, 8, None], "main_metric": ["accuracy"] * 4, "score": [0.90, 0.92, 0.80, 0.85]})
    table = side_by_side(runs, "2", "roberta-base").set_index("method")
    assert table.loc["lora", "ours"] == pytest.approx(0.90) and table.loc["lora", "seeds"] == 3
    assert table.loc["lora", "paper"] == pytest.approx(0.951)
    assert table.loc["lora", "difference"] == pytest.approx(0.90 - 0.951)
    assert table.loc["bitfit", "paper"] == pytest.approx(0.937)


def test_an_unknown_table_or_model_lists_the_choices():
    with pytest.raises(ValueError, match=r"table='9'.*\['18', '2', '3', '5', '6', '7'\]"):
        side_by_side(pd.DataFrame(), "9")
    with pytest.raises(ValueError, match="paper_model='minilm'.*roberta-base"):
        side_by_side(pd.DataFrame(), "2", "minilm")
