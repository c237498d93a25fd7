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


def cells(*rows):
    """Runs as lora_repro.results.collect lists them: (method, size, dagger, trainable_params, scores)."""
    out = []
    for method, size, dagger, params, scores in rows:
        for seed, score in enumerate(scores):
            out.append({"model": "roberta-large", "method": method, "task": "glue/rte", "main_metric": "accuracy",
                        "targets": "q,v" if method == "lora" else None, "r": 8 if method == "lora" else None,
                        "size": size, "dagger": dagger, "trainable_params": params, "seed": seed, "score": score})
    return pd.DataFrame(out)


def test_each_adapter_size_and_the_dagger_setup_join_their_own_paper_row():
    runs = cells(("adapter_h", 64, True, 6_343_680, [0.80, 0.82, 0.81]), ("adapter_h", 8, True, 835_968, [0.70]),
                 ("adapter_p", 64, True, 3_171_840, [0.75]), ("adapter_p", 16, True, 811_392, [0.76]),
                 ("lora", 8, False, 786_432, [0.87, 0.88, 0.86]), ("lora", 8, True, 786_432, [0.85]))
    table = side_by_side(runs, "2", "roberta-large")
    assert len(table) == 6  # one paper row per cell, none twice
    got = {(m, s, d): (p, paper) for m, s, d, p, paper in table[["method", "size", "dagger", "params", "paper"]]
           .itertuples(index=False)}
    assert got == {("adapter_h", 64, True): ("6.0M", 0.834), ("adapter_h", 8, True): ("0.8M", 0.729),
                   ("adapter_p", 64, True): ("3.0M", 0.838), ("adapter_p", 16, True): ("0.8M", 0.801),
                   ("lora", 8, False): ("0.8M", 0.874), ("lora", 8, True): ("0.8M", 0.852)}
    h64 = table[(table.method == "adapter_h") & (table["size"] == 64)].iloc[0]
    assert (h64.stat, h64.ours, h64.seeds) == ("median", 0.81, 3)


def test_a_size_the_paper_does_not_pin_joins_the_row_nearest_in_parameters():
    # Adpt^D's 0.3M and 0.9M give no bottleneck: our count picks the row (355,040 -> 0.3M; 1,000,000 -> 0.9M)
    runs = cells(("adapter_d", 16, False, 355_040, [0.70]), ("adapter_d", 48, False, 1_000_000, [0.75]))
    runs["model"] = "roberta-base"
    table = side_by_side(runs, "2", "roberta-base").set_index("size")
    assert table.loc[16, "params"] == "0.3M" and table.loc[16, "paper"] == pytest.approx(0.715)
    assert table.loc[48, "params"] == "0.9M" and table.loc[48, "paper"] == pytest.approx(0.759)


def test_e2e_cells_take_the_mean_over_seeds():
    runs = pd.DataFrame({"model": "gpt2-medium", "method": "lora", "task": "e2e", "main_metric": "bleu",
                         "targets": "q,v", "r": 4, "size": 4, "dagger": False, "trainable_params": 393_216,
                         "seed": [0, 1, 2], "score": [0.60, 0.70, 0.71]})
    row = side_by_side(runs, "3", "gpt2-medium").iloc[0]
    assert (row.stat, row.ours, row.paper) == ("mean", pytest.approx(0.67), pytest.approx(0.704))


def test_results_cells_keep_adapter_sizes_and_the_dagger_setup_apart():
    from lora_repro.results import summarize
    runs = cells(("adapter_h", 64, True, 1, [0.1, 0.2]), ("adapter_h", 8, True, 1, [0.5, 0.6, 0.7]),
                 ("lora", 8, False, 1, [0.3]), ("lora", 8, True, 1, [0.4]))
    runs["experiment"] = "glue_baselines"
    table = summarize(runs).set_index(["method", "size", "dagger"])
    assert len(table) == 4
    assert table.loc[("adapter_h", 8, True), ["score", "n"]].tolist() == [0.6, 3]
    assert table.loc[("adapter_h", 64, True), "score"] == pytest.approx(0.15)


def test_the_adapter_baselines_paper_files_mark_their_runs_dagger():
    from test_run import compose_run
    assert compose_run("model=roberta-large", "method=adapter_h_small", "task=glue/rte").dagger is True
    assert compose_run("model=roberta-large", "method=lora", "task=glue/rte").dagger is False
