"""Trainable-parameter counts equal the paper's closed forms (head excluded, as Tables 2 and 3 count)."""
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, GPT2Config, RobertaConfig

from conftest import tiny
from lora_repro.config import from_hydra, method_config
from lora_repro.methods import apply_method, count_head, count_trainable

ROBERTA_BASE = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1)
ROBERTA_LARGE = RobertaConfig(vocab_size=50265, max_position_embeddings=514, type_vocab_size=1, hidden_size=1024,
                              num_hidden_layers=24, num_attention_heads=16, intermediate_size=4096)
GPT2_MEDIUM = GPT2Config(n_embd=1024, n_layer=24, n_head=16)


def lora(targets=("q", "v"), r=8, alpha=16):
    return method_config({"name": "lora", "targets": list(targets), "r": r, "alpha": alpha, "dropout": 0.0})


def on_meta(config, auto=AutoModelForSequenceClassification):
    """The full-size architecture with no memory behind its weights: counts without downloading or allocating."""
    with torch.device("meta"):
        return auto.from_config(config)


@pytest.mark.parametrize("config, r, expected", [
    (ROBERTA_BASE, 8, 2 * 12 * 2 * 768 * 8),      # 294,912: Table 2 "0.3M"
    (ROBERTA_LARGE, 8, 2 * 24 * 2 * 1024 * 8),    # 786,432: Table 2 "0.8M"
])
def test_roberta_lora_counts_equal_the_closed_form(config, r, expected):
    model = apply_method(on_meta(config), lora(r=r))
    assert count_trainable(model) == expected
    h = config.hidden_size  # RoBERTa's head: dense h x h, then out_proj h x 2; not in the paper's count
    assert count_head(model) == h * h + h + h * 2 + 2


def test_gpt2_medium_lora_count_is_393216_not_the_printed_035m():
    # Table 3 prints 0.35M; q and v at r=4 on 24 layers of width 1024 are 2*24*2*1024*4 = 393,216 (PAPER.md)
    model = apply_method(on_meta(GPT2_MEDIUM, AutoModelForCausalLM), lora(r=4, alpha=32))
    assert count_trainable(model) == 393_216


def test_full_fine_tuning_trains_everything_but_counts_the_head_apart():
    model = apply_method(tiny("bert"), method_config({"name": "full"}))
    total = sum(p.numel() for p in model.parameters())
    assert count_trainable(model) + count_head(model) == total
    assert count_head(model) == 32 * 2 + 2


def test_the_task_head_trains_under_lora():
    model = apply_method(tiny("roberta"), lora(r=2))
    assert all(p.requires_grad for n, p in model.named_parameters() if n.startswith("classifier."))
    assert not any(p.requires_grad for n, p in model.named_parameters() if "word_embeddings" in n)


def test_an_unknown_method_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"method.name='lora2'.*'full', 'lora'"):
        method_config({"name": "lora2"})


def composed(other: str, **prefix):
    """conf/method/lora+<other>.yaml as Hydra composes it, on small sizes."""
    from hydra import compose, initialize_config_dir
    from conftest import ROOT
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=[f"method=lora+{other}", "method.lora.r=4",
                                           *(f"method.{other}.{k}={v}" for k, v in prefix.items())])
    return from_hydra(cfg).method


@pytest.mark.parametrize("other, per_layer", [("prefix_embed", False), ("prefix_layer", True)])
def test_lora_with_prefix_tuning_trains_and_counts_both(other, per_layer):
    model = apply_method(tiny("roberta"), composed(other, prefix_len=3, infix_len=2))
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    lora_names = {n for n in trainable if ".lora_" in n}
    assert len(lora_names) == 2 * 2 * 2 and "roberta.prefix.weight" in trainable
    lora_count = 2 * 2 * 4 * (32 + 32)  # 2 layers x (q, v) x r=4 x (A + B)
    prefix_count = (2 if per_layer else 1) * 5 * 32  # (L or 1) x (l_p + l_i) x d
    assert count_trainable(model) == lora_count + prefix_count
    ids = torch.randint(5, 100, (2, 6))
    model(input_ids=ids, labels=torch.tensor([0, 1])).loss.backward()
    assert model.roberta.prefix.weight.grad.abs().sum() > 0
    assert model.roberta.encoder.layer[0].attention.self.query.lora_B.grad.abs().sum() > 0  # B = 0: A's grad is 0


@pytest.mark.parametrize("other", ["prefix_embed", "prefix_layer"])
def test_lora_with_prefix_saves_loads_and_merges_only_lora(other, tmp_path):
    from lora_repro.lora import load_lora, merge_lora, save_lora
    torch.manual_seed(3)
    model = apply_method(tiny("roberta"), composed(other, prefix_len=3, infix_len=0)).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.requires_grad:
                p.normal_(std=0.1)  # a trained state: B != 0
    ids = torch.randint(5, 100, (2, 6))
    with torch.no_grad():
        before = model(input_ids=ids).logits
    save_lora(model, tmp_path / "a.safetensors")
    fresh = load_lora(apply_method(tiny("roberta"), composed(other, prefix_len=3, infix_len=0)).eval(),
                      tmp_path / "a.safetensors")
    assert torch.equal(fresh.roberta.prefix.weight, model.roberta.prefix.weight)
    prefix = model.roberta.prefix.weight.detach().clone()
    query = model.roberta.encoder.layer[1].attention.self.query
    w0 = query.weight.detach().clone()
    merge_lora(model)
    with torch.no_grad():
        assert torch.allclose(model(input_ids=ids).logits, before, atol=1e-5)
        assert torch.allclose(fresh(input_ids=ids).logits, before, atol=1e-6)
    assert query.merged and torch.allclose(query.weight, w0 + query.delta_weight(), atol=1e-6)
    assert not torch.equal(query.weight, w0)
    assert torch.equal(model.roberta.prefix.weight, prefix)  # the prefix is not folded anywhere


def test_a_composition_of_an_unknown_method_lists_the_choices():
    with pytest.raises(ValueError, match=r"method.name='lora\+prefix' is not a method; valid choices: .*joined by \+"):
        method_config({"name": "lora+prefix"})
    with pytest.raises(ValueError, match=r"method.lora \(that method's config\) is absent"):
        method_config({"name": "lora+bitfit", "bitfit": {"name": "bitfit"}})
