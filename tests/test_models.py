"""Backbones: a tiny model's W0 is fixed by model.init_seed; its task head is drawn from the run's seed."""
import torch

from lora_repro.config import ModelConfig
from lora_repro.models import load_model

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
