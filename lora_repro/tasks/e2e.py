"""E2E NLG Challenge (paper Sec. 5.4, Table 3): MR -> restaurant description with GPT-2, beam search, 5 metrics.

Data come from task.data_dir holding the reference code's `MR||reference` text files (train.txt, valid.txt,
test.txt: the paper's form, MRs rewritten and references tokenized, read as format_converting_e2e.py reads them), or
the challenge's CSVs (trainset.csv, devset.csv, testset_w_refs.csv; columns mr, ref), or the hub through `datasets`
(task.hub_id). Training sequences follow gpt2_encode.py (PAPER.md Sec. 3.1): the MR, the end-of-text token as
separator, then " " + reference and end-of-text; the loss covers the reference tokens only, with label smoothing.
Evaluation decodes one hypothesis per unique MR and writes and scores it against all references of that MR (630
groups on the test set) as gpt2_decode.py's e2e branch and `measure_scores.py -p` do; tests/test_e2e_reference.py
checks every step against a transcription of those scripts.
"""
from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from lora_repro.errors import ConfigError
from lora_repro.tasks import TaskData

SPLITS = ("train", "dev", "test")
CSV_FILES = {"train": "trainset.csv", "dev": "devset.csv", "test": "testset_w_refs.csv"}
TXT_FILES = {"train": "train.txt", "dev": "valid.txt", "test": "test.txt"}
HUB_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
HUB_COLUMNS = {"meaning_representation": "mr", "human_reference": "ref"}
REFERENCE_CUTS = ("<|endoftext|>", "\n\n")  # gpt2_decode.py cuts each reference at these, whatever the tokenizer


def split_file(folder: Path, split: str) -> Path:
    """The file of `split` in an E2E folder: the challenge's CSV, else the reference code's text file."""
    for path in (folder / CSV_FILES[split], folder / TXT_FILES[split]):
        if path.is_file():
            return path
    raise ConfigError(f"task.data_dir={str(folder)!r} has no {split} split: expected {TXT_FILES[split]} "
                      f"(MR||reference lines, the reference code's form) or {CSV_FILES[split]} (the challenge's CSV, "
                      f"columns mr,ref). Offline, ../shared/data/e2e/paper-format holds all three splits in the "
                      f"reference's form and ../shared/data/e2e all three CSVs (see ../shared/data/PROVENANCE.md); "
                      f"or set task.{'train' if split == 'train' else 'eval'}_split to a split the folder has")


def check_data_dir(cfg) -> Path:
    folder = Path(cfg.data_dir)
    if not folder.is_dir():
        raise ConfigError(f"task.data_dir={str(folder)!r} is not a folder; an E2E folder holds "
                                f"{list(CSV_FILES.values())} or {list(TXT_FILES.values())}")
    for field in ("train_split", "eval_split"):
        split_file(folder, getattr(cfg, field))
    return folder


def read_file(path: Path) -> pd.DataFrame:
    """One split as a frame with columns mr, ref (one row per reference); a file without one usable row is an error."""
    frame = _read_file(path)
    if not len(frame):
        raise ConfigError(f"task.data_dir: {path} has no rows; an E2E split needs at least one MR and reference")
    if not ((frame.mr != "") & (frame.ref != "")).any():
        raise ConfigError(f"task.data_dir: {path} has no usable rows: none of its {len(frame)} has both an MR and a "
                         f"reference")
    return frame


def _read_file(path: Path) -> pd.DataFrame:
    if path.suffix == ".csv":
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        frame.columns = [c.lower() for c in frame.columns]
        if not {"mr", "ref"} <= set(frame.columns):
            raise ConfigError(f"task.data_dir: {path} has columns {list(frame.columns)}; expected mr and ref")
        return frame[["mr", "ref"]].apply(lambda column: column.str.strip())
    # format_converting_e2e.py: the line stripped (every line of test.txt ends in a space), then split at "||"; the MR
    # keeps any space before "||" and the reference any after it, as the reference's model sees them. Lines are
    # what its `for line in reader` gives (universal newlines: \n, \r\n, \r), not str.splitlines (which also splits
    # at \x0c, \x85, \u2028, ...). Blank lines are skipped (the reference stops on them with an IndexError).
    lines = path.read_text(encoding="utf-8").split("\n")
    rows = [(number, line.strip().split("||")) for number, line in enumerate(lines, 1) if line.strip()]
    bad = [(number, len(items) - 1) for number, items in rows if len(items) != 2]
    if bad:  # the reference would read no "||" as a crash and two as text dropped after the second
        raise ConfigError(f"task.data_dir: {path} line {bad[0][0]} has {bad[0][1]} '||' separators; a line is "
                          f"'MR||reference', with exactly one")
    return pd.DataFrame([items for _, items in rows], columns=["mr", "ref"])


def read_split(cfg, split: str) -> pd.DataFrame:
    """Split `split` from task.data_dir if set, else from the hub."""
    if cfg.data_dir:
        return read_file(split_file(Path(cfg.data_dir), split))
    import datasets
    hub = datasets.load_dataset(cfg.hub_id, split=HUB_SPLITS[split])
    return hub.to_pandas().rename(columns=HUB_COLUMNS)[["mr", "ref"]]


def group_references(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Unique MRs in first-seen order and the references of each, as gpt2_decode.py's e2e branch writes them.

    gpt2_decode.py keys a dict by the exact MR string and cuts each reference at <|endoftext|> and a blank line, then
    strips it. Beyond it, so that the scorer reads the groups back as they are: line breaks inside a reference
    become spaces, an empty reference is left out (its blank line would end the group), and so is an MR left with none.
    """
    groups: dict[str, list[str]] = {}
    for mr, ref in zip(frame.mr, frame.ref):
        refs = groups.setdefault(mr, [])
        line = one_line(clean(ref, list(REFERENCE_CUTS)))
        if line:
            refs.append(line)
    groups = {mr: refs for mr, refs in groups.items() if refs}
    return list(groups), list(groups.values())


def text_ids(tokenizer, texts: list[str]) -> list[list[int]]:
    """Token ids of plain text, as the reference's encoder.py gives them: "<|endoftext|>" written in an MR or a
    reference is text (its characters' tokens), never the end token (transformers' default would make it one)."""
    return tokenizer(texts, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def encode(tokenizer, mrs: list[str], refs: list[str], max_len: int) -> list[dict[str, list[int]]]:
    """MR + <eos> as the prompt, " " + ref + <eos> as the completion; labels -100 over the prompt."""
    eos = tokenizer.eos_token_id
    prompts = text_ids(tokenizer, mrs)
    completions = text_ids(tokenizer, [" " + r for r in refs])
    rows = []
    for p, c in zip(prompts, completions):
        ids = (p + [eos] + c + [eos])[:max_len]
        labels = ([-100] * (len(p) + 1) + c + [eos])[:max_len]
        rows.append({"input_ids": ids, "labels": labels})
    return rows


def collate_right(pad_id: int):
    """Right-pad a batch of encoded rows; padding is masked out of attention and loss."""

    def collate(rows: list[dict[str, list[int]]]) -> dict[str, torch.Tensor]:
        width = max(len(r["input_ids"]) for r in rows)
        ids = torch.full((len(rows), width), pad_id)
        labels = torch.full((len(rows), width), -100)
        mask = torch.zeros((len(rows), width), dtype=torch.long)
        for i, r in enumerate(rows):
            n = len(r["input_ids"])
            ids[i, :n], labels[i, :n], mask[i, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
        return {"input_ids": ids, "attention_mask": mask, "labels": labels}

    return collate


def smoothed_lm_loss(logits: torch.Tensor, labels: torch.Tensor, smoothing: float) -> torch.Tensor:
    """(1 - eps) NLL + eps mean_vocab(-log p) over the completion tokens (PAPER.md Sec. 3.2, reference code).

    logits: (batch, seq, vocab) predict the next token; labels: (batch, seq) with -100 where no loss is taken.
    """
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), labels[:, 1:].flatten(), ignore_index=-100,
                           label_smoothing=smoothing)


def prompt_batch(tokenizer, mrs: list[str], max_len: int) -> dict[str, torch.Tensor]:
    """MR + <eos> prompts, left-padded (generation continues every row from its last column)."""
    eos = tokenizer.eos_token_id
    prompts = [(p + [eos])[-max_len:] for p in text_ids(tokenizer, mrs)]
    width = max(map(len, prompts))
    ids = torch.full((len(prompts), width), eos)
    mask = torch.zeros((len(prompts), width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, width - len(p):], mask[i, width - len(p):] = torch.tensor(p), 1
    return {"input_ids": ids, "attention_mask": mask}


def stop_ids(tokenizer, stop_strings: list[str]) -> list[int]:
    """<eos> plus each stop string that is a single token (GPT-2's "\\n\\n" is id 628, as in the reference code)."""
    ids = [tokenizer.eos_token_id]
    for text in stop_strings:
        encoded = tokenizer.encode(text, add_special_tokens=False)
        if len(encoded) == 1:
            ids.append(encoded[0])
    return ids


def clean(text: str, stop_strings: list[str]) -> str:
    """A decoded continuation cut at the first stop string and stripped (gpt2_decode.py)."""
    for stop in stop_strings:
        text = text.split(stop, 1)[0]
    return text.strip()


def one_line(text: str) -> str:
    """`text` with every line break the scorer reads as one (str.splitlines': \\n, \\r, \\x0c, \\x85, \\u2028,
    ...) made a space. gpt2_decode.py writes outputs as they are, so one with a line break shifts every later MR's."""
    return " ".join(text.splitlines())


def generate(model: torch.nn.Module, tokenizer, mrs: list[str], cfg, device: torch.device,
             batch_size: int) -> list[str]:
    """One output per MR by the reference code's beam search (lora_repro/beam.py), batched, cut at the stops."""
    from tqdm.auto import tqdm

    from lora_repro.beam import beam_search
    dec = cfg.decode
    stops = [tokenizer.eos_token, *dec.stop_strings]
    max_prompt = cfg.max_seq_len - dec.max_new_tokens  # gpt2_beam.py: prompts cut to seq_len - eval_len
    outputs = []
    for start in tqdm(range(0, len(mrs), batch_size), desc="decode", leave=False, dynamic_ncols=True):
        batch = {k: v.to(device) for k, v in prompt_batch(tokenizer, mrs[start:start + batch_size], max_prompt).items()}
        best = beam_search(model, batch["input_ids"], batch["attention_mask"], dec.num_beams, dec.max_new_tokens,
                           dec.length_penalty, dec.no_repeat_ngram_size, stop_ids(tokenizer, list(dec.stop_strings)))
        outputs += decode(tokenizer, best, stops)
    return outputs


def decode(tokenizer, ids, stops: list[str]) -> list[str]:
    """Token ids to output lines as gpt2_decode.py's enc.decode: GPT-2's byte-level decoding, nothing more. Spaces
    before punctuation stay ("family - friendly ."): clean_up_tokenization_spaces is pinned off, not left to the
    tokenizer's (and the transformers version's) default."""
    texts = tokenizer.batch_decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    return [clean(text, stops) for text in texts]


def write_official(folder: Path, references: list[list[str]], hypotheses: list[str], tag: str,
                   split: str = "") -> None:
    """e2e_ref.txt and e2e_pred_<tag>.txt byte for byte as gpt2_decode.py writes them, the scorer's input: each
    MR's references a line each, then a blank line; one output a line. Line breaks inside a line become spaces.
    The carved MRs' pair is e2e_ref_carved.txt and e2e_pred_carved_<tag>.txt (split='carved')."""
    name = f"_{split}" if split else ""
    write_utf8(folder / f"e2e_ref{name}.txt",
               "".join("".join(one_line(r) + "\n" for r in refs) + "\n" for refs in references))
    write_utf8(folder / f"e2e_pred{name}_{tag}.txt", "".join(one_line(h) + "\n" for h in hypotheses))


def write_utf8(path: Path, text: str) -> None:
    """`text` as UTF-8 whatever the locale (gpt2_decode.py opens its files with encoding='utf8'), written beside
    `path` and renamed: a killed run never leaves half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(text.encode("utf-8"))
    os.replace(partial, path)


def subsample(frame: pd.DataFrame, n, seed: int) -> pd.DataFrame:
    return frame.sample(n=n, random_state=seed) if n and len(frame) > n else frame


def carve(frame: pd.DataFrame, n: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """n MRs of the training split drawn with `seed`, each with all its references, as the split 'carved'; the
    other MRs stay the training split. By MR, not by row: a carved MR never has a reference left in training."""
    mrs = pd.Series(frame.mr.unique())
    if n >= len(mrs):
        raise ConfigError(f"task.carved_validation={n} is invalid; valid choices: fewer than the training split's "
                          f"{len(mrs)} distinct MRs (E2E carves MRs, each with all its references), or null")
    held = set(mrs.sample(n=n, random_state=seed))
    inside = frame.mr.isin(held)
    return frame[~inside], frame[inside]


def load(cfg, tokenizer) -> TaskData:
    """The train split as MR/reference pairs, each eval split as one MR group per unique MR; BLEU is the main metric.

    With task.carved_validation, MRs carved out of the train split (before any subset) are scored first, as the split
    'carved': they pick the best epoch and early stopping; the eval split follows with its name as a suffix
    (bleu_test), reported at that epoch, and keeps the file names e2e_ref.txt, e2e_pred_<tag>.txt."""
    from lora_repro.metrics.e2e import score_run
    if cfg.data_dir:
        check_data_dir(cfg)
    train_split, eval_split = cfg.train_split, cfg.eval_split
    if tokenizer.eos_token_id is None:
        raise ConfigError("the model's tokenizer has no end-of-text token; E2E needs one as separator and end")
    train, evals = read_split(cfg, train_split), {}
    if cfg.carved_validation:
        train, carved = carve(train, cfg.carved_validation, cfg.data_seed)
        evals["carved"] = group_references(carved)
        if not evals["carved"][0]:
            raise ConfigError(f"task.carved_validation={cfg.carved_validation}: no carved MR has a usable reference")
    train = subsample(train, cfg.max_train_samples, cfg.data_seed)
    if not cfg.carved_only:
        mrs, references = group_references(read_split(cfg, eval_split))
        if not mrs:
            raise ConfigError(f"task.eval_split={eval_split!r}: no MR of that split has a reference left once cut "
                              f"at <|endoftext|> and stripped (gpt2_decode.py); it needs at least one to score")
        if cfg.max_eval_mrs:
            mrs, references = mrs[:cfg.max_eval_mrs], references[:cfg.max_eval_mrs]
        evals[eval_split] = (mrs, references)
    rows = encode(tokenizer, list(train.mr), list(train.ref), cfg.max_seq_len)
    smoothing = cfg.label_smoothing

    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return smoothed_lm_loss(logits, batch["labels"], smoothing)

    def evaluate(model: torch.nn.Module, device: torch.device, batch_size: int, out_dir: Path | None,
                 tag: str) -> dict[str, float]:
        metrics = {}
        for i, (split, (mrs, references)) in enumerate(evals.items()):
            hypotheses = [one_line(h) for h in generate(model, tokenizer, mrs, cfg, device, batch_size)]  # as written
            if out_dir is not None:
                write_official(out_dir, references, hypotheses, tag, "" if split == eval_split else split)
            suffix = "" if i == 0 else "_" + split
            metrics.update({name + suffix: value for name, value in score_run(references, hypotheses).items()})
        return metrics

    return TaskData(train=rows, evals=evals, collate=collate_right(tokenizer.eos_token_id),
                    score=None, main_metric="bleu", loss=loss, evaluate=evaluate)
