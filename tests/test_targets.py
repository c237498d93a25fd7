"""The paper's Wq, Wk, Wv, Wo (and MLP) resolve to the right modules on every supported architecture."""
import pytest
import torch

from conftest import TINY, tiny
from lora_repro.lora import LoRALinear, apply_lora
from lora_repro.targets import resolve_targets

EXPECTED_Q = {"bert": "bert.encoder.layer.1.attention.self.query",
              "roberta": "roberta.encoder.layer.1.attention.self.query",
              "deberta-v2": "deberta.encoder.layer.1.attention.self.query_proj",
              "gpt2": "transformer.h.1.attn.c_attn", "llama": "model.layers.1.self_attn.q_proj"}


@pytest.mark.parametrize("kind", sorted(TINY))
def test_q_k_v_o_and_mlp_resolve_on_every_architecture(kind):
    model = tiny(kind)
    for name in ["q", "k", "v", "o", "mlp"]:
        sites = resolve_targets(model, [name])
        modules = {s.module for s in sites}
        assert len(modules) == 2 * (1 if name != "mlp" else (3 if kind == "llama" else 2)), (kind, name, modules)
        for s in sites:
            assert hasattr(model.get_submodule(s.module), "weight")
    assert EXPECTED_Q[kind] in {s.module for s in resolve_targets(model, ["q"])}
    apply_lora(model, targets=["q", "k", "v", "o", "mlp"], r=2)
    assert all(not p.requires_grad or ".lora_" in n for n, p in model.named_parameters())
    with torch.no_grad():
        model(input_ids=torch.ones(2, 4, dtype=torch.long))


def test_o_is_the_attention_output_not_the_mlp_output():
    sites = {s.module for s in resolve_targets(tiny("bert"), ["o"])}
    assert sites == {f"bert.encoder.layer.{i}.attention.output.dense" for i in range(2)}


def test_gpt2_q_k_v_are_slices_of_one_fused_c_attn():
    sites = resolve_targets(tiny("gpt2"), ["q", "v"])
    assert [(s.module, s.slices, s.n_slices) for s in sites] == [
        ("transformer.h.0.attn.c_attn", (0, 2), 3), ("transformer.h.1.attn.c_attn", (0, 2), 3)]
    model = apply_lora(tiny("gpt2"), targets=["k"], r=2)
    assert isinstance(model.transformer.h[0].attn.c_attn, LoRALinear)
    assert model.transformer.h[0].attn.c_attn.slices == (1,)


def test_an_unknown_target_name_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"method.targets=\['q', 'x'\].*\['q', 'k', 'v', 'o', 'mlp'\]"):
        resolve_targets(tiny("bert"), ["q", "x"])


def test_an_unknown_architecture_lists_the_supported_ones():
    model = torch.nn.Linear(2, 2)
    model.config = type("Config", (), {"model_type": "mpnet"})()
    with pytest.raises(ValueError, match=r"architecture 'mpnet'.*supported: \['bert'"):
        resolve_targets(model, ["q"])
