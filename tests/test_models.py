"""Backbones: a tiny model's W0 is fixed by model.init_seed; its task head is drawn from the run's seed; a local
folder loads from save_pretrained files or from one GGUF file (model.gguf_file)."""
import pytest
import torch
from transformers import LlamaForCausalLM

from conftest import SHARED, tiny_llama
from lora_repro.config import ModelConfig, compose
from lora_repro.errors import ConfigError
from lora_repro.lora import apply_lora
from lora_repro.models import load_model, load_tokenizer

TINY_BERT = dict(name="tiny", path=None, init_seed=0, config={
    "model_type": "bert", "vocab_size": 100, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
    "intermediate_size": 64})


def build(seed: int, fresh_head: bool = True, **model):
    torch.manual_seed(seed)  # what run.py's seed_everything(cfg.seed) does before model creation
    return load_model(ModelConfig(**{**TINY_BERT, **model}), "classification", 3, fresh_head=fresh_head).state_dict()


def test_two_seeds_give_two_heads_on_the_same_w0():
    a, b = build(0), build(1)
    backbone = [k for k in a if not k.startswith("classifier")]
    assert len(backbone) > 30 and all(torch.equal(a[k], b[k]) for k in backbone)
    assert not torch.equal(a["classifier.weight"], b["classifier.weight"])
    assert abs(a["classifier.weight"].std().item() - 0.02) < 0.005  # BERT's own init, N(0, initializer_range)
    assert torch.equal(a["classifier.weight"], build(0)["classifier.weight"])  # same seed, same head


def test_init_seed_alone_moves_w0_and_the_run_rng_is_untouched():
    a, b = build(0), build(0, init_seed=1)
    assert not torch.equal(a["bert.encoder.layer.0.attention.self.query.weight"],
                           b["bert.encoder.layer.0.attention.self.query.weight"])
    assert torch.equal(a["classifier.weight"], b["classifier.weight"])  # the head: the run seed's first draws


def test_fresh_head_false_keeps_the_init_seed_head_for_every_run_seed():
    assert torch.equal(build(0, fresh_head=False)["classifier.weight"], build(5, fresh_head=False)["classifier.weight"])


def test_gguf_file_loads_the_weights_and_tokenizer_it_was_written_from(gguf_folder):
    # E2E's task file sets GPT-2's dropouts (resid_pdrop, ...), fields a Llama config lacks: set, not a TypeError
    cfg = ModelConfig(name="tiny-llama", path=str(gguf_folder), gguf_file="tiny.gguf",
                      config_overrides={"resid_pdrop": 0.0, "attn_pdrop": 0.0})
    model, tokenizer = load_model(cfg, "causal_lm").eval(), load_tokenizer(cfg)
    ids = tokenizer("name : The Eagle at the", add_special_tokens=False)["input_ids"]
    assert isinstance(model, LlamaForCausalLM) and 259 in ids  # "Ġt", the one merge
    assert tokenizer.decode(ids) == "name : The Eagle at the"
    assert (tokenizer.eos_token, tokenizer.eos_token_id) == ("<|im_end|>", 2)
    with torch.no_grad():
        x = torch.tensor([ids])
        torch.testing.assert_close(model(x).logits, tiny_llama()(x).logits, rtol=0, atol=1e-6)
    absolute = ModelConfig(name="tiny-llama", path=str(gguf_folder), gguf_file=str(gguf_folder / "tiny.gguf"))
    assert torch.equal(load_model(absolute, "causal_lm").model.layers[1].self_attn.k_proj.weight,
                       model.model.layers[1].self_attn.k_proj.weight)


def test_gguf_folder_passes_the_run_config_check_and_a_wrong_file_names_the_choices(gguf_folder):
    run = compose("model=smollm2-135m", f"model.path={gguf_folder}", "model.gguf_file=tiny.gguf", "task=e2e",
                  "method=lora", "method.r=4")
    assert run.model.gguf_file == "tiny.gguf"
    for make in (lambda: compose("model=smollm2-135m", f"model.path={gguf_folder}", "model.gguf_file=nope.gguf"),
                 lambda: load_model(ModelConfig(name="x", path=str(gguf_folder), gguf_file="nope.gguf"), "causal_lm"),
                 lambda: load_tokenizer(ModelConfig(name="x", path=str(gguf_folder), gguf_file="nope.gguf"))):
        with pytest.raises(ConfigError, match=r"model.gguf_file='nope.gguf' is not a file in model.path=.*; valid "
                                              r"choices: one of \['tiny.gguf'\]"):
            make()
    with pytest.raises(ConfigError, match=r"no config.json there\); valid choices: .*model.gguf_file=NAME with NAME "
                                          r"one of \['tiny.gguf'\]"):
        load_model(ModelConfig(name="x", path=str(gguf_folder)), "causal_lm")


def test_save_pretrained_llama_loads_without_gguf_file_and_takes_gpt2_overrides(tmp_path):
    tiny_llama().save_pretrained(tmp_path)
    model = load_model(ModelConfig(name="x", path=str(tmp_path), config_overrides={"resid_pdrop": 0.0}), "causal_lm")
    assert model.config.resid_pdrop == 0.0 and model.config.attention_dropout == 0.0
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), tiny_llama().state_dict().values()))
    with pytest.raises(ConfigError, match=r"model.gguf_file='x.gguf' is not a file in .*none there"):
        load_model(ModelConfig(name="x", path=str(tmp_path), gguf_file="x.gguf"), "causal_lm")


SMOLLM2 = SHARED / "models/smollm2-135m-instruct"


@pytest.mark.real
def test_real_smollm2_gguf_is_a_135m_llama_and_lora_qv_r4_trains_230k():
    cfg = ModelConfig(name="HuggingFaceTB/SmolLM2-135M-Instruct", path=str(SMOLLM2),
                      gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")
    model, tokenizer = load_model(cfg, "causal_lm"), load_tokenizer(cfg)
    c = model.config
    assert isinstance(model, LlamaForCausalLM) and sum(p.numel() for p in model.parameters()) == 134_515_008
    assert (c.num_hidden_layers, c.hidden_size, c.num_attention_heads, c.num_key_value_heads) == (30, 576, 9, 3)
    assert (tokenizer.eos_token, tokenizer.eos_token_id, len(tokenizer)) == ("<|im_end|>", 2, 49_152)
    apply_lora(model, ["q", "v"], r=4, alpha=32)
    # per layer r x (d_in + d_out): q is 576 -> 576; v is 576 -> 3 kv heads x 64 = 192 (grouped-query attention)
    d, d_kv = c.hidden_size, c.num_key_value_heads * c.hidden_size // c.num_attention_heads
    expected = c.num_hidden_layers * 4 * ((d + d) + (d + d_kv))
    assert expected == 230_400 == sum(p.numel() for p in model.parameters() if p.requires_grad)
