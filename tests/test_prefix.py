"""PreEmbed and PreLayer (paper Sec. 5.1) train only their vectors, count d(l_p+l_i) and L d(l_p+l_i), and run."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from transformers import AutoModelForSequenceClassification, GPT2Config

from conftest import tiny
from lora_repro.methods import METHODS, apply_method, count_trainable
from lora_repro.models import is_head

ROOT = Path(__file__).resolve().parents[1]
GPT2_MEDIUM = GPT2Config(n_embd=1024, n_layer=24, n_head=16)
NAMES = ("prefix_embed", "prefix_layer")


def method(name: str, **overrides):
    """conf/method/<name>.yaml, as Hydra composes it (the typed method config), with overrides."""
    from lora_repro.config import compose, validated
    composed = compose(f"method={name}").method
    return validated(type(composed), {**composed.model_dump(), **overrides}, "method")


def batch(kind: str, causal: bool = False) -> dict:
    torch.manual_seed(1)
    ids = torch.randint(1, 100, (2, 7))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0  # one padded row: the extended mask must still line up
    return dict(input_ids=ids, attention_mask=mask, labels=ids if causal else torch.tensor([0, 1]))


def lengths(kind: str) -> dict:
    return dict(prefix_len=3, infix_len=0 if kind == "gpt2" else 2)  # infix only where the input can see it


def test_configs_name_registered_methods():
    for name in NAMES:
        assert method(name).name == name and name in METHODS


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["bert", "roberta", "gpt2"])
def test_only_the_prefix_trains_and_counts_follow_sec_5_1(kind, name):
    model = apply_method(tiny(kind), method(name, **lengths(kind)))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad and not is_head(n)}
    assert trainable == {f"{model.base_model_prefix}.prefix.weight"}
    n_tokens = sum(lengths(kind).values())
    layers = 2 if name == "prefix_layer" else 1
    assert count_trainable(model) == layers * 32 * n_tokens  # d (l_p + l_i), L d (l_p + l_i)


def test_counts_on_gpt2_medium_against_the_paper():
    with torch.device("meta"):
        model = AutoModelForSequenceClassification.from_config(GPT2_MEDIUM)
    apply_method(model, method("prefix_layer", prefix_len=14, infix_len=0))
    # Table 3 prints PreLayer 0.35M on GPT-2 M = 24 x 1024 x (l_p + l_i), i.e. l_p + l_i = 14.2: no whole length
    # gives it; 14 tokens give 344,064 (0.34M), 15 give 368,640 (0.37M).
    assert count_trainable(model) == 24 * 1024 * 14 == 344_064
    # GPT-2 L's 0.77M = 36 x 1280 x 16.7 tokens: again no whole length (16 -> 737,280; 17 -> 783,360).
    # GPT-3 (d = 12288, L = 96), Sec. 5.1: PreEmbed l_p=256, l_i=8 -> 12288 x 264 = 3,244,032, the printed 3.2M;
    # PreLayer l_p=8, l_i=8 -> 96 x 12288 x 16 = 18,874,368, not the printed 20.2M (which would need 17.1 tokens;
    # the paper does not say what else it counts).
    assert 12288 * 264 == 3_244_032 and 96 * 12288 * 16 == 18_874_368


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind, causal", [("bert", False), ("roberta", False), ("gpt2", False), ("gpt2", True)])
def test_forward_backward_reaches_every_prefix_vector(kind, causal, name):
    model = apply_method(tiny(kind, causal=causal), method(name, **lengths(kind)))
    inputs = batch(kind, causal)
    out = model(**inputs)
    assert out.logits.shape[:2] == ((2, 7) if causal else (2, 2))  # the inserted positions are cut out again
    assert torch.isfinite(out.loss)
    out.loss.backward()
    grad = model.base_model.prefix.weight.grad  # (layers, l_p + l_i, d)
    assert (grad.abs().sum(dim=-1) > 0).all()  # every token of every layer gets a gradient


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_output_depends_on_the_prefix(kind, name):
    model = apply_method(tiny(kind), method(name, **lengths(kind)))
    inputs = {k: v for k, v in batch(kind).items() if k != "labels"}
    with torch.no_grad():
        before = model.base_model(**inputs).last_hidden_state  # (batch, seq, d): what every head reads
        model.base_model.prefix.weight.add_(torch.randn_like(model.base_model.prefix.weight))  # not constant: LN
        after = model.base_model(**inputs).last_hidden_state
    assert before.shape == (2, 7, 32) and (before - after).abs().max() > 1e-3


def test_infix_on_gpt2_and_empty_lengths_are_rejected():
    with pytest.raises(ValueError, match="method.infix_len=2"):
        apply_method(tiny("gpt2"), method("prefix_embed", prefix_len=3, infix_len=2))
    with pytest.raises(ValueError, match="method.prefix_len=0"):
        apply_method(tiny("bert"), method("prefix_layer", prefix_len=0, infix_len=0))
    with pytest.raises(ValueError, match="'llama'"):
        apply_method(tiny("llama"), method("prefix_layer"))


def test_cli_runs_prefix_layer(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-m", "lora_repro.run", "method=prefix_layer", "task.n_train=256",
                             "train.epochs=1", f"hydra.run.dir={tmp_path}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "metrics.json").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_cached_generation_on_gpt2_equals_full_forward_greedy_decoding(name):
    model = apply_method(tiny("gpt2", causal=True), method(name, prefix_len=3, infix_len=0))
    with torch.no_grad():
        model.base_model.prefix.weight.normal_()  # trained-looking vectors, so a wrong position would show
        ids = torch.randint(1, 100, (1, 6), generator=torch.Generator().manual_seed(3))
        steps = ids
        for _ in range(5):  # the training path: whole sequence, no cache, no position_ids
            steps = torch.cat([steps, model(input_ids=steps).logits[:, -1:].argmax(-1)], dim=1)
        out = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=5, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    assert out.tolist() == steps.tolist()


@pytest.mark.parametrize("name", NAMES)
def test_left_padded_beam_search_with_a_prefix_equals_one_by_one(name):
    from lora_repro.models import byte_tokenizer
    from lora_repro.tasks import e2e
    model = apply_method(tiny("gpt2", causal=True, vocab_size=257, n_positions=512),
                         method(name, prefix_len=3, infix_len=0))
    with torch.no_grad():
        model.base_model.prefix.weight.normal_()
    cfg = OmegaConf.create({"max_seq_len": 128, "decode": {"num_beams": 3, "length_penalty": 0.9,
                                                           "no_repeat_ngram_size": 4, "max_new_tokens": 8,
                                                           "stop_strings": []}})
    mrs = ["name[Alimentum]", "name[The Eagle], food[French], area[riverside]"]
    tok, cpu = byte_tokenizer(), torch.device("cpu")
    assert e2e.generate(model, tok, mrs, cfg, cpu, 2) == [e2e.generate(model, tok, [m], cfg, cpu, 1)[0] for m in mrs]


def test_too_many_special_tokens_for_the_positions_is_a_clear_error():
    model = apply_method(tiny("roberta", max_position_embeddings=20), method("prefix_embed", prefix_len=8, infix_len=2))
    with pytest.raises(ValueError, match=r"method.prefix_len=8 \+ method.infix_len=2 \+ the input's 9 tokens exceed "
                                         r"the model's 18 positions"):
        model(input_ids=torch.randint(5, 100, (1, 9)))
    assert model(input_ids=torch.randint(5, 100, (1, 8))).logits.shape == (1, 2)  # 8 + 10 = 18 fits


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("kind", ["bert", "roberta"])
def test_infix_tokens_sit_at_each_rows_true_end_whatever_the_padding(kind, name):
    # a row padded in a batch scores as it does alone: its infix follows its last token, not the batch's padding
    model = apply_method(tiny(kind), method(name, prefix_len=3, infix_len=2)).eval()
    torch.manual_seed(0)
    with torch.no_grad():
        model.base_model.prefix.weight.normal_()
    ids = torch.randint(5, 100, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, 5:] = 0
    with torch.no_grad():  # the encoder's output at the real tokens (the special positions are cut out again)
        together = model.base_model(input_ids=ids, attention_mask=mask).last_hidden_state
        alone = model.base_model(input_ids=ids[1:, :5], attention_mask=mask[1:, :5]).last_hidden_state
        full = model.base_model(input_ids=ids[:1], attention_mask=mask[:1]).last_hidden_state
    assert together.shape == (2, 9, 32) and alone.shape == (1, 5, 32)
    assert (together[1, :5] - alone[0]).abs().max() < 1e-5 and (together[0] - full[0]).abs().max() < 1e-5
    assert (together[1, :5] - together[0, :5]).abs().max() > 0.1  # the rows differ: the check is not vacuous


def test_insert_then_remove_is_the_identity_per_row():
    from lora_repro.methods.prefix import PrefixTokens
    tokens = PrefixTokens("embed", 1, 2, 3, 4, at=1, init_std=1.0)
    tokens.ends = torch.tensor([6, 3])
    h = torch.arange(2 * 6 * 4, dtype=torch.float).view(2, 6, 4)
    out = tokens.insert(h, tokens.weight[0])
    assert out.shape == (2, 11, 4) and torch.equal(tokens.remove(out), h)
    assert torch.equal(out[1, 5:8], tokens.weight[0, 2:].detach())  # row 1: [h0, prefix x2, h1, h2], then the infix
    assert torch.equal(out[1, 8:], h[1, 3:])  # then its padding
    assert torch.equal(out[0, 8:], tokens.weight[0, 2:].detach())  # row 0 is full: infix at the very end
