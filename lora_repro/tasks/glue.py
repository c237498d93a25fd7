"""GLUE (8 tasks): from the hub through `datasets`, or from a folder of the original GLUE TSV files."""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import pandas as pd
import torch
from transformers import DataCollatorWithPadding

from lora_repro.metrics.glue import Glue
from lora_repro.errors import ConfigError
from lora_repro.tasks import TaskData

HUB_ID = "nyu-mll/glue"
log = logging.getLogger("lora_repro")


@dataclass(frozen=True)
class Subset:
    """One GLUE task: hub text columns, head size (1 = regression), metrics (first = the paper's), TSV layout."""
    text: tuple[str, str | None]
    num_labels: int
    metrics: tuple[str, ...]
    tsv: dict[str, str]  # split -> file name in the GLUE folder
    columns: dict[str, str]  # TSV column -> hub column
    labels: tuple[str, ...] | None = None  # TSV label strings in the hub's label order
    header: list[str] | None = field(default=None)  # column names for a TSV without a header row (CoLA)


_DEV = {"train": "train.tsv", "validation": "dev.tsv"}
SUBSETS = {
    "cola": Subset(("sentence", None), 2, ("matthews_correlation",), _DEV, {"sentence": "sentence", "label": "label"},
                   header=["source", "label", "notes", "sentence"]),
    "sst2": Subset(("sentence", None), 2, ("accuracy",), _DEV, {"sentence": "sentence", "label": "label"}),
    "mrpc": Subset(("sentence1", "sentence2"), 2, ("accuracy", "f1"), _DEV,
                   {"#1 String": "sentence1", "#2 String": "sentence2", "Quality": "label"}),
    "qqp": Subset(("question1", "question2"), 2, ("accuracy", "f1"), _DEV,
                  {"question1": "question1", "question2": "question2", "is_duplicate": "label"}),
    "stsb": Subset(("sentence1", "sentence2"), 1, ("pearson", "spearmanr"), _DEV,
                   {"sentence1": "sentence1", "sentence2": "sentence2", "score": "label"}),
    "mnli": Subset(("premise", "hypothesis"), 3, ("accuracy",),
                   {"train": "train.tsv", "validation_matched": "dev_matched.tsv",
                    "validation_mismatched": "dev_mismatched.tsv"},
                   {"sentence1": "premise", "sentence2": "hypothesis", "gold_label": "label"},
                   labels=("entailment", "neutral", "contradiction")),
    "qnli": Subset(("question", "sentence"), 2, ("accuracy",), _DEV,
                   {"question": "question", "sentence": "sentence", "label": "label"},
                   labels=("entailment", "not_entailment")),
    "rte": Subset(("sentence1", "sentence2"), 2, ("accuracy",), _DEV,
                  {"sentence1": "sentence1", "sentence2": "sentence2", "label": "label"},
                  labels=("entailment", "not_entailment")),
}


def subset(cfg) -> Subset:
    """The GLUE task's files, columns and labels (task.subset; lora_repro.config.GlueTask checks the name)."""
    return SUBSETS[cfg.subset]


def check_data_dir(cfg, spec: Subset | None = None) -> Path:
    """task.data_dir as a folder holding every TSV file of the subset, or an error saying what it lacks."""
    folder, spec = Path(cfg.data_dir), spec or subset(cfg)
    if not folder.is_dir():
        raise ConfigError(f"task.data_dir={str(folder)!r} is not a folder; a GLUE {cfg.subset} folder holds "
                                f"{list(spec.tsv.values())} (the original GLUE TSV files)")
    absent = [name for name in spec.tsv.values() if not (folder / name).is_file()]
    if absent:
        raise ConfigError(f"task.data_dir={str(folder)!r} lacks {absent}; a GLUE {cfg.subset} folder holds "
                         f"{list(spec.tsv.values())} (the original GLUE TSV files)")
    return folder


BAD_ROWS = ("error", "skip")


def read_rows(path: Path, spec: Subset, bad_rows: str = "error") -> pd.DataFrame:
    """The rows of a GLUE TSV file as strings; a row whose field count differs from the header's is an error naming
    the file and line (bad_rows="error"), or is skipped and reported with its line numbers (bad_rows="skip")."""
    if bad_rows not in BAD_ROWS:
        raise ConfigError(f"task.bad_rows={bad_rows!r} is not a choice; valid choices: {list(BAD_ROWS)}")
    # utf-8-sig: the official MRPC files open with a byte-order mark, which would hide the first column's name
    with open(path, newline="", encoding="utf-8-sig") as f:  # QUOTE_NONE: one row is one line of the file
        lines = [(n, row) for n, row in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), 1) if row]
    if spec.header:
        header, rows = spec.header, lines
    elif lines:
        header, rows = lines[0][1], lines[1:]
    else:
        header, rows = [], []
    bad = [(n, len(row)) for n, row in rows if len(row) != len(header)]
    if bad and bad_rows == "error":
        n, fields = bad[0]
        raise ConfigError(f"task.data_dir: {path} line {n} has {fields} tab-separated fields, the header has "
                         f"{len(header)} ({len(bad)} such row(s) in the file); fix the file, or set "
                         f"task.bad_rows=skip to leave them out")
    if bad:
        log.warning("%s: skipped %d malformed row(s) (field count is not %d), at line(s) %s", path, len(bad),
                    len(header), ", ".join(str(n) for n, _ in bad[:20]) + (" ..." if len(bad) > 20 else ""))
    good = [row for n, row in rows if len(row) == len(header)]
    if not good:  # an empty split would fail later as "num_samples should be a positive integer value"
        what = (f"no usable rows: all {len(rows)} have the wrong field count (skipped by task.bad_rows=skip)" if rows
                else "no rows" + (" below its header" if lines else ""))
        raise ConfigError(f"task.data_dir: {path} has {what}; a GLUE split needs at least one row")
    return pd.DataFrame(good, columns=header, dtype=str)


def read_tsv(path: Path, spec: Subset, bad_rows: str = "error") -> pd.DataFrame:
    """One original GLUE TSV file -> a frame with the hub's column names and integer (float for STS-B) labels."""
    frame = read_rows(path, spec, bad_rows)
    missing = [c for c in spec.columns if c not in frame.columns]
    if missing:
        raise ConfigError(f"task.data_dir: {path} lacks column(s) {missing}; expected {list(spec.columns)}")
    frame = frame[list(spec.columns)].rename(columns=spec.columns)
    if spec.labels:
        bad = sorted(set(frame.label) - set(spec.labels))
        if bad:
            raise ConfigError(f"task.data_dir: {path} has label(s) {bad[:5]}; valid labels are {list(spec.labels)}")
        frame["label"] = frame.label.map(spec.labels.index)
    elif spec.num_labels == 1:
        frame["label"] = frame.label.astype(float)
    else:
        numeric = pd.to_numeric(frame.label, errors="coerce")
        bad = frame.label[~numeric.isin(range(spec.num_labels))]
        if len(bad):
            raise ConfigError(f"task.data_dir: {path} has label {bad.iloc[0]!r} outside 0..{spec.num_labels - 1}")
        frame["label"] = numeric.astype(int)
    return frame


def read_splits(cfg, spec: Subset) -> dict[str, datasets.Dataset]:
    """Every split of the task, from task.data_dir if it is set, else from the hub."""
    if cfg.data_dir:
        folder = check_data_dir(cfg, spec)
        return {split: datasets.Dataset.from_pandas(read_tsv(folder / name, spec, cfg.bad_rows),
                                                    preserve_index=False)
                for split, name in spec.tsv.items()}
    hub = datasets.load_dataset(HUB_ID, cfg.subset)
    return {split: hub[split] for split in spec.tsv}


def carve(train: datasets.Dataset, n: int, seed: int) -> dict[str, datasets.Dataset]:
    """n training rows, drawn with `seed`, as the split 'carved'; the rest stay the training split."""
    if n >= len(train):
        raise ConfigError(f"task.carved_validation={n} is invalid; valid choices: fewer than the {len(train)} "
                          f"training rows (null: score the dev set)")
    order = train.shuffle(seed=seed)
    return {"train": order.select(range(n, len(order))), "carved": order.select(range(n))}


def load(cfg, tokenizer) -> TaskData:
    """GLUE task task.subset: tokenized splits (dev sets for evaluation, as the paper reports) and its metric."""
    spec = subset(cfg)
    splits = read_splits(cfg, spec)
    a, b = spec.text

    def tokenize(batch):
        out = tokenizer(batch[a], batch[b] if b else None, truncation=True, max_length=cfg.max_seq_len)
        out["labels"] = batch["label"]
        return out

    if cfg.carved_validation:  # held out of train before any subset; first, so it picks the epoch
        dev = {} if cfg.carved_only else {s: d for s, d in splits.items() if s != "train"}
        splits = {**carve(splits["train"], cfg.carved_validation, cfg.data_seed), **dev}
    limits = {s: cfg.max_train_samples if s == "train" else cfg.max_eval_samples for s in splits}
    for split, n in limits.items():
        if n and len(splits[split]) > n:
            splits[split] = splits[split].shuffle(seed=cfg.data_seed).select(range(n))
    splits = {s: d.map(tokenize, batched=True, remove_columns=d.column_names) for s, d in splits.items()}
    for d in splits.values():
        d.set_format("torch")
    metric = Glue(config_name=cfg.subset)
    evals = [s for s in splits if s != "train"]

    def score(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        preds = logits.squeeze(-1) if spec.num_labels == 1 else logits.argmax(-1)
        return metric.compute(predictions=preds.tolist(), references=labels.tolist())

    return TaskData(train=splits["train"], evals={s: splits[s] for s in evals},
                    collate=DataCollatorWithPadding(tokenizer), score=score, main_metric=spec.metrics[0])
