"""Beyond one process: DDP keeps the global batch, launchers run sweeps, sweep files expand to the paper's grids,
W&B keeps the adapter, results report the paper's statistic per cell."""
import json
import os
import subprocess
import sys
from itertools import product
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser
from safetensors.torch import load_file
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from lora_repro import distributed
from lora_repro.results import collect, summarize
from lora_repro.run import run
from lora_repro.config import from_hydra

ROOT = Path(__file__).resolve().parents[1]
QUICK = ["task.n_train=256", "task.n_eval=64", "train.epochs=1"]
ENV = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "PYTHONPATH": str(ROOT),
       "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
SWEEPS = {"rank_table6": 5 * 6, "weight_type_table5": 7, "glue_roberta_base": 8 * 5, "e2e_gpt2": 2 * 3}


def config(*overrides, sweep=None, hydra=False):
    """conf/config.yaml, or a sweeps/ file on top of it, composed with `overrides`."""
    if sweep is None:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            return compose("config", overrides=list(overrides), return_hydra_config=hydra)
    with initialize_config_dir(config_dir=str(ROOT / "sweeps"), version_base="1.3"):  # as --config-dir sweeps
        return compose(sweep, overrides=[f"hydra.searchpath=[file://{ROOT / 'conf'}]", *overrides],
                       return_hydra_config=hydra)


def cli(*args, launcher=(sys.executable, "-m")):
    out = subprocess.run([*launcher, *args], cwd=ROOT, capture_output=True, text=True, timeout=600, env=ENV)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_two_ddp_processes_train_what_one_process_with_twice_the_accumulation_does(tmp_path):
    args = [*QUICK, "train.epochs=2", "train.batch_size=16", "train.log_every=2"]
    cli("lora_repro.run", *args, "train.global_batch_size=32", f"hydra.run.dir={tmp_path / 'ddp'}",
        launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"))
    one = run(from_hydra(config(*args, "train.grad_accum=2")), tmp_path)  # the same global batch of 32, in one process
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["steps"] == one["steps"] == 2 * 256 // 32
    assert (ddp["world_size"], ddp["grad_accum"], one["world_size"], one["grad_accum"]) == (2, 1, 1, 2)
    assert ddp["global_batch_size"] == one["global_batch_size"] == 32
    for a, b in zip(ddp["history"], one["history"]):
        assert a == pytest.approx(b, rel=1e-4)
    ours, theirs = load_file(tmp_path / "ddp" / "adapter.safetensors"), load_file(tmp_path / "adapter.safetensors")
    assert ours.keys() == theirs.keys()
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5)
    logged = [json.loads(line) for line in (tmp_path / "ddp" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [2, 4, 6, 8, 10, 12, 14, 16]  # rank 0 alone writes
    assert not list((tmp_path / "ddp").glob("*rank*"))


def test_two_ddp_processes_train_the_last_partial_step_as_one_process_does(tmp_path):
    # 200 examples in batches of 16: 13 batches, 12 full and one of 8. Over 2 ranks the last step is rank 0's
    # batch of 8 alone (rank 1 runs a padding batch weighted 0): 7 steps an epoch, the 8 examples included
    args = ["task.n_train=200", "task.n_eval=64", "train.epochs=2", "train.batch_size=16"]
    cli("lora_repro.run", *args, "train.global_batch_size=32", f"hydra.run.dir={tmp_path / 'ddp'}",
        launcher=(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m"))
    one = run(from_hydra(config(*args, "train.grad_accum=2")), tmp_path)
    ddp = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    assert ddp["steps"] == one["steps"] == 2 * 7
    ours, theirs = load_file(tmp_path / "ddp" / "adapter.safetensors"), load_file(tmp_path / "adapter.safetensors")
    for name in ours:
        torch.testing.assert_close(ours[name], theirs[name], rtol=1e-4, atol=1e-5)
    assert ddp["history"][-1] == pytest.approx(one["history"][-1], rel=1e-4)


def test_global_batch_size_fixes_the_step_whatever_the_world_size():
    train = from_hydra(config("train.batch_size=16", "train.global_batch_size=128")).train
    assert [distributed.grad_accum(train, world) for world in (1, 2, 8)] == [8, 4, 1]
    assert distributed.grad_accum(config("train.grad_accum=3").train, 4) == 3  # null global: grad_accum as given
    with pytest.raises(ValueError, match=r"train.global_batch_size=48 .* train.batch_size \(16, per device\) x 2 "
                                         r"processes; valid choices: multiples of 32"):
        distributed.grad_accum(train.model_copy(update={"global_batch_size": 48}), 2)
    with pytest.raises(ValueError, match=r"train.global_batch_size=40"):
        from_hydra(config("train.global_batch_size=40"))  # the synthetic task's batch_size is 32
    paper = config("model=roberta-base", "task=glue/mrpc").train
    assert paper.global_batch_size == 8 * paper.batch_size  # Table 9's batch is per GPU, on 8 GPUs


def test_joblib_launcher_runs_a_two_job_sweep_in_parallel(tmp_path):
    cli("lora_repro.run", "-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "method.r=1,2", *QUICK,
        f"hydra.sweep.dir={tmp_path}")
    assert [json.loads((tmp_path / job / "metrics.json").read_text())["r"] for job in "01"] == [1, 2]
    assert len(pd.read_csv(tmp_path / "results.csv")) == 2


def test_slurm_launcher_config_composes_and_submitit_runs_a_job_locally(tmp_path):
    launcher = config("hydra/launcher=slurm", "hydra.launcher.partition=gpu", hydra=True).hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher") and launcher.partition == "gpu"
    assert launcher.gpus_per_node == 1 and launcher.tasks_per_node == 1 and launcher.timeout_min > 0
    cli("lora_repro.run", "-m", "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", "method.r=2", *QUICK,
        f"hydra.sweep.dir={tmp_path}")
    assert json.loads((tmp_path / "0" / "metrics.json").read_text())["r"] == 2
    assert list((tmp_path / ".submitit").rglob("*_result.pkl"))  # submitit ran it, not the basic launcher


def test_wandb_offline_run_holds_metrics_config_and_the_adapter_artifact(tmp_path):
    cli("lora_repro.run", *QUICK, "logger=wandb", "logger.mode=offline", "train.log_every=4",
        f"hydra.run.dir={tmp_path}")
    [offline] = (tmp_path / "wandb").glob("offline-run-*")
    [records] = offline.glob("*.wandb")
    data = records.read_bytes()  # the run's records (protobuf), synced later by `wandb sync`
    run_id = offline.name.rsplit("-", 1)[1]
    for text in ["eval/r2", "best/r2", "loss", "tokens_per_s",  # metrics
                 "global_batch_size", "planted_rank",  # config
                 "default/tiny-bert/synthetic/lora/r8/seed0", "default/tiny-bert/synthetic/lora/r8",  # name, group
                 f"adapter-{run_id}", "adapter.safetensors"]:  # the artifact and its file
        assert text.encode() in data, text


def job_overrides(params: dict) -> list[list[str]]:
    """The jobs Hydra's BasicSweeper makes from hydra.sweeper.params, each a list of overrides."""
    overrides = OverridesParser.create().parse_overrides([f"{k}={v}" for k, v in params.items()])
    [batch] = BasicSweeper.split_arguments(overrides, max_batch_size=None)
    return batch


@pytest.mark.parametrize("name, jobs", SWEEPS.items())
def test_sweep_files_expand_to_the_papers_grids_in_hydra_and_wandb(name, jobs):
    cfg = config(sweep=name, hydra=True)
    assert cfg.experiment == name and cfg.hydra.mode.name == "MULTIRUN"
    hydra_jobs = job_overrides(cfg.hydra.sweeper.params)
    assert len(hydra_jobs) == jobs
    wb = yaml.safe_load((ROOT / "sweeps" / "wandb" / f"{name}.yaml").read_text())
    assert wb["method"] == "grid" and wb["command"][-1] == "${args_no_hyphens}"
    assert f"experiment={name}" in wb["command"] and "logger=wandb" in wb["command"]
    grid = [create_sweep_command_args({"args": {k: {"value": v} for k, v in zip(wb["parameters"], point)}})
            ["args_no_hyphens"] for point in product(*(p["values"] for p in wb["parameters"].values()))]  # as the agent
    assert sorted(map(sorted, grid)) == sorted(map(sorted, hydra_jobs))  # the same runs, job for job
    if name.startswith("e2e") and not (ROOT / "conf" / "task" / "e2e.yaml").is_file():
        return  # task=e2e is not in conf/ yet: the count is all we can check
    for job in (hydra_jobs[0], hydra_jobs[-1]):  # each end of the grid composes
        composed = config(*job, sweep=name)
        assert composed.experiment == name


def test_a_composed_sweep_job_is_the_run_the_paper_describes():
    job = config("method.targets=[q,k,v,o]", "method.r=64", sweep="rank_table6")
    assert list(job.method.targets) == ["q", "k", "v", "o"] and job.method.r == 64
    assert config("+weight_type=qk", sweep="weight_type_table5").method.r == 4
    glue = config("model=roberta-base", "method=lora", "task=glue/rte", "seed=3", sweep="glue_roberta_base")
    assert glue.train.lr == 5e-4 and glue.train.epochs == 80 and glue.seed == 3  # Table 9, roberta-base RTE


def write_run(folder: Path, task: str, seed: int, score: float, r: int = 8) -> None:
    folder.mkdir(parents=True)
    metric = "bleu" if task.startswith("e2e") else "accuracy"
    (folder / "metrics.json").write_text(json.dumps({
        "experiment": "table", "model": "m", "task": task, "method": "lora", "targets": ["q", "v"], "r": r,
        "alpha": 8, "seed": seed, "main_metric": metric, "metrics": {metric: score}, "best_epoch": 1}))


def test_results_report_the_median_for_glue_and_the_mean_for_e2e_per_cell(tmp_path):
    for seed, score in enumerate([0.1, 0.5, 0.3, 0.9, 0.2]):
        write_run(tmp_path / f"glue{seed}", "glue/rte", seed, score)
    for seed, score in enumerate([60.0, 70.0, 71.0]):
        write_run(tmp_path / f"e2e{seed}", "e2e", seed, score)
    write_run(tmp_path / "r4", "glue/rte", 0, 0.7, r=4)
    cells = summarize(collect(tmp_path)).set_index(["task", "r"])
    assert cells.loc[("glue/rte", 8), ["stat", "score", "min", "max", "n"]].tolist() == ["median", 0.3, 0.1, 0.9, 5]
    assert cells.loc[("e2e", 8), "stat"] == "mean" and cells.loc[("e2e", 8), "score"] == pytest.approx(67.0)
    assert cells.loc[("e2e", 8), "std"] == pytest.approx(pd.Series([60.0, 70.0, 71.0]).std())
    assert cells.loc[("glue/rte", 4), "n"] == 1 and cells.loc[("glue/rte", 8), "seeds"] == "0,1,2,3,4"
    assert summarize(collect(tmp_path), "mean").set_index(["task", "r"]).loc[("glue/rte", 8), "score"] == \
        pytest.approx(0.4)
    stdout = cli("lora_repro.results", str(tmp_path), "--stat", "median", "--out", str(tmp_path / "runs.csv"),
                 "--summary-out", str(tmp_path / "cells.csv"))
    assert "per cell" in stdout and "median" in stdout
    assert len(pd.read_csv(tmp_path / "runs.csv")) == 9  # one row per run
    cells = pd.read_csv(tmp_path / "cells.csv").set_index(["task", "r"])
    assert cells.loc[("e2e", 8), "score"] == pytest.approx(70.0)  # --stat median, not the paper's mean
