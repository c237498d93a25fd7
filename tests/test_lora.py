"""LoRA's algebra (paper Sec. 4.1-4.2): B = 0 starts at the base model, merging is exact and free, adapters swap."""
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import tiny
from lora_repro.config import LoraMethod
from lora_repro.errors import ConfigError
from lora_repro.lora import (LoRALinear, apply_lora, load_lora, lora_layers, lora_state_dict, merge_lora, save_lora,
                             unmerge_lora)
from lora_repro.methods import apply_method

IDS = torch.randint(5, 100, (3, 7), generator=torch.Generator().manual_seed(0))


def randomize_b(model, seed=1):
    """Give every B a non-zero value, as training would."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.copy_(torch.randn(layer.lora_B.shape, generator=gen) * 0.1)
    return model


def logits(model):
    with torch.no_grad():
        return model(input_ids=IDS).logits


@pytest.mark.parametrize("kind", ["bert", "gpt2", "llama"])
def test_zero_b_makes_the_adapted_model_equal_the_base(kind):
    base = logits(tiny(kind))
    model = apply_lora(tiny(kind), targets=["q", "k", "v", "o"], r=4, alpha=8)
    torch.testing.assert_close(logits(model), base, rtol=0, atol=0)


@pytest.mark.parametrize("kind", ["bert", "gpt2", "deberta-v2"])
def test_merged_equals_unmerged(kind):
    model = randomize_b(apply_lora(tiny(kind), targets=["q", "v", "o"], r=4, alpha=16))
    unmerged = logits(model)
    assert (unmerged - logits(tiny(kind))).abs().max() > 1e-3  # the update really changes the model
    merge_lora(model)
    torch.testing.assert_close(logits(model), unmerged, rtol=1e-5, atol=1e-5)


def test_merge_writes_w0_plus_scaled_ba_and_is_idempotent():
    model = randomize_b(apply_lora(tiny("bert"), targets=["q"], r=2, alpha=6))
    layer = lora_layers(model)[0]
    w0 = layer.weight.detach().clone()
    merge_lora(model)
    merge_lora(model)
    torch.testing.assert_close(layer.weight, w0 + (6 / 2) * layer.lora_B @ layer.lora_A)


@pytest.mark.parametrize("kind", ["bert", "gpt2"])
def test_unmerge_restores_w0(kind):
    model = apply_lora(tiny(kind), targets=["q", "v"], r=4)
    w0 = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    merge_lora(randomize_b(model))
    unmerge_lora(model)
    for name, p in model.named_parameters():
        if "lora_" not in name:
            torch.testing.assert_close(p, w0[name], rtol=0, atol=1e-6)


def test_merged_layer_runs_a_plain_linear():
    layer = randomize_b(apply_lora(tiny("bert"), targets=["q"], r=4)).bert.encoder.layer[0].attention.self.query
    merge_lora(layer.eval())
    x = torch.randn(2, 32)
    assert layer.merged
    torch.testing.assert_close(layer(x), torch.nn.functional.linear(x, layer.weight, layer.bias), rtol=0, atol=0)


def test_a_merged_model_refuses_to_train_until_unmerged():
    # W = W0 + BA carries the update; a training step on it would leave A, B without gradient (merge is for inference)
    model = randomize_b(apply_lora(tiny("bert"), targets=["q"], r=4))
    merge_lora(model).train()
    ids = torch.tensor([[5, 6, 7]])
    with pytest.raises(RuntimeError, match=r"training a merged LoRA layer.*call unmerge_lora\(model\)"):
        model(input_ids=ids).logits.sum().backward()
    with torch.no_grad():
        model(input_ids=ids)  # inference on the merged model, train mode or not
    unmerge_lora(model)(input_ids=ids).logits.sum().backward()
    assert all(p.grad is not None for n, p in model.named_parameters() if ".lora_" in n)


def test_only_lora_weights_train_and_w0_is_frozen():
    model = apply_lora(tiny("bert"), targets=["q", "v"], r=4)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_A" in n or ".lora_B" in n for n in trainable)
    assert len(trainable) == 2 * 2 * 2  # 2 layers x (q, v) x (A, B)


def test_a_is_kaiming_uniform_or_gaussian_and_b_is_zero():
    kaiming = lora_layers(apply_lora(tiny("bert"), targets=["q"], r=8, init="kaiming"))[0]
    bound = 1 / 32 ** 0.5  # kaiming_uniform(a=sqrt 5) on (r, d_in) = U(-1/sqrt(d_in), 1/sqrt(d_in))
    assert kaiming.lora_A.abs().max() <= bound and kaiming.lora_A.abs().max() > 0.5 * bound
    assert torch.count_nonzero(kaiming.lora_B) == 0
    gaussian = lora_layers(apply_lora(tiny("bert"), targets=["q"], r=8, init="gaussian"))[0]
    assert gaussian.lora_A.abs().max() > bound  # unbounded tails
    with pytest.raises(ValueError, match="method.init"):
        apply_lora(tiny("bert"), init="xavier")


def test_fused_c_attn_slices_each_get_their_own_a_and_b_and_touch_only_their_slice():
    model = randomize_b(apply_lora(tiny("gpt2"), targets=["q", "v"], r=2))
    layer = model.transformer.h[0].attn.c_attn
    assert isinstance(layer, LoRALinear) and layer.slices == (0, 2) and layer.fan_in_fan_out
    assert layer.lora_A.shape == (2 * 2, 32) and layer.lora_B.shape == (2 * 32, 2)
    delta = layer.delta_weight()  # (d_in, 3 d) like the Conv1D weight
    assert delta.shape == (32, 96)
    assert torch.count_nonzero(delta[:, 32:64]) == 0  # k untouched
    assert torch.count_nonzero(delta[:, :32]) > 0 and torch.count_nonzero(delta[:, 64:]) > 0
    x = torch.randn(5, 32)
    out = layer(x) - layer.base_forward(x)
    assert torch.count_nonzero(out[:, 32:64]) == 0
    torch.testing.assert_close(out, x @ delta)


def test_r_larger_than_the_layer_is_refused():
    with pytest.raises(ValueError, match="method.r=64 is larger"):
        apply_lora(tiny("bert"), targets=["q"], r=64)


def test_save_load_round_trips_and_holds_only_adapter_tensors(tmp_path):
    spec = LoraMethod(targets=["q", "v"], r=4, alpha=8, dropout=0.0)
    model = randomize_b(apply_method(tiny("bert"), spec))
    save_lora(model, tmp_path / "a.safetensors", {"r": 4})
    saved = load_file(tmp_path / "a.safetensors")
    assert all(".lora_" in n or n.startswith("classifier.") for n in saved)
    assert sum(t.numel() for t in saved.values()) == 2 * 2 * (4 * 32 + 32 * 4) + (32 * 2 + 2)
    fresh = tiny("bert")  # the same frozen W0; its own A init and head
    torch.manual_seed(123)
    fresh = apply_method(fresh, spec)
    assert not torch.allclose(logits(fresh), logits(model))
    load_lora(fresh, tmp_path / "a.safetensors")
    torch.testing.assert_close(logits(fresh), logits(model), rtol=0, atol=0)


def test_task_switching_swaps_adapters_without_reloading_w0(tmp_path):
    model = apply_lora(tiny("bert"), targets=["q", "v"], r=4)
    task_a, task_b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_lora(randomize_b(model, seed=1), task_a)
    out_a = logits(model)
    save_lora(randomize_b(model, seed=2), task_b)
    out_b = logits(model)
    merge_lora(model)  # deployed on task b
    unmerge_lora(model)
    load_lora(model, task_a)
    merge_lora(model)
    torch.testing.assert_close(logits(model), out_a, rtol=1e-5, atol=1e-5)
    with pytest.raises(RuntimeError, match="unmerge_lora"):
        load_lora(model, task_b)
    unmerge_lora(model)
    load_lora(model, task_b)
    torch.testing.assert_close(logits(merge_lora(model)), out_b, rtol=1e-5, atol=1e-5)


def test_an_adapter_that_does_not_fit_is_refused_naming_the_tensor(tmp_path):
    save_lora(apply_lora(tiny("bert"), targets=["q", "v"], r=4), tmp_path / "r4.safetensors")
    with pytest.raises(ValueError, match=r"lora_A has shape \(4, 32\), the model expects \(8, 32\)"):
        load_lora(apply_lora(tiny("bert"), targets=["q", "v"], r=8), tmp_path / "r4.safetensors")
    with pytest.raises(ValueError, match="no tensor bert.encoder.layer.0.attention.self.key.lora_A"):
        load_lora(apply_lora(tiny("bert"), targets=["q", "k", "v"], r=4), tmp_path / "r4.safetensors")
    with pytest.raises(ValueError, match="has no place in it"):
        load_lora(apply_lora(tiny("bert"), targets=["q"], r=4), tmp_path / "r4.safetensors")
    save_file({"x": torch.zeros(1)}, tmp_path / "other.safetensors")
    with pytest.raises(ValueError, match="no tensor"):
        load_lora(apply_lora(tiny("bert"), targets=["q"], r=4), tmp_path / "other.safetensors")


def test_a_corrupted_adapter_file_is_an_error(tmp_path):
    path = tmp_path / "a.safetensors"
    save_lora(apply_lora(tiny("bert"), targets=["q"], r=4), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        load_lora(apply_lora(tiny("bert"), targets=["q"], r=4), path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_lora(apply_lora(tiny("bert"), targets=["q"], r=4), tmp_path / "missing.safetensors")
