"""E2E NLG Challenge (paper Sec. 5.4, Table 3): MR -> restaurant description with GPT-2, beam search, 5 metrics.

Data come from the hub through `datasets` (task.hub_id) or from task.data_dir holding the challenge's CSVs
(trainset.csv, devset.csv, testset_w_refs.csv; columns mr, ref) or the reference code's `MR||reference` text files
(train.txt, valid.txt, test.txt). Training sequences follow the reference code (PAPER.md Sec. 3.1): the MR, the
end-of-text token as separator, then " " + reference and end-of-text; the loss covers the reference tokens only,
with label smoothing. Evaluation decodes one hypothesis per unique MR and scores it against all references of that
MR (630 groups on the test set), as the reference code's gpt2_decode.py and the official scorer do.
"""
from __future__ import annotations

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


def split_file(folder: Path, split: str) -> Path:
    """The file of `split` in an E2E folder: the challenge's CSV, else the reference code's text file."""
    for path in (folder / CSV_FILES[split], folder / TXT_FILES[split]):
        if path.is_file():
            return path
    raise ConfigError(f"task.data_dir={str(folder)!r} has no {split} split: expected {CSV_FILES[split]} (the "
                            f"challenge's CSV, columns mr,ref) or {TXT_FILES[split]} (MR||reference lines). Offline, "
                            f"only dev and test exist: set task.train_split=dev (see ../shared/data/PROVENANCE.md)")


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
    # both sides stripped (the reference's format_converting_e2e.py strips each line): every line of its test.txt ends
    # in a space, which would otherwise add a token to every target
    rows = [[part.strip() for part in line.split("||", 1)]
            for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    bad = [i for i, row in enumerate(rows) if len(row) != 2]
    if bad:
        raise ConfigError(f"task.data_dir: {path} line {bad[0] + 1} is not 'MR||reference'")
    return pd.DataFrame(rows, columns=["mr", "ref"])


def read_split(cfg, split: str) -> pd.DataFrame:
    """Split `split` from task.data_dir if set, else from the hub."""
    if cfg.data_dir:
        return read_file(split_file(Path(cfg.data_dir), split))
    import datasets
    hub = datasets.load_dataset(cfg.hub_id, split=HUB_SPLITS[split])
    return hub.to_pandas().rename(columns=HUB_COLUMNS)[["mr", "ref"]]


def group_references(frame: pd.DataFrame) -> tuple[list[str], list[list[str]]]:
    """Unique MRs in first-seen order and the references of each (the official scorer's grouping)."""
    groups = frame.groupby("mr", sort=False)["ref"].apply(list)
    return list(groups.index), list(groups.values)


def encode(tokenizer, mrs: list[str], refs: list[str], max_len: int) -> list[dict[str, list[int]]]:
    """MR + <eos> as the prompt, " " + ref + <eos> as the completion; labels -100 over the prompt."""
    eos = tokenizer.eos_token_id
    prompts = tokenizer(mrs, add_special_tokens=False)["input_ids"]
    completions = tokenizer([" " + r for r in refs], add_special_tokens=False)["input_ids"]
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
    prompts = [(p + [eos])[-max_len:] for p in tokenizer(mrs, add_special_tokens=False)["input_ids"]]
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


def write_official(folder: Path, references: list[list[str]], hypotheses: list[str], tag: str) -> None:
    """e2e_ref.txt (each MR's references, a blank line between MRs) and e2e_pred_<tag>.txt: the scorer's input."""
    from lora_repro.record import write_atomic
    write_atomic(folder / "e2e_ref.txt", "\n\n".join("\n".join(refs) for refs in references) + "\n")
    write_atomic(folder / f"e2e_pred_{tag}.txt", "\n".join(h.replace("\n", " ") for h in hypotheses) + "\n")


def subsample(frame: pd.DataFrame, n, seed: int) -> pd.DataFrame:
    return frame.sample(n=n, random_state=seed) if n and len(frame) > n else frame


def load(cfg, tokenizer) -> TaskData:
    """The train split as MR/reference pairs, the eval split as one MR group per unique MR; BLEU is the main metric."""
    from lora_repro.metrics.e2e import score_run
    if cfg.data_dir:
        check_data_dir(cfg)
    train_split, eval_split = cfg.train_split, cfg.eval_split
    if tokenizer.eos_token_id is None:
        raise ConfigError("the model's tokenizer has no end-of-text token; E2E needs one as separator and end")
    train = subsample(read_split(cfg, train_split), cfg.max_train_samples, cfg.data_seed)
    mrs, references = group_references(read_split(cfg, eval_split))
    if cfg.max_eval_mrs:
        mrs, references = mrs[:cfg.max_eval_mrs], references[:cfg.max_eval_mrs]
    rows = encode(tokenizer, list(train.mr), list(train.ref), cfg.max_seq_len)
    smoothing = cfg.label_smoothing

    def loss(model: torch.nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        return smoothed_lm_loss(logits, batch["labels"], smoothing)

    def evaluate(model: torch.nn.Module, device: torch.device, batch_size: int, out_dir: Path | None,
                 tag: str) -> dict[str, float]:
        hypotheses = generate(model, tokenizer, mrs, cfg, device, batch_size)
        if out_dir is not None:
            write_official(out_dir, references, hypotheses, tag)
        return score_run(references, hypotheses)

    return TaskData(train=rows, evals={eval_split: (mrs, references)}, collate=collate_right(tokenizer.eos_token_id),
                    score=None, main_metric="bleu", loss=loss, evaluate=evaluate)
