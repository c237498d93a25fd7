"""Bad input fails early with an actionable one-line error; a failed job does not stop a sweep; NaN loss stops a run."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from lora_repro.config import from_hydra
from lora_repro.errors import ConfigError
from test_glue import write_glue

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["task.n_train=256", "task.n_eval=64", "train.epochs=1"]


def config(*overrides):
    """The run's typed config (lora_repro.config.RunConfig), composed and validated as python -m lora_repro.run does."""
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return from_hydra(compose("config", overrides=list(overrides)))


def cli(*args, env=None):
    """Run python -m ARGS in the checkout; returns the CompletedProcess whatever its exit code."""
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=env)


@pytest.mark.parametrize("overrides, message", [
    (["method.name=lora2"], r"method.name='lora2' .*valid choices: \[.*'full'.*'lora'.*\]"),
    (["method.targets=[q,x]"], r"method.targets=\['q', 'x'\] .*valid choices: \['q', 'k', 'v', 'o', 'mlp'\]"),
    (["method.targets=[]"], r"method.targets=\[\] .*valid choices: \['q', 'k', 'v', 'o', 'mlp'\]"),
    (["method.r=0"], r"method.r=0 is invalid: Input should be greater than or equal to 1"),
    (["method.r=65"], r"method.r=65 is larger than the model allows: .* 64 wide, so valid choices are 1..64"),
    (["method.r=1.5"], r"method.r=1.5 is invalid: Input should be a valid integer"),
    (["method.alpha=0"], r"method.alpha=0 is invalid: Input should be greater than 0"),
    (["method.dropout=1.0"], r"method.dropout=1.0 is invalid: Input should be less than 1"),
    (["method.init=xavier"], r"method.init='xavier' is invalid: Input should be 'kaiming', 'gaussian' or 'normal'"),
    (["task.name=squad"], r"task.name='squad' is not a task; valid choices: \['e2e', 'glue', 'synthetic'\]"),
    (["task=glue/sst2", "task.subset=sst3"], r"task.subset='sst3' is invalid: Input should be 'cola', 'sst2', 'mrpc'"),
])
def test_bad_field_names_the_field_and_its_valid_choices(overrides, message):
    with pytest.raises(ValueError, match=message):
        config(*overrides)


def test_the_default_and_a_full_ft_config_are_valid(tmp_path):
    config()
    config("method=full")  # no r, alpha or targets to check
    config("task=glue/mnli", f"task.data_dir={write_glue(tmp_path / 'MNLI', 'mnli', rows=4)}")


def test_model_path_without_config_json_is_rejected(tmp_path):
    with pytest.raises(ValueError, match=r"model.path='.*' is not a Hugging Face model folder .*valid choices"):
        config(f"model.path={tmp_path}")


def test_glue_data_dir_must_hold_the_subsets_tsv_files(tmp_path):
    (tmp_path / "train.tsv").write_text("sentence1\tsentence2\tgold_label\n")
    with pytest.raises(ValueError, match=r"task.data_dir=.* lacks \['dev_matched.tsv', 'dev_mismatched.tsv'\]"):
        config("task=glue/mnli", f"task.data_dir={tmp_path}")
    with pytest.raises(ConfigError, match=r"task.data_dir=.* is not a folder; .*\['train.tsv', 'dev.tsv'\]"):
        config("task=glue/sst2", f"task.data_dir={tmp_path / 'absent'}")


def test_cli_user_error_is_one_line_without_traceback_and_no_metrics(tmp_path):
    out = cli("lora_repro.run", "method.targets=[q,x]", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0
    assert "Traceback" not in out.stderr + out.stdout
    errors = [line for line in out.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: method.targets=['q', 'x'] has unknown name(s) ['x']; "
                      "valid choices: ['q', 'k', 'v', 'o', 'mlp']"]
    assert not (tmp_path / "metrics.json").exists()
    full = cli("lora_repro.run", "method.r=0", f"hydra.run.dir={tmp_path / 'full'}", env={"HYDRA_FULL_ERROR": "1"})
    assert full.returncode != 0 and "Traceback" in full.stderr and "method.r=0" in full.stderr


def test_multirun_records_a_failed_job_and_keeps_the_others(tmp_path):
    out = cli("lora_repro.run", "-m", "method.r=1,0", *QUICK, f"hydra.sweep.dir={tmp_path}")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    assert json.loads((tmp_path / "0" / "metrics.json").read_text())["r"] == 1
    assert not (tmp_path / "1" / "metrics.json").exists()
    failed = json.loads((tmp_path / "1" / "failed.json").read_text())
    assert "method.r=0" in failed["overrides"] and failed["error"].startswith("method.r=0 is invalid")
    assert "failed runs (1)" in out.stdout  # the SweepSummary callback
    listing = cli("lora_repro.results", str(tmp_path))
    assert listing.returncode == 0
    finished, _, failures = listing.stdout.partition("failed runs (1):")
    assert "lora" in finished and "method.r=0" not in finished
    assert "method.r=0" in failures and "is invalid" in failures


def test_non_finite_loss_stops_the_run_naming_the_step(tmp_path):
    out = cli("lora_repro.run", *QUICK, "train.lr=1e30", f"hydra.run.dir={tmp_path}")
    assert out.returncode != 0 and "Traceback" not in out.stderr
    assert re.search(r"error: training loss is (nan|inf|-inf) at step \d+ \(epoch 0", out.stderr)
    assert "lower train.lr=1e+30" in out.stderr
    assert not (tmp_path / "metrics.json").exists()
    assert (tmp_path / "train_log.jsonl").is_file()  # what was written before the failure stays


class Interrupt(Exception):
    pass


def build(cfg):
    """Model (method applied) and task of one run, as lora_repro.run builds them."""
    import torch
    from lora_repro.methods import apply_method
    from lora_repro.models import load_model
    from lora_repro.tasks import load_task, num_labels
    from lora_repro.train import seed_everything
    torch.manual_seed(0)
    model = load_model(cfg.model, "classification", num_labels(cfg.task), getattr(cfg.task, "problem_type", None))
    data = load_task(cfg.task, model, None)
    seed_everything(int(cfg.seed))
    return apply_method(model, cfg.method), data


def test_resume_after_an_interrupted_epoch_matches_an_uninterrupted_run(tmp_path):
    import torch
    from lora_repro.train import train
    cfg = config("task.n_train=128", "task.n_eval=32", "train.epochs=3", "method.dropout=0.1")
    cpu = torch.device("cpu")
    model, data = build(cfg)
    straight = train(model, data, cfg.train, cpu, lambda record: None)

    def stop_in_epoch_1(record):
        if record.get("epoch") == 1:
            raise Interrupt
    model, data = build(cfg)
    with pytest.raises(Interrupt):
        train(model, data, cfg.train, cpu, stop_in_epoch_1, checkpoint_dir=tmp_path)
    assert json.loads((tmp_path / "trainer_state.json").read_text())["epoch"] == 0
    assert (tmp_path / "checkpoint.safetensors").is_file() and (tmp_path / "optimizer.pt").is_file()
    model, data = build(cfg)
    records = []
    resumed = train(model, data, cfg.train, cpu, records.append, checkpoint_dir=tmp_path, resume=True)
    assert {r["epoch"] for r in records} == {1, 2}  # epoch 0 came from the checkpoint, not trained again
    assert resumed["steps"] == straight["steps"] and len(resumed["history"]) == 3
    for a, b in zip(resumed["history"], straight["history"]):
        assert a == pytest.approx(b, rel=1e-5)


def test_a_run_killed_mid_epoch_resumes_to_the_uninterrupted_runs_metrics(tmp_path):
    import signal
    import time
    args = ["lora_repro.run", "task.n_train=4096", "train.epochs=2", "train.checkpoint_every=8", "method.dropout=0.1"]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", *args, f"hydra.run.dir={killed}"], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state_file, deadline = killed / "trainer_state.json", time.time() + 300
    while proc.poll() is None and time.time() < deadline:  # kill at the first mid-epoch checkpoint
        if state_file.is_file() and json.loads(state_file.read_text())["batches_done"]:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.01)
    assert proc.wait() == -signal.SIGKILL, "the run ended before a mid-epoch checkpoint could be killed"
    assert not (killed / "metrics.json").exists()
    done = json.loads(state_file.read_text())
    assert done["epoch"] == 0 and 0 < done["batches_done"] < 128
    assert cli(*args, f"hydra.run.dir={killed}", "resume=true").returncode == 0
    assert cli(*args, f"hydra.run.dir={tmp_path / 'straight'}").returncode == 0
    resumed = json.loads((killed / "metrics.json").read_text())
    straight = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    assert resumed["steps"] == straight["steps"]
    for a, b in zip(resumed["history"], straight["history"]):
        assert a == pytest.approx(b, rel=1e-5)
