"""Pretrain a small GPT-2-shaped causal LM offline: python -m lora_repro.pretrain [lm=gpu] [out_dir=DIR].

No pretrained GPT-2 can be downloaded on our machines, so E2E runs offline need a real, if small, LM: this trains a
byte-level BPE tokenizer and a GPT-2 from scratch on the text files in conf/pretrain.yaml (WikiText-2, and the E2E
dev references and SST-2 training sentences for more text), reports held-out perplexity, and saves both in Hugging
Face format, so that `model.path=<out_dir> task=e2e` runs the whole pipeline on it. The loop is train.py's.
"""
from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path

import hydra
import pandas as pd
import torch
from omegaconf import DictConfig
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from lora_repro import config
from lora_repro.errors import ConfigError, cli
from lora_repro.models import EOS
from lora_repro.record import Logger, check_resume, store_config, write_json
from lora_repro.tasks import TaskData
from lora_repro.train import pick_device, seed_everything, train

log = logging.getLogger("lora_repro")


def read_source(source: config.CorpusSource) -> list[str]:
    """The lines of one corpus file: a text file, or one column of a CSV/TSV (E2E references, SST-2 sentences)."""
    path = Path(source.path)
    if not path.is_file():
        raise ConfigError(f"pretrain corpus: {source.path!r} is not a file (run from the repository root with "
                                f"../shared beside it, or set corpus=[...] to your own files)")
    if source.column:
        frame = pd.read_csv(path, sep="\t" if path.suffix == ".tsv" else ",", dtype=str, keep_default_na=False,
                            quoting=3 if path.suffix == ".tsv" else 0)
        if source.column not in frame.columns:
            raise ConfigError(f"pretrain corpus: {path} has no column {source.column!r}; it has {list(frame.columns)}")
        return list(frame[source.column])
    return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def split_corpus(cfg: config.PretrainConfig) -> tuple[list[str], list[str]]:
    """Training lines of every source, and the held-out lines (the last heldout_fraction of each heldout source)."""
    train_lines, heldout = [], []
    for source in cfg.corpus:
        lines = read_source(source)
        cut = len(lines) - int(len(lines) * cfg.heldout_fraction) if source.heldout else len(lines)
        train_lines += lines[:cut]
        heldout += lines[cut:]
    if not heldout:
        raise ConfigError("pretrain: no held-out text; mark at least one corpus entry heldout: true")
    return train_lines, heldout


def wrapped(tok: Tokenizer, max_length: int) -> PreTrainedTokenizerFast:
    """A byte-level BPE as transformers' tokenizer, <|endoftext|> its end, beginning and unknown token."""
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS,
                                   model_max_length=max_length)


def train_tokenizer(lines: list[str], vocab_size: int, max_length: int) -> PreTrainedTokenizerFast:
    """GPT-2's tokenizer scheme (byte-level BPE, <|endoftext|>) trained on our corpus."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(lines, trainer)
    return wrapped(tok, max_length)


def gpt2_tokenizer(folder: str, max_length: int) -> PreTrainedTokenizerFast:
    """GPT-2's own byte-level BPE from its files (lm.tokenizer): the vocabulary the paper's E2E models read."""
    path = Path(folder)
    if (path / "tokenizer.json").is_file():
        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
    elif (path / "encoder.json").is_file() and (path / "vocab.bpe").is_file():  # GPT-2's release, as the reference's
        tok = Tokenizer(models.BPE.from_file(str(path / "encoder.json"), str(path / "vocab.bpe")))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
    else:
        raise ConfigError(f"lm.tokenizer={folder!r} holds neither tokenizer.json nor encoder.json + vocab.bpe; valid "
                          f"choices: a folder of GPT-2's BPE files (e.g. ../shared/models/gpt2-tokenizer), or null "
                          f"(train a BPE on the corpus)")
    return wrapped(tok, max_length)


def blocks(tokenizer, lines: list[str], block: int) -> torch.Tensor:
    """Every line + <|endoftext|>, concatenated and cut into (n, block) training sequences (GPT-2's packing)."""
    ids = [t for row in tokenizer(lines, add_special_tokens=False)["input_ids"] for t in row + [tokenizer.eos_token_id]]
    n = len(ids) // block
    return torch.tensor(ids[:n * block]).view(n, block)


def lm_task(train_blocks: torch.Tensor, heldout_blocks: torch.Tensor) -> TaskData:
    """Packed blocks as a TaskData for train.py; evaluation is held-out loss and perplexity."""

    def collate(rows: list[torch.Tensor]) -> dict[str, torch.Tensor]:
        ids = torch.stack(rows)
        return {"input_ids": ids, "labels": ids}

    @torch.no_grad()
    def evaluate(model, device, batch_size, out_dir, tag) -> dict[str, float]:
        losses = [model(**{k: v.to(device) for k, v in collate(list(heldout_blocks[i:i + batch_size])).items()}).loss
                  for i in range(0, len(heldout_blocks), batch_size)]
        loss = torch.stack(losses).mean().item()
        return {"neg_loss": -loss, "loss": loss, "perplexity": math.exp(loss)}

    return TaskData(train=list(train_blocks), evals={"heldout": heldout_blocks}, collate=collate, score=None,
                    main_metric="neg_loss", evaluate=evaluate)


def pretrain(cfg: config.PretrainConfig) -> dict:
    """Train the tokenizer and the LM on cfg's corpus, save both to out_dir; returns what pretrain.json holds."""
    out = Path(cfg.out_dir)
    checkpoint = out / "checkpoint"  # resume=true continues from it (train.py), the tokenizer from out_dir
    checkpoint.mkdir(parents=True, exist_ok=True)
    plain = cfg.model_dump(mode="json")
    check_resume(plain, checkpoint)  # before anything trains: a changed field refuses the resume
    store_config(plain, checkpoint)
    seed_everything(cfg.seed)
    train_lines, heldout = split_corpus(cfg)
    resuming = cfg.resume and (checkpoint / "trainer_state.json").is_file()
    if resuming:  # the vocabulary the checkpoint was trained with, not one trained again
        tokenizer = AutoTokenizer.from_pretrained(str(out))
    else:
        tokenizer = (gpt2_tokenizer(cfg.lm.tokenizer, cfg.lm.n_positions) if cfg.lm.tokenizer
                     else train_tokenizer(train_lines, cfg.lm.vocab_size, cfg.lm.n_positions))
        tokenizer.save_pretrained(out)
    data = lm_task(blocks(tokenizer, train_lines, cfg.lm.block), blocks(tokenizer, heldout, cfg.lm.block))
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=cfg.lm.n_positions, n_embd=cfg.lm.n_embd,
                        n_layer=cfg.lm.n_layer, n_head=cfg.lm.n_head, bos_token_id=tokenizer.eos_token_id,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    model = GPT2LMHeadModel(config)
    params = sum(p.numel() for p in model.parameters())
    log.info("pretraining a %s-parameter GPT-2 (%s) on %d blocks of %d tokens; held out %d blocks", f"{params:,}",
             cfg.lm.name, len(data.train), cfg.lm.block, len(data.evals["heldout"]))
    logger = Logger(out)  # train_log.jsonl beside the model
    try:
        result = train(model, data, cfg.train, pick_device(cfg.device), logger, checkpoint, cfg.resume)
    finally:
        logger.close()
    model.save_pretrained(out)
    final = result["final_metrics"]
    report = {"lm": cfg.lm.name, "params": params, "train_blocks": len(data.train), "block": cfg.lm.block,
              "heldout_loss": final["loss"], "heldout_perplexity": final["perplexity"], "steps": result["steps"],
              "train_time_s": result["train_time_s"], "corpus": [source.model_dump() for source in cfg.corpus],
              **({"tokenizer": cfg.lm.tokenizer} if cfg.lm.tokenizer else {})}
    write_json(out / "pretrain.json", report)
    return report


@hydra.main(version_base="1.3", config_path="conf", config_name="pretrain")
@cli
def main(cfg: DictConfig) -> None:
    """One pretraining run; a wrong config or corpus file is one line and exit 2 (errors.cli)."""
    start = time.perf_counter()
    report = pretrain(config.from_hydra(cfg, config.PretrainConfig))
    print(f"[pretrain {report['lm']}] {report['params']:,} parameters, held-out perplexity "
          f"{report['heldout_perplexity']:.1f} after {report['steps']} steps, {time.perf_counter() - start:.0f}s -> "
          f"{cfg.out_dir} (use it: model.path={cfg.out_dir} task=e2e)")


if __name__ == "__main__":
    cli(config.refuse_unknown_keys)(sys.argv[1:], config.PretrainConfig)
    main()
