"""Prefix-embedding and prefix-layer tuning (paper Sec. 5.1: PreEmbed, PreLayer), inserted by forward hooks."""
from __future__ import annotations

import inspect

import torch
import torch.nn as nn

from lora_repro.targets import architecture, block_lists

# Where the special tokens go, per architecture: GPT-2 gets them at the front ("prefix" = prepended); BERT/RoBERTa
# right after [CLS]/<s>, because their pooler and classifier read position 0. The inserted positions are cut out of
# the base model's last_hidden_state again, so every head (pooler, last-non-pad-token score, LM loss on labels)
# sees the original sequence and needs no change.
INSERT_AT = {"bert": 1, "roberta": 1, "gpt2": 0}
# Infix tokens go right after each row's last real token (before its padding, so a row's positions do not depend on
# the batch it is in). Only a bidirectional encoder can attend to them from the input; in GPT-2 the infix belongs
# between prompt and completion, a task-specific split this suite does not know.
INFIX_OK = ("bert", "roberta")


class PrefixTokens(nn.Module):
    """The trainable vectors: (n_layers or 1, l_p + l_i, d); mode "embed" feeds them in, "layer" overwrites."""

    def __init__(self, mode: str, n_vectors: int, prefix_len: int, infix_len: int, d: int, at: int, init_std: float,
                 device=None, dtype=None):
        super().__init__()
        self.mode, self.prefix_len, self.infix_len, self.at = mode, prefix_len, infix_len, at
        self.inserted = False  # does the current forward pass carry the special positions (not a cached step)?
        self.ends: torch.Tensor | None = None  # (batch,): each row's end of real tokens in this forward; None = seq
        self.weight = nn.Parameter(torch.randn(n_vectors, prefix_len + infix_len, d, device=device, dtype=dtype)
                                   * init_std)

    def insert(self, h: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
        """h: (batch, seq, ...) -> (batch, l_p + seq + l_i, ...) with new: (l_p + l_i, ...) at the special positions:
        h[:at], prefix, h[at:end], infix, h[end:] per row (end = the row's last real token + 1)."""
        new = new.to(h.dtype).expand(h.shape[0], *new.shape)
        lp = self.prefix_len
        if not self.infix_len or self.ends is None:  # no infix, or every row full length: one concatenation
            return torch.cat([h[:, :self.at], new[:, :lp], h[:, self.at:], new[:, lp:]], dim=1)
        source = self.source_index(h.shape[0], h.shape[1], h.device)  # (batch, l_p + seq + l_i) into [h, new]
        full = torch.cat([h, new], dim=1)
        return full.gather(1, source.view(*source.shape, *[1] * (h.dim() - 2)).expand(-1, -1, *h.shape[2:]))

    def remove(self, h: torch.Tensor) -> torch.Tensor:
        """(batch, l_p + seq + l_i, ...) -> (batch, seq, ...): drop the special positions again."""
        seq = h.shape[1] - self.prefix_len - self.infix_len
        if not self.infix_len or self.ends is None:
            end = h.shape[1] - self.infix_len
            return torch.cat([h[:, :self.at], h[:, self.at + self.prefix_len:end]], dim=1)
        j = torch.arange(seq, device=h.device).expand(h.shape[0], seq)  # original position -> inserted position
        keep = torch.where(j < self.at, j, j + self.prefix_len) + torch.where(j < self.ends[:, None], 0,
                                                                               self.infix_len)
        return h.gather(1, keep.view(*keep.shape, *[1] * (h.dim() - 2)).expand(-1, -1, *h.shape[2:]))

    def source_index(self, batch: int, seq: int, device) -> torch.Tensor:
        """For each inserted position, its index into cat([h, new]): (batch, l_p + seq + l_i)."""
        at, lp, li = self.at, self.prefix_len, self.infix_len
        pos = torch.arange(seq + lp + li, device=device).expand(batch, -1)
        end = self.ends.to(device)[:, None]
        return torch.where(pos < at, pos,
               torch.where(pos < at + lp, seq + pos - at,                      # the prefix
               torch.where(pos < end + lp, pos - lp,                           # h[at:end]
               torch.where(pos < end + lp + li, seq + lp + pos - end - lp,     # the infix
                           pos - lp - li))))                                   # h[end:], the padding

    def overwrite(self, h: torch.Tensor, layer: int) -> torch.Tensor:
        """PreLayer: the special positions of h take this layer's trainable activations."""
        return self.insert(self.remove(h), self.weight[layer])


def _insert_tokens(base: nn.Module, args: tuple, kwargs: dict):
    """Forward pre-hook on the base model: input_ids -> inputs_embeds with the special tokens, masks extended."""
    signature = inspect.signature(base.forward)
    bound = signature.bind_partial(*args, **kwargs).arguments
    var_kw = [n for n, p in signature.parameters.items() if p.kind is inspect.Parameter.VAR_KEYWORD]
    kwargs = {**(bound.pop(var_kw[0], {}) if var_kw else {}), **bound}
    prefix: PrefixTokens = base.prefix
    n_new = prefix.weight.shape[1]
    positions = kwargs.get("position_ids")
    if positions is not None or kwargs.get("past_key_values") is not None:
        if prefix.at or prefix.infix_len:  # generation is GPT-2's case: prefix in front, no infix
            raise ValueError("prefix tuning with a KV cache or position_ids is supported for a front prefix only "
                             "(GPT-2, method.infix_len=0)")
        if positions is not None:  # from generate(): counted over the real tokens; the prefix sits before them
            kwargs["position_ids"] = positions + n_new
    cached = kwargs.get("past_key_values") is not None and kwargs["past_key_values"].get_seq_length() > 0
    prefix.inserted = not cached
    if cached:  # generation after the first step: the prefix is in the cache already; only the mask must see it
        if kwargs.get("attention_mask") is not None:
            mask = kwargs["attention_mask"]
            kwargs["attention_mask"] = torch.cat([mask.new_ones(mask.shape[0], n_new), mask], dim=1)
        return (), kwargs
    if positions is not None:
        kwargs["position_ids"] = torch.cat([torch.arange(n_new, device=positions.device).expand(
            positions.shape[0], n_new), kwargs["position_ids"]], dim=1)
    ids = kwargs.pop("input_ids", None)
    embeds = kwargs.get("inputs_embeds")
    embeds = base.get_input_embeddings()(ids) if embeds is None else embeds
    check_positions(base.config, embeds.shape[1], prefix)
    mask = kwargs.get("attention_mask")
    prefix.ends = None
    if prefix.infix_len and mask is not None and mask.dim() == 2:  # last real token + 1 per row, whatever the padding
        real = mask.flip(1).ne(0).int()
        prefix.ends = mask.shape[1] - real.argmax(1)
    # PreEmbed: the special tokens' word embeddings are the trainable vectors; PreLayer: zeros here, since every
    # block's input at those positions is overwritten by its own trainable activations (_overwrite_layer)
    new = prefix.weight[0] if prefix.mode == "embed" else embeds.new_zeros(prefix.weight.shape[1:])
    kwargs["inputs_embeds"] = prefix.insert(embeds, new)
    for key, fill in (("attention_mask", 1), ("token_type_ids", 0)):
        if kwargs.get(key) is not None:  # (batch, seq) -> (batch, l_p + seq + l_i); the special tokens are seen
            kwargs[key] = prefix.insert(kwargs[key], kwargs[key].new_full(prefix.weight.shape[1:2], fill))
    return (), kwargs


def check_positions(config, seq_len: int, prefix: PrefixTokens) -> None:
    """Absolute position embeddings must cover the input plus the special tokens, or a ValueError saying what to cut."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return
    if config.model_type == "roberta":  # RoBERTa's positions start after padding_idx
        limit -= config.pad_token_id + 1
    n_new = prefix.prefix_len + prefix.infix_len
    if seq_len + n_new > limit:
        raise ValueError(f"method.prefix_len={prefix.prefix_len} + method.infix_len={prefix.infix_len} + the input's "
                         f"{seq_len} tokens exceed the model's {limit} positions; lower method.prefix_len, "
                         f"method.infix_len or the task's sequence length")


def _remove_tokens(base: nn.Module, args: tuple, kwargs: dict, output):
    """Forward hook on the base model: the last hidden state loses the special positions again."""
    if base.prefix.inserted:
        output["last_hidden_state"] = base.prefix.remove(output["last_hidden_state"])
    return output


def _overwrite_layer(block: nn.Module, args: tuple):
    """Forward pre-hook on block i (PreLayer): its input activations at the special positions are trainable."""
    if not block.prefix_tokens.inserted:  # a cached generation step: the prefix positions are not in this input
        return None
    return (block.prefix_tokens.overwrite(args[0], block.prefix_layer), *args[1:])


def check_lengths(prefix_len: int, infix_len: int) -> None:
    """At least one special token (the config keeps each length >= 0): checked by the config and here."""
    if prefix_len + infix_len < 1:
        raise ValueError(f"method.prefix_len={prefix_len} with method.infix_len={infix_len} is invalid; valid choices: "
                         f"l_p + l_i >= 1 (Sec. 5.1), e.g. method.prefix_len=10")


def _lengths(cfg, kind: str) -> tuple[int, int]:
    check_lengths(cfg.prefix_len, cfg.infix_len)
    if cfg.infix_len and kind not in INFIX_OK:
        raise ValueError(f"method.infix_len={cfg.infix_len} is supported only for {list(INFIX_OK)}, not {kind!r}; "
                         f"set method.infix_len=0")
    return cfg.prefix_len, cfg.infix_len


def _apply(model: nn.Module, cfg, mode: str) -> nn.Module:
    kind = architecture(model)
    if kind not in INSERT_AT:
        raise ValueError(f"method.name={cfg.name!r} has no token placement for architecture {kind!r}; "
                         f"supported: {sorted(INSERT_AT)}")
    prefix_len, infix_len = _lengths(cfg, kind)
    for p in model.parameters():
        p.requires_grad_(False)
    base = model.base_model
    (blocks_path,) = block_lists(base, kind)
    blocks = list(base.get_submodule(blocks_path))
    emb = base.get_input_embeddings().weight
    base.prefix = PrefixTokens(mode, len(blocks) if mode == "layer" else 1, prefix_len, infix_len, emb.shape[1],
                               INSERT_AT[kind], cfg.init_std, device=emb.device, dtype=emb.dtype)
    base.register_forward_pre_hook(_insert_tokens, with_kwargs=True)
    base.register_forward_hook(_remove_tokens, with_kwargs=True)
    if mode == "layer":
        for i, block in enumerate(blocks):
            object.__setattr__(block, "prefix_tokens", base.prefix)  # a reference, not a second registered copy
            block.prefix_layer = i
            block.register_forward_pre_hook(_overwrite_layer)
    return model


def apply_embed(model: nn.Module, cfg) -> nn.Module:
    """PreEmbed: freeze the backbone; l_p + l_i special tokens with trainable word embeddings, d (l_p + l_i)."""
    return _apply(model, cfg, "embed")


def apply_layer(model: nn.Module, cfg) -> nn.Module:
    """PreLayer: freeze the backbone; trainable activations at the special positions in every block, L d (l_p+l_i)."""
    return _apply(model, cfg, "layer")
