"""Tiny random-init models (2 layers, 32 wide: milliseconds), a small subspace sweep, the real-data tier's path."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from tokenizers import pre_tokenizers
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification, LlamaForCausalLM

import lora_repro.config  # noqa: F401  registers the generated _defaults nodes conf/ files extend

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

TINY = {
    "bert": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100),
    "roberta": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100),
    "deberta-v2": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       vocab_size=100),
    "gpt2": dict(n_embd=32, n_layer=2, n_head=2, vocab_size=100, bos_token_id=0, eos_token_id=0, pad_token_id=0),
    "llama": dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64, vocab_size=100,
                  num_key_value_heads=1, pad_token_id=0),
}


def tiny(kind: str = "bert", causal: bool = False, seed: int = 0, **overrides) -> torch.nn.Module:
    """A 2-layer, 32-wide random model of architecture `kind` in eval mode (no dropout)."""
    torch.manual_seed(seed)
    config = AutoConfig.for_model(kind, **{**TINY[kind], **overrides})
    auto = AutoModelForCausalLM if causal else AutoModelForSequenceClassification
    return auto.from_config(config).eval()


def script(name: str):
    """analysis/<name>.py imported as a module, to call its functions in-process."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "analysis" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_python(*args: str) -> str:
    """python ARGS in the repo root with this checkout first on the path; its stdout (fails the test on error)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="session")
def sweep(tmp_path_factory) -> Path:
    """A real, small +experiment=subspace multirun (r = 8, 64 x seeds 0, 1; one epoch of 512 examples, 16 steps,
    snapshots at steps 0, 8, 16): its folder."""
    folder = tmp_path_factory.mktemp("subspace")
    run_python("-m", "lora_repro.run", "+experiment=subspace", "task.n_train=512", "train.epochs=1",
               "train.snapshot_steps=[0,8,16]", f"hydra.sweep.dir={folder}")
    return folder


def pytest_collection_modifyitems(config, items):
    if SHARED.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real-data tier: {SHARED} (shared data and models) is not beside the checkout")
    for item in items:
        if "real" in item.keywords:
            item.add_marker(skip)


# --- GGUF (model.gguf_file): a tiny Llama written as llama.cpp's converter writes one, read back through our loader ---

GGUF_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *sorted(pre_tokenizers.ByteLevel.alphabet()), "Ġt"]
GGUF_NAMES = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
              "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
              "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}


def tiny_llama(seed: int = 0) -> LlamaForCausalLM:
    """2 layers, width 32, 4 query / 2 key-value heads, SmolLM2's special tokens (eos = <|im_end|> = 2)."""
    torch.manual_seed(seed)
    config = AutoConfig.for_model("llama", hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  num_key_value_heads=2, intermediate_size=64, vocab_size=len(GGUF_TOKENS),
                                  max_position_embeddings=64, tie_word_embeddings=True, bos_token_id=1,
                                  eos_token_id=2, pad_token_id=2)
    return AutoModelForCausalLM.from_config(config).eval()


def write_gguf(model: LlamaForCausalLM, path) -> None:
    """model as an F32 GGUF file with a byte-level BPE tokenizer (one merge), the layout SmolLM2's file has."""
    import gguf
    c = model.config
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(c.num_hidden_layers)
    writer.add_context_length(c.max_position_embeddings)
    writer.add_embedding_length(c.hidden_size)
    writer.add_feed_forward_length(c.intermediate_size)
    writer.add_head_count(c.num_attention_heads)
    writer.add_head_count_kv(c.num_key_value_heads)
    writer.add_layer_norm_rms_eps(c.rms_norm_eps)
    writer.add_rope_dimension_count(c.hidden_size // c.num_attention_heads)
    writer.add_rope_freq_base(10000.0)
    writer.add_vocab_size(c.vocab_size)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(GGUF_TOKENS)
    writer.add_token_types([3] * 3 + [1] * (len(GGUF_TOKENS) - 3))  # 3 = control (special), 1 = normal
    writer.add_token_merges(["Ġ t"])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_pad_token_id(2)
    writer.add_unk_token_id(0)

    def rotary_order(w, heads):  # llama.cpp's convert_hf_to_gguf.py permutes q and k rows; transformers undoes it
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)

    weights = {k: v.numpy() for k, v in model.state_dict().items()}
    writer.add_tensor("token_embd.weight", weights["model.embed_tokens.weight"])
    writer.add_tensor("output_norm.weight", weights["model.norm.weight"])
    for i in range(c.num_hidden_layers):
        for ours, theirs in GGUF_NAMES.items():
            w = weights[f"model.layers.{i}.{ours}.weight"]
            w = {"attn_q": rotary_order(w, c.num_attention_heads),
                 "attn_k": rotary_order(w, c.num_key_value_heads)}.get(theirs, w)
            writer.add_tensor(f"blk.{i}.{theirs}.weight", np.ascontiguousarray(w))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@pytest.fixture
def gguf_folder(tmp_path):
    pytest.importorskip("gguf", reason="model.gguf_file needs the gguf package (pyproject.toml dependencies)")
    write_gguf(tiny_llama(), tmp_path / "tiny.gguf")
    return tmp_path
