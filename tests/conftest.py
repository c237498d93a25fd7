"""Tiny random-init models (2 layers, 32 wide: milliseconds), a small subspace sweep, the real-data tier's path."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

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
