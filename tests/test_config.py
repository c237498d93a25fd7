"""The one typed config (lora_repro/config.py): every shipped config is valid, the YAML files write no default twice,
every wrong value is one line naming it, each run validates once, and the core does not read the config layer."""
import ast
import copy
import json
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_module
from omegaconf import OmegaConf
from pydantic import BaseModel

from lora_repro import config as C
from lora_repro.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "lora_repro" / "conf"


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_module("lora_repro.conf", version_base="1.3"):
        yield lambda *overrides, name="config": compose(name, overrides=list(overrides))


def sweep_jobs(path: Path) -> list[list[str]]:
    """Jobs of a file's sweeper grid (hydra.sweeper.params): each value of each parameter once, the others at their
    first value."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parser = OverridesParser.create()
    params = ((yaml.safe_load(path.read_text()).get("hydra") or {}).get("sweeper") or {}).get("params") or {}
    values = {}
    for key, value in params.items():
        override = parser.parse_override(f"{key}={value}")
        values[key] = list(override.sweep_string_iterator()) if override.is_sweep_override() else \
            [override.get_value_element_as_str()]
    jobs = []
    for key in values:
        for value in values[key]:
            job = [f"{k}={value if k == key else v[0]}" for k, v in values.items()]
            if job not in jobs:
                jobs.append(job)
    return jobs


def compose_sweep(name: str, job: list[str]):
    """sweeps/NAME.yaml with one job's overrides, composed as `python -m lora_repro.run --config-dir sweeps
    --config-name NAME` composes it, ${hydra:...} resolved as in the job, the hydra node dropped."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode
    from omegaconf import open_dict
    search_path = create_config_search_path("pkg://lora_repro.conf")
    search_path.prepend("command-line", f"file://{ROOT / 'sweeps'}", anchor=SearchPathQuery(provider="schema"))
    cfg = ConfigLoaderImpl(config_search_path=search_path).load_configuration(name, job, RunMode.MULTIRUN)
    HydraConfig.instance().set_config(cfg)  # what ${hydra:sweep.dir} reads (mnli_adapter of the MNLI-init sweeps)
    with open_dict(cfg):
        del cfg["hydra"]
    try:
        return OmegaConf.create(C.resolved(cfg))
    finally:
        HydraConfig.instance().cfg = None


def shipped_overrides() -> list[list[str]]:
    """Every conf/paper file (its model, method, task), every experiment and the jobs of its sweep, every method
    on every task kind, every weight type, and the wandb logger."""
    cases = []
    for f in sorted((CONF / "paper").rglob("*.yaml")):
        model, method, *task = f.relative_to(CONF / "paper").with_suffix("").parts
        cases.append([f"model={model}", f"method={method}", f"task={'/'.join(task)}"])
    for f in sorted((CONF / "experiment").glob("*.yaml")):
        cases.append([f"+experiment={f.stem}"])
        cases += [[f"+experiment={f.stem}", *job] for job in sweep_jobs(f)]
    for method in sorted(p.stem for p in (CONF / "method").glob("*.yaml")):
        for task, model in (("synthetic", "tiny-bert"), ("glue/sst2", "tiny-bert"), ("e2e", "tiny-gpt2")):
            cases.append([f"method={method}", f"task={task}", f"model={model}"])
    for weight_type in sorted(p.stem for p in (CONF / "weight_type").glob("*.yaml")):
        cases.append([f"+weight_type={weight_type}"])
    return cases + [["logger=wandb"]]


# --- every config the repository ships is valid ---

def test_every_shipped_config_is_a_valid_run_config(hydra_conf):
    cases = shipped_overrides()
    assert len(cases) > 200  # 118 paper files, the experiments and their sweeps, 17 methods x 3 tasks
    configs = [hydra_conf(*overrides) for overrides in cases]
    sweeps = [(f.stem, job) for f in sorted((ROOT / "sweeps").glob("*.yaml")) for job in [[], *sweep_jobs(f)]]
    assert len(sweeps) == 6 + 4 + 12 + 8 + 8 + 10 + 7  # each file alone, then its jobs: every value of every parameter
    configs += [compose_sweep(name, job) for name, job in sweeps]
    checked = 0
    for cfg in configs:
        run = C.validated(C.RunConfig, C.resolved(cfg))
        assert run.train.epochs >= 1 and run.method.parts
        if run.model.path is None and not getattr(run.task, "data_dir", None) and run.method.init_adapter is None:
            C.check(run)  # the rules that read the model's shape too, where no file is needed
            checked += 1
    assert checked > 180
    for overrides in ([], ["task=glue/sst2", "adapter.r=8", "adapter.alpha=16", "adapter.targets=[q,v]"]):
        evaluate = C.validated(C.EvaluateConfig, C.resolved(hydra_conf("adapter.path=runs/a", *overrides,
                                                                        name="evaluate")))
        assert evaluate.adapter.path == "runs/a"
    for lm in sorted(p.stem for p in (CONF / "lm").glob("*.yaml")):  # python -m lora_repro.pretrain lm=NAME
        pretrain = C.from_hydra(hydra_conf(f"lm={lm}", name="pretrain"), C.PretrainConfig)
        assert pretrain.lm.name in pretrain.out_dir and pretrain.train.epochs == pretrain.lm.epochs
    mrpc = compose_sweep("glue_roberta_base_mnli_init", ["model=roberta-base", "method=lora", "task=glue/mrpc"])
    assert mrpc.method.init_adapter == mrpc.mnli_adapter  # job 0's run directory, under the sweep's own folder


def test_conf_group_files_write_no_default_twice():
    """A group file (conf/method, task, logger, model) sets only what differs from the model's defaults; the
    defaults themselves come from lora_repro.config through the generated _defaults nodes."""
    def models(path: Path, data: dict):
        group = path.relative_to(CONF).parts[0]
        if group == "task":
            task = data.get("task", {})
            return {"task": C.UNIONS["task"].get(task.get("name")), "train": C.TrainConfig, "model": C.ModelConfig}
        if group == "method" and "name" in data:
            return {"": C.ComposedMethod if "+" in data["name"] else C.SINGLE[data["name"]]}
        return {"": {"logger": C.UNIONS["logger"].get(data.get("name")), "model": C.ModelConfig}.get(group)}

    checked = 0
    for path in sorted(p for g in ("method", "task", "logger", "model") for p in (CONF / g).rglob("*.yaml")):
        data = OmegaConf.to_container(OmegaConf.load(path))
        for key, model in models(path, data).items():
            values = data.get(key, {}) if key else data
            for name, value in values.items():
                field = model.model_fields.get(name) if model else None
                if field is None or field.is_required() or name == "name":
                    continue
                default = field.get_default(call_default_factory=True)
                default = default.model_dump(mode="json") if isinstance(default, BaseModel) else default
                assert value != default or isinstance(value, dict) and value, (path, name, value)
                checked += 1
    assert checked > 30  # 35 values set apart from the defaults when written


def test_the_configs_choices_are_the_codes():
    from transformers.activations import ACT2FN
    from lora_repro import methods, tasks, targets
    from lora_repro.methods import adapters
    from lora_repro.tasks import e2e, glue
    assert set(C.UNIONS["task"]) == set(tasks.TASKS)
    assert C.GLUE_SUBSETS == tuple(glue.SUBSETS) and C.E2E_SPLITS == e2e.SPLITS
    assert set(typing.get_args(C.AdapterMethod.model_fields["sites"].annotation)[0].__args__) == \
        {site for places in adapters.SITES.values() for site in places}
    assert set(C.ACTIVATIONS) <= set(ACT2FN)
    assert set(C.SINGLE) == set(methods.METHODS)
    assert targets.TARGET_NAMES == ("q", "k", "v", "o", "mlp")


# --- generated fault cases: one per out-of-range value of every numeric and choice field ---

BASES = {C.RunConfig: ([], ""), C.ModelConfig: ([], "model"), C.TrainConfig: ([], "train"),
         C.WandbLogger: (["logger=wandb"], "logger"), C.SyntheticTask: ([], "task"),
         C.GlueTask: (["task=glue/sst2"], "task"), C.E2ETask: (["task=e2e", "model=tiny-gpt2"], "task"),
         C.LoraMethod: ([], "method"), C.TopKMethod: (["method=ft_topk"], "method"),
         C.AdapterMethod: (["method=adapter_h"], "method"), C.PrefixMethod: (["method=prefix_embed"], "method")}
EXTRA_BASES = [(C.LoraMethod, ["method=lora+prefix_embed"], "method.lora"),
               (C.PrefixMethod, ["method=lora+prefix_layer"], "method.prefix_layer")]


def bounds(field) -> dict:
    return {key: getattr(m, key) for m in field.metadata for key in ("ge", "gt", "le", "lt") if hasattr(m, key)}


def bad_values(field) -> list:
    """Values the field must refuse: just past each bound, a fraction for an integer, a non-choice, a wrong type."""
    args = [a for a in typing.get_args(field.annotation) if a is not type(None)]
    annotation = args[0] if typing.get_origin(field.annotation) is typing.Union and len(args) == 1 else \
        field.annotation
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    b = bounds(field)
    if typing.get_origin(annotation) is typing.Literal:
        return ["not_a_choice", 3]
    if annotation is bool:
        return ["maybe"]
    if annotation in (int, float):
        step = 1 if annotation is int else 0.5
        out = ([b["ge"] - step] if "ge" in b else []) + ([b["gt"]] if "gt" in b else []) + \
              ([b["le"] + step] if "le" in b else []) + ([b["lt"]] if "lt" in b else [])
        return out + ([1.5] if annotation is int else ["abc"])
    if annotation is str:
        return (["gpu0"] if any(getattr(m, "pattern", None) for m in field.metadata) else []) + [[1]]
    if typing.get_origin(annotation) is list:
        item = typing.get_args(annotation)[0]
        return [5] + ([[-1]] if typing.get_args(item)[:1] == (int,) else []) + \
            ([["attention", "not_a_site"]] if typing.get_origin(item) is typing.Literal else [])
    return ["not_a_mapping"]


def fault_cases() -> list[tuple]:
    """(overrides, path, bad value) for every field of every group but the names the dispatch reads."""
    cases = []
    for model, overrides, prefix in [(m, *BASES[m]) for m in BASES] + EXTRA_BASES:
        for name, field in model.model_fields.items():
            if name == "name" or name in C.UNIONS and model is C.RunConfig or name in ("model", "train"):
                continue
            inner = C._inner(field.annotation)
            fields = inner.model_fields.items() if inner and typing.get_origin(field.annotation) is not list else \
                [(None, field)]
            for sub, subfield in fields:
                for value in bad_values(subfield):
                    cases.append((overrides, ".".join(p for p in (prefix, name, sub) if p), value))
    return cases


def put(data: dict, path: str, value) -> dict:
    data = copy.deepcopy(data)
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is KeyError:
        del node[last]
    else:
        node[last] = value
    return data


def test_every_out_of_range_value_is_one_line_naming_field_and_value(hydra_conf):
    faults, bases = fault_cases(), {}
    assert len(faults) >= 150
    for overrides, path, value in faults:
        if tuple(overrides) not in bases:
            bases[tuple(overrides)] = C.resolved(hydra_conf(*overrides))
        with pytest.raises(ConfigError) as err:
            C.validated(C.RunConfig, put(bases[tuple(overrides)], path, value))
        message = str(err.value)
        assert "\n" not in message and message.startswith(path), (path, value, message)
        assert " is invalid: Input should be " in message or "Value error" not in message, message


def test_every_bound_itself_is_accepted(hydra_conf):
    base = C.resolved(hydra_conf())
    for model, path in ((C.TrainConfig, "train"), (C.LoraMethod, "method"), (C.RunConfig, "")):
        for name, field in model.model_fields.items():
            for key, value in bounds(field).items():
                if key in ("ge", "le"):
                    C.validated(C.RunConfig, put(base, ".".join(p for p in (path, name) if p), value))


@pytest.mark.parametrize("overrides, path, value, message", [
    ([], "train.epochs", 0, "train.epochs=0 is invalid: Input should be greater than or equal to 1"),
    ([], "train.precision", "fp16", "train.precision='fp16' is invalid: Input should be 'bf16' or 'fp32'"),
    ([], "seed", -1, "seed=-1 is invalid: Input should be greater than or equal to 0"),
    (["method=prefix_layer"], "method.prefix_len", 0,
     "method.prefix_len=0 with method.infix_len=0 is invalid; valid choices: l_p + l_i >= 1 (Sec. 5.1), "
     "e.g. method.prefix_len=10"),
    (["task=e2e", "model=tiny-gpt2"], "task.decode.num_beams", 0,
     "task.decode.num_beams=0 is invalid: Input should be greater than or equal to 1"),
    (["method=lora+prefix_embed"], "method.lora.r", 0,
     "method.lora.r=0 is invalid: Input should be greater than or equal to 1"),
    ([], "train.epoch", 3, "train.epoch=3 is not a field of train; valid fields: ['adam_eps', 'batch_size', "
                           "'checkpoint_every', 'data_order_seed', 'epochs', 'eval_batch_size', 'eval_each_epoch', "
                           "'global_batch_size', 'grad_accum', 'log_every', 'lr', 'max_grad_norm', 'min_epochs', "
                           "'patience', 'precision', 'snapshot_steps', 'warmup_ratio', 'warmup_steps', "
                           "'weight_decay']"),
    ([], "method.rank", 3, "method.rank=3 is not a field of method; valid fields: ['alpha', 'dropout', 'init', "
                           "'init_adapter', 'init_keep_head', 'init_std', 'name', 'r', 'targets']"),
    (["task=glue/sst2"], "task.subset", KeyError, "task.subset is missing"),
    ([], "logger.name", "tensorboard", "logger.name='tensorboard' is not a logger; valid choices: ['none', 'wandb']"),
    ([], "task.name", "squad", "task.name='squad' is not a task; valid choices: ['e2e', 'glue', 'synthetic']"),
    ([], "method.name", "loar", "method.name='loar' is not a method; valid choices: ['adapter_d', 'adapter_h', "
                                "'adapter_l', 'adapter_p', 'bitfit', 'ft_top2', 'ft_topk', 'full', 'lora', "
                                "'prefix_embed', 'prefix_layer'], or two different ones joined by + (a composition, "
                                "e.g. lora+prefix_embed)"),
    (["method=lora+prefix_embed"], "method.name", "lora+lora",
     "method.name='lora+lora' is not a method; valid choices: ['adapter_d', "),
    (["method=lora+prefix_embed"], "method.full", {}, "method.full is not a part of method.name='lora+prefix_embed'"),
])
def test_the_common_mistakes_are_one_line_each(hydra_conf, overrides, path, value, message):
    with pytest.raises(ConfigError) as err:
        C.validated(C.RunConfig, put(C.resolved(hydra_conf(*overrides)), path, value))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("overrides, message", [
    (["train.global_batch_size=40"], "train.global_batch_size=40 is not a positive multiple of train.batch_size (32"),
    (["method.r=65"], "method.r=65 is larger than the model allows: its layers are 64 wide"),
    (["method=ft_topk", "method.k=3"], "method.k=3 is invalid; valid choices: an integer in [1, 2] (the model's blocks)"),
    (["task.planted_targets=[q,z]"], "method.targets=['q', 'z'] has unknown name(s) ['z']"),
    (["task=e2e", "model=tiny-gpt2", "task.max_seq_len=64"],
     "task.decode.max_new_tokens=64 is invalid; valid choices: an integer < task.max_seq_len (64)"),
    (["model.config.model_type=t5"], "model.config.model_type='t5' has no known LoRA targets"),
    (["train.lr=${nothing}"], "train.lr: "),
    (["method.init_adapter=/no/such/run"], "method.init_adapter='/no/such/run' does not exist"),
    (["task=glue/sst2", "task.data_dir=/no/such/dir"], "task.data_dir='/no/such/dir' is not a folder"),
])
def test_cross_field_and_file_rules_name_the_field(hydra_conf, overrides, message):
    with pytest.raises(ConfigError) as err:
        C.from_hydra(hydra_conf(*overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("path, value, message", [
    ("lm.vocab_size", 100, "lm.vocab_size=100 is invalid: Input should be greater than or equal to 257"),
    ("corpus", [], "corpus=[] is invalid: List should have at least 1 item"),
    ("corpus.1.heldout", "yes", "corpus.1.heldout='yes' is invalid: Input should be a valid boolean"),
    ("corpus.0.colum", "ref", "corpus.0.colum='ref' is not a field of corpus.0; valid fields: ['column', "
                              "'heldout', 'path']"),
    ("lm.n_head", 3, "lm.n_head=3 is invalid; valid choices: a divisor of lm.n_embd (128)"),
    ("lm.block", 1024, "lm.block=1024 is invalid; valid choices: an integer in [2, 512] (lm.n_positions)"),
])
def test_a_wrong_pretrain_field_is_one_line(hydra_conf, path, value, message):
    with pytest.raises(ConfigError) as err:
        C.validated(C.PretrainConfig, put(C.resolved(hydra_conf(name="pretrain")), path, value))
    assert str(err.value).startswith(message)


def test_a_numeric_name_is_the_string_it_reads_as(hydra_conf):
    run = C.validated(C.RunConfig, put(C.resolved(hydra_conf()), "experiment", 2024))  # as +experiment files might
    assert run.experiment == "2024"


# --- one validation per run; nothing below the entry points reads Hydra's config or the config layer ---

def test_a_run_validates_its_config_once(tmp_path, monkeypatch):
    from hydra.core.global_hydra import GlobalHydra
    from lora_repro import run
    calls = []
    real = C.RunConfig.model_validate.__func__
    monkeypatch.setattr(C.RunConfig, "model_validate", classmethod(lambda cls, *a, **k: calls.append(cls) or
                                                                   real(cls, *a, **k)))
    monkeypatch.setattr(sys, "argv", ["run", "task.n_train=64", "task.n_eval=32", "train.epochs=1",
                                      f"hydra.run.dir={tmp_path}"])
    outer = GlobalHydra.instance().hydra  # a test module's initialize() may hold it; the CLI needs it free
    GlobalHydra.instance().clear()
    try:
        run.main()
    finally:
        GlobalHydra.instance().clear()
        if outer is not None:
            GlobalHydra.instance().initialize(outer)
    assert calls == [C.RunConfig]  # from_hydra at the top; the model, task, method and loop got typed objects
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["method"]["r"] == 8


CORE = ["lora.py", "targets.py", "beam.py", "methods", "metrics"]
ENTRY_POINTS = {"run.py", "evaluate.py", "pretrain.py", "config.py", "results.py", "export.py", "plan.py"}


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            names |= {f"{node.module}.{a.name}" for a in node.names} | {node.module or ""}
    return names


def test_the_core_imports_nothing_of_the_config_layer():
    package = ROOT / "lora_repro"
    core = [p for c in CORE for p in ([package / c] if c.endswith(".py") else sorted((package / c).rglob("*.py")))]
    assert len(core) > 10
    for path in core:
        bad = {n for n in imports(path) if n.startswith(("lora_repro.config", "omegaconf", "hydra"))}
        assert not bad, (path, bad)
    for path in sorted(package.rglob("*.py")):  # below the entry points: no module reads Hydra's config
        if path.name not in ENTRY_POINTS and "bench" not in path.parts:
            assert not {n for n in imports(path) if n.startswith("omegaconf")}, path
    assert not {n for n in imports(package / "evaluate.py") if n.startswith("lora_repro.run")}


# --- the command lines: exit 2, one line on stderr, no traceback, nothing of ours written ---

def cli(module: str, *args, cwd=ROOT):
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def hydra_files_only(run_dir: Path) -> bool:
    """What Hydra itself writes before main() (.hydra/, the job log) and nothing a run writes."""
    files = [p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file()]
    return all(p.parts[0] == ".hydra" or p.suffix == ".log" for p in files)


@pytest.mark.parametrize("module, args, line", [
    ("lora_repro.run", ["method=adapter_h", "method.bottleneck=0"],
     "error: method.bottleneck=0 is invalid: Input should be greater than or equal to 1"),
    ("lora_repro.run", ["+train.epoch=3"], "error: train.epoch=3 is not a field of train; valid fields: ['adam_eps'"),
    ("lora_repro.run", ["method.rr=3"], "error: method.rr is not a field of method; valid fields: ['activation'"),
    ("lora_repro.evaluate", ["adapter.pth=x"], "error: adapter.pth is not a field of adapter; valid fields: ['alpha'"),
    ("lora_repro.evaluate", ["adapter.path=/no/such/adapter"], "error: "),
    ("lora_repro.pretrain", ["lm.n_head=3"], "error: lm.n_head=3 is invalid; valid choices: a divisor of lm.n_embd"),
    ("lora_repro.bench", ["suite"], "error: bench suite without --smoke runs the GPU shapes"),
])
def test_every_cli_refuses_a_wrong_field_in_one_line_exit_2(tmp_path, module, args, line):
    hydra = [f"hydra.run.dir={tmp_path}", f"out_dir={tmp_path / 'lm'}"] if module.endswith("pretrain") else \
        [] if module.endswith("bench") else [f"hydra.run.dir={tmp_path}"]
    out = cli(module, *args, *hydra)
    assert out.returncode == 2, out.stderr[-2000:]
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith(line) and len([x for x in lines if x.startswith("error")]) == 1
    assert "Traceback" not in out.stdout + out.stderr and hydra_files_only(tmp_path)


def test_only_a_config_error_is_one_line_a_bug_keeps_its_traceback(capsys):
    from lora_repro.errors import cli as wrap

    def fails(error):
        raise error
    with pytest.raises(SystemExit) as exit_:
        wrap(fails)(ConfigError("train.lr=0 is invalid"))
    assert exit_.value.code == 2 and capsys.readouterr().err == "error: train.lr=0 is invalid\n"
    for bug in (ValueError("an internal invariant"), KeyError("x"), FileNotFoundError("a file of ours")):
        with pytest.raises(type(bug)):
            wrap(fails)(bug)  # not the user's mistake: the traceback stays


# --- resume=true refuses a changed run ---

QUICK = ["task.n_train=128", "task.n_eval=32", "train.epochs=1"]


def test_resume_refuses_a_changed_result_field_and_allows_logging_changes(hydra_conf, tmp_path):
    from lora_repro.run import run
    typed = lambda *o: C.from_hydra(hydra_conf(*QUICK, *o))  # noqa: E731
    run(typed(), tmp_path)
    stored = json.loads((tmp_path / "run_config.json").read_text())
    assert stored["method"]["r"] == 8 and stored["train"]["lr"] == 0.01
    before = (tmp_path / "metrics.json").read_text()
    for override, line in [
        ("method.r=4", f"resume=true: method.r=4 differs from the run being resumed (method.r=8 in "
                       f"{tmp_path / 'run_config.json'}); it changes the result: resume with method.r=8, or start a "
                       f"new run directory"),
        ("train.lr=0.02", "resume=true: train.lr=0.02 differs from the run being resumed (train.lr=0.01 in"),
        ("seed=1", "resume=true: seed=1 differs from the run being resumed (seed=0 in"),
        ("task.n_train=256", "resume=true: task.n_train=256 differs from the run being resumed (task.n_train=128 in"),
    ]:
        with pytest.raises(ConfigError) as err:
            run(typed(override, "resume=true"), tmp_path)
        assert str(err.value).startswith(line)
    assert (tmp_path / "metrics.json").read_text() == before  # refused before anything ran
    with pytest.raises(ConfigError, match=r"resume=true: method.alpha=4.0 differs .* \(1 more: method.r\)"):
        run(typed("method.r=4", "method.alpha=4", "resume=true"), tmp_path)
    record = run(typed("train.log_every=5", "train.eval_batch_size=16", "resume=true"), tmp_path)
    assert record["steps"] == json.loads(before)["steps"]  # the finished run resumed: nothing more to train
    del stored["train"]["min_epochs"]  # a run recorded before the field existed trained as its default does
    (tmp_path / "run_config.json").write_text(json.dumps(stored))
    run(typed("resume=true"), tmp_path)
    with pytest.raises(ConfigError, match=r"resume=true: train.min_epochs=2 differs .* \(train.min_epochs=0 in"):
        run(typed("train.min_epochs=2", "resume=true"), tmp_path)


# --- the configuration page's table is the models' ---

def test_the_configuration_table_is_generated_from_the_config():
    page = (ROOT / "docs" / "configuration.md").read_text()
    table = C.markdown_table()
    start = page.index(C.DOCS_BEGIN) + len(C.DOCS_BEGIN) + 1
    assert page[start:page.index(C.DOCS_END)] == table
    assert "| `train.epochs` | `3` | an integer >= 1 | passes over the training set (Table 9, Table 11) |" in table
    assert "| `method.r` (lora) | `8` | an integer >= 1 |" in table
    assert "| `lm.vocab_size` (pretrain) | (required) | an integer >= 257 |" in table


def test_an_installed_wheel_carries_its_configs_and_runs_from_any_folder(tmp_path):
    # pip install . (not -e): the package, conf/ inside it, imported from the wheel's files in an empty folder
    import shutil
    import zipfile
    source = tmp_path / "source"  # a copy: the build writes build/ and *.egg-info beside pyproject.toml
    shutil.copytree(ROOT / "lora_repro", source / "lora_repro", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path / "wheel"),
                    str(source)], check=True, capture_output=True, timeout=300)
    zipfile.ZipFile(next((tmp_path / "wheel").glob("lora_repro-*.whl"))).extractall(tmp_path / "site")
    shipped = {p.relative_to(ROOT).as_posix() for p in (ROOT / "lora_repro/conf").rglob("*.yaml")}
    assert shipped and shipped <= {p.relative_to(tmp_path / "site").as_posix()
                                   for p in (tmp_path / "site/lora_repro/conf").rglob("*.yaml")}
    (tmp_path / "empty").mkdir()
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "site")}
    out = subprocess.run([sys.executable, "-c", "import lora_repro, lora_repro.config as c; print(lora_repro.__file__); "
                          "print(c.compose('+experiment=rank_ablation', 'method.r=2').method.r)"],
                         cwd=tmp_path / "empty", env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(tmp_path / "site/lora_repro/__init__.py"), "2"]
    job = subprocess.run([sys.executable, "-m", "lora_repro.run", "+experiment=rank_ablation", "--cfg", "job"],
                         cwd=tmp_path / "empty", env=env, capture_output=True, text=True, timeout=300)
    assert job.returncode == 0 and "experiment: rank_ablation" in job.stdout, job.stderr


def test_paper_configs_take_the_reference_scripts_step_and_precision_on_any_device_count(hydra_conf):
    # RoBERTa's GLUE scripts (LoRA and adapters) train in fp32 with 8 GPUs x the listed batch; DeBERTa's too, in
    # fp16 (bf16 here, the named deviation); the global batch is fixed, so 1, 2 or 8 devices take the same step
    from lora_repro.distributed import grad_accum
    checked = 0
    for f in sorted((CONF / "paper").glob("*/*/glue/*.yaml")):
        model, method = f.relative_to(CONF / "paper").parts[:2]
        if not model.startswith(("roberta", "deberta")) or not method.startswith(("lora", "adapter_")):
            continue
        run = C.from_hydra(hydra_conf(f"model={model}", f"method={method}", f"task=glue/{f.stem}"))
        assert run.train.precision == ("fp32" if model.startswith("roberta") else "bf16"), f
        if model.startswith("deberta"):
            assert run.train.global_batch_size == 8 * run.train.batch_size, f
        step, per_device = run.train.global_batch_size, run.train.batch_size
        worlds = [w for w in (1, 2, 4, 8) if step % (w * per_device) == 0]  # RoBERTa-base CoLA: the scripts' 2 GPUs
        assert worlds[:2] == [1, 2], f
        assert all(grad_accum(run.train, w) * w * per_device == step for w in worlds), f
        checked += 1
    assert checked == 8 + 80  # DeBERTa's 8 tasks; RoBERTa base (LoRA, AdapterDrop 0.3M and 0.9M) and large (LoRA, LoRA-dagger, five adapters) x 8 tasks
