"""Learning rates searched per method on rows carved from the training data, never on the set a report scores."""
import json

import pandas as pd
import pytest
from hydra import compose, initialize_config_module

from lora_repro.analysis import lr_select
from lora_repro.config import GlueTask, RunConfig, from_hydra
from lora_repro.errors import ConfigError
from lora_repro.models import char_tokenizer
from lora_repro.tasks.glue import load
from test_glue import write_glue
from test_run import compose_run

SMALL = ["task.n_train=192", "task.n_eval=32", "task.carved_validation=48", "train.epochs=1", "train.batch_size=32"]


def test_the_carved_split_is_held_out_of_train_and_scored_first_or_alone(tmp_path):
    folder = write_glue(tmp_path / "SST-2", "sst2", rows=40)
    texts = lambda d: {tuple(x.tolist()) for x in d["input_ids"]}  # noqa: E731  (each row's text is unique)
    task = lambda **kw: GlueTask(subset="sst2", data_dir=str(folder), max_seq_len=32, **kw)  # noqa: E731
    data = load(task(carved_validation=10, carved_only=True), char_tokenizer())
    assert list(data.evals) == ["carved"] and len(data.evals["carved"]) == 10 and len(data.train) == 30
    assert not texts(data.evals["carved"]) & texts(data.train)
    both = load(task(carved_validation=10), char_tokenizer())  # the carved rows pick the epoch, dev is reported
    assert list(both.evals) == ["carved", "validation"] and len(both.evals["validation"]) == 40
    assert texts(both.evals["carved"]) == texts(data.evals["carved"])  # task.data_seed fixes the draw
    with pytest.raises(ConfigError, match=r"task.carved_validation=40 is invalid; valid choices: fewer than the 40"):
        load(task(carved_validation=40), char_tokenizer())
    with pytest.raises(ValueError, match=r"task.carved_only=true needs task.carved_validation"):
        task(carved_only=True)


def test_equal_scores_go_to_the_smaller_rate():
    table = pd.DataFrame({"method": ["lora"] * 4 + ["full"] * 2, "lr": [1e-3, 1e-4, 1e-5, 1e-2, 1e-5, 1e-4],
                          "seed": 0, "main_metric": "r2", "score": [0.9, 0.9, 0.4, 0.5, 0.7, 0.6]})
    chosen = lr_select.select(table).query("chosen")
    assert dict(zip(chosen.method, chosen.lr)) == {"lora": 1e-4, "full": 1e-5}
    assert dict(zip(chosen.method, chosen.at_edge)) == {"lora": False, "full": True}  # full's best: its smallest


def test_a_search_selects_per_method_and_a_seed_sweep_composes_the_choice(tmp_path):
    from lora_repro.run import run
    for method in ("lora", "bitfit"):
        for lr in (1e-4, 3e-3, 3e-2):
            (tmp_path / "sweep" / f"{method}_{lr}").mkdir(parents=True)
            run(compose_run("+experiment=lr_search", f"method={method}", f"train.lr={lr}", *SMALL),
                tmp_path / "sweep" / f"{method}_{lr}")
    record = json.loads(next((tmp_path / "sweep").glob("lora_*/metrics.json")).read_text())
    assert record["eval_split"] == "carved" and set(record["metrics"]) == {"r2", "accuracy"}  # validation unscored
    points = lr_select.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    assert len(points) == 6 and points.groupby("method").chosen.sum().tolist() == [1, 1]
    for method, group in points.groupby("method"):
        assert group[group.chosen].score.iloc[0] == group.score.max()
    assert (tmp_path / "out/lr_search.png").stat().st_size > 0 and (tmp_path / "out/lr_search.csv").is_file()
    chosen = dict(zip(points[points.chosen].method, points[points.chosen].lr))
    with initialize_config_module("lora_repro.conf", version_base="1.3"):
        for method in ("lora", "bitfit"):
            cfg = compose("config", overrides=[f"hydra.searchpath=[file://{tmp_path / 'out'}]", "+lr=selected",
                                               f"method={method}", "seed=3"])
            assert from_hydra(cfg, RunConfig).train.lr == chosen[method]


def test_a_run_scored_on_its_validation_or_dev_set_is_never_selected_on(tmp_path):
    from lora_repro.run import run
    (tmp_path / "sweep" / "plain").mkdir(parents=True)
    run(compose_run("task.n_train=64", "task.n_eval=16", "train.epochs=1"), tmp_path / "sweep" / "plain")
    with pytest.raises(ConfigError, match=r"plain was scored on 'validation', not on rows carved from its training"):
        lr_select.main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_with_the_eval_split_too_the_carved_rows_pick_the_epoch_and_the_eval_split_is_reported_at_it(tmp_path):
    from lora_repro.run import run
    (tmp_path / "run").mkdir()
    record = run(compose_run(*SMALL, "train.epochs=3"), tmp_path / "run")
    assert record["eval_split"] == "carved" and {"r2", "r2_validation"} <= set(record["metrics"])
    best = max(record["history"], key=lambda h: h["r2"])  # the carved score's best epoch, not the validation one's
    assert record["best_epoch"] == best["epoch"] and record["metrics"]["r2_validation"] == best["r2_validation"]
