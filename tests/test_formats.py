"""Adapters between our files, PEFT folders and loralib checkpoints, checked against the real libraries."""
import loralib
import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoConfig, AutoModelForSequenceClassification
from transformers.pytorch_utils import Conv1D

from conftest import SHARED, tiny
from lora_repro import formats
from lora_repro.errors import ConfigError
from lora_repro.lora import LoRALinear, apply_lora, lora_state_dict, save_lora

IDS = torch.tensor([[5, 17, 42, 9, 63, 2, 88, 31], [7, 7, 12, 99, 3, 54, 20, 1]])
RELEASED = SHARED / "checkpoints/microsoft-lora/roberta_base_lora_mnli.bin"


def trained(model, seed: int = 1):
    """Give every trainable tensor (A, B, the head) random values, as training would: B = 0 would hide bugs."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.copy_(0.3 * torch.randn(p.shape, generator=gen))
    return model.eval()


def logits(model) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=IDS).logits


def our_adapter(tmp_path, kind: str, targets, r: int = 4, alpha: float = 8, causal: bool = False):
    """A tiny model with a 'trained' LoRA of ours, its logits, and its adapter file as lora_repro.run writes it."""
    model = trained(apply_lora(tiny(kind, causal=causal), targets, r, alpha))
    for name, p in model.named_parameters():  # the head trains too (lora_repro.methods.apply_method)
        p.requires_grad_(".lora_" in name or name.startswith("classifier"))
    model = trained(model, seed=2)
    path = tmp_path / "adapter.safetensors"
    save_lora(model, path, {"model": f"tiny-{kind}", "r": r, "alpha": alpha, "targets": list(targets)})
    return model, logits(model), path


@pytest.mark.parametrize("kind", ["bert", "roberta", "deberta-v2"])
def test_peft_round_trip_gives_equal_logits_on_encoders(tmp_path, kind):
    _, ours, path = our_adapter(tmp_path, kind, ["q", "v"])
    folder = formats.write(formats.read(path), "peft", tmp_path / "peft")
    peft_model = PeftModel.from_pretrained(tiny(kind), str(folder)).eval()
    assert torch.allclose(logits(peft_model), ours, atol=1e-5, rtol=0)
    # and back: the same tensors, the same function
    back = formats.read(folder)
    assert (back.r, back.alpha, back.targets) == (4, 8.0, ["q", "v"])
    original = load_file(str(path))
    assert back.tensors.keys() == original.keys()
    assert all(torch.equal(back.tensors[n], original[n]) for n in original)
    assert torch.allclose(logits(formats.into_model(back, tiny(kind))), ours, atol=1e-5, rtol=0)


def test_peft_round_trip_gives_equal_logits_on_llama(tmp_path):
    _, ours, path = our_adapter(tmp_path, "llama", ["q", "k", "v", "o"], causal=True)
    folder = formats.write(formats.read(path), "peft", tmp_path / "peft")
    config = LoraConfig.from_pretrained(str(folder))
    assert config.task_type == "CAUSAL_LM" and not config.modules_to_save and not config.rank_pattern  # vLLM-ready
    peft_model = PeftModel.from_pretrained(tiny("llama", causal=True), str(folder)).eval()
    assert torch.allclose(logits(peft_model), ours, atol=1e-5, rtol=0)
    back = formats.read(folder)
    assert back.targets == ["q", "k", "v", "o"]
    assert torch.allclose(logits(formats.into_model(back, tiny("llama", causal=True))), ours, atol=1e-5, rtol=0)


def test_peft_config_names_the_head_under_modules_to_save(tmp_path):
    _, _, path = our_adapter(tmp_path, "roberta", ["q", "v"])
    folder = formats.write(formats.read(path), "peft", tmp_path / "peft", base="FacebookAI/roberta-base")
    config = LoraConfig.from_pretrained(str(folder))
    assert config.modules_to_save == ["classifier"] and config.r == 4 and config.lora_alpha == 8
    assert config.base_model_name_or_path == "FacebookAI/roberta-base"
    peft_model = PeftModel.from_pretrained(tiny("roberta"), str(folder))
    head = peft_model.base_model.model.classifier.modules_to_save["default"]
    assert torch.equal(head.out_proj.weight, load_file(str(path))["classifier.out_proj.weight"])


def test_gpt2_per_slice_q_v_is_one_block_placed_c_attn_adapter_in_peft(tmp_path):
    _, ours, path = our_adapter(tmp_path, "gpt2", ["q", "v"], r=2, alpha=4, causal=True)
    folder = formats.write(formats.read(path), "peft", tmp_path / "peft")
    config = LoraConfig.from_pretrained(str(folder))
    assert (config.r, config.lora_alpha, config.fan_in_fan_out) == (4, 8, True)  # n r, n alpha: scale alpha / r
    saved = load_file(str(folder / "adapter_model.safetensors"))
    B = saved["base_model.model.transformer.h.0.attn.c_attn.lora_B.weight"]  # (3 * 32, 4)
    assert B.shape == (96, 4) and not B[32:64].any() and not B[:32, 2:].any() and not B[64:, :2].any()
    peft_model = PeftModel.from_pretrained(tiny("gpt2", causal=True), str(folder)).eval()
    assert torch.allclose(logits(peft_model), ours, atol=1e-5, rtol=0)
    # PEFT's merged ΔW of c_attn equals ours on every slice, k untouched
    ours_model = formats.into_model(formats.read(path), tiny("gpt2", causal=True))
    ours_delta = ours_model.transformer.h[1].attn.c_attn.delta_weight()
    peft_delta = peft_model.base_model.model.transformer.h[1].attn.c_attn.get_delta_weight("default")
    assert torch.allclose(peft_delta, ours_delta, atol=1e-6, rtol=0) and not ours_delta[:, 32:64].any()
    back = formats.read(folder)  # the block structure is recognised: r = 2 per slice again, the same tensors
    assert (back.r, back.alpha, back.targets) == (2, 4.0, ["q", "v"])
    original = load_file(str(path))
    assert all(torch.equal(back.tensors[n], original[n]) for n in original)


def test_a_general_peft_c_attn_adapter_imports_exactly_as_slices(tmp_path):
    peft_model = get_peft_model(tiny("gpt2", causal=True), LoraConfig(r=4, lora_alpha=12, target_modules=["c_attn"],
                                                                      fan_in_fan_out=True, task_type="CAUSAL_LM"))
    trained(peft_model)  # A and B of rank 4 across q, k and v together
    peft_model.save_pretrained(str(tmp_path / "peft"))
    adapter = formats.read(tmp_path / "peft")
    assert (adapter.r, adapter.alpha, adapter.targets) == (4, 12.0, ["q", "k", "v"])
    ours = formats.into_model(adapter, tiny("gpt2", causal=True))
    assert torch.allclose(logits(ours), logits(peft_model), atol=1e-5, rtol=0)


def test_peft_adapter_on_q_k_v_o_of_bert_imports_with_its_targets(tmp_path):
    config = LoraConfig(r=2, lora_alpha=6, target_modules=["query", "key", "value", "attention.output.dense"],
                        task_type="SEQ_CLS")
    peft_model = trained(get_peft_model(tiny("bert"), config))
    peft_model.save_pretrained(str(tmp_path / "peft"))
    adapter = formats.read(tmp_path / "peft")
    assert (adapter.r, adapter.alpha, adapter.targets) == (2, 6.0, ["q", "k", "v", "o"])
    assert torch.allclose(logits(formats.into_model(adapter, tiny("bert"))), logits(peft_model), atol=1e-5, rtol=0)


def test_loralib_linear_beside_ours_gives_equal_outputs_and_merged_weights():
    torch.manual_seed(0)
    base = torch.nn.Linear(32, 24)
    ref = loralib.Linear(32, 24, r=4, lora_alpha=8)
    ours = LoRALinear(base, r=4, alpha=8)
    with torch.no_grad():
        ref.weight.copy_(base.weight), ref.bias.copy_(base.bias)
        ours.lora_A.normal_(std=0.3), ours.lora_B.normal_(std=0.3)
        ref.lora_A.copy_(ours.lora_A), ref.lora_B.copy_(ours.lora_B)
    x = torch.randn(3, 5, 32)
    ref.train()
    assert torch.allclose(ref(x), ours(x), atol=1e-5, rtol=0)
    ref.eval()  # loralib merges on eval()
    ours.eval().merge()
    assert ref.merged and torch.allclose(ref.weight, ours.weight, atol=1e-6, rtol=0)
    assert torch.allclose(ref(x), ours(x), atol=1e-5, rtol=0)


def test_loralib_merged_linear_q_v_of_gpt2_has_our_layout():
    torch.manual_seed(0)
    base = Conv1D(3 * 32, 32)  # GPT-2's c_attn: W stored (d_in, 3 d)
    torch.nn.init.normal_(base.weight, std=0.2), torch.nn.init.normal_(base.bias)
    ref = loralib.MergedLinear(32, 96, r=2, lora_alpha=4, enable_lora=[True, False, True], fan_in_fan_out=True)
    ours = LoRALinear(base, r=2, alpha=4, slices=(0, 2), n_slices=3)
    with torch.no_grad():
        ref.weight.copy_(base.weight), ref.bias.copy_(base.bias)  # loralib keeps fan_in_fan_out weights as (d_in, d_out)
        ours.lora_A.normal_(std=0.3), ours.lora_B.normal_(std=0.3)
        ref.lora_A.copy_(ours.lora_A), ref.lora_B.copy_(ours.lora_B)  # (2 r, d_in), (2 d, r): the same tensors
    x = torch.randn(3, 5, 32)
    ref.train()
    out = ours(x)
    assert torch.allclose(ref(x), out, atol=1e-5, rtol=0)
    assert torch.equal(out[..., 32:64], base(x)[..., 32:64])  # k: no update
    ref.eval()
    ours.eval().merge()
    assert ref.merged and torch.allclose(ref.weight, ours.weight, atol=1e-6, rtol=0)


def loralib_model(kind: str, causal: bool = False):
    """A tiny HF model whose q, v are loralib layers (as microsoft/LoRA's examples build them), 'trained'."""
    model = tiny(kind, causal=causal)
    for block in (model.transformer.h if causal else model.base_model.encoder.layer):
        if causal:
            old = block.attn.c_attn
            new = loralib.MergedLinear(32, 96, r=2, lora_alpha=4, enable_lora=[True, False, True], fan_in_fan_out=True)
            with torch.no_grad():
                new.weight.copy_(old.weight), new.bias.copy_(old.bias)
            block.attn.c_attn = new
        else:
            for name in ("query", "value"):
                old = getattr(block.attention.self, name)
                new = loralib.Linear(32, 32, r=2, lora_alpha=4)
                new.load_state_dict(old.state_dict(), strict=False)
                setattr(block.attention.self, name, new)
    loralib.mark_only_lora_as_trainable(model)
    for name, p in model.named_parameters():
        p.requires_grad_(".lora_" in name or name.startswith("classifier"))
    return trained(model)  # eval(): loralib merges B A into W, the function is the same


@pytest.mark.parametrize("kind,causal", [("roberta", False), ("gpt2", True)])
def test_a_loralib_checkpoint_scores_the_same_in_our_model(tmp_path, kind, causal):
    ref = loralib_model(kind, causal)
    state = {**loralib.lora_state_dict(ref), **{n: p for n, p in ref.state_dict().items() if n.startswith("classifier")}}
    torch.save({"model_state_dict": {"module." + n: t for n, t in state.items()}}, tmp_path / "ckpt.pt")  # DDP's
    adapter = formats.read(tmp_path / "ckpt.pt", r=2, alpha=4, targets="q,v" if causal else None)
    assert adapter.targets == ["q", "v"] and len(adapter.modules) == 2 * (1 if causal else 2)
    ours = formats.into_model(adapter, tiny(kind, causal=causal))
    assert torch.allclose(logits(ours), logits(ref), atol=1e-5, rtol=0)
    # and out again as loralib: loads into the loralib model unchanged
    formats.write(adapter, "loralib", tmp_path / "again.bin")
    again = torch.load(tmp_path / "again.bin", weights_only=True)
    assert again.keys() == state.keys() and all(torch.equal(again[n], state[n]) for n in state)


def test_loralib_file_without_r_or_alpha_is_a_clear_error(tmp_path):
    torch.save(loralib.lora_state_dict(loralib_model("roberta")), tmp_path / "ckpt.bin")
    with pytest.raises(ValueError, match="stores no r or alpha"):
        formats.read(tmp_path / "ckpt.bin")
    with pytest.raises(ValueError, match="do not fit r=4"):
        formats.read(tmp_path / "ckpt.bin", r=4, alpha=8)
    torch.save(loralib.lora_state_dict(loralib_model("gpt2", causal=True)), tmp_path / "gpt2.bin")
    with pytest.raises(ValueError, match="give --targets"):
        formats.read(tmp_path / "gpt2.bin", r=2, alpha=4)


def test_synthetic_task_tensors_are_not_exported(tmp_path):
    model = trained(apply_lora(tiny("bert"), ["q"], 2, 2))
    tensors = {**lora_state_dict(model), "planted.bert.encoder.layer.0.attention.self.query": torch.ones(32, 32)}
    from safetensors.torch import save_file
    save_file(tensors, str(tmp_path / "adapter.safetensors"), metadata={"r": "2", "alpha": "2", "targets": '["q"]'})
    folder = formats.write(formats.read(tmp_path), "peft", tmp_path / "peft")
    assert not any("planted" in n for n in load_file(str(folder / "adapter_model.safetensors")))


@pytest.mark.real
def test_released_mnli_checkpoint_converts_both_ways_with_equal_logits(tmp_path):
    released = torch.load(RELEASED, weights_only=True, map_location="cpu")
    adapter = formats.read(RELEASED, r=8, alpha=16)
    assert (len(adapter.modules), adapter.targets, sorted(adapter.head)) == (
        24, ["q", "v"], ["classifier.dense.bias", "classifier.dense.weight", "classifier.out_proj.bias",
                         "classifier.out_proj.weight"])
    folder = formats.write(adapter, "peft", tmp_path / "peft", base="FacebookAI/roberta-base")
    back = formats.read(formats.write(formats.read(folder), "loralib", tmp_path / "back.bin"), r=8, alpha=16)
    assert back.tensors.keys() == released.keys()
    assert all(torch.equal(back.tensors[n], released[n]) for n in released)  # loralib -> PEFT -> loralib: bit-exact
    # a random model of RoBERTa-base's shape (no weights offline): ours and PEFT compute the same function
    config = AutoConfig.for_model("roberta", hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                  intermediate_size=3072, vocab_size=1000, num_labels=3)
    torch.manual_seed(0)
    base = AutoModelForSequenceClassification.from_config(config).eval()
    state = {k: v.clone() for k, v in base.state_dict().items()}
    plain = logits(base)
    ours = formats.into_model(adapter, base)
    fresh = AutoModelForSequenceClassification.from_config(config)
    fresh.load_state_dict(state)
    peft_model = PeftModel.from_pretrained(fresh.eval(), str(folder)).eval()
    diff = (logits(ours) - logits(peft_model)).abs().max().item()
    assert diff < 1e-4, diff
    assert (logits(ours) - plain).abs().max() > 0.1  # the adapter (and its head) change the function


class Hook:
    """Something a pickle can carry besides tensors: loading it would run this module's code."""


def test_one_file_is_accepted_or_refused_the_same_way_by_every_reader(tmp_path):
    # the reference code's GPT-2 checkpoint: {'model_state_dict': ...}, DDP's module., the fused c_attn's q, v slices
    from lora_repro.config import LoraMethod
    from lora_repro.init_adapter import init_from_adapter
    from lora_repro.methods import apply_method
    ref = loralib_model("gpt2", causal=True)
    state = loralib.lora_state_dict(ref)
    torch.save({"model_state_dict": {"module." + n: t for n, t in state.items()}}, tmp_path / "gpt2.pt")
    model = apply_method(tiny("gpt2", causal=True), LoraMethod(targets=["q", "v"], r=2, alpha=4, dropout=0.0))
    assert init_from_adapter(model, tmp_path / "gpt2.pt")["tensors_loaded"] == len(state) == 4
    read = formats.read(tmp_path / "gpt2.pt", r=2, alpha=4, targets="q,v")  # what export and evaluate read
    params = dict(model.named_parameters())
    assert all(torch.equal(params[n], state[n]) and torch.equal(read.tensors[n], state[n]) for n in state)
    # a pickle that holds code besides its tensors: one refusal, word for word, from every reader
    torch.save({**state, "hook": Hook()}, tmp_path / "code.pt")
    messages = set()
    for read_it in (lambda: formats.read(tmp_path / "code.pt", r=2, alpha=4, targets="q,v"),
                    lambda: formats.read_tensors(tmp_path / "code.pt"),
                    lambda: init_from_adapter(model, tmp_path / "code.pt")):
        with pytest.raises(ConfigError, match="holds pickled objects besides tensors, which are never loaded") as err:
            read_it()
        messages.add(str(err.value).removeprefix("method.init_adapter: "))
    assert len(messages) == 1
    (tmp_path / "cut.pt").write_bytes((tmp_path / "gpt2.pt").read_bytes()[:200])
    (tmp_path / "text.bin").write_text("not a checkpoint")
    for name in ("cut.pt", "text.bin"):
        with pytest.raises(ConfigError, match=f"{name} is not a readable torch checkpoint"):
            formats.read_tensors(tmp_path / name)
