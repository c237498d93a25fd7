"""The paper-scale plan of Tables 2 and 3: every run as Hydra overrides and a run directory, its GPU-hours from the
bench suite's throughput, a resumable launcher, and a dry run of every config on a tiny stand-in of its backbone.

    python -m lora_repro.plan              # the runs per table and backbone, and the GPU-hour estimate
    python -m lora_repro.plan --list       # one `python -m lora_repro.run ...` line per run, in launch order
    python -m lora_repro.plan --dry-run    # compose each config and train one step of it on a tiny stand-in (CPU)
    python -m lora_repro.plan --launch     # run them in order; finished runs (metrics.json) are skipped
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lora_repro import config
from lora_repro.errors import ConfigError, cli

CONF = Path(__file__).resolve().parent / "conf"
BENCH = Path(__file__).resolve().parents[1] / "results" / "bench"

# What each table runs: (table, backbone, the experiment whose sweep gives the methods and seeds, whether to keep only
# the sweep's methods that conf/paper/<backbone>/ has files for). Table 2's rows differ per backbone, and its
# conf/paper folders hold them: RoBERTa-base FT, BitFit, Adpt^D 0.3M / 0.9M, LoRA; RoBERTa-large the † adapters and
# LoRA† too (and FT-style rows the paper copied, set as our choice); DeBERTa XXL LoRA alone (its FT row is copied
# from He et al. 2021). Table 3's methods all run with task=e2e's Table 11 settings, paper file or not.
SCOPE = (
    (2, "roberta-base", "glue_baselines", True),
    (2, "roberta-large", "glue_baselines", True),
    (2, "deberta-v2-xxlarge", "glue_baselines", True),
    (3, "gpt2-medium", "e2e_baselines", False),
    (3, "gpt2-large", "e2e_baselines", False),
)
# Table 2's columns in the paper's order; MNLI first, since MRPC, RTE and STS-B LoRA start from its adapter (App. D.1)
TASKS = {2: ("glue/mnli", "glue/sst2", "glue/mrpc", "glue/cola", "glue/qnli", "glue/qqp", "glue/rte", "glue/stsb"),
         3: ("e2e",)}
MNLI = "glue/mnli"

# Training rows of each task: GLUE, Wang et al. (2019) Table 1, the train splits of the hub's nyu-mll/glue (the
# original TSVs in ../shared/data/glue agree); E2E, Novikova et al. (2017), trainset.csv (../shared/data/PROVENANCE.md)
TRAIN_ROWS = {"glue/mnli": 392_702, "glue/sst2": 67_349, "glue/mrpc": 3_668, "glue/cola": 8_551,
              "glue/qnli": 104_743, "glue/qqp": 363_846, "glue/rte": 2_490, "glue/stsb": 5_749, "e2e": 42_061}

# (architecture, width d, blocks L, vocabulary V) of each backbone, from its hub config.json: the architecture the
# stand-in keeps, and the shape the estimate scales throughput by. All five have an FFN of 4d.
BACKBONES = {"roberta-base": ("roberta", 768, 12, 50_265), "roberta-large": ("roberta", 1024, 24, 50_265),
             "deberta-v2-xxlarge": ("deberta-v2", 1536, 48, 128_100),
             "gpt2-medium": ("gpt2", 1024, 24, 50_257), "gpt2-large": ("gpt2", 1280, 36, 50_257)}
CAUSAL = ("gpt2",)

# The stand-ins: conf/model/tiny-gpt2.yaml's config for GPT-2, tiny-bert.yaml's for the encoders with these fields
# changed. RoBERTa counts positions from pad_token_id + 1 (the char tokenizer pads with 0); DeBERTa keeps the XXL
# checkpoint's attention: relative positions in log buckets, c2p and p2c with shared keys, the convolution layer.
STAND_IN_FIELDS = {
    "roberta": dict(model_type="roberta", pad_token_id=0, max_position_embeddings=130),
    "deberta-v2": dict(model_type="deberta-v2", pad_token_id=0, max_position_embeddings=128, type_vocab_size=0,
                       relative_attention=True, position_buckets=256, max_relative_positions=-1,
                       pos_att_type=["p2c", "c2p"], norm_rel_ebd="layer_norm", share_att_key=True,
                       position_biased_input=False, conv_kernel_size=3, conv_act="gelu", layer_norm_eps=1e-7),
    "gpt2": {},
}

# Throughput when no GPU bench file is there: the paper's one GPU measurement, Table 1 (../shared/PAPER.md Sec. 4):
# one forward pass of GPT-2 medium, batch 32 x 512 tokens, in 1449.4 ms on a Quadro RTX8000
TABLE1 = dict(model="gpt2-medium", gpu="Quadro RTX8000", batch=32, seq=512, forward_ms=1449.4)
FROZEN_VARIANT = "ours-qv-r8"  # the bench variant every method but full FT is timed as: LoRA q,v r=8, backbone frozen


@dataclass(frozen=True)
class PlannedRun:
    """One run of the plan: its cell, seed, and the MNLI run whose adapter it starts from (App. D.1), if any."""
    table: int
    model: str
    method: str
    task: str
    seed: int
    experiment: str
    mnli: str | None = None  # the key of the MNLI run of the same backbone, method and seed

    @property
    def cell(self) -> tuple[int, str, str, str]:
        return self.table, self.model, self.method, self.task

    @property
    def key(self) -> str:
        """Its run directory below the plan's root."""
        return f"table{self.table}/{self.model}/{self.method}/{self.task.replace('/', '-')}/seed{self.seed}"

    def overrides(self, root: Path | None) -> list[str]:
        """The Hydra overrides that make the run; root=None leaves out mnli_adapter (its folder is trained first)."""
        out = [f"+experiment={self.experiment}", f"model={self.model}", f"task={self.task}",
               f"method={self.method}", f"seed={self.seed}"]
        return out + ([f"mnli_adapter={root / self.mnli}"] if self.mnli and root is not None else [])

    def command(self, root: Path, launcher: str, extra: list[str]) -> list[str]:
        """`python -m lora_repro.run ...` for this run, in its own directory (one run, not the experiment's sweep)."""
        return [*shlex.split(launcher), "-m", "lora_repro.run", *self.overrides(root), *extra, "hydra.mode=RUN",
                f"hydra.run.dir={root / self.key}"]


def sweep(experiment: str) -> dict[str, list[str]]:
    """An experiment's sweep (hydra.sweeper.params of conf/experiment/NAME.yaml), each key's values as strings."""
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf
    params = OmegaConf.load(CONF / "experiment" / f"{experiment}.yaml").hydra.sweeper.params
    parser = OverridesParser.create()
    return {k: list(parser.parse_override(f"{k}={v}").sweep_string_iterator()) for k, v in params.items()}


def paper_file(model: str, method: str, task: str) -> Path:
    """The conf/paper file `paper: ${model}/${method}/${task}` selects (it may not exist: then defaults apply)."""
    return CONF / "paper" / model / method / f"{task}.yaml"


def reads_mnli(model: str, method: str, task: str) -> bool:
    """Does the paper file start this run from mnli_adapter (method.init_adapter: ${mnli_adapter})?"""
    from omegaconf import OmegaConf
    path = paper_file(model, method, task)
    if not path.is_file():
        return False
    data = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    return (data.get("method") or {}).get("init_adapter") == "${mnli_adapter}"


def plan(tables=(2, 3), models=None, seeds: int | None = None) -> list[PlannedRun]:
    """The runs of the paper's Tables 2 and 3 in launch order (per backbone, MNLI first), with each experiment's
    sweep of methods and seeds; seeds=N takes seeds 0..N-1 instead (a pilot: seeds=1)."""
    unknown = sorted(set(tables) - set(TASKS))
    if unknown:
        raise ConfigError(f"tables={unknown} is not a table of the plan; valid choices: {sorted(TASKS)}")
    known = [m for _, m, _, _ in SCOPE]
    if models is not None and set(models) - set(known):
        raise ConfigError(f"models={sorted(set(models) - set(known))} is not a backbone of the plan; valid choices: "
                          f"{known}")
    runs = []
    for table, model, experiment, paper_only in SCOPE:
        if table not in tables or models is not None and model not in models:
            continue
        grid = sweep(experiment)
        methods = [m for m in grid["method"] if not paper_only or (CONF / "paper" / model / m).is_dir()]
        chosen = [int(s) for s in grid["seed"]] if seeds is None else list(range(seeds))
        for task in TASKS[table]:
            for method in methods:
                for seed in chosen:
                    first = PlannedRun(table, model, method, MNLI, seed, experiment)
                    mnli = first.key if task != MNLI and reads_mnli(model, method, task) else None
                    runs.append(PlannedRun(table, model, method, task, seed, experiment, mnli))
    return runs


def first_seeds(runs: list[PlannedRun]) -> list[PlannedRun]:
    """One run per cell (backbone x method x task), its first seed's: the seeds of a cell differ only in `seed`."""
    seen: dict[tuple, PlannedRun] = {}
    for run in runs:
        seen.setdefault(run.cell, run)
    return list(seen.values())


@contextlib.contextmanager
def hydra_session():
    """One Hydra initialization for many config.compose calls (each reuses it)."""
    from hydra import initialize_config_module
    from hydra.core.global_hydra import GlobalHydra
    if GlobalHydra.instance().is_initialized():
        yield
        return
    with initialize_config_module("lora_repro.conf", version_base="1.3"):
        yield


def composed(runs: list[PlannedRun], extra: list[str] = ()) -> dict[tuple, config.RunConfig]:
    """Each cell's validated config as its runs compose it, without mnli_adapter (no MNLI run has trained yet)."""
    with hydra_session():
        return {run.cell: config.compose(*run.overrides(None), *extra) for run in first_seeds(runs)}


# --- the GPU-hour estimate ---

def matmul_params(arch: str, width: int, layers: int, vocab: int) -> float:
    """Weights each token is multiplied by: 12 L d^2 in the blocks (attention 4d^2, FFN 8d^2), + V d for a causal
    LM's output layer; a step's FLOPs are a multiple of it per token."""
    return 12 * layers * width ** 2 + (vocab * width if arch in CAUSAL else 0)


@dataclass(frozen=True)
class Rates:
    """Training tokens/s measured on one shape per architecture family, scaled to other backbones by matmul_params."""
    source: str
    points: dict[bool, tuple[float, float, float]]  # causal? -> (full FT tokens/s, frozen tokens/s, matmul params)

    def tokens_per_s(self, model: str, full: bool) -> float:
        arch, width, layers, vocab = BACKBONES[model]
        point = self.points.get(arch in CAUSAL) or next(iter(self.points.values()))
        full_rate, frozen_rate, params = point
        return (full_rate if full else frozen_rate) * params / matmul_params(arch, width, layers, vocab)


def read_bench(path: Path) -> dict:
    """A bench JSON's contents, or an error naming the file."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as err:
        raise ConfigError(f"--bench={str(path)!r} is not readable as a bench JSON ({type(err).__name__}); valid "
                          f"choices: a file written by python -m lora_repro.bench suite/train --out FILE") from None


def train_parts(result: dict) -> list[dict]:
    """The `train` measurements in a bench JSON: the file itself (bench train) or its train section (bench suite)."""
    parts = list(result.get("train", {}).values()) if result.get("command") == "suite" else [result]
    return [p for p in parts if p.get("command") == "train" and FROZEN_VARIANT in p.get("variants", {})]


def bench_rates(path: Path) -> Rates:
    """Rates from a bench suite/train JSON: its full FT and LoRA q,v r=8 tokens/s on each preset's shape."""
    from transformers import AutoConfig
    result = read_bench(path)
    parts = train_parts(result)
    if not parts:
        raise ConfigError(f"--bench={str(path)!r} holds no train measurement with the {FROZEN_VARIANT} variant; valid "
                          f"choices: the JSON of python -m lora_repro.bench suite (GPU) or bench train")
    points = {}
    for part in parts:
        shape = AutoConfig.for_model(part["arch"], **part["shape"])
        params = matmul_params(part["arch"], shape.hidden_size, shape.num_hidden_layers, shape.vocab_size)
        variants = part["variants"]
        points[part["arch"] in CAUSAL] = (variants["full"]["tokens_per_s"], variants[FROZEN_VARIANT]["tokens_per_s"],
                                          params)
    device = parts[0]["machine"]["device"]
    presets = ", ".join(f"{p['preset']} (batch {p['batch']} x {p['seq']})" for p in parts)
    return Rates(f"{Path(path).name}: bench train on {device}, presets {presets}", points)


def table1_rates(path: Path) -> Rates:
    """Rates with no GPU bench file: the paper's Table 1 forward tokens/s (GPT-2 medium, RTX8000) over the ratios of a
    training step to a forward pass that the bench measured on its GPT-2 shape (full FT; LoRA q,v r=8)."""
    part = train_parts(read_bench(path))[0]
    forward_ms = part["latency_s"]["base"] * 1e3  # the base model's forward on the step's own batch
    full, frozen = (part["variants"][v]["step_ms"] / forward_ms for v in ("full", FROZEN_VARIANT))
    forward = TABLE1["batch"] * TABLE1["seq"] / (TABLE1["forward_ms"] / 1e3)
    params = matmul_params(*BACKBONES[TABLE1["model"]])
    return Rates(f"the paper's Table 1 (GPT-2 medium forward, {forward:,.0f} tokens/s on a {TABLE1['gpu']}) over "
                 f"{path.name}'s step/forward time ratios ({full:.2f} full FT, {frozen:.2f} LoRA): an RTX8000; "
                 f"measure yours: python -m lora_repro.bench suite --out results/bench/GPU.json, then --bench it",
                 {True: (forward / full, forward / frozen, params)})


def default_rates() -> Rates:
    """A GPU bench file in results/bench/ if there is one, else the paper's Table 1 with the bench's CPU ratios."""
    files = sorted(BENCH.glob("*.json")) if BENCH.is_dir() else []
    gpu = [f for f in files if any(p["machine"]["device"] != "cpu" for p in train_parts(read_bench(f)))]
    if gpu:
        return bench_rates(gpu[0])
    gpt2 = [f for f in files if any(p["arch"] == "gpt2" and "latency_s" in p for p in train_parts(read_bench(f)))]
    if not gpt2:
        raise ConfigError(f"no bench JSON in {BENCH} to estimate from; valid choices: --bench FILE (python -m "
                          f"lora_repro.bench suite --out FILE on a GPU)")
    return table1_rates(gpt2[0])


def estimate(runs: list[PlannedRun], configs: dict[tuple, config.RunConfig], rates: Rates):
    """One row per run: its training tokens (rows x epochs x max_seq_len: every row padded to the cap, an upper
    bound) and GPU-hours at the rate of its backbone and method."""
    import pandas as pd
    rows = []
    for run in runs:
        cfg = configs[run.cell]
        examples = min(TRAIN_ROWS[run.task], cfg.task.max_train_samples or TRAIN_ROWS[run.task])
        tokens = examples * cfg.train.epochs * cfg.task.max_seq_len
        hours = tokens / rates.tokens_per_s(run.model, cfg.method.name == "full") / 3600
        rows.append(dict(table=run.table, model=run.model, method=run.method, task=run.task, seed=run.seed,
                         from_mnli=run.mnli is not None, paper_file=paper_file(*run.cell[1:]).is_file(),
                         epochs=cfg.train.epochs, seq=cfg.task.max_seq_len, tokens=tokens, gpu_hours=hours))
    return pd.DataFrame(rows)


def summary(frame) -> str:
    """The plan per table and backbone: runs, how many start from MNLI or have no conf/paper file, tokens, hours."""
    groups = frame.groupby(["table", "model"], sort=False)
    table = groups.agg(methods=("method", "nunique"), tasks=("task", "nunique"), seeds=("seed", "nunique"),
                       runs=("seed", "size"), from_mnli=("from_mnli", "sum"),
                       no_paper_file=("paper_file", lambda s: int((~s).sum())), tokens_B=("tokens", "sum"),
                       gpu_hours=("gpu_hours", "sum")).reset_index()
    total = {"table": "all", "model": "", "methods": "", "tasks": "", "seeds": "", "runs": int(table.runs.sum()),
             "from_mnli": int(table.from_mnli.sum()), "no_paper_file": int(table.no_paper_file.sum()),
             "tokens_B": table.tokens_B.sum(), "gpu_hours": table.gpu_hours.sum()}
    table = table.astype(object)
    table.loc[len(table)] = total
    table["tokens_B"] = [f"{t / 1e9:,.1f}" for t in table.tokens_B]
    table["gpu_hours"] = [f"{h:,.0f}" for h in table.gpu_hours]
    return table.to_string(index=False)


def assumptions(rates: Rates) -> str:
    """What the estimate assumes, in the output beside it."""
    return "\n".join([
        "GPU-hours: training only, an upper bound in tokens:",
        "- tokens per run = training rows (lora_repro.plan.TRAIN_ROWS: the GLUE and E2E train splits) x train.epochs x "
        "task.max_seq_len, every row padded to the cap; batches pad to their longest row, so real runs feed fewer",
        f"- throughput: {rates.source}",
        "- scaled to each backbone by the weights a token meets (12 L d^2, + V d for GPT-2's LM head); full FT at "
        "full FT's rate, every other method at LoRA q,v r=8's (frozen backbone)",
        "- not counted: evaluation (GLUE dev each epoch, E2E beam search on the test set), data loading, checkpoints; "
        "train.precision=fp32 runs (the RoBERTa and E2E paper files) are slower than a bf16 bench figure",
        "- train.global_batch_size fixes each step, so the hours hold for any GPU count at linear DDP scaling"])


# --- the dry run ---

def glue_rows(subset: str, n: int) -> str:
    """n rows of a GLUE task's TSV in its original layout (header, columns, label spelling), every label present."""
    from lora_repro.tasks.glue import SUBSETS
    spec = SUBSETS[subset]
    columns = spec.header or list(spec.columns)

    def value(column: str, i: int) -> str:
        if spec.columns.get(column) != "label":
            return f"the {column.lower().replace(' ', '')} of row {i}" if column in spec.columns else "x"
        if spec.labels:
            return spec.labels[i % len(spec.labels)]
        return f"{i * 1.3:.1f}" if spec.num_labels == 1 else str(i % spec.num_labels)
    lines = ([] if spec.header else ["\t".join(columns)]) + ["\t".join(value(c, i) for c in columns) for i in range(n)]
    return "\n".join(lines) + "\n"


E2E_PAIRS = [("name : The Eagle | food : French", "The Eagle serves French food ."),
             ("name : Aromi | area : riverside", "Aromi is by the river ."),
             ("name : Aromi | area : riverside", "Aromi is on the riverside ."),
             ("name : Alimentum | priceRange : cheap", "Alimentum is cheap .")]


def write_fixtures(folder: Path, tasks) -> dict[str, Path]:
    """Generated data in each task's original files (GLUE TSVs, E2E MR||reference lines), 4 rows a split."""
    from lora_repro.tasks.e2e import TXT_FILES
    from lora_repro.tasks.glue import SUBSETS
    out = {}
    for task in sorted(set(tasks)):
        path = folder / task.replace("/", "-")
        path.mkdir(parents=True, exist_ok=True)
        if task == "e2e":
            for name in TXT_FILES.values():
                (path / name).write_text("".join(f"{mr}||{ref}\n" for mr, ref in E2E_PAIRS))
        else:
            subset = task.split("/", 1)[1]
            for name in SUBSETS[subset].tsv.values():
                (path / name).write_text(glue_rows(subset, 4))
        out[task] = path
    return out


def hydra_value(value) -> str:
    """A value as Hydra's override grammar writes it."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str):
        return f"'{value}'"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(hydra_value, value)) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{hydra_value(v)}" for k, v in value.items()) + "}"
    return repr(value)


def stand_in(model: str) -> list[str]:
    """Overrides that keep `model=` (so its conf/paper file applies) and replace the weights by a tiny random-init
    config of the same architecture (model.config; model.path=null)."""
    from omegaconf import OmegaConf
    arch = BACKBONES[model][0]
    base = "tiny-gpt2" if arch in CAUSAL else "tiny-bert"
    fields = {**OmegaConf.to_container(OmegaConf.load(CONF / "model" / f"{base}.yaml").config),
              **STAND_IN_FIELDS[arch]}
    return [f"model.name=tiny-{model}", "model.path=null", f"model.config={hydra_value(fields)}"]


@dataclass
class Step:
    """What the dry run did with one planned run: its config, the steps it trained, what it loaded, or its error."""
    run: PlannedRun
    config: config.RunConfig | None
    seconds: float
    steps: int = 0
    init_adapter: dict | None = None
    error: str | None = None


def one_step(cfg: config.RunConfig) -> config.RunConfig:
    """The composed config trained for one epoch of the 4 generated rows (one optimizer step), no warmup."""
    return cfg.model_copy(update={"train": cfg.train.model_copy(
        update={"epochs": 1, "warmup_steps": 0, "warmup_ratio": 0.0})})


@contextlib.contextmanager
def tiny_compute():
    """What a dry run of tiny models needs: one CPU thread (on a shared machine two threads' OpenMP barriers make a
    tiny step 6x slower) and E2E decodes scored by BLEU alone (the official METEOR, ROUGE-L and CIDEr start Java,
    ~10 s a run, and check nothing of a config)."""
    import torch
    from lora_repro.metrics import bleu, e2e
    threads, score_run = torch.get_num_threads(), e2e.score_run
    torch.set_num_threads(1)
    e2e.score_run = lambda references, hypotheses: {"bleu": bleu.corpus_bleu(references, hypotheses, "paper")}
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        e2e.score_run = score_run


def dry_run(runs: list[PlannedRun], extra: list[str] = (), all_seeds: bool = False, folder: Path | None = None,
            report=None) -> list[Step]:
    """Compose each planned config with its backbone replaced by a tiny stand-in and its data by generated rows, and
    train one optimizer step of it, in plan order (one Hydra initialization): MRPC, RTE and STS-B LoRA start from
    the dry run's own MNLI adapter. One seed per cell unless all_seeds. report(step) is called after each."""
    from lora_repro.run import run as train_run
    picked = runs if all_seeds else first_seeds(runs)
    steps = []
    with tempfile.TemporaryDirectory(prefix="lora-plan-") as tmp, hydra_session(), tiny_compute():
        base = Path(folder or tmp)
        data, root = write_fixtures(base / "data", {r.task for r in picked}), base / "runs"
        for run in picked:
            start, step = time.perf_counter(), Step(run, None, 0.0)
            captured = io.StringIO()  # progress bars and warnings: shown only with an error
            try:
                step.config = config.compose(*run.overrides(root), *stand_in(run.model), *extra,
                                             f"task.data_dir={data[run.task]}", "device=cpu")
                (root / run.key).mkdir(parents=True, exist_ok=True)
                with contextlib.redirect_stderr(captured), contextlib.redirect_stdout(captured):
                    record = train_run(one_step(step.config), root / run.key)
                step.steps, step.init_adapter = record["steps"], record["init_adapter"]
            except Exception as err:  # noqa: BLE001 - every failure is reported with its run, the others go on
                line = (str(err).strip().splitlines() or [""])[0]
                step.error = line if isinstance(err, ConfigError) else f"{type(err).__name__}: {line}"
            step.seconds = time.perf_counter() - start
            steps.append(step)
            if report:
                report(step)
    return steps


def dry_report(steps: list[Step]) -> str:
    """Per backbone: runs composed and stepped, seconds; then every failure with its run and overrides."""
    lines, seen = [], {}
    for s in steps:
        seen.setdefault((s.run.table, s.run.model), []).append(s)
    for (table, model), group in seen.items():
        ok = [s for s in group if s.error is None]
        chained = sum(1 for s in ok if s.init_adapter)
        lines.append(f"  table {table} {model:<20} {len(ok)}/{len(group)} composed and trained one step"
                     + (f" ({chained} from the dry run's MNLI adapter)" if chained else "")
                     + f", {sum(s.seconds for s in group):.0f} s")
    for s in steps:
        if s.error:
            lines.append(f"FAILED {s.run.key}: {s.error}\n  overrides: {' '.join(s.run.overrides(Path('ROOT')))}")
    return "\n".join(lines)


# --- the launcher ---

def launch(runs: list[PlannedRun], root: Path, extra: list[str], launcher: str) -> int:
    """Run the plan in order, one subprocess per run; a finished run (metrics.json) is skipped, one with a
    checkpoint resumes (resume=true). Stops at the first failure: rerunning the command goes on from there."""
    for i, run in enumerate(runs, 1):
        folder = root / run.key
        if (folder / "metrics.json").is_file():
            print(f"[{i}/{len(runs)}] done, skipped: {run.key}", flush=True)
            continue
        resume = (folder / "trainer_state.json").is_file()
        cmd = run.command(root, launcher, extra) + (["resume=true"] if resume else [])
        print(f"[{i}/{len(runs)}] {'resuming' if resume else 'starting'}: {shlex.join(cmd)}", flush=True)
        code = subprocess.run(cmd).returncode
        if code:
            print(f"error: run {run.key} failed (exit {code}); fix it and run the same command again: finished runs "
                  f"are skipped, checkpointed ones resume", file=sys.stderr)
            return code
    return 0


def positive(text: str) -> int:
    """argparse's type for --seeds: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is invalid; valid choices: an integer >= 1")
    return int(text)


@cli
def main(argv: list[str] | None = None) -> int:
    """The command line: print the plan and its estimate, --list, --dry-run or --launch it."""
    parser = argparse.ArgumentParser(prog="python -m lora_repro.plan", description=__doc__.split("\n")[0])
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print each run's command, in launch order")
    mode.add_argument("--dry-run", action="store_true", help="compose every config and train one step of each on a "
                      "tiny random-init stand-in of its backbone, on generated data (CPU, offline)")
    mode.add_argument("--launch", action="store_true", help="run the plan in order (resumable)")
    parser.add_argument("--tables", type=int, nargs="+", choices=sorted(TASKS), default=sorted(TASKS))
    parser.add_argument("--models", nargs="+", choices=[m for _, m, _, _ in SCOPE], help="default: all")
    parser.add_argument("--seeds", type=positive, help="seeds 0..N-1 per cell instead of the experiments' sweeps "
                        "(Table 2: 5, Table 3: 3)")
    parser.add_argument("--all-seeds", action="store_true", help="--dry-run: every seed, not one per cell")
    parser.add_argument("--root", type=Path, default=Path("outputs/paper"), help="where the run directories go")
    parser.add_argument("--bench", type=Path, help="a bench suite/train JSON to estimate from (default: a GPU one "
                        "in results/bench/, else the paper's Table 1 GPU figure)")
    parser.add_argument("--launcher", default=shlex.quote(sys.executable),
                        help="what runs `-m lora_repro.run` (e.g. 'torchrun --nproc_per_node 8')")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides added to every run, before the options or "
                        "after -- (e.g. logger=wandb)")
    args = parser.parse_args(argv)
    runs = plan(args.tables, args.models, args.seeds)
    config.refuse_unknown_keys(args.overrides, config.RunConfig)
    if args.list:
        print("\n".join(shlex.join(r.command(args.root, args.launcher, args.overrides)) for r in runs))
        return 0
    if args.launch:
        return launch(runs, args.root, args.overrides, args.launcher)
    rates = bench_rates(args.bench) if args.bench else default_rates()
    failed = False
    if args.dry_run:
        steps = dry_run(runs, args.overrides, args.all_seeds,
                        report=lambda s: s.error and print(f"FAILED {s.run.key}: {s.error}", flush=True))
        failed = any(s.error for s in steps)
        print(f"dry run: {len(steps)} configs ({'every seed' if args.all_seeds else 'one seed per cell'}) on tiny "
              f"stand-ins, generated data, one optimizer step each\n{dry_report(steps)}\n")
        if failed:
            print(f"error: {sum(1 for s in steps if s.error)} planned config(s) failed the dry run (above)",
                  file=sys.stderr)
            return 1
        configs = {s.run.cell: s.config for s in steps}
    else:
        configs = composed(runs, args.overrides)
    seeds = ", ".join(f"Table {t}: {len({r.seed for r in runs if r.table == t})} seeds" for t in args.tables)
    print(f"The paper-scale plan: {len(runs)} runs ({seeds}), run directories under {args.root}/\n")
    print(summary(estimate(runs, configs, rates)) + "\n")
    print(assumptions(rates))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
