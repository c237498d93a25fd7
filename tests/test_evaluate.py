"""python -m lora_repro.evaluate scores an existing adapter, in any format, as the run that trained it scored it."""
import json

import pytest
from hydra import compose, initialize_config_dir

from conftest import ROOT, SHARED
from lora_repro import evaluate, formats, run
from test_glue import write_glue
from test_run import cli


def config(name: str, *overrides: str):
    """The typed config python -m lora_repro.run (name=config) or .evaluate (name=evaluate) builds."""
    from lora_repro.config import EvaluateConfig, RunConfig, from_hydra
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return from_hydra(compose(name, overrides=list(overrides)), EvaluateConfig if name == "evaluate" else RunConfig)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory):
    """A small real run on the planted task (one epoch, so its best epoch is its last): its folder and record."""
    folder = tmp_path_factory.mktemp("run")
    record = run.run(config("config", "task.n_train=256", "task.n_eval=128", "train.epochs=1", "method.r=4",
                            "method.alpha=8", "device=cpu"), folder)
    return folder, record


def test_evaluate_scores_a_run_directory_as_the_run_did(synthetic_run, tmp_path):
    folder, trained = synthetic_run
    record = evaluate.score(config("evaluate", f"adapter.path={folder}", "task.n_train=256", "task.n_eval=128",
                                   "device=cpu"), tmp_path)
    assert record["metrics"]["r2"] == pytest.approx(trained["metrics"]["r2"], abs=1e-6)
    assert trained["metrics"]["r2"] > 0  # the untrained student scores below 0 (tasks/synthetic.py)
    assert (record["r"], record["alpha"], record["targets"]) == (4, 8.0, ["q", "v"])
    assert record["trainable_params"] == trained["trainable_params"] == 2 * 2 * 4 * (64 + 64)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    for key in ["experiment", "task", "model", "method", "r", "alpha", "targets", "seed", "trainable_params",
                "total_params", "steps", "main_metric", "metrics", "adapter", "config"]:
        assert key in on_disk
    assert on_disk["steps"] == 0 and on_disk["adapter"]["format"] == "lora_repro"


@pytest.mark.parametrize("to", ["peft", "loralib"])
def test_evaluate_scores_the_same_adapter_in_peft_and_loralib_form(synthetic_run, tmp_path, to):
    folder, trained = synthetic_run
    out = formats.write(formats.read(folder), to, tmp_path / ("peft" if to == "peft" else "adapter.bin"))
    extra = ["adapter.r=4", "adapter.alpha=8"] if to == "loralib" else []
    record = evaluate.score(config("evaluate", f"adapter.path={out}", *extra, "task.n_train=256", "task.n_eval=128",
                                   "device=cpu"), tmp_path)
    assert record["adapter"]["format"] == to
    assert record["metrics"]["r2"] == pytest.approx(trained["metrics"]["r2"], abs=1e-6)


def test_evaluate_on_glue_from_the_command_line(tmp_path):
    data = write_glue(tmp_path / "SST-2", "sst2", rows=40)
    common = ["task=glue/sst2", f"task.data_dir={data}", "task.max_seq_len=32"]
    cli("lora_repro.run", *common, "train.epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    trained = json.loads((tmp_path / "run/metrics.json").read_text())
    out = cli("lora_repro.evaluate", *common, f"adapter.path={tmp_path / 'run'}", f"hydra.run.dir={tmp_path / 'ev'}")
    record = json.loads((tmp_path / "ev/metrics.json").read_text())
    assert record["metrics"]["accuracy"] == pytest.approx(trained["metrics"]["accuracy"], abs=1e-9)
    assert "accuracy=" in out and record["eval_split"] == "validation"


def test_evaluate_names_what_a_loralib_file_lacks(synthetic_run, tmp_path):
    folder, _ = synthetic_run
    out = formats.write(formats.read(folder), "loralib", tmp_path / "adapter.bin")
    with pytest.raises(ValueError, match="stores no r or alpha"):
        evaluate.score(config("evaluate", f"adapter.path={out}", "device=cpu"), tmp_path)


@pytest.mark.real
def test_evaluate_decodes_e2e_as_the_run_did_from_a_loralib_gpt2_file(tmp_path):
    # the paper's GPT-2 checkpoints are loralib files of MergedLinear(enable_lora=[True, False, True]) c_attn
    small = ["+experiment=e2e_smoke", f"task.data_dir={SHARED / 'data/e2e'}", "task.max_eval_mrs=3",
             "task.decode.num_beams=2", "task.decode.max_new_tokens=12", "device=cpu"]
    record = run.run(config("config", *small, "task.max_train_samples=400", "method.dropout=0.0"), tmp_path)
    adapter = formats.write(formats.read(tmp_path), "loralib", tmp_path / "gpt2_lora.pt")
    scored = evaluate.score(config("evaluate", *small, f"adapter.path={adapter}", "adapter.r=4", "adapter.alpha=32",
                                   "adapter.targets=[q,v]"), tmp_path / "eval")
    assert scored["adapter"]["format"] == "loralib" and scored["metrics"] == pytest.approx(record["metrics"])
    decoded = sorted(tmp_path.glob("e2e_pred_epoch*.txt"))[-1].read_text()
    assert (tmp_path / "eval/e2e_pred_eval.txt").read_text() == decoded and decoded.strip()
