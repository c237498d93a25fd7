"""The paper-scale plan (lora_repro/plan.py): the protocol's run counts, the MNLI-init order, the GPU-hour estimate,
and the dry run that composes every planned config and trains one step of each on a tiny stand-in (a CI tier)."""
import json
import sys

import pytest
from omegaconf import OmegaConf

from lora_repro import plan
from lora_repro.errors import ConfigError

RUNS = plan.plan()
ENCODERS = ("roberta-base", "roberta-large", "deberta-v2-xxlarge")


@pytest.fixture(scope="module")
def dry():
    """The dry run of the whole plan, one seed per cell (134 configs, one Hydra initialization): its steps."""
    return plan.dry_run(RUNS)


def sweep_values(experiment: str, key: str) -> list[str]:
    """A sweep's comma list as the YAML file writes it (read apart from plan.sweep)."""
    return str(OmegaConf.load(plan.CONF / "experiment" / f"{experiment}.yaml").hydra.sweeper.params[key]).split(",")


def test_the_plan_counts_match_the_paper_protocol():
    glue, e2e = sweep_values("glue_baselines", "method"), sweep_values("e2e_baselines", "method")
    count = {}
    for run in RUNS:
        count[run.table, run.model] = count.get((run.table, run.model), 0) + 1
    rows = {model: [m for m in glue if (plan.CONF / "paper" / model / m).is_dir()] for model in ENCODERS}
    assert rows["roberta-base"] == ["full", "bitfit", "adapter_d", "adapter_d_large", "lora"]  # Table 2's rows
    assert count == {(2, "roberta-base"): 8 * 5 * 5, (2, "roberta-large"): 8 * len(rows["roberta-large"]) * 5,
                     (2, "deberta-v2-xxlarge"): 8 * 1 * 5, (3, "gpt2-medium"): len(e2e) * 3,
                     (3, "gpt2-large"): len(e2e) * 3}
    assert len(glue) == 10 and len(e2e) == 7 and len(RUNS) == 642
    seeds = {}
    for run in RUNS:
        seeds.setdefault(run.cell, set()).add(run.seed)
    assert all(s == ({0, 1, 2, 3, 4} if cell[0] == 2 else {0, 1, 2}) for cell, s in seeds.items())
    assert {r.method for r in RUNS if r.model == "deberta-v2-xxlarge"} == {"lora"}  # its one conf/paper method
    assert {r.task for r in RUNS if r.table == 2} == {f"glue/{t}" for t in plan.config.GLUE_SUBSETS}
    assert len({r.key for r in RUNS}) == len(RUNS)  # a directory per run


def test_mnli_precedes_the_lora_runs_that_start_from_it():
    order = {run.key: i for i, run in enumerate(RUNS)}
    chained = [r for r in RUNS if r.mnli]
    # App. D.1: LoRA (not LoRA-dagger) on MRPC, RTE, STS-B of each encoder, every seed: 3 x 3 tasks x 5 seeds
    assert {(r.model, r.method, r.task) for r in chained} == {
        (m, "lora", t) for m in ENCODERS for t in ("glue/mrpc", "glue/rte", "glue/stsb")}
    assert len(chained) == 45
    for run in chained:
        source = RUNS[order[run.mnli]]
        assert (source.model, source.method, source.task, source.seed) == (run.model, "lora", "glue/mnli", run.seed)
        assert order[run.mnli] < order[run.key]
        assert f"mnli_adapter=outputs/paper/{run.mnli}" in run.overrides(plan.Path("outputs/paper"))


def test_every_planned_config_composes_and_trains_one_step(dry):
    assert [s.error for s in dry if s.error] == []
    assert {s.run.cell for s in dry} == {r.cell for r in RUNS} and len(dry) == 134
    assert all(s.steps == 1 for s in dry)
    # the stand-in keeps the backbone's architecture, and model= keeps its paper file's hyperparameters
    deberta = next(s.config for s in dry if s.run.cell == (2, "deberta-v2-xxlarge", "lora", "glue/mrpc"))
    assert deberta.model.config["model_type"] == "deberta-v2" and deberta.model.path is None
    assert (deberta.method.r, deberta.method.alpha, deberta.train.lr, deberta.train.epochs) == (16, 32, 2e-4, 30)


def test_the_dry_run_starts_mrpc_from_its_own_mnli_adapter(dry):
    for model in ENCODERS:
        step = next(s for s in dry if s.run.cell == (2, model, "lora", "glue/mrpc"))
        assert step.init_adapter["path"].endswith(step.run.mnli)
        assert step.init_adapter["tensors_loaded"] > 0
    assert all(s.init_adapter is None for s in dry if not s.run.mnli)


def test_the_estimate_is_positive_and_scales_with_seeds(dry):
    configs, rates = {s.run.cell: s.config for s in dry}, plan.default_rates()
    full, pilot = plan.estimate(RUNS, configs, rates), plan.estimate(plan.plan(seeds=1), configs, rates)
    assert (full.gpu_hours > 0).all() and (full.tokens > 0).all()
    hours, one = full.groupby("table").gpu_hours.sum(), pilot.groupby("table").gpu_hours.sum()
    assert hours[2] == pytest.approx(5 * one[2]) and hours[3] == pytest.approx(3 * one[3])
    # tokens = rows x epochs x max_seq_len: RoBERTa-base LoRA on MNLI is 392,702 x 30 x 512 (Table 9)
    row = full[(full.model == "roberta-base") & (full.method == "lora") & (full.task == "glue/mnli")].iloc[0]
    assert row.tokens == 392_702 * 30 * 512


def test_bench_rates_scale_the_measured_shapes_by_their_weights(tmp_path):
    def part(preset, arch, shape, full, frozen):
        return {"command": "train", "preset": preset, "arch": arch, "shape": shape, "batch": 8, "seq": 512,
                "machine": {"device": "NVIDIA H100"},
                "variants": {"full": {"tokens_per_s": full}, "ours-qv-r8": {"tokens_per_s": frozen}}}
    suite = {"command": "suite", "train": {
        "roberta-base": part("roberta-base", "roberta", {}, 1000.0, 2000.0),
        "gpt2-medium": part("gpt2-medium", "gpt2", {"n_embd": 1024, "n_layer": 24, "n_head": 16}, 300.0, 600.0)}}
    (tmp_path / "h100.json").write_text(json.dumps(suite))
    rates = plan.bench_rates(tmp_path / "h100.json")
    assert rates.tokens_per_s("roberta-base", full=True) == pytest.approx(1000.0)
    assert rates.tokens_per_s("roberta-large", full=False) == pytest.approx(2000.0 * (12 * 768**2) / (24 * 1024**2))
    assert rates.tokens_per_s("gpt2-medium", full=False) == pytest.approx(600.0)
    medium, large = 12 * 24 * 1024**2 + 50257 * 1024, 12 * 36 * 1280**2 + 50257 * 1280
    assert rates.tokens_per_s("gpt2-large", full=True) == pytest.approx(300.0 * medium / large)
    assert "H100" in rates.source


def test_without_a_gpu_bench_the_paper_table1_figure_is_the_rate():
    rates = plan.table1_rates(plan.BENCH / "cpu-gpt2-fast.json")
    part = json.loads((plan.BENCH / "cpu-gpt2-fast.json").read_text())
    ratio = part["variants"]["full"]["step_ms"] / (part["latency_s"]["base"] * 1e3)
    assert rates.tokens_per_s("gpt2-medium", full=True) == pytest.approx(32 * 512 / 1.4494 / ratio)
    assert "Table 1" in rates.source and "RTX8000" in rates.source


def test_a_broken_config_is_caught_by_the_dry_run_and_named():
    mnli = next(r for r in RUNS if r.cell == (2, "deberta-v2-xxlarge", "lora", "glue/mnli"))
    [bad_value] = plan.dry_run([mnli], extra=["method.r=0"])
    assert bad_value.error and "method.r" in bad_value.error and bad_value.steps == 0
    [typo] = plan.dry_run([plan.PlannedRun(2, "roberta-base", "lora_typo", "glue/rte", 0, "glue_baselines")])
    assert "lora_typo" in typo.error
    # a chained run without its MNLI run before it: the missing adapter is named, not silently skipped
    mrpc = next(r for r in RUNS if r.cell == (2, "deberta-v2-xxlarge", "lora", "glue/mrpc"))
    [orphan] = plan.dry_run([mrpc])
    assert "method.init_adapter=" in orphan.error and "does not exist" in orphan.error


def test_bad_input_names_the_field_and_its_valid_choices(capsys):
    with pytest.raises(SystemExit) as exit_:
        plan.main(["--tables", "4"])
    assert exit_.value.code == 2 and "--tables" in capsys.readouterr().err
    with pytest.raises(ConfigError, match=r"tables=\[4\].*valid choices: \[2, 3\]"):
        plan.plan(tables=(4,))
    with pytest.raises(ConfigError, match=r"models=\['gpt3'\].*valid choices: \['roberta-base'"):
        plan.plan(models=["gpt3"])
    with pytest.raises(SystemExit) as exit_:
        plan.main(["train.lrr=1"])
    assert exit_.value.code == 2 and "train.lrr is not a field of train" in capsys.readouterr().err


def test_list_prints_one_run_command_per_run_in_launch_order(capsys):
    assert plan.main(["logger=wandb", "--list", "--models", "deberta-v2-xxlarge"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 40 and all("-m lora_repro.run +experiment=glue_baselines" in line for line in lines)
    assert all("task=glue/mnli" in line for line in lines[:5]) and "logger=wandb" in lines[0]
    assert "hydra.mode=RUN hydra.run.dir=outputs/paper/table2/deberta-v2-xxlarge/lora/glue-mnli/seed0" in lines[0]


def test_launch_runs_in_order_skips_finished_runs_and_resumes_checkpointed_ones(tmp_path, capsys):
    runs = [r for r in RUNS if r.model == "deberta-v2-xxlarge" and r.seed == 0][:3]
    (tmp_path / runs[0].key).mkdir(parents=True)
    (tmp_path / runs[0].key / "metrics.json").write_text("{}")
    (tmp_path / runs[1].key).mkdir(parents=True)
    (tmp_path / runs[1].key / "trainer_state.json").write_text("{}")
    assert plan.launch(runs, tmp_path, [], "true") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("[1/3] done, skipped") and out[1].startswith("[2/3] resuming")
    assert out[1].endswith("resume=true") and out[2].startswith("[3/3] starting")
    assert plan.launch(runs, tmp_path, [], "false") == 1  # stops at the first failure, names it
    assert "failed (exit 1)" in capsys.readouterr().err


def test_launch_trains_a_planned_run_in_its_directory_as_one_run(tmp_path):
    """The one subprocess: `python -m lora_repro.run` with the plan's overrides (its experiment is a multirun) writes
    one run in the planned directory; the second launch skips it."""
    run = next(r for r in RUNS if r.cell == (2, "deberta-v2-xxlarge", "lora", "glue/rte"))
    run = plan.PlannedRun(*run.cell, seed=0, experiment=run.experiment)  # alone: no MNLI run to start from
    data = plan.write_fixtures(tmp_path / "data", [run.task])
    extra = [*plan.stand_in(run.model), f"task.data_dir={data[run.task]}", "device=cpu", "train.epochs=1",
             "train.warmup_steps=0", "train.warmup_ratio=0.0"]
    assert plan.launch([run], tmp_path / "runs", extra, sys.executable) == 0
    record = json.loads((tmp_path / "runs" / run.key / "metrics.json").read_text())
    assert (record["task"], record["method"], record["steps"], record["experiment"]) == ("glue/rte", "lora", 1,
                                                                                         "glue_baselines")
    assert not (tmp_path / "runs" / "multirun").exists()
    assert plan.launch([run], tmp_path / "runs", extra, sys.executable) == 0  # done: skipped, nothing rerun
