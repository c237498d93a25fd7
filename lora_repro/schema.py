"""Every config knob's type, default, valid range and paper source, in one place; conf/*.yaml hold the values."""
from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Optional

import annotated_types
from pydantic import BaseModel, ConfigDict, Field, Strict, ValidationError

# Choices, in the order the code that uses them lists them (tests/test_schema.py checks they agree)
TASK_NAMES = ("glue", "synthetic", "e2e")
GLUE_SUBSETS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")
E2E_SPLITS = ("train", "dev", "test")
BAD_ROWS = ("error", "skip")
LORA_INITS = ("kaiming", "gaussian", "normal")
ADAPTER_SITES = ("attention", "ffn")
ACTIVATIONS = ("relu", "silu", "swish", "gelu", "gelu_new", "tanh", "sigmoid", "mish", "leaky_relu", "linear")  # ACT2FN
SEED_MAX = 2**32 - 1  # numpy's np.random.seed takes 0 .. 2**32 - 1
DEVICE = r"^(auto|cpu|mps|cuda(:\d+)?)$"
Text = Annotated[str, Strict(False)]  # a name or path: experiment=2024 is the string '2024'


class Group(BaseModel):
    """A config group: strict types (a YAML int is no bool), and no key the schema does not name."""
    model_config = ConfigDict(extra="forbid", strict=True, coerce_numbers_to_str=True)


def seed_field(default: int, description: str):
    return Field(default, ge=0, le=SEED_MAX, description=description)


def device_field():
    return Field("auto", pattern=DEVICE, description="auto = cuda if available")


class ModelConfig(Group):
    name: Text = Field(description="hub id, or the tiny model's name (conf/model/; paper Tables 2, 3)")
    path: Optional[Text] = Field(None, description="a local Hugging Face folder to load instead of the hub id")
    config: Optional[dict[str, Any]] = Field(
        None, description="a transformers config to build a random-init model from (tiny-bert, tiny-gpt2)")
    config_overrides: dict[str, Any] = Field(
        default_factory=dict, description="fields set on the model config at load (E2E dropout 0, DeBERTa cls_dropout)")
    init_seed: int = seed_field(0, "seed of a tiny model's random W0, the same for every run seed")


class TrainConfig(Group):
    epochs: int = Field(3, ge=1, description="passes over the training set (Table 9, Table 11)")
    batch_size: int = Field(16, ge=1, description="examples per micro-batch per device (Table 9: per GPU)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step when global_batch_size is null")
    global_batch_size: Optional[int] = Field(
        None, ge=1, description="examples per optimizer step over all devices (Table 9 batch x 8 GPUs)")
    eval_batch_size: int = Field(64, ge=1, description="examples (E2E: MRs) per evaluation batch")
    lr: float = Field(5e-4, gt=0, description="AdamW peak learning rate (Table 9, Table 11)")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="linear warmup fraction when warmup_steps is 0 (Table 9)")
    warmup_steps: int = Field(0, ge=0, description="linear warmup steps; 0 = use warmup_ratio (Table 11: 500); at "
                                                   "most the run's total steps (checked when the data is known)")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay on matrices (Table 9, Table 11)")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm; 0 = none (E2E reference --clip 0)")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon (HF Trainer 1e-8; E2E reference code 1e-6)")
    precision: Literal["bf16", "fp32"] = Field("bf16", description="bf16 autocast on CUDA, or fp32 everywhere")
    log_every: int = Field(10, ge=1, description="optimizer steps between train_log.jsonl records")
    checkpoint_every: int = Field(0, ge=0, description="also checkpoint every N steps mid-epoch; 0 = epoch ends only")
    data_order_seed: int = seed_field(0, "seed of the training data order (default: the run seed)")
    eval_each_epoch: bool = Field(True, description="evaluate every epoch (GLUE best epoch, App. D) or only the last")
    snapshot_steps: list[Annotated[int, Field(ge=0)]] = Field(
        [], description="optimizer steps after which the trainable tensors are saved to snapshots/step<N>.safetensors "
                        "(0 = the init); Sec. 7.3's ΔW against training steps")


class NoLogger(Group):
    name: Literal["none"] = Field("none", description="no W&B; train_log.jsonl and metrics.json only")


class WandbLogger(Group):
    name: Literal["wandb"] = Field("wandb", description="Weights & Biases tracking")
    project: Text = Field("lora-repro", description="W&B project")
    mode: Literal["offline", "online", "disabled"] = Field("offline", description="W&B mode; offline needs no login")


class SyntheticTask(Group):
    name: Literal["synthetic"] = Field("synthetic", description="the planted low-rank task (tasks/synthetic.py)")
    num_labels: int = Field(8, ge=1, description="teacher head outputs to match (regression, MSE)")
    problem_type: Literal["regression"] = Field("regression", description="the head's loss: MSE on teacher outputs")
    n_train: int = Field(8192, ge=1, description="training sequences")
    n_eval: int = Field(512, ge=1, description="evaluation sequences")
    seq_len: int = Field(16, ge=1, description="tokens per random sequence")
    planted_rank: int = Field(4, ge=1, description="rank k of the planted dW* (Sec. 7: a small r suffices)")
    planted_targets: list[str] = Field(["q", "v"], description="weights the planted dW* changes (paper names)")
    planted_scale: float = Field(0.5, ge=0, description="||dW*||_F / ||W0||_F per planted matrix")
    data_seed: int = seed_field(1234, "seed of the planted dW* and the sequences")


class GlueTask(Group):
    name: Literal["glue"] = Field("glue", description="GLUE (Wang et al. 2019; paper Sec. 5.2-5.3, Table 2)")
    subset: Literal[GLUE_SUBSETS] = Field(description="the GLUE task (conf/task/glue/)")
    data_dir: Optional[Text] = Field(None, description="a folder of the original GLUE TSVs; null = the hub")
    bad_rows: Literal[BAD_ROWS] = Field("error", description="a TSV row with the wrong field count: error or skip")
    max_seq_len: int = Field(128, ge=2, description="tokens per example, [CLS] and [SEP] included (Table 9)")
    max_train_samples: Optional[int] = Field(None, ge=1, description="a fixed random subset of training rows")
    max_eval_samples: Optional[int] = Field(None, ge=1, description="a fixed random subset of eval rows")
    data_seed: int = seed_field(0, "seed of the subsets")


class DecodeConfig(Group):
    num_beams: int = Field(10, ge=1, description="beam width (Table 11; gpt2_beam.py --beam 10)")
    length_penalty: float = Field(0.9, description="beam length penalty (Table 11: 0.9; reference README 0.8)")
    no_repeat_ngram_size: int = Field(4, ge=0, description="no n-gram of this size repeats; 0 = off (gpt2_beam.py)")
    max_new_tokens: int = Field(64, ge=1, description="tokens generated per MR (gpt2_beam.py --eval_len 64)")
    stop_strings: list[str] = Field(["\n\n"], description="text that ends a generation besides <|endoftext|>")


class E2ETask(Group):
    name: Literal["e2e"] = Field("e2e", description="E2E NLG Challenge (paper Sec. 5.4, Table 3)")
    hub_id: Text = Field("tuetschek/e2e_nlg", description="the hub dataset read when data_dir is null")
    data_dir: Optional[Text] = Field(None, description="a folder of the challenge CSVs or the reference's .txt files")
    train_split: Literal[E2E_SPLITS] = Field("train", description="split trained on (offline: dev)")
    eval_split: Literal[E2E_SPLITS] = Field("test", description="split decoded and scored (the paper: test)")
    max_seq_len: int = Field(512, ge=2, description="prompt + completion tokens (reference --seq_len 512)")
    max_train_samples: Optional[int] = Field(None, ge=1, description="a random subset of MR/reference pairs")
    max_eval_mrs: Optional[int] = Field(None, ge=1, description="the first N unique MRs of the eval split")
    data_seed: int = seed_field(0, "seed of the subset")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="label smoothing of the LM loss (Table 11)")
    decode: DecodeConfig = Field(default_factory=DecodeConfig, description="beam search (Table 11)")


class MethodCommon(Group):
    init_adapter: Optional[Text] = Field(
        None, description="start from a saved adapter (run dir, .safetensors, loralib .bin; App. D.1); null = W0")
    init_keep_head: bool = Field(False, description="keep the init adapter's task head too (same shape only)")


class LoraMethod(MethodCommon):
    name: Literal["lora"] = Field("lora", description="LoRA, h = W0 x + (alpha / r) B A x (Sec. 4, eq. 3)")
    targets: list[str] = Field(["q", "v"], description="weights adapted: q k v o mlp (Sec. 4.2, Table 5)")
    r: int = Field(8, ge=1, description="rank of B A (Sec. 4.1, Table 6); at most the layer width")
    alpha: float = Field(8, gt=0, description="scale alpha / r; alpha = the first r tried (Sec. 4.1)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA path (Table 11: 0.1)")
    init: Literal[LORA_INITS] = Field("kaiming", description="A's init: loralib kaiming, the paper's gaussian, "
                                                             "or DeBERTa's normal")
    init_std: float = Field(0.02, gt=0, description="std of A for init=normal (DeBERTa-v2 initializer_range)")


class FullMethod(MethodCommon):
    name: Literal["full"] = Field("full", description="full fine-tuning (FT rows of Tables 2, 3)")


class BitfitMethod(MethodCommon):
    name: Literal["bitfit"] = Field("bitfit", description="only biases train (Ben Zaken et al. 2021; Sec. 5.1)")


class TopKMethod(MethodCommon):
    name: Literal["ft_top2", "ft_topk"] = Field("ft_top2", description="only the top k blocks train (Table 3 FT^Top2)")
    k: int = Field(2, ge=1, description="blocks trained, from the top; at most the depth")


class AdapterMethod(MethodCommon):
    name: Literal["adapter_h", "adapter_p", "adapter_l", "adapter_d"] = Field(
        description="adapter layers: Houlsby, Pfeiffer, Lin, AdapterDrop (Sec. 5.1)")
    sites: list[Literal[ADAPTER_SITES]] = Field(min_length=1, description="after attention (Wo) and/or after the FFN")
    bottleneck: int = Field(ge=1, description="adapter width (Table 2, 3 sizes; Table 9 †)")
    activation: Literal[ACTIVATIONS] = Field(description="nonlinearity (reference scripts: swish = silu, relu)")
    layernorm: bool = Field(False, description="the adapter's own trainable LayerNorm (Adapter^L)")
    init_std: float = Field(1e-3, ge=0, description="std of the up-projection init: near zero, near identity")
    drop_layers: Optional[int] = Field(0, ge=0, description="blocks from the bottom with no adapter (AdapterDrop)")
    drop_fraction: float = Field(0.0, ge=0, lt=1, description="when drop_layers is null: that fraction of the depth")


class PrefixMethod(MethodCommon):
    name: Literal["prefix_embed", "prefix_layer"] = Field(description="PreEmbed / PreLayer (Sec. 5.1)")
    prefix_len: int = Field(ge=0, description="l_p, trainable tokens before the input (Sec. 5.1); l_p + l_i >= 1")
    infix_len: int = Field(0, ge=0, description="l_i, after the input; BERT/RoBERTa only")
    init_std: float = Field(0.02, gt=0, description="std of the random init of the vectors")


class ComposedMethod(MethodCommon):
    name: Text = Field(description="two methods on one model, e.g. lora+prefix_embed (Table 15); each part's "
                                  "config is method.<part>")
    r: Optional[int] = Field(None, ge=1, description="the LoRA part's r, recorded with the run")
    alpha: Optional[float] = Field(None, gt=0, description="the LoRA part's alpha, recorded with the run")
    targets: Optional[list[str]] = Field(None, description="the LoRA part's targets, recorded with the run")


class EvaluateAdapter(Group):
    path: Text = Field(description="the adapter python -m lora_repro.evaluate scores: a run dir, our file, PEFT, loralib")
    r: Optional[int] = Field(None, ge=1, description="a loralib file's r (it stores none; the paper's RoBERTa: 8)")
    alpha: Optional[float] = Field(None, gt=0, description="a loralib file's alpha (the paper's RoBERTa: 16)")
    targets: Optional[list[str]] = Field(None, description="a loralib GPT-2 file's targets, e.g. [q, v]")


class TopLevel(Group):
    experiment: Text = Field("default", description="name of the group of runs (+experiment=NAME sets it)")
    seed: int = seed_field(0, "run seed: head and method init, dropout, data order (Table 2: 5 seeds)")
    device: str = device_field()
    resume: bool = Field(False, description="continue from the checkpoint in the run dir (hydra.run.dir=THAT_DIR)")
    dagger: bool = Field(False, description="Table 2's † setup (Houlsby et al.'s restricted setting)")
    mnli_adapter: Optional[Text] = Field(None, description="the MNLI adapter MRPC, RTE, STS-B start from (App. D.1)")
    repro_lr: Optional[dict[str, float]] = Field(None, description="per-method lr of the repro_* experiments")
    adapter: Optional[EvaluateAdapter] = Field(None, description="conf/evaluate.yaml: the adapter to score")
    model: dict[str, Any]
    task: dict[str, Any]
    method: dict[str, Any]
    train: dict[str, Any]
    logger: dict[str, Any]


class LMConfig(Group):
    name: Text = Field(description="the LM's name, in its output folder and records (conf/lm/)")
    vocab_size: int = Field(ge=257, description="byte-level BPE vocabulary: the 256 bytes, <|endoftext|> and merges")
    n_positions: int = Field(ge=2, description="GPT-2 positions, the tokenizer's model_max_length too")
    n_embd: int = Field(ge=1, description="width; a multiple of n_head")
    n_layer: int = Field(ge=1, description="transformer blocks")
    n_head: int = Field(ge=1, description="attention heads")
    block: int = Field(ge=2, description="tokens per packed training sequence (GPT-2's packing); at most n_positions")
    epochs: int = Field(ge=1, description="passes over the corpus (train.epochs reads it)")
    batch_size: int = Field(ge=1, description="blocks per step (train.batch_size reads it)")
    lr: float = Field(gt=0, description="AdamW peak learning rate (train.lr reads it)")


class CorpusSource(Group):
    path: Text = Field(description="a text file, or a CSV/TSV read one column of; relative to where you run")
    column: Optional[Text] = Field(None, description="the CSV/TSV column to read; null = a text file, a line a line")
    heldout: bool = Field(False, description="hold out its last heldout_fraction of lines for perplexity")


class PretrainConfig(Group):
    out_dir: Text = Field(description="where the model and tokenizer are saved (model.path=THAT_DIR uses them)")
    seed: int = seed_field(0, "seed of the LM's init and the data order")
    device: str = device_field()
    heldout_fraction: float = Field(0.1, gt=0, lt=1, description="the last fraction of each heldout source, held out")
    corpus: list[CorpusSource] = Field(min_length=1, description="the text files the tokenizer and LM train on")
    train: TrainConfig = Field(description="the training loop's knobs, as a run's train.* (lora_repro/train.py)")
    lm: LMConfig = Field(description="the LM's shape and schedule (conf/lm/)")


TASKS: dict[str, type[Group]] = {"synthetic": SyntheticTask, "glue": GlueTask, "e2e": E2ETask}
METHODS: dict[str, type[Group]] = {"lora": LoraMethod, "full": FullMethod, "bitfit": BitfitMethod,
                                   "ft_top2": TopKMethod, "ft_topk": TopKMethod,
                                   **{n: AdapterMethod for n in ("adapter_h", "adapter_p", "adapter_l", "adapter_d")},
                                   "prefix_embed": PrefixMethod, "prefix_layer": PrefixMethod}
LOGGERS: dict[str, type[Group]] = {"none": NoLogger, "wandb": WandbLogger}
# (path prefix, which config or choice, model) of every group, in the order the README table lists them
GROUPS: list[tuple[str, str, type[Group]]] = [
    ("", "", TopLevel), ("model", "", ModelConfig), ("train", "", TrainConfig), ("logger", "none", NoLogger),
    ("logger", "wandb", WandbLogger), ("task", "synthetic", SyntheticTask), ("task", "glue", GlueTask),
    ("task", "e2e", E2ETask), ("method", "any", MethodCommon), ("method", "lora", LoraMethod),
    ("method", "full", FullMethod), ("method", "bitfit", BitfitMethod), ("method", "ft_top2, ft_topk", TopKMethod),
    ("method", "adapter_h, adapter_p, adapter_l, adapter_d", AdapterMethod),
    ("method", "prefix_embed, prefix_layer", PrefixMethod), ("method", "A+B", ComposedMethod),
    ("", "pretrain", PretrainConfig), ("lm", "pretrain", LMConfig), ("corpus[]", "pretrain", CorpusSource)]
# fields listed as groups of their own (pretrain's train is the run's train group)
SUBGROUPS = {TopLevel: {"model", "task", "method", "train", "logger"}, PretrainConfig: {"train", "lm", "corpus"}}


# --- what a field accepts, in words ---

def _bounds(field) -> dict:
    out = {}
    for meta in field.metadata:
        for key in ("ge", "gt", "le", "lt"):
            if isinstance(meta, getattr(annotated_types, key.capitalize())):
                out[key] = getattr(meta, key)
    return out


def _range(bounds: dict) -> str:
    lo = ("[", bounds["ge"]) if "ge" in bounds else ("(", bounds["gt"]) if "gt" in bounds else None
    hi = ("]", bounds["le"]) if "le" in bounds else (")", bounds["lt"]) if "lt" in bounds else None
    if lo and hi:
        return f" in {lo[0]}{lo[1]}, {hi[1]}{hi[0]}"
    if lo:
        return f" {'>=' if lo[0] == '[' else '>'} {lo[1]}"
    if hi:
        return f" {'<=' if hi[0] == ']' else '<'} {hi[1]}"
    return ""


def _strip_optional(annotation) -> tuple[Any, bool]:
    """(the type inside Optional[...] and Annotated[...], whether null is allowed)."""
    args, optional = typing.get_args(annotation), False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType) and type(None) in args:
        annotation, optional = next(a for a in args if a is not type(None)), True
    if typing.get_origin(annotation) is Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation, optional


def valid_text(field) -> str:
    """What the field accepts, e.g. 'an integer >= 1', "['bf16', 'fp32']", 'null or a number in [0, 1)'."""
    annotation, optional = _strip_optional(field.annotation)
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        text = str(list(args))
    elif annotation is bool:
        text = "true or false"
    elif annotation is int:
        text = "an integer" + _range(_bounds(field))
    elif annotation is float:
        text = "a number" + _range(_bounds(field))
    elif annotation is str:
        pattern = next((m.pattern for m in field.metadata if getattr(m, "pattern", None)), None)
        text = f"a string matching {pattern}" if pattern else "a string"
    elif origin is list:
        item = args[0]
        base, *meta = typing.get_args(item) if typing.get_origin(item) is Annotated else (item,)
        if typing.get_origin(base) is Literal:
            text = f"a list of {list(typing.get_args(base))}"
        elif base is int:  # e.g. train.snapshot_steps: list[Annotated[int, Field(ge=0)]]
            text = "a list of integers" + (_range(_bounds(meta[0])) if meta else "")
        elif isinstance(base, type) and issubclass(base, BaseModel):
            text = "a list of mappings"
        else:
            text = "a list of strings"
        if any(isinstance(m, annotated_types.MinLen) and m.min_length > 0 for m in field.metadata):
            text = text.replace("a list", "a non-empty list", 1)
    elif origin is dict or annotation is dict:
        text = "a mapping"
    elif isinstance(annotation, type) and issubclass(annotation, BaseModel):
        text = "a mapping"
    else:
        text = str(annotation)
    return f"null or {text}" if optional else text


def type_text(field) -> str:
    """The field's type as the README writes it: int, float, str, bool, list, mapping, or a choice; '| null'."""
    annotation, optional = _strip_optional(field.annotation)
    origin = typing.get_origin(annotation)
    names = {int: "int", float: "float", str: "str", bool: "bool"}
    if origin is Literal:
        text = "choice"
    elif annotation in names:
        text = names[annotation]
    elif origin is list:
        text = "list"
    else:
        text = "mapping"
    return text + (" | null" if optional else "")


# --- checking a composed config ---

def _item_model(annotation, part) -> type[BaseModel] | None:
    """The model of a list-of-mappings item an integer location part points into (corpus.0.path), else None."""
    if typing.get_origin(annotation) is list and isinstance(part, int):
        item = typing.get_args(annotation)[0]
        return item if isinstance(item, type) and issubclass(item, BaseModel) else None
    return None


def _field_at(model: type[BaseModel], loc: tuple) -> tuple[Any, list[str], tuple]:
    """The FieldInfo a pydantic error location points at, the dotted names down to it, and its loc prefix."""
    field, names, i = None, [], 0
    while i < len(loc):
        part = loc[i]
        if not isinstance(part, str) or part not in model.model_fields:
            break
        field, names = model.model_fields[part], names + [part]
        annotation, _ = _strip_optional(field.annotation)
        item = _item_model(annotation, loc[i + 1]) if i + 1 < len(loc) else None
        if item is not None:  # into one item of a list of mappings
            model, names, i = item, names + [str(loc[i + 1])], i + 2
            continue
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return field, names, loc[:i + 1]
        model, i = annotation, i + 1
    return field, names, loc[:i]


def _value_at(data, loc: tuple):
    for part in loc:
        data = data[part]
    return data


def error_line(err: ValidationError, model: type[BaseModel], prefix: str, data: dict) -> str:
    """The first error of a validation as one line: the field path, its value, what is valid."""
    first = err.errors()[0]
    loc = first["loc"]
    if first["type"] == "extra_forbidden":
        group, names = model, []
        for part in loc[:-1]:
            names.append(str(part))
            if isinstance(part, str):  # a field: its model, or for a list of mappings its items' (the next part)
                annotation, _ = _strip_optional(group.model_fields[part].annotation)
                group = typing.get_args(annotation)[0] if typing.get_origin(annotation) is list else annotation
        path = ".".join(p for p in (prefix, *names, str(loc[-1])) if p)
        where = ".".join(p for p in (prefix, *names) if p) or "the config"
        valid = sorted(group.model_fields)
        return f"{path}={first['input']!r} is not a field of {where}; valid fields: {valid}"
    field, names, field_loc = _field_at(model, loc)
    path = ".".join(p for p in (prefix, *names) if p)
    if field is None:
        return f"{path or 'the config'}: {first['msg']}"
    if first["type"] == "missing":
        return f"{path} is missing; valid choices: {valid_text(field)}"
    return f"{path}={_value_at(data, field_loc)!r} is invalid; valid choices: {valid_text(field)}"


def check_group(model: type[Group], data: dict, prefix: str) -> Group:
    """data validated against model, or a ValueError of one line naming the field (prefix.name), value and range."""
    if not isinstance(data, dict):
        raise ValueError(f"{prefix}={data!r} is invalid; valid choices: a mapping")
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ValueError(error_line(err, model, prefix, data)) from None


def plain(cfg) -> dict:
    """A DictConfig as plain values, interpolations resolved; a dict as it is."""
    if isinstance(cfg, dict):
        return cfg
    from omegaconf import OmegaConf
    return OmegaConf.to_container(cfg, resolve=True)


def typed(model: type[Group], cfg, prefix: str):
    """A group as its schema's typed object (what the code reads: cfg.epochs is an int): a DictConfig or dict is
    validated, one of model's instances is returned as it is."""
    if isinstance(cfg, model):
        return cfg
    return check_group(model, plain(cfg), prefix)


def _task_schema(data, prefix: str) -> type[Group]:
    name = data.get("name") if isinstance(data, dict) else None
    if name not in TASKS:
        raise ValueError(f"{prefix}.name={name!r} is not a task; valid choices: {list(TASK_NAMES)}")
    return TASKS[name]


def task_config(cfg, prefix: str = "task") -> Group:
    """The task group typed by the schema its name picks (SyntheticTask, GlueTask, E2ETask)."""
    if isinstance(cfg, tuple(TASKS.values())):
        return cfg
    data = plain(cfg)
    return check_group(_task_schema(data, prefix), data, prefix)


def method_names(name, prefix: str = "method") -> list[str]:
    """The methods `name` applies: one known method, or two different ones joined by + (a composition)."""
    names = name.split("+") if isinstance(name, str) else [name]
    if any(n not in METHODS for n in names) or len(set(names)) < len(names):
        raise ValueError(f"{prefix}.name={name!r} is not a method; valid choices: {sorted(METHODS)}, or two different "
                         f"ones joined by + (a composition, e.g. lora+prefix_embed)")
    return names


def _method(data: dict, prefix: str) -> tuple[Group, list[Group]]:
    """The method group typed (its method's schema, or ComposedMethod for A+B) and the methods it applies, typed."""
    name = data.get("name") if isinstance(data, dict) else None
    names = method_names(name, prefix)
    if len(names) == 1:
        group = check_group(METHODS[name], data, prefix)
        return group, [group]
    absent = [n for n in names if not isinstance(data.get(n), dict)]
    if absent:
        raise ValueError(f"{prefix}.name={name!r} composes {names}, but {prefix}.{absent[0]} (that method's config) "
                         f"is absent; conf/method/lora+prefix_embed.yaml shows the layout")
    parts = [check_group(METHODS[n], data[n], f"{prefix}.{n}") for n in names]
    for n, part in zip(names, parts):
        if part.name != n:
            raise ValueError(f"{prefix}.{n}.name={part.name!r} is not {n!r}: the part config must be that method's")
    return check_group(ComposedMethod, {k: v for k, v in data.items() if k not in names}, prefix), parts


def check_method(cfg, prefix: str = "method") -> list[Group]:
    """The methods a method config applies, typed: itself, or for a composition (A+B) method.A and method.B."""
    return _method(plain(cfg), prefix)[1]


def method_config(cfg, prefix: str = "method") -> Group:
    """The method group itself, typed: its method's schema, or ComposedMethod for a composition (its parts checked)."""
    if isinstance(cfg, (*METHODS.values(), ComposedMethod)):
        return cfg
    return _method(plain(cfg), prefix)[0]


def check(data: dict) -> dict[str, Any]:
    """The whole resolved config checked against the schema; returns its typed groups: top, model, train, logger,
    task, method (the group) and parts (the methods it applies: itself, or a composition's two)."""
    top = check_group(TopLevel, data, "")
    task = _task_schema(top.task, "task")
    logger_name = top.logger.get("name")
    if logger_name not in LOGGERS:
        raise ValueError(f"logger.name={logger_name!r} is not a logger; valid choices: {list(LOGGERS)}")
    typed = {"top": top, "model": check_group(ModelConfig, top.model, "model"),
             "train": check_group(TrainConfig, top.train, "train"),
             "logger": check_group(LOGGERS[logger_name], top.logger, "logger"),
             "task": check_group(task, top.task, "task")}
    typed["method"], typed["parts"] = _method(top.method, "method")
    return typed


# --- the README's configuration table ---

def _default_text(field) -> str:
    from pydantic_core import PydanticUndefined
    if field.default is PydanticUndefined and field.default_factory is None:
        return "(per file)"
    value = field.default_factory() if field.default_factory is not None else field.default
    if isinstance(value, BaseModel):
        return "(below)"
    if value is None or isinstance(value, bool):
        return f"`{'null' if value is None else str(value).lower()}`"
    return f"`{value!r}`" if isinstance(value, str) else f"`{value}`"


def markdown_table() -> str:
    """The README's configuration table: every knob with its type, default, valid values and source."""
    lines = ["| knob | type | default | valid | what it is (paper section / reference script) |",
             "|---|---|---|---|---|"]

    def rows(model: type[BaseModel], prefix: str, group: str) -> None:
        for name, field in model.model_fields.items():
            inherited = model is not MethodCommon and issubclass(model, MethodCommon) and name in MethodCommon.model_fields
            if name in SUBGROUPS.get(model, set()) or inherited:  # method (any) lists the shared keys once
                continue
            path = ".".join(p for p in (prefix, name) if p)
            annotation, _ = _strip_optional(field.annotation)
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                rows(annotation, path, group)
                continue
            cells = [f"`{path}`" + (f" {group}" if group else ""), type_text(field), _default_text(field),
                     valid_text(field), field.description]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
    for prefix, choice, model in GROUPS:
        rows(model, prefix, f"({choice})" if choice else "")
    return "\n".join(lines) + "\n"


README_BEGIN, README_END = "<!-- schema table: begin (python -m lora_repro.schema) -->", "<!-- schema table: end -->"


def readme_table(readme: str) -> str:
    """The text between the README's markers (what markdown_table() must equal)."""
    start = readme.index(README_BEGIN) + len(README_BEGIN) + 1
    return readme[start:readme.index(README_END)]


if __name__ == "__main__":
    print(markdown_table(), end="")
