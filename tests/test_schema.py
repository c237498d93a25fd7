"""The schema (lora_repro/schema.py): every shipped config is valid, every out-of-range value is one line naming it."""
import copy
import os
import subprocess
import sys
import typing
from pathlib import Path

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf, open_dict

from lora_repro import schema
from lora_repro.validate import resolved, validate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hydra_conf():
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        yield lambda *overrides: compose("config", overrides=list(overrides))


# --- every config the repository ships is valid ---

def sweep_jobs(path: Path) -> list[list[str]]:
    """Jobs of a file's sweeper grid (hydra.sweeper.params): each value of each parameter once, the other parameters
    at their first value."""
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
    --config-name NAME` composes it (sweeps/ ahead of conf/ on the search path), ${hydra:...} resolved as in the
    job, the hydra node dropped. No GlobalHydra: the module's conf/ fixture keeps it."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_config_search_path
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.config_search_path import SearchPathQuery
    from hydra.types import RunMode
    search_path = create_config_search_path(str(ROOT / "conf"))
    search_path.prepend("command-line", f"file://{ROOT / 'sweeps'}", anchor=SearchPathQuery(provider="schema"))
    cfg = ConfigLoaderImpl(config_search_path=search_path).load_configuration(name, job, RunMode.MULTIRUN)
    HydraConfig.instance().set_config(cfg)  # what ${hydra:sweep.dir} reads (mnli_adapter of the MNLI-init sweeps)
    with open_dict(cfg):
        del cfg["hydra"]  # as Hydra's run_job hands the job its config
    try:
        return OmegaConf.create(resolved(cfg))
    finally:
        HydraConfig.instance().cfg = None


def shipped_overrides() -> list[list[str]]:
    """Every conf/paper file (its model, method, task), every experiment and the jobs of its sweep, every method
    on every task kind, and the wandb logger."""
    cases = []
    for f in sorted((ROOT / "conf/paper").rglob("*.yaml")):
        model, method, *task = f.relative_to(ROOT / "conf/paper").with_suffix("").parts
        cases.append([f"model={model}", f"method={method}", f"task={'/'.join(task)}"])
    for f in sorted((ROOT / "conf/experiment").glob("*.yaml")):
        cases.append([f"+experiment={f.stem}"])
        cases += [[f"+experiment={f.stem}", *job] for job in sweep_jobs(f)]
    for method in sorted(p.stem for p in (ROOT / "conf/method").glob("*.yaml")):
        for task, model in (("synthetic", "tiny-bert"), ("glue/sst2", "tiny-bert"), ("e2e", "tiny-gpt2")):
            cases.append([f"method={method}", f"task={task}", f"model={model}"])
    for weight_type in sorted(p.stem for p in (ROOT / "conf/weight_type").glob("*.yaml")):
        cases.append([f"+weight_type={weight_type}"])
    return cases + [["logger=wandb"]]


def test_every_shipped_config_passes_the_schema(hydra_conf):
    cases = shipped_overrides()
    assert len(cases) > 200  # 118 paper files, 12 experiments and their sweeps, 17 methods x 3 tasks
    for overrides in ([], ["task=glue/sst2", "adapter.r=8", "adapter.alpha=16", "adapter.targets=[q,v]"]):
        # python -m lora_repro.evaluate (conf/evaluate.yaml: config.yaml and the adapter to score)
        typed = schema.check(resolved(compose("evaluate", overrides=["adapter.path=runs/a", *overrides])))
        assert typed["top"].adapter.path == "runs/a"
    for lm in sorted(p.stem for p in (ROOT / "conf/lm").glob("*.yaml")):  # python -m lora_repro.pretrain lm=NAME
        pretrain = schema.typed(schema.PretrainConfig, compose("pretrain", overrides=[f"lm={lm}"]), "")
        assert pretrain.lm.name in pretrain.out_dir and pretrain.train.epochs == pretrain.lm.epochs
    configs = [hydra_conf(*overrides) for overrides in cases]
    sweeps = [(f.stem, job) for f in sorted((ROOT / "sweeps").glob("*.yaml")) for job in [[], *sweep_jobs(f)]]
    assert len(sweeps) == 6 + 4 + 12 + 8 + 8 + 10 + 7  # each file alone, then its jobs: every value of every parameter
    configs += [compose_sweep(name, job) for name, job in sweeps]
    checked = 0
    for cfg in configs:
        typed = schema.check(resolved(cfg))
        assert typed["train"].epochs >= 1
        if typed["model"].path is None and not getattr(typed["task"], "data_dir", None) and \
                typed["method"].init_adapter is None:
            validate(cfg)  # the cross-field rules too, where no file is needed
            checked += 1
    assert checked > 180
    mrpc = compose_sweep("glue_roberta_base_mnli_init", ["model=roberta-base", "method=lora", "task=glue/mrpc"])
    assert mrpc.method.init_adapter == mrpc.mnli_adapter  # job 0's run directory, under the sweep's own folder
    assert mrpc.mnli_adapter.startswith("outputs/multirun/glue_roberta_base_mnli_init/") and \
        mrpc.mnli_adapter.endswith("/0")


def test_schema_defaults_are_the_values_of_conf_config_yaml():
    base = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/config.yaml"))
    for key, value in base["train"].items():
        if key != "data_order_seed":  # ${seed}
            assert schema.TrainConfig.model_fields[key].default == value, key
    assert set(base["train"]) == set(schema.TrainConfig.model_fields)
    for key in ("experiment", "seed", "device", "resume", "dagger", "mnli_adapter"):
        assert schema.TopLevel.model_fields[key].default == base[key], key
    for group, model in (("lora", schema.LoraMethod), ("prefix_embed", schema.PrefixMethod),
                         ("ft_topk", schema.TopKMethod)):
        values = OmegaConf.to_container(OmegaConf.load(ROOT / f"conf/method/{group}.yaml"))
        for key, value in values.items():
            field = model.model_fields[key]
            if field.default is not None and key != "name" and not field.is_required():
                assert field.default == value, (group, key)
    pretrain = OmegaConf.to_container(OmegaConf.load(ROOT / "conf/pretrain.yaml"))
    for key in ("seed", "device", "heldout_fraction"):
        assert schema.PretrainConfig.model_fields[key].default == pretrain[key], key
    assert set(pretrain) - {"defaults", "hydra"} | {"lm"} == set(schema.PretrainConfig.model_fields)  # lm: conf/lm/


def test_the_schemas_choices_are_the_codes():
    from transformers.activations import ACT2FN
    from lora_repro import methods, tasks, targets
    from lora_repro.methods import adapters
    from lora_repro.tasks import e2e, glue
    assert schema.TASK_NAMES == tasks.TASKS and set(schema.TASKS) == set(tasks.TASKS)
    assert schema.GLUE_SUBSETS == tuple(glue.SUBSETS) and schema.BAD_ROWS == glue.BAD_ROWS
    assert schema.E2E_SPLITS == e2e.SPLITS
    assert schema.ADAPTER_SITES == adapters.SITES and set(schema.ACTIVATIONS) <= set(ACT2FN)
    assert set(schema.METHODS) == set(methods.METHODS)
    assert targets.TARGET_NAMES == ("q", "k", "v", "o", "mlp")


# --- generated fault cases: one per out-of-range value of every numeric and choice field ---

# the composition each group is present in, and its path in the config
BASES = {schema.TopLevel: ([], ""), schema.ModelConfig: ([], "model"), schema.TrainConfig: ([], "train"),
         schema.NoLogger: ([], "logger"), schema.WandbLogger: (["logger=wandb"], "logger"),
         schema.SyntheticTask: ([], "task"), schema.GlueTask: (["task=glue/sst2"], "task"),
         schema.E2ETask: (["task=e2e", "model=tiny-gpt2"], "task"), schema.LoraMethod: ([], "method"),
         schema.FullMethod: (["method=full"], "method"), schema.BitfitMethod: (["method=bitfit"], "method"),
         schema.TopKMethod: (["method=ft_topk"], "method"), schema.AdapterMethod: (["method=adapter_h"], "method"),
         schema.PrefixMethod: (["method=prefix_embed"], "method"),
         schema.ComposedMethod: (["method=lora+prefix_embed"], "method"),
         schema.EvaluateAdapter: (["+adapter.path=runs/a"], "adapter")}
EXTRA_BASES = [(schema.LoraMethod, ["method=lora+prefix_embed"], "method.lora"),
               (schema.PrefixMethod, ["method=lora+prefix_layer"], "method.prefix_layer")]


def bad_values(field) -> list:
    """Values the field must refuse: just past each bound, a fraction for an integer, a non-choice, a wrong type."""
    annotation, _ = schema._strip_optional(field.annotation)
    bounds = schema._bounds(field)
    if typing.get_origin(annotation) is typing.Literal:
        return ["not_a_choice", 3]
    if annotation is bool:
        return ["maybe"]
    if annotation in (int, float):
        step = 1 if annotation is int else 0.5
        out = ([bounds["ge"] - step] if "ge" in bounds else []) + ([bounds["gt"]] if "gt" in bounds else []) + \
              ([bounds["le"] + step] if "le" in bounds else []) + ([bounds["lt"]] if "lt" in bounds else [])
        return out + ([1.5] if annotation is int else ["abc"])
    if annotation is str:
        pattern = next((m.pattern for m in field.metadata if getattr(m, "pattern", None)), None)
        return (["gpu0"] if pattern else []) + [[1]]
    if typing.get_origin(annotation) is list:
        item = typing.get_args(annotation)[0]
        non_empty = any(getattr(m, "min_length", 0) for m in field.metadata)
        items = [[-1]] if typing.get_args(item)[:1] == (int,) else []  # list[Annotated[int, ge=0]]: a negative item
        return [5] + items + (["[not_a_site]"] if typing.get_origin(item) is typing.Literal else []) + \
            ([[]] if non_empty else [])
    return ["not_a_mapping"]


def fault_cases() -> list[tuple]:
    """(overrides, path, field, bad value) for every field of every group but the names the dispatch checks."""
    cases = []
    groups = [(model, *BASES[model]) for model in BASES] + EXTRA_BASES
    for model, overrides, prefix in groups:
        for name, field in model.model_fields.items():
            annotation, _ = schema._strip_optional(field.annotation)
            if name == "name" or name == "adapter" and model is schema.TopLevel:
                continue  # a group's name picks its schema (test_the_issues_mistakes...); adapter: its own base
            if isinstance(annotation, type) and issubclass(annotation, schema.BaseModel):
                for sub, subfield in annotation.model_fields.items():
                    for value in bad_values(subfield):
                        cases.append((overrides, f"{prefix}.{name}.{sub}", subfield, value))
                continue
            for value in bad_values(field):
                if value == "[not_a_site]":
                    value = ["attention", "not_a_site"]
                cases.append((overrides, ".".join(p for p in (prefix, name) if p), field, value))
    return cases


FAULTS = fault_cases()


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


def test_every_out_of_range_value_is_one_line_naming_field_value_and_range(hydra_conf):
    bases = {}
    assert len(FAULTS) >= 190  # 191 when written
    for overrides, path, field, value in FAULTS:
        key = tuple(overrides)
        if key not in bases:
            bases[key] = resolved(hydra_conf(*overrides))
        cfg = OmegaConf.create(put(bases[key], path, value))
        with pytest.raises(ValueError) as err:
            validate(cfg)
        message = str(err.value)
        assert "\n" not in message
        assert message == f"{path}={value!r} is invalid; valid choices: {schema.valid_text(field)}", (path, value)


def test_every_bound_itself_is_accepted(hydra_conf):
    base = resolved(hydra_conf())
    for model, path in ((schema.TrainConfig, "train"), (schema.LoraMethod, "method"), (schema.TopLevel, "")):
        for name, field in model.model_fields.items():
            bounds = schema._bounds(field)
            for key in ("ge", "le"):
                if key in bounds:
                    schema.check(put(base, ".".join(p for p in (path, name) if p), bounds[key]))


@pytest.mark.parametrize("overrides, path, value, message", [
    ([], "train.epochs", 0, "train.epochs=0 is invalid; valid choices: an integer >= 1"),
    ([], "train.grad_accum", 0, "train.grad_accum=0 is invalid; valid choices: an integer >= 1"),
    ([], "train.warmup_ratio", 2, "train.warmup_ratio=2 is invalid; valid choices: a number in [0, 1)"),
    ([], "train.lr", 0, "train.lr=0 is invalid; valid choices: a number > 0"),
    ([], "train.precision", "fp16", "train.precision='fp16' is invalid; valid choices: ['bf16', 'fp32']"),
    ([], "seed", -1, "seed=-1 is invalid; valid choices: an integer in [0, 4294967295]"),
    (["task=glue/sst2"], "task.max_seq_len", 0, "task.max_seq_len=0 is invalid; valid choices: an integer >= 2"),
    (["method=adapter_h"], "method.bottleneck", 0, "method.bottleneck=0 is invalid; valid choices: an integer >= 1"),
    (["method=prefix_layer"], "method.prefix_len", -1,
     "method.prefix_len=-1 is invalid; valid choices: an integer >= 0"),
    (["method=prefix_layer"], "method.prefix_len", 0,
     "method.prefix_len=0 with method.infix_len=0 is invalid; valid choices: l_p + l_i >= 1 (Sec. 5.1), "
     "e.g. method.prefix_len=10"),
    (["task=e2e", "model=tiny-gpt2"], "task.decode.num_beams", 0,
     "task.decode.num_beams=0 is invalid; valid choices: an integer >= 1"),
    (["method=lora+prefix_embed"], "method.lora.r", 0, "method.lora.r=0 is invalid; valid choices: an integer >= 1"),
    ([], "train.epoch", 3, "train.epoch=3 is not a field of train; valid fields: ['adam_eps', 'batch_size', "
                           "'checkpoint_every', 'data_order_seed', 'epochs', 'eval_batch_size', 'eval_each_epoch', "
                           "'global_batch_size', 'grad_accum', 'log_every', 'lr', 'max_grad_norm', 'precision', "
                           "'snapshot_steps', 'warmup_ratio', 'warmup_steps', 'weight_decay']"),
    (["method=adapter_h"], "method.bottleneck", KeyError,
     "method.bottleneck is missing; valid choices: an integer >= 1"),
    ([], "logger.name", "tensorboard", "logger.name='tensorboard' is not a logger; valid choices: ['none', 'wandb']"),
])
def test_the_issues_mistakes_are_one_line_each(hydra_conf, overrides, path, value, message):
    cfg = OmegaConf.create(put(resolved(hydra_conf(*overrides)), path, value))
    with pytest.raises(ValueError) as err:
        validate(cfg)
    assert str(err.value) == message


@pytest.mark.parametrize("overrides, message", [
    (["train.global_batch_size=40"], "train.global_batch_size=40 is not a positive multiple of train.batch_size (32"),
    (["method.r=65"], "method.r=65 is larger than the model allows: its layers are 64 wide"),
    (["method=ft_topk", "method.k=3"], "method.k=3 is invalid; valid choices: an integer in [1, 2] (the model's blocks)"),
    (["task.planted_targets=[q,z]"], "method.targets=['q', 'z'] has unknown name(s) ['z']"),
    (["task=e2e", "model=tiny-gpt2", "task.max_seq_len=64"],
     "task.decode.max_new_tokens=64 is invalid; valid choices: an integer < task.max_seq_len (64)"),
    (["model.config.model_type=t5"], "model.config.model_type='t5' has no known LoRA targets"),
    (["train.lr=${nothing}"], "train.lr: "),
])
def test_cross_field_rules_name_the_field(hydra_conf, overrides, message):
    with pytest.raises(ValueError) as err:
        validate(hydra_conf(*overrides))
    assert str(err.value).startswith(message) and "\n" not in str(err.value)


@pytest.mark.parametrize("path, value, message", [
    ("lm.vocab_size", 100, "lm.vocab_size=100 is invalid; valid choices: an integer >= 257"),
    ("corpus", [], "corpus=[] is invalid; valid choices: a non-empty list of mappings"),
    ("corpus.1.heldout", "yes", "corpus.1.heldout='yes' is invalid; valid choices: true or false"),
    ("corpus.0.colum", "ref", "corpus.0.colum='ref' is not a field of corpus.0; valid fields: ['column', "
                              "'heldout', 'path']"),
    ("train.lr", 0, "train.lr=0 is invalid; valid choices: a number > 0"),
    ("lm.n_head", 3, "lm.n_head=3 is invalid; valid choices: a divisor of lm.n_embd (128)"),
    ("lm.block", 1024, "lm.block=1024 is invalid; valid choices: an integer in [2, 512] (lm.n_positions)"),
])
def test_a_wrong_pretrain_field_is_one_line_before_any_work(hydra_conf, tmp_path, path, value, message):
    from lora_repro.pretrain import pretrain
    data = put(resolved(compose("pretrain", overrides=[f"out_dir={tmp_path / 'lm'}"])), path, value)
    with pytest.raises(ValueError) as err:
        pretrain(OmegaConf.create(data))
    assert str(err.value) == message
    assert not (tmp_path / "lm").exists()


def test_a_numeric_name_is_the_string_it_reads_as(hydra_conf):
    typed = schema.check(put(resolved(hydra_conf()), "experiment", 2024))  # as `+experiment=...` files might set
    assert typed["top"].experiment == "2024"


# --- the command line: exit 1, one line on stderr, no traceback, nothing of ours in the run dir ---

def cli(*args):
    env = {**{k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "lora_repro.run", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env=env)


def hydra_files_only(run_dir: Path) -> bool:
    """What Hydra itself writes before main() (.hydra/, the job log) and nothing a run writes."""
    files = [p.relative_to(run_dir) for p in run_dir.rglob("*") if p.is_file()]
    return all(p.parts[0] == ".hydra" or p.suffix == ".log" for p in files)


@pytest.mark.parametrize("override, line", [
    ("train.epochs=0", "error: train.epochs=0 is invalid; valid choices: an integer >= 1"),
    ("method.bottleneck=0", "error: method.bottleneck=0 is invalid; valid choices: an integer >= 1"),
])
def test_cli_fault_is_one_line_exit_1_and_writes_nothing(tmp_path, override, line):
    args = [override] if override.startswith("train") else ["method=adapter_h", override]
    out = cli(*args, f"hydra.run.dir={tmp_path}")
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [line] and "Traceback" not in out.stdout + out.stderr
    assert hydra_files_only(tmp_path) and not (tmp_path / "train_log.jsonl").exists()


def test_cli_misspelt_key_names_the_valid_keys(tmp_path):
    out = cli("+train.epoch=3", f"hydra.run.dir={tmp_path}")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().startswith("error: train.epoch=3 is not a field of train; valid fields: ['adam_eps'")
    assert len(out.stderr.strip().splitlines()) == 1 and hydra_files_only(tmp_path)


# --- files: one line naming the file that does not load ---

def model_folder(folder: Path) -> Path:
    """A tiny BERT saved as a Hugging Face folder (weights, config, the character tokenizer)."""
    from transformers import BertConfig, BertForSequenceClassification
    from lora_repro.models import char_tokenizer
    BertForSequenceClassification(BertConfig(vocab_size=256, hidden_size=32, num_hidden_layers=1,
                                             num_attention_heads=2, intermediate_size=64)).save_pretrained(folder)
    char_tokenizer().save_pretrained(folder)
    return folder


def glue_run(hydra_conf, tmp_path, *overrides):
    from test_glue import write_glue
    data = write_glue(tmp_path / "SST-2", "sst2", rows=8)
    return hydra_conf("task=glue/sst2", f"task.data_dir={data}", "train.epochs=1", *overrides)


def test_truncated_weights_are_one_line_naming_the_file(hydra_conf, tmp_path):
    from lora_repro.run import run
    folder = model_folder(tmp_path / "model")
    weights = (folder / "model.safetensors").read_bytes()
    (folder / "model.safetensors").write_bytes(weights[:len(weights) // 2])
    cfg = glue_run(hydra_conf, tmp_path, f"model.path={folder}")
    validate(cfg)  # config.json is fine: the weights fail when they load
    (tmp_path / "run").mkdir()
    with pytest.raises(ValueError) as err:
        run(cfg, tmp_path / "run")
    assert str(err.value).startswith(f"model.path='{folder}': the weights (model.safetensors) could not be loaded: "
                                     f"SafetensorError: ") and "\n" not in str(err.value)
    assert not (tmp_path / "run" / "train_log.jsonl").exists()


def test_a_tokenizer_that_does_not_load_is_one_line_naming_its_files(hydra_conf, tmp_path):
    from lora_repro.models import load_tokenizer
    folder = model_folder(tmp_path / "model")
    (folder / "tokenizer.json").write_text("{not json")
    with pytest.raises(ValueError) as err:
        load_tokenizer(glue_run(hydra_conf, tmp_path, f"model.path={folder}").model)
    assert str(err.value).startswith(f"model.path='{folder}': the tokenizer (special_tokens_map.json, tokenizer.json, "
                                     f"tokenizer_config.json) could not be loaded: ") or \
        str(err.value).startswith(f"model.path='{folder}': the tokenizer (tokenizer.json, tokenizer_config.json) "
                                  f"could not be loaded: ")


def test_a_data_file_with_no_rows_or_no_usable_rows_names_the_file(hydra_conf, tmp_path):
    from lora_repro.models import char_tokenizer
    from lora_repro.tasks import e2e, glue
    cfg = glue_run(hydra_conf, tmp_path)
    train_tsv = tmp_path / "SST-2" / "train.tsv"
    train_tsv.write_text("sentence\tlabel\n")
    with pytest.raises(ValueError, match=rf"^task.data_dir: {train_tsv} has no rows below its header; a GLUE split "
                                         r"needs at least one row$"):
        glue.load(cfg.task, char_tokenizer())
    train_tsv.write_text("sentence\tlabel\na\tb\tc\nd\te\tf\n")
    with pytest.raises(ValueError, match=rf"^task.data_dir: {train_tsv} has no usable rows: all 2 have the wrong "
                                         r"field count \(skipped by task.bad_rows=skip\)"):
        glue.load(OmegaConf.merge(cfg.task, {"bad_rows": "skip"}), char_tokenizer())
    empty = tmp_path / "devset.csv"
    empty.write_text("mr,ref\n")
    with pytest.raises(ValueError, match=rf"^task.data_dir: {empty} has no rows; an E2E split needs"):
        e2e.read_file(empty)
    empty.write_text('mr,ref\n"name[x]",""\n')
    with pytest.raises(ValueError, match=rf"^task.data_dir: {empty} has no usable rows: none of its 1 has both"):
        e2e.read_file(empty)


def test_cli_truncated_weights_exit_1_with_one_line(tmp_path):
    from test_glue import write_glue
    folder = model_folder(tmp_path / "model")
    (folder / "model.safetensors").write_bytes(b"\0" * 7)
    out = cli(f"model.path={folder}", "task=glue/sst2", f"task.data_dir={write_glue(tmp_path / 'SST-2', 'sst2', 8)}",
              f"hydra.run.dir={tmp_path / 'run'}")
    assert out.returncode == 1 and "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: model.path='{folder}': the weights (model.safetensors) could not be loaded")
    assert [line for line in lines if line.startswith("error")] == lines[-1:]


# --- resume=true refuses a changed run ---

QUICK = ["task.n_train=128", "task.n_eval=32", "train.epochs=1"]


def test_resume_refuses_a_changed_result_field_and_allows_logging_changes(hydra_conf, tmp_path):
    import json
    from lora_repro.run import run
    run(hydra_conf(*QUICK), tmp_path)
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
        with pytest.raises(ValueError) as err:
            run(hydra_conf(*QUICK, override, "resume=true"), tmp_path)
        assert str(err.value).startswith(line)
    assert (tmp_path / "metrics.json").read_text() == before  # refused before anything ran
    with pytest.raises(ValueError, match=r"resume=true: method.alpha=4 differs .* \(1 more: method.r\)"):
        run(hydra_conf(*QUICK, "method.r=4", "method.alpha=4", "resume=true"), tmp_path)
    record = run(hydra_conf(*QUICK, "train.log_every=5", "train.eval_batch_size=16", "resume=true"), tmp_path)
    assert record["steps"] == json.loads(before)["steps"]  # the finished run resumed: nothing more to train


# --- the README's configuration table is the schema's ---

def test_the_readme_table_is_generated_from_the_schema():
    readme = (ROOT / "README.md").read_text()
    table = schema.markdown_table()
    assert schema.readme_table(readme) == table
    assert "| `train.epochs` | int | `3` | an integer >= 1 | passes over the training set (Table 9, Table 11) |" in table
    assert "| `method.r` (lora) | int | `8` | an integer >= 1 |" in table
    assert "| `lm.vocab_size` (pretrain) | int | (per file) | an integer >= 257 |" in table
    rows = table.splitlines()[2:]

    def leaves(model, prefix):
        for name, field in model.model_fields.items():
            inner, _ = schema._strip_optional(field.annotation)
            if name in schema.SUBGROUPS.get(model, ()) or \
                    model is not schema.MethodCommon and issubclass(model, schema.MethodCommon) and \
                    name in schema.MethodCommon.model_fields:
                continue
            if isinstance(inner, type) and issubclass(inner, schema.BaseModel):
                yield from leaves(inner, f"{prefix}{name}.")
            else:
                yield prefix + name
    expected = [path for prefix, _, model in schema.GROUPS for path in leaves(model, prefix + "." if prefix else "")]
    assert len(rows) == len(expected) == 99 + 17  # the run's knobs, then python -m lora_repro.pretrain's
    assert [row.split("`")[1] for row in rows] == expected
