"""The one typed run config: every knob's type, default, range and paper source. Entry points build it once
(from_hydra) from Hydra's composed config; conf/*.yaml hold only the values that differ from these defaults."""
from __future__ import annotations

import sys
import typing
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import (BaseModel, ConfigDict, Discriminator, Field, Strict, Tag, ValidationError, create_model,
                      field_validator, model_serializer, model_validator)

from lora_repro import distributed, targets
from lora_repro.errors import ConfigError
from lora_repro.lora import INITS, check_rank
from lora_repro.methods.prefix import check_lengths
from lora_repro.methods.top_k import check_k

GLUE_SUBSETS = ("cola", "sst2", "mrpc", "qqp", "stsb", "mnli", "qnli", "rte")  # tasks/glue.py SUBSETS agrees
E2E_SPLITS = ("train", "dev", "test")
ACTIVATIONS = ("relu", "silu", "swish", "gelu", "gelu_new", "tanh", "sigmoid", "mish", "leaky_relu", "linear")  # ACT2FN
SEED_MAX = 2**32 - 1  # numpy's np.random.seed takes 0 .. 2**32 - 1
Text = Annotated[str, Strict(False)]  # a name or path: experiment=2024 is the string '2024'
Seed = Annotated[int, Field(ge=0, le=SEED_MAX)]
Device = Annotated[str, Field(pattern=r"^(auto|cpu|mps|cuda(:\d+)?)$", description="auto = cuda if available")]


class Group(BaseModel):
    """A config group: strict types (a YAML int is no bool), and no key the model does not name."""
    model_config = ConfigDict(extra="forbid", strict=True, coerce_numbers_to_str=True)


class ModelConfig(Group):
    name: Text = Field(description="hub id, or the tiny model's name (conf/model/; paper Tables 2, 3)")
    path: Optional[Text] = Field(None, description="a local Hugging Face folder to load instead of the hub id")
    gguf_file: Optional[Text] = Field(
        None, description="a GGUF file to load weights, config and tokenizer from, dequantized to float (needs the "
                          "gguf package): a name in model.path or an absolute path; with model.path null, a file of "
                          "the hub repo model.name")
    config: Optional[dict[str, Any]] = Field(
        None, description="a transformers config to build a random-init model from (tiny-bert, tiny-gpt2)")
    config_overrides: dict[str, Any] = Field(
        {}, description="fields set on the model config at load (E2E dropout 0, DeBERTa cls_dropout)")
    init_seed: Seed = Field(0, description="seed of a tiny model's random W0, the same for every run seed")


class TrainConfig(Group):

    epochs: int = Field(3, ge=1, description="passes over the training set (Table 9, Table 11)")
    batch_size: int = Field(16, ge=1, description="examples per micro-batch per device (Table 9: per GPU)")
    grad_accum: int = Field(1, ge=1, description="micro-batches per optimizer step when global_batch_size is null")
    global_batch_size: Optional[int] = Field(
        None, ge=1, description="examples per optimizer step over all devices (Table 9 batch x 8 GPUs); sets "
                                "grad_accum = global / (batch_size x world)")
    eval_batch_size: int = Field(64, ge=1, description="examples (E2E: MRs) per evaluation batch")
    lr: float = Field(5e-4, gt=0, description="AdamW peak learning rate (Table 9, Table 11)")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="linear warmup fraction when warmup_steps is 0 (Table 9)")
    warmup_steps: int = Field(0, ge=0, description="linear warmup steps; 0 = use warmup_ratio (Table 11: 500)")
    weight_decay: float = Field(0.1, ge=0, description="AdamW weight decay on matrices (Table 9, Table 11)")
    max_grad_norm: float = Field(1.0, ge=0, description="gradient clipping norm; 0 = none (E2E reference --clip 0)")
    adam_eps: float = Field(1e-8, gt=0, description="AdamW epsilon (HF Trainer 1e-8; E2E reference code 1e-6)")
    precision: Literal["bf16", "fp32"] = Field("bf16", description="bf16 autocast on CUDA, or fp32 everywhere")
    log_every: int = Field(10, ge=1, description="optimizer steps between train_log.jsonl records")
    checkpoint_every: int = Field(0, ge=0, description="also checkpoint every N steps mid-epoch; 0 = epoch ends only")
    data_order_seed: Seed = Field(0, description="seed of the training data order (conf/config.yaml: the run seed)")
    eval_each_epoch: bool = Field(True, description="evaluate every epoch (GLUE best epoch, App. D) or only the last")
    patience: Optional[int] = Field(None, ge=1, description="stop when the first eval split's main metric (the carved "
                                    "rows when task.carved_validation is set) has not improved for this many "
                                    "epochs; null = all train.epochs")
    min_epochs: int = Field(0, ge=0, description="train.patience stops no run before this many epochs: a score "
                            "still at its floor (a majority-class MCC of 0) has not started to improve yet")
    snapshot_steps: list[Annotated[int, Field(ge=0)]] = Field(
        [], description="optimizer steps after which the trainable tensors are saved to snapshots/step<N>.safetensors "
                        "(0 = the init); Sec. 7.3's ΔW against training steps")

    @model_validator(mode="after")
    def _patience_needs_every_epoch(self):
        if self.patience is not None and not self.eval_each_epoch:
            raise ValueError(f"train.patience={self.patience} needs train.eval_each_epoch=true (it watches every "
                             f"epoch's score); valid choices: train.eval_each_epoch=true, or train.patience=null")
        return self


class NoLogger(Group):
    name: Literal["none"] = Field("none", description="no W&B; train_log.jsonl and metrics.json only")


class WandbLogger(Group):
    name: Literal["wandb"] = Field("wandb", description="Weights & Biases tracking")
    project: Text = Field("lora-repro", description="W&B project")
    mode: Literal["offline", "online", "disabled"] = Field("offline", description="W&B mode; offline needs no login")


class Carved(Group):
    """Rows carved out of the training split: what a learning-rate search selects on and early stopping watches."""
    carved_validation: Optional[int] = Field(None, ge=1, description="training rows carved out (seed task.data_seed) "
                                             "as the split 'carved', scored first: it picks the best epoch and "
                                             "train.patience's stop, the eval splits follow, reported at that epoch")
    carved_only: bool = Field(False, description="with carved_validation: score the carved rows alone, never the "
                              "eval splits (+experiment=lr_search)")

    @model_validator(mode="after")
    def _carved_only_needs_rows(self):
        if self.carved_only and self.carved_validation is None:
            raise ValueError("task.carved_only=true needs task.carved_validation (the rows to score); valid "
                             "choices: task.carved_validation=N, or task.carved_only=false")
        return self


class SyntheticTask(Carved):
    name: Literal["synthetic"] = Field("synthetic", description="the planted low-rank task (tasks/synthetic.py)")
    num_labels: int = Field(8, ge=1, description="teacher head outputs to match (regression, MSE)")
    problem_type: Literal["regression"] = Field("regression", description="the head's loss: MSE on teacher outputs")
    n_train: int = Field(8192, ge=1, description="training sequences")
    n_eval: int = Field(512, ge=1, description="evaluation sequences")
    seq_len: int = Field(16, ge=1, description="tokens per random sequence")
    planted_rank: int = Field(4, ge=1, description="rank k of the planted dW* (Sec. 7: a small r suffices)")
    planted_targets: list[str] = Field(["q", "v"], description="weights the planted dW* changes (paper names)")
    planted_scale: float = Field(0.5, ge=0, description="||dW*||_F / ||W0||_F per planted matrix")
    data_seed: Seed = Field(1234, description="seed of the planted dW* and the sequences")

    @field_validator("planted_targets")
    @classmethod
    def _known(cls, names):
        targets.check_targets(names)
        return names

    @model_validator(mode="after")
    def _carve_fits(self):
        if self.carved_validation is not None and self.carved_validation >= self.n_train:
            raise ValueError(f"task.carved_validation={self.carved_validation} is invalid; valid choices: fewer "
                             f"than task.n_train ({self.n_train}), or null")
        return self


class GlueTask(Carved):
    name: Literal["glue"] = Field("glue", description="GLUE (Wang et al. 2019; paper Sec. 5.2-5.3, Table 2)")
    subset: Literal[GLUE_SUBSETS] = Field(description="the GLUE task (conf/task/glue/)")
    data_dir: Optional[Text] = Field(None, description="a folder of the original GLUE TSVs; null = the hub")
    bad_rows: Literal["error", "skip"] = Field("error", description="a TSV row with the wrong field count")
    max_seq_len: int = Field(128, ge=2, description="tokens per example, [CLS] and [SEP] included (Table 9)")
    max_train_samples: Optional[int] = Field(None, ge=1, description="a fixed random subset of training rows")
    max_eval_samples: Optional[int] = Field(None, ge=1, description="a fixed random subset of eval rows")
    data_seed: Seed = Field(0, description="seed of the subsets")


class DecodeConfig(Group):
    num_beams: int = Field(10, ge=1, description="beam width (Table 11; gpt2_beam.py --beam 10)")
    length_penalty: float = Field(0.9, description="beam length penalty (Table 11: 0.9; reference README 0.8)")
    no_repeat_ngram_size: int = Field(4, ge=0, description="no n-gram of this size repeats; 0 = off (gpt2_beam.py)")
    max_new_tokens: int = Field(64, ge=1, description="tokens generated per MR (gpt2_beam.py --eval_len 64)")
    stop_strings: list[str] = Field(["\n\n"], description="text that ends a generation besides <|endoftext|>")


class E2ETask(Carved):  # carved_validation counts MRs, each carved with all its references
    name: Literal["e2e"] = Field("e2e", description="E2E NLG Challenge (paper Sec. 5.4, Table 3)")
    hub_id: Text = Field("tuetschek/e2e_nlg", description="the hub dataset read when data_dir is null")
    data_dir: Optional[Text] = Field(None, description="a folder of the challenge CSVs or the reference's .txt files")
    train_split: Literal[E2E_SPLITS] = Field("train", description="split trained on (offline: dev)")
    eval_split: Literal[E2E_SPLITS] = Field("test", description="split decoded and scored (the paper: test)")
    max_seq_len: int = Field(512, ge=2, description="tokens per prompt + completion (reference --seq_len 512)")
    max_train_samples: Optional[int] = Field(None, ge=1, description="a random subset of MR/reference pairs")
    max_eval_mrs: Optional[int] = Field(None, ge=1, description="the first N unique MRs of the eval split")
    data_seed: Seed = Field(0, description="seed of the subset")
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="label smoothing of the LM loss (Table 11)")
    decode: DecodeConfig = Field(DecodeConfig(), description="beam search (Table 11)")

    @model_validator(mode="after")
    def _decode_fits(self):
        if self.decode.max_new_tokens >= self.max_seq_len:
            raise ValueError(f"task.decode.max_new_tokens={self.decode.max_new_tokens} is invalid; valid choices: an "
                             f"integer < task.max_seq_len ({self.max_seq_len}): the prompt keeps the rest")
        return self


class MethodCommon(Group):
    init_adapter: Optional[Text] = Field(
        None, description="start from a saved adapter (run dir, .safetensors, loralib .bin; App. D.1); null = W0")
    init_keep_head: bool = Field(False, description="keep the init adapter's task head too (same shape only)")

    @property
    def size(self) -> int | None:
        """The knob that sets the method's size (one results cell per size); None for full FT and BitFit."""
        return None

    def lora_knobs(self) -> dict:
        """r, alpha and targets of a method with LoRA in it (recorded with the run); None each for the others."""
        return {"r": getattr(self, "r", None), "alpha": getattr(self, "alpha", None),
                "targets": getattr(self, "targets", None)}

    @property
    def parts(self) -> list[MethodCommon]:
        """The methods this config applies: itself, or a composition's two."""
        return [self]


class LoraMethod(MethodCommon):
    name: Literal["lora"] = Field("lora", description="LoRA, h = W0 x + (alpha / r) B A x (Sec. 4, eq. 3)")
    targets: list[str] = Field(["q", "v"], description="weights adapted: q k v o mlp (Sec. 4.2, Table 5)")
    r: int = Field(8, ge=1, description="rank of B A (Sec. 4.1, Table 6); at most the layer width")
    alpha: float = Field(8, gt=0, description="scale alpha / r; alpha = the first r tried (Sec. 4.1)")
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA path (Table 11: 0.1)")
    init: Literal[INITS] = Field(
        "kaiming", description="A's init: loralib kaiming, the paper's gaussian (std 1/r), or DeBERTa's normal")
    init_std: float = Field(0.02, gt=0, description="std of A for init=normal (DeBERTa-v2 initializer_range)")

    @field_validator("targets")
    @classmethod
    def _known(cls, names):
        targets.check_targets(names)
        return names

    size = property(lambda self: self.r)


class FullMethod(MethodCommon):
    name: Literal["full"] = Field("full", description="full fine-tuning (FT rows of Tables 2, 3)")


class BitfitMethod(MethodCommon):
    name: Literal["bitfit"] = Field("bitfit", description="only biases train (Ben Zaken et al. 2021; Sec. 5.1)")


class TopKMethod(MethodCommon):
    name: Literal["ft_top2", "ft_topk"] = Field("ft_top2", description="only the top k blocks train (Table 3 FT^Top2)")
    k: int = Field(2, ge=1, description="blocks trained, from the top; at most the depth")
    size = property(lambda self: self.k)


class AdapterMethod(MethodCommon):
    name: Literal["adapter_h", "adapter_p", "adapter_l", "adapter_d"] = Field(
        description="adapter layers: Houlsby, Pfeiffer, Lin, AdapterDrop (Sec. 5.1)")
    sites: list[Literal["attention", "ffn", "ffn_layernorm", "block"]] = Field(
        ["attention", "ffn"], min_length=1, description="after the attention and/or FFN output dropout (Houlsby), "
        "inside the FFN's LayerNorm (Pfeiffer), on the block output (Lin); methods/adapters.py SITES")
    bottleneck: int = Field(64, ge=1, description="adapter width (Table 2, 3 sizes; Table 9 †)")
    activation: Literal[ACTIVATIONS] = Field("relu", description="nonlinearity (reference scripts: swish = silu, relu)")
    layernorm: bool = Field(False, description="the adapter's own trainable LayerNorm (Adapter^L)")
    init_std: Optional[float] = Field(None, ge=0, description="null: nn.Linear's default init, as the reference "
                                      "codes; a number: the up-projection's std, bias 0 (near identity, Houlsby)")
    drop_layers: Optional[int] = Field(0, ge=0, description="blocks from the bottom with no adapter (AdapterDrop)")
    drop_fraction: float = Field(0.0, ge=0, lt=1, description="when drop_layers is null: that fraction of the depth")
    size = property(lambda self: self.bottleneck)


class PrefixMethod(MethodCommon):
    name: Literal["prefix_embed", "prefix_layer"] = Field(description="PreEmbed / PreLayer (Sec. 5.1)")
    prefix_len: int = Field(10, ge=0, description="l_p, trainable tokens before the input (Sec. 5.1); l_p + l_i >= 1")
    infix_len: int = Field(0, ge=0, description="l_i, after the input; BERT/RoBERTa only")
    init_std: float = Field(0.02, gt=0, description="std of the random init of the vectors")
    size = property(lambda self: self.prefix_len + self.infix_len)

    @model_validator(mode="after")
    def _lengths(self):
        check_lengths(self.prefix_len, self.infix_len)
        return self


SINGLE = {"lora": LoraMethod, "full": FullMethod, "bitfit": BitfitMethod, "ft_top2": TopKMethod,
          "ft_topk": TopKMethod, **{n: AdapterMethod for n in ("adapter_h", "adapter_p", "adapter_l", "adapter_d")},
          "prefix_embed": PrefixMethod, "prefix_layer": PrefixMethod}  # methods/__init__.py METHODS agrees


class _Composed(MethodCommon):
    """Two methods on one model (Table 15: LoRA "can be combined with" prefix tuning); method.<part> each."""
    name: Text = Field(description="two different methods joined by +, e.g. lora+prefix_embed (Table 15); each "
                                  "part's config is method.<part>")
    r: Optional[int] = Field(None, ge=1, description="the LoRA part's r, recorded with the run")
    alpha: Optional[float] = Field(None, gt=0, description="the LoRA part's alpha, recorded with the run")
    targets: Optional[list[str]] = Field(None, description="the LoRA part's targets, recorded with the run")
    size = property(lambda self: self.r)

    @model_validator(mode="after")
    def _parts(self):
        names = self.name.split("+")
        if len(names) != 2 or len(set(names)) != 2 or any(n not in SINGLE for n in names):
            raise ValueError(f"method.name={self.name!r} is not a method; valid choices: {sorted(SINGLE)}, or two "
                             f"different ones joined by + (a composition, e.g. lora+prefix_embed)")
        for n in SINGLE:
            part = getattr(self, n)
            if n in names and part is None:
                raise ValueError(f"method.name={self.name!r} composes {names}, but method.{n} (that method's config) "
                                 f"is absent; conf/method/lora+prefix_embed.yaml shows the layout")
            if n not in names and part is not None:
                raise ValueError(f"method.{n} is not a part of method.name={self.name!r}; valid parts: {names}")
            if part is not None and part.name != n:
                raise ValueError(f"method.{n}.name={part.name!r} is not {n!r}: the part config must be that method's")
        return self

    @property
    def parts(self) -> list[MethodCommon]:
        return [getattr(self, n) for n in self.name.split("+")]

    @model_serializer(mode="wrap")
    def _without_absent_parts(self, handler) -> dict:
        return {k: v for k, v in handler(self).items() if k not in SINGLE or v is not None}


ComposedMethod = create_model("ComposedMethod", __base__=_Composed, __doc__=_Composed.__doc__,
                              **{n: (Optional[m], Field(None, description=f"the {n} part")) for n, m in SINGLE.items()})


def _method_tag(value) -> str:
    name = value.get("name") if isinstance(value, dict) else value.name
    return "composed" if isinstance(name, str) and "+" in name else name


UNIONS = {"task": {"synthetic": SyntheticTask, "glue": GlueTask, "e2e": E2ETask},
          "method": {**SINGLE, "composed": ComposedMethod}, "logger": {"none": NoLogger, "wandb": WandbLogger}}
MethodConfig = Annotated[Union[tuple(Annotated[m, Tag(n)] for n, m in UNIONS["method"].items())],
                         Discriminator(_method_tag)]
TaskConfig = Annotated[Union[SyntheticTask, GlueTask, E2ETask], Field(discriminator="name")]
LoggerConfig = Annotated[Union[NoLogger, WandbLogger], Field(discriminator="name")]


class RunConfig(Group):
    """One run = model x task x method x seed (python -m lora_repro.run)."""
    experiment: Text = Field("default", description="name of the group of runs (+experiment=NAME sets it)")
    seed: Seed = Field(0, description="run seed: head and method init, dropout, data order (Table 2: 5 seeds)")
    device: Device = "auto"
    resume: bool = Field(False, description="continue from the checkpoint in the run dir (hydra.run.dir=THAT_DIR)")
    dagger: bool = Field(False, description="Table 2's † setup (Houlsby et al.'s restricted setting)")
    mnli_adapter: Optional[Text] = Field(None, description="the MNLI adapter MRPC, RTE, STS-B start from (App. D.1)")
    repro_lr: Optional[dict[str, float]] = Field(None, description="per-method learning rate that train.lr reads as "
                                                 "${repro_lr.${method.name}} (repro_* experiments, lr_select's file)")
    model: ModelConfig
    task: TaskConfig
    method: MethodConfig
    train: TrainConfig = TrainConfig()
    logger: LoggerConfig = NoLogger()

    @property
    def task_name(self) -> str:
        """The task as results name it: glue/<subset>, synthetic or e2e."""
        return f"glue/{self.task.subset}" if self.task.name == "glue" else self.task.name


class MethodOnly(Group):
    """A method config alone: what a notebook, a test or a benchmark applies without a run."""
    method: MethodConfig


def method_config(data: dict) -> MethodCommon:
    """A method config from plain values, its name picking its model: method_config({"name": "lora", "r": 4})."""
    return validated(MethodOnly, {"method": data}).method


class EvaluateAdapter(Group):
    path: Text = Field(description="the adapter python -m lora_repro.evaluate scores: a run dir, our file, PEFT, loralib")
    r: Optional[int] = Field(None, ge=1, description="a loralib file's r (it stores none; the paper's RoBERTa: 8)")
    alpha: Optional[float] = Field(None, gt=0, description="a loralib file's alpha (the paper's RoBERTa: 16)")
    targets: Optional[list[str]] = Field(None, description="a loralib GPT-2 file's targets, e.g. [q, v]")


class EvaluateConfig(RunConfig):
    """python -m lora_repro.evaluate: a run's config plus the adapter to score (method/ is not used)."""
    adapter: EvaluateAdapter


class LMConfig(Group):
    name: Text = Field(description="the LM's name, in its output folder and records (conf/lm/)")
    vocab_size: int = Field(ge=257, description="the byte-level BPE trained on the corpus: the 256 bytes, "
                                                "<|endoftext|> and merges (when lm.tokenizer is null)")
    tokenizer: Optional[Text] = Field(None, description="a folder of GPT-2's own BPE files (tokenizer.json, or "
                                      "encoder.json + vocab.bpe; e.g. ../shared/models/gpt2-tokenizer): the paper's "
                                      "50,257-token vocabulary instead of one trained on the corpus")
    n_positions: int = Field(ge=2, description="GPT-2 positions, the tokenizer's model_max_length too")
    n_embd: int = Field(ge=1, description="width; a multiple of n_head")
    n_layer: int = Field(ge=1, description="transformer blocks")
    n_head: int = Field(ge=1, description="attention heads")
    block: int = Field(ge=2, description="tokens per packed training sequence (GPT-2's packing); at most n_positions")
    epochs: int = Field(ge=1, description="passes over the corpus (train.epochs reads it)")
    batch_size: int = Field(ge=1, description="blocks per step (train.batch_size reads it)")
    lr: float = Field(gt=0, description="AdamW peak learning rate (train.lr reads it)")

    @model_validator(mode="after")
    def _shape(self):
        if self.n_embd % self.n_head:
            raise ValueError(f"lm.n_head={self.n_head} is invalid; valid choices: a divisor of lm.n_embd ({self.n_embd})")
        if self.block > self.n_positions:
            raise ValueError(f"lm.block={self.block} is invalid; valid choices: an integer in [2, {self.n_positions}] "
                             f"(lm.n_positions)")
        return self


class CorpusSource(Group):
    path: Text = Field(description="a text file, or a CSV/TSV read one column of; relative to where you run")
    column: Optional[Text] = Field(None, description="the CSV/TSV column to read; null = a text file, a line a line")
    heldout: bool = Field(False, description="hold out its last heldout_fraction of lines for perplexity")


class PretrainConfig(Group):
    """python -m lora_repro.pretrain: a small GPT-2-shaped LM pretrained offline (the E2E base model)."""
    out_dir: Text = Field(description="where the model and tokenizer are saved (model.path=THAT_DIR uses them)")
    seed: Seed = Field(0, description="seed of the LM's init and the data order")
    device: Device = "auto"
    heldout_fraction: float = Field(0.1, gt=0, lt=1, description="the last fraction of each heldout source, held out")
    resume: bool = Field(False, description="continue from the checkpoint in out_dir/checkpoint (written every epoch "
                         "and train.checkpoint_every steps); a changed field that changes the LM refuses")
    corpus: list[CorpusSource] = Field(min_length=1, description="the text files the tokenizer and LM train on")
    train: TrainConfig = TrainConfig()
    lm: LMConfig


# --- from Hydra's config, once ---

def _inner(annotation):
    """The model inside Optional[...] / list[...] / Annotated[...], if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return next((m for m in map(_inner, typing.get_args(annotation)) if m is not None), None)


def _walk(root: type[BaseModel], loc: tuple) -> tuple[type[BaseModel] | None, list[str]]:
    """The model a pydantic error location ends in, and the location's names (the union tags pydantic adds dropped)."""
    model, names, loc = root, [], list(loc)
    while loc:
        part = loc.pop(0)
        names.append(str(part))
        if isinstance(part, int) or model is None:  # an item of a list of mappings keeps the item's model
            continue
        field = model.model_fields.get(part)
        if field is not None and part in UNIONS and model in ROOTS.values():
            model = UNIONS[part].get(loc.pop(0)) if loc else None
        else:
            model = _inner(field.annotation) if field is not None else None
    return model, names


def error_line(err: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """The first error of a validation as one line: the field's path, its value, and pydantic's words for what is
    valid (a misspelt key: the valid keys)."""
    first = err.errors(include_url=False)[0]
    model, names = _walk(root, first["loc"])
    names = [prefix, *names] if prefix else names
    path, kind, value = ".".join(names), first["type"], first.get("input")
    if kind == "value_error":  # our rules: a sentence naming its fields
        return first["msg"].removeprefix("Value error, ")
    if kind == "extra_forbidden":
        parent = ".".join(names[:-1]) or "the config"
        valid = sorted(_walk(root, first["loc"][:-1])[0].model_fields)
        return f"{path}={value!r} is not a field of {parent}; valid fields: {valid}"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        tags = sorted(set(UNIONS[path]) - {"composed"})
        name = value.get("name") if isinstance(value, dict) else None
        return f"{path}.name={name!r} is not a {path}; valid choices: {tags}" + (
            ", or two different ones joined by + (a composition, e.g. lora+prefix_embed)" if path == "method" else "")
    if kind == "missing":
        return f"{path} is missing"
    return f"{path}={value!r} is invalid: {first['msg']}"


def refuse_unknown_keys(overrides: list[str], root: type[Group]) -> None:
    """A command-line key no config model has (method.rr=3) is one line naming it and the valid fields, before Hydra
    composes (Hydra's own words for it are a 'Could not override' paragraph and exit 1). Group choices (method=lora),
    hydra.* and +/~ overrides are left to Hydra and to the validation after it."""
    for override in overrides:
        key, sep, _ = override.partition("=")
        if not sep or "." not in key or key.startswith(("+", "~", "-", "hydra.")):
            continue
        names, models = key.split("."), [root]
        for i, name in enumerate(names):
            fields = {f: field for m in models for f, field in m.model_fields.items()}
            if name not in fields:
                parent = ".".join(names[:i]) or "the config"
                raise ConfigError(f"{key} is not a field of {parent}; valid fields: {sorted(fields)}")
            if i == 0 and name in UNIONS:  # task, method, logger: a field of any of its kinds
                models = list(UNIONS[name].values())
                continue
            inner = _inner(fields[name].annotation)
            if inner is None:  # a value, or an open mapping (model.config.*): nothing more to check
                break
            models = [inner]


def resolved(cfg) -> dict:
    """A DictConfig as plain values, interpolations resolved; a dangling one is a ConfigError naming it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ConfigError(f"{err.full_key or 'the config'}: {str(err).splitlines()[0]}") from None


def validated(model: type[Group], data: dict, prefix: str = ""):
    """data as `model` (a group at `prefix`, e.g. "method"), or a ConfigError of one line naming the first wrong
    field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(error_line(err, model, prefix)) from None


def from_hydra(cfg, model: type[Group] = RunConfig):
    """Hydra's composed config as the typed config, validated once: types, ranges, cross-field rules, then the files
    and model shapes it names (check). Nothing is loaded or written."""
    typed = validated(model, resolved(cfg))
    if isinstance(typed, RunConfig):
        check(typed)
    return typed


def check(run: RunConfig) -> None:
    """The rules that need files or the environment: folders that exist and hold what they should, the global
    batch over this many processes, r and k within the backbone's shape (from model.path or model.config)."""
    from lora_repro.models import check_model_dir, local_config
    task, method = run.task, run.method
    try:
        if task.name in ("glue", "e2e") and task.data_dir:
            from importlib import import_module
            import_module(f"lora_repro.tasks.{task.name}").check_data_dir(task)
        if isinstance(run, EvaluateConfig) and not Path(run.adapter.path).exists():
            raise ConfigError(f"adapter.path={run.adapter.path!r} does not exist; valid choices: a run directory, an "
                              f"adapter.safetensors file, a PEFT folder, a loralib .bin/.pt file")
        if method.init_adapter and not Path(method.init_adapter).exists():
            raise ConfigError(f"method.init_adapter={method.init_adapter!r} does not exist; valid choices: a run "
                              f"directory, an adapter.safetensors file, a loralib .bin, or null (start from W0)")
        if run.model.path:
            check_model_dir(run.model.path, run.model.gguf_file)
        distributed.grad_accum(run.train, distributed.world_size())
        lora_parts = [p for p in method.parts if p.name == "lora"]
        config = local_config(run.model) if lora_parts or task.name == "synthetic" else None  # no hub fetch here
        if config is None:
            return
        if getattr(config, "model_type", None) not in targets.ARCHITECTURES:
            raise ConfigError(f"model.config.model_type={config.model_type!r} has no known LoRA targets; valid "
                              f"choices: {sorted(targets.ARCHITECTURES)}")
        for part in lora_parts:
            check_rank(part.r, config.hidden_size)  # apply_lora checks each layer again, exactly
        for part in method.parts:
            if part.name in ("ft_top2", "ft_topk"):
                check_k(part.k, config.num_hidden_layers)
    except ConfigError:
        raise
    except ValueError as err:  # the core's own checks of these values (check_rank, grad_accum, ...): one line
        raise ConfigError(str(err)) from None


ROOTS = {m.__name__: m for m in (RunConfig, EvaluateConfig, PretrainConfig, MethodOnly)}


# --- the defaults Hydra composes onto: generated from the models, never written in conf/ ---

def defaults_of(model: type[BaseModel]) -> dict:
    """Every field of `model` that has a default, as plain values (a required field is left to the YAML)."""
    out = {}
    for name, field in model.model_fields.items():
        if field.is_required() or name in SINGLE:  # a composition's parts come from their own files
            continue
        value = field.get_default(call_default_factory=True)
        out[name] = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    return out


def register() -> None:
    """Hydra's ConfigStore gets _defaults/<group>/<choice> nodes that conf/ files extend (their defaults lists), so a
    knob a file does not set still exists to override (model.init_seed=1), holding the model's default."""
    from hydra.core.config_store import ConfigStore
    store = ConfigStore.instance()
    run = {k: v for k, v in defaults_of(RunConfig).items() if k not in UNIONS}
    store.store(group="_defaults", name="run", node={**run, "model": defaults_of(ModelConfig)})
    store.store(group="_defaults", name="evaluate", node={"adapter": defaults_of(EvaluateAdapter)})
    store.store(group="_defaults", name="pretrain", node={**defaults_of(PretrainConfig), "lm": defaults_of(LMConfig)})
    for group, members in UNIONS.items():
        for choice, member in members.items():
            node = defaults_of(member)
            if choice != "composed":
                node["name"] = choice
            store.store(group=f"_defaults/{group}", name=choice, node=node)


def compose(*overrides: str, config_name: str = "config", model: type[Group] = RunConfig):
    """The typed config Hydra composes from lora_repro/conf with these overrides (a notebook's or a test's run)."""
    from hydra import compose as hydra_compose, initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    if GlobalHydra.instance().is_initialized():  # inside a Hydra app or a test's initialize(): reuse its search path
        return from_hydra(hydra_compose(config_name, overrides=list(overrides)), model)
    with initialize_config_module("lora_repro.conf", version_base="1.3"):
        return from_hydra(hydra_compose(config_name, overrides=list(overrides)), model)


register()


# --- docs/configuration.md's table, generated from the models ---

def _valid(field) -> str:
    """What a field accepts, in words: its choices, or its type and bounds (pydantic's constraints)."""
    annotation, text = field.annotation, ""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    inner = args[0] if typing.get_origin(annotation) is Union and len(args) == 1 else annotation
    if typing.get_origin(inner) is Annotated:
        inner = typing.get_args(inner)[0]
    if typing.get_origin(inner) is Literal:
        text = str(list(typing.get_args(inner)))
    elif typing.get_origin(inner) is list:
        item = typing.get_args(inner)[0]
        item = typing.get_args(item)[0] if typing.get_origin(item) is Annotated else item
        text = f"a list of {list(typing.get_args(item))}" if typing.get_origin(item) is Literal else "a list"
    else:
        text = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(inner, "a mapping")
    bounds = [f"{op} {getattr(m, key)}" for m in field.metadata for key, op in
              (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<"), ("pattern", "matching")) if hasattr(m, key)]
    return ("null or " if type(None) in typing.get_args(annotation) else "") + " ".join([text, *bounds])


def markdown_table() -> str:
    """Every knob: its path, default, what it accepts and where it comes from (paper section / reference script)."""
    lines = ["| knob | default | valid | what it is (paper section / reference script) |", "|---|---|---|---|"]

    def rows(model, prefix: str, choice: str) -> None:
        for name, field in model.model_fields.items():
            path = f"{prefix}.{name}" if prefix else name
            sub = _inner(field.annotation)
            if name in UNIONS and model in ROOTS.values() or name in SINGLE or \
                    (model is not MethodCommon and name in MethodCommon.model_fields and choice):
                continue  # a group of its own (below), a composition's part, or a key every method has (once)
            if sub is not None and not typing.get_origin(field.annotation) is list:
                rows(sub, path, choice)
                continue
            default = "(required)" if field.is_required() else f"`{field.get_default(call_default_factory=True)!r}`"
            cells = [f"`{path}`" + (f" ({choice})" if choice else ""), default, _valid(field), field.description or ""]
            lines.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")

    rows(RunConfig, "", "")
    rows(MethodCommon, "method", "")
    for group, members in UNIONS.items():
        for model in dict.fromkeys(members.values()):  # one row set per model (ft_top2 and ft_topk share one)
            names = ", ".join(n for n, m in members.items() if m is model)
            rows(model, group, names)
    rows(EvaluateAdapter, "adapter", "evaluate")
    rows(PretrainConfig, "", "pretrain")
    rows(LMConfig, "lm", "pretrain")
    rows(CorpusSource, "corpus[]", "pretrain")
    return "\n".join(lines) + "\n"


DOCS_BEGIN, DOCS_END = "<!-- config table: begin (python -m lora_repro.config) -->", "<!-- config table: end -->"


def write_table(page: str | Path) -> None:
    """Replace the table between DOCS_BEGIN and DOCS_END in a page (docs/configuration.md) with markdown_table()."""
    text = Path(page).read_text()
    start, end = text.index(DOCS_BEGIN) + len(DOCS_BEGIN), text.index(DOCS_END)
    Path(page).write_text(text[:start] + "\n" + markdown_table() + text[end:])


if __name__ == "__main__":  # python -m lora_repro.config [--write docs/configuration.md]
    if sys.argv[1:2] == ["--write"]:
        write_table(sys.argv[2])
    else:
        print(markdown_table(), end="")
