"""Backbones by hub id (model.name), local folder (model.path) or a tiny random-init config (model.config)."""
from __future__ import annotations

import string
from pathlib import Path

import torch
import torch.nn as nn
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          PreTrainedTokenizerFast)

from lora_repro.errors import ConfigError

# new, task-specific modules: trained by every method, counted apart (Table 2). "pooler" is a top-level module only in
# DeBERTa-v2's classifier (ContextPooler, not in the pre-trained checkpoint), which the reference trains with the head
# (it trains every parameter outside the backbone); BERT's and RoBERTa's poolers sit inside the backbone, frozen
HEADS = ("classifier", "score", "pooler")
CAUSAL_TYPES = ("gpt2", "llama", "mistral", "qwen2")  # tiny configs of these get the byte-level tokenizer
EOS = "<|endoftext|>"
AUTO_CLASSES = {"classification": AutoModelForSequenceClassification, "causal_lm": AutoModelForCausalLM}


def source(cfg) -> str:
    """Where the weights come from, said once: a local folder, a tiny config, or the hub."""
    if cfg.path:
        return f"local folder {cfg.path}"
    if cfg.config:
        return f"random init from the tiny config {cfg.name}"
    return f"hub id {cfg.name}"


def check_model_dir(path: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model.path={path!r} is not a Hugging Face model folder (no config.json there); "
                         "valid choices: a folder saved by save_pretrained, or no model.path (hub id / tiny config)")
    return folder


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json")
TOKENIZER_SUFFIXES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", ".model")


def folder_files(folder: Path, suffixes: tuple[str, ...]) -> list[str]:
    """The files of a model folder whose names end in one of suffixes, sorted."""
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.name.endswith(suffixes))


def unreadable(path: str, what: str, files: list[str], err: Exception) -> str:
    """One line: the model folder, the files that failed to load, and the loader's own first line."""
    cause = (str(err).strip().splitlines() or [type(err).__name__])[0][:300]
    return (f"model.path={path!r}: the {what} ({', '.join(files) or f'no {what} files'}) could not be loaded: "
            f"{type(err).__name__}: {cause}; re-save or re-download the model folder")


def load_model(cfg, kind: str = "classification", num_labels: int = 2, problem_type: str | None = None,
               fresh_head: bool = True) -> nn.Module:
    """The backbone with a `kind` head: from model.path if set, else model.config (tiny), else the hub id.

    Seed torch first (the run seed, as HF Trainer's set_seed before model creation): the new head of a pretrained
    model draws from that stream. A tiny model's "pre-trained" W0 draws from model.init_seed instead, on a forked RNG,
    so it is the same for every run seed; its head is then drawn again from the run's stream (fresh_head=False keeps
    the init_seed head: the synthetic task's teacher head, part of its ground truth). model.config_overrides (set by a
    task, e.g. E2E's dropout-free GPT-2) replace fields of the backbone's config."""
    auto = AUTO_CLASSES[kind]
    extra = {"num_labels": num_labels, "problem_type": problem_type} if kind == "classification" else {}
    extra.update(cfg.config_overrides)
    if cfg.path:
        folder = check_model_dir(cfg.path)
        try:
            return auto.from_pretrained(str(folder), local_files_only=True, **extra)
        except Exception as err:  # a truncated or foreign weights file: name it, keep the cause for HYDRA_FULL_ERROR
            raise ConfigError(unreadable(cfg.path, "weights", folder_files(folder, WEIGHT_SUFFIXES), err)) from err
    if cfg.config:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = auto.from_config(local_config(cfg, **extra))
        return init_head(model) if fresh_head else model
    return auto.from_pretrained(cfg.name, **extra)


@torch.no_grad()
def init_head(model: nn.Module) -> nn.Module:
    """Draw the task head's weights again from torch's current RNG, with the model's own init (_init_weights)."""
    for name, module in model.named_modules():
        if name and is_head(name):
            model._init_weights(module)
    return model


def local_config(cfg, **extra):
    """The backbone's config from model.path or model.config alone (no weights); None for a hub id."""
    if cfg.path:
        return AutoConfig.from_pretrained(str(check_model_dir(cfg.path)), local_files_only=True, **extra)
    if cfg.config:
        fields = {**cfg.config, **extra}
        return AutoConfig.for_model(fields.pop("model_type"), **fields)
    return None


def char_tokenizer(max_length: int = 512) -> PreTrainedTokenizerFast:
    """A character-level WordPiece tokenizer made in code, for tiny random-init models (no download)."""
    chars = string.ascii_lowercase + string.digits + string.punctuation
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(chars) + ["##" + c for c in chars]
    tok = Tokenizer(models.WordPiece({t: i for i, t in enumerate(vocab)}, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1", special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_length)


def byte_tokenizer(max_length: int = 1024) -> PreTrainedTokenizerFast:
    """GPT-2's byte-level scheme with no merges (256 byte tokens + <|endoftext|>), for tiny random-init causal LMs:
    every text encodes and decodes exactly, with no download."""
    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS, unk_token=EOS,
                                   model_max_length=max_length)


def load_tokenizer(cfg):
    """The backbone's tokenizer, from the same place as its weights."""
    if cfg.path:
        folder = check_model_dir(cfg.path)
        try:
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
        except Exception as err:  # a broken tokenizer.json / vocab file: name it
            raise ConfigError(unreadable(cfg.path, "tokenizer", folder_files(folder, TOKENIZER_SUFFIXES), err)) from err
    if cfg.config:
        return byte_tokenizer() if cfg.config["model_type"] in CAUSAL_TYPES else char_tokenizer()
    return AutoTokenizer.from_pretrained(cfg.name)


def is_head(name: str) -> bool:
    """Is this parameter part of the task head (reported apart from the method's trainable parameters)?"""
    return name.split(".", 1)[0] in HEADS
