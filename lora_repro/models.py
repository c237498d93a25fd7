"""Backbones by hub id (model.name), local folder (model.path; or a GGUF file in it, model.gguf_file) or a tiny
random-init config (model.config)."""
from __future__ import annotations

import logging
import string
from pathlib import Path

import torch
import torch.nn as nn
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer,
                          PreTrainedTokenizerFast)

from lora_repro.errors import ConfigError

log = logging.getLogger(__name__)

# new, task-specific modules: trained by every method, counted apart (Table 2). "pooler" is a top-level module only in
# DeBERTa-v2's classifier (ContextPooler, not in the pre-trained checkpoint), which the reference trains with the head
# (it trains every parameter outside the backbone); BERT's and RoBERTa's poolers sit inside the backbone, frozen
HEADS = ("classifier", "score", "pooler")
CAUSAL_TYPES = ("gpt2", "llama", "mistral", "qwen2")  # tiny configs of these get the byte-level tokenizer
EOS = "<|endoftext|>"
AUTO_CLASSES = {"classification": AutoModelForSequenceClassification, "causal_lm": AutoModelForCausalLM}


def source(cfg) -> str:
    """Where the weights come from, said once: a local folder, a tiny config, or the hub."""
    gguf = f", GGUF file {cfg.gguf_file} (dequantized to float)" if cfg.gguf_file else ""
    if cfg.path:
        return f"local folder {cfg.path}{gguf}"
    if cfg.config:
        return f"random init from the tiny config {cfg.name}"
    return f"hub id {cfg.name}{gguf}"


def check_model_dir(path: str, gguf_file: str | None = None) -> Path:
    """model.path as a folder from_pretrained reads: a save_pretrained folder (config.json), or one holding the GGUF
    file model.gguf_file names (a GGUF file carries its config and tokenizer; it has no config.json beside it)."""
    folder = Path(path)
    ggufs = sorted(p.name for p in folder.glob("*.gguf")) if folder.is_dir() else []
    if gguf_file:
        if not (folder / gguf_file).is_file():
            raise ConfigError(f"model.gguf_file={gguf_file!r} is not a file in model.path={path!r}; valid choices: "
                              f"{'one of ' + str(ggufs) if ggufs else 'none there (no .gguf file in that folder)'}, "
                              f"an absolute path to a .gguf file, or null (a save_pretrained folder with config.json)")
        return folder
    if not (folder / "config.json").is_file():
        raise ConfigError(f"model.path={path!r} is not a Hugging Face model folder (no config.json there); valid "
                          f"choices: a folder saved by save_pretrained, "
                          f"{f'model.gguf_file=NAME with NAME one of {ggufs}, ' if ggufs else ''}"
                          f"or no model.path (hub id / tiny config)")
    return folder


def gguf(cfg) -> dict:
    """from_pretrained's gguf_file keyword when model.gguf_file is set: transformers reads the config, weights and
    tokenizer from that one file and dequantizes the weights to float (it needs the gguf package)."""
    return {"gguf_file": cfg.gguf_file} if cfg.gguf_file else {}


WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".index.json", ".gguf")
TOKENIZER_SUFFIXES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt", ".model",
                      ".gguf")


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
    """The backbone with a `kind` head: from model.path (model.gguf_file in it, if set), else model.config (tiny), else
    the hub id.

    Seed torch first (the run seed, as HF Trainer's set_seed before model creation): the new head of a pretrained
    model draws from that stream. A tiny model's "pre-trained" W0 draws from model.init_seed instead, on a forked RNG,
    so it is the same for every run seed; its head is then drawn again from the run's stream (fresh_head=False keeps
    the init_seed head: the synthetic task's teacher head, part of its ground truth). model.config_overrides (set by a
    task, e.g. E2E's dropout-free GPT-2) are set on the backbone's config (those it lacks are logged)."""
    auto = AUTO_CLASSES[kind]
    extra = {"num_labels": num_labels, "problem_type": problem_type} if kind == "classification" else {}
    if cfg.config and not cfg.path:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.init_seed)
            model = auto.from_config(local_config(cfg, **{**extra, **cfg.config_overrides}))
        return init_head(model) if fresh_head else model
    where = str(check_model_dir(cfg.path, cfg.gguf_file)) if cfg.path else cfg.name
    try:  # the config first, the overrides set on it: from_pretrained would hand a key its config lacks to the
        # model's __init__ (a TypeError: E2E's GPT-2 dropouts on a Llama)
        config = AutoConfig.from_pretrained(where, local_files_only=bool(cfg.path), **gguf(cfg), **extra)
        foreign = [k for k in cfg.config_overrides if not hasattr(config, k)]
        config.update(cfg.config_overrides)
        model = auto.from_pretrained(where, config=config, local_files_only=bool(cfg.path), **gguf(cfg))
    except Exception as err:  # a truncated or foreign weights file: name it, keep the cause for HYDRA_FULL_ERROR
        if not cfg.path:
            raise
        raise ConfigError(unreadable(cfg.path, "weights", folder_files(Path(where), WEIGHT_SUFFIXES), err)) from err
    if foreign:  # a Llama has no residual or embedding dropout to switch off; DeBERTa reads cls_dropout by getattr
        log.warning("model.config_overrides %s are not fields of this %s config: set, but its model may not read "
                    "them", foreign, config.model_type)
    return model


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
        return AutoConfig.from_pretrained(str(check_model_dir(cfg.path, cfg.gguf_file)), local_files_only=True,
                                          **gguf(cfg), **extra)
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
        folder = check_model_dir(cfg.path, cfg.gguf_file)
        try:
            return AutoTokenizer.from_pretrained(str(folder), local_files_only=True, **gguf(cfg))
        except Exception as err:  # a broken tokenizer.json / vocab file: name it
            raise ConfigError(unreadable(cfg.path, "tokenizer", folder_files(folder, TOKENIZER_SUFFIXES), err)) from err
    if cfg.config:
        return byte_tokenizer() if cfg.config["model_type"] in CAUSAL_TYPES else char_tokenizer()
    return AutoTokenizer.from_pretrained(cfg.name, **gguf(cfg))


def is_head(name: str) -> bool:
    """Is this parameter part of the task head (reported apart from the method's trainable parameters)?"""
    return name.split(".", 1)[0] in HEADS
