"""The command line: the main job reproduces 'a small r suffices' on the planted task; GLUE runs end to end."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import torch

from test_glue import write_glue

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, timeout=600):
    out = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_main_job_rank_ablation_recovers_the_planted_rank(tmp_path):
    # README's main job: r = 1, 2, 4, 8 on q,v against a planted rank-4 ΔW*
    stdout = cli("lora_repro.run", "+experiment=rank_ablation", f"hydra.sweep.dir={tmp_path}")
    assert "targets" in stdout and "q,v" in stdout
    table = pd.read_csv(tmp_path / "results.csv").set_index("r").score
    assert sorted(table.index) == [1, 2, 4, 8]
    assert table[4] > 0.95 and table[8] > 0.95  # r >= planted rank: the teacher is recovered
    assert table[1] < table[4] - 0.2  # r below the planted rank cannot
    record = json.loads((tmp_path / "0" / "metrics.json").read_text())
    for key in ["experiment", "task", "model", "method", "r", "alpha", "targets", "seed", "trainable_params",
                "total_params", "steps", "train_time_s", "tokens_per_s", "peak_mem_mb", "metrics", "best_epoch"]:
        assert key in record
    assert record["trainable_params"] == 2 * 2 * 1 * (64 + 64)  # 2 layers x (q, v) x r=1 x (A + B)
    assert (tmp_path / "0" / "adapter.safetensors").is_file() and (tmp_path / "0" / "train_log.jsonl").is_file()
    listing = cli("lora_repro.results", str(tmp_path), "--out", str(tmp_path / "all.csv"))
    assert len(pd.read_csv(tmp_path / "all.csv")) == 4 and "rank_ablation" in listing


def test_glue_run_from_local_tsv_logs_to_wandb_offline(tmp_path):
    data = write_glue(tmp_path / "SST-2", "sst2", rows=40)
    cli("lora_repro.run", "task=glue/sst2", f"task.data_dir={data}", "logger=wandb", "train.epochs=2",
        f"hydra.run.dir={tmp_path / 'run'}")
    record = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert record["task"] == "glue/sst2" and record["main_metric"] == "accuracy"
    assert 0.0 <= record["metrics"]["accuracy"] <= 1.0 and len(record["history"]) == 2
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))


def test_weight_type_ablation_composes_the_papers_fixed_budget_grid():
    sweep = compose_run("+experiment=weight_type_ablation", hydra=True).hydra.sweeper.params
    assert sweep["+weight_type"] == "q,k,v,o,qk,qv,qkvo"
    for choice, targets, r in [("qk", ["q", "k"], 4), ("qkvo", ["q", "k", "v", "o"], 2), ("v", ["v"], 8)]:
        method = compose_run(f"+weight_type={choice}").method
        assert list(method.targets) == targets and method.r == r


def test_the_papers_table9_hyperparameters_apply_to_their_model_and_task():
    job = compose_run("model=roberta-large", "task=glue/cola")
    assert (job.train.lr, job.train.epochs, job.method.alpha, job.task.max_seq_len) == (2e-4, 20, 16, 128)
    default = compose_run("model=minilm", "task=glue/cola")
    assert default.train.epochs == 3  # no paper file for MiniLM: the plain defaults, nothing silent


def compose_run(*overrides, hydra=False):
    """The typed run config (files it names not checked); hydra=True: Hydra's own, with its hydra node."""
    from hydra import compose, initialize_config_dir
    from lora_repro.config import RunConfig, resolved, validated
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=list(overrides), return_hydra_config=hydra)
    return cfg if hydra else validated(RunConfig, resolved(cfg))


def test_the_run_seed_draws_the_head_and_lora_and_repeats_a_run_bit_for_bit(tmp_path):
    from safetensors.torch import load_file
    from lora_repro.run import run
    data = write_glue(tmp_path / "SST-2", "sst2", rows=24)
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        cfg = compose_run("task=glue/sst2", f"task.data_dir={data}", "train.epochs=2", "train.batch_size=8",
                          "method.dropout=0.1", f"seed={seed}")
        (tmp_path / name).mkdir()
        record = run(cfg, tmp_path / name)
        runs[name] = record, load_file(str(tmp_path / name / "adapter.safetensors"))
    (ra, ta), (rb, tb), (rc, tc) = runs["a"], runs["b"], runs["c"]
    assert ta.keys() == tb.keys() == tc.keys() and len(ta) == 2 * 2 * 2 + 2  # 2 layers x (q, v) x (A, B) + head W, b
    assert all(torch.equal(ta[k], tb[k]) for k in ta)  # same seed: the same trained tensors, bit for bit
    assert ra["history"] == rb["history"]
    for k in ("classifier.weight", "bert.encoder.layer.0.attention.self.query.lora_A"):
        assert (ta[k] - tc[k]).abs().max() > 1e-3  # another seed: another head and another LoRA init
