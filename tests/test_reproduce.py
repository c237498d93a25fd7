"""Every run the third edition's stages launch (analysis/reproduce.sh, hours of CPU each) composes and validates
here in seconds, so a stage cannot die at its hundredth run on a config error."""
import os
import subprocess
from pathlib import Path

import pytest

from lora_repro import config, plan
from conftest import ROOT, tiny

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def run_lines(stage: str, **env: str) -> list[list[str]]:
    """`DRY_RUN=1 bash analysis/reproduce.sh STAGE`: each line it would launch, split into words."""
    out = subprocess.run(["bash", "analysis/reproduce.sh", stage], cwd=ROOT, capture_output=True, text=True,
                         env={**os.environ, "DRY_RUN": "1", **env}, timeout=60)
    assert out.returncode == 0, out.stderr
    return [line.split() for line in out.stdout.splitlines()]


def overrides(words: list[str], selected: Path, model_dir: Path, lm_dir: Path) -> list[str]:
    """A line's words after its folder as config.compose takes them: the experiment, --config-dir as a search path
    (pointed at `selected`, where every method has a rate), SmolLM2's folder at `model_dir`, and the LMs pretrained
    here (outputs/pretrained/, absent on a fresh clone) at the tiny GPT-2 in `lm_dir`."""
    experiment, rest = words[1], words[2:]
    if rest[:1] == ["--config-dir"]:
        rest = [f"hydra.searchpath=[file://{selected}]", *rest[2:]]
    rest = [f"model.path={model_dir}" if w.startswith("model.path=") else w for w in rest]
    if any(w in ("model=gpt2-mini", "model=gpt2-6m") for w in rest):
        rest.append(f"model.path={lm_dir}")
    return [f"+experiment={experiment}", *rest]


@pytest.fixture
def selected(tmp_path) -> Path:
    """A selected.yaml (as lr_select writes it) with a rate for every method a seed stage runs."""
    (tmp_path / "lr").mkdir()
    (tmp_path / "lr/selected.yaml").write_text(
        "# @package _global_\ntrain:\n  lr: ${repro_lr.${method.name}}\n"
        "repro_lr:\n  lora: 0.003\n  full: 0.0001\n  bitfit: 0.002\n  adapter_h: 0.001\n  adapter_l: 0.004\n")
    return tmp_path


def test_every_third_edition_run_composes_with_the_method_rate_seed_and_budget_its_folder_names(
        selected, gguf_folder, tmp_path, monkeypatch):
    model_dir = gguf_folder  # a tiny Llama under the real file's name: compose reads its layer count
    (model_dir / "tiny.gguf").rename(model_dir / SMOLLM2_GGUF)
    tiny("gpt2", causal=True).save_pretrained(tmp_path / "lm")
    glue = "sst2 mrpc stsb cola-e10"
    stages = {"search3": run_lines("search3", TASKS=glue), "seeds3": run_lines("seeds3", TASKS="sst2"),
              "e2e_search3": run_lines("e2e_search3"), "e2e_seeds3": run_lines("e2e_seeds3", BASES="gpt2-mini")}
    assert [len(stages[s]) for s in stages] == [4 * 22, 4 * 5, 3 * 17, 3 * 3]  # 22 rates over 4 methods; E2E 17 over 3
    folders = [words[0] for lines in stages.values() for words in lines]
    assert len(set(folders)) == len(folders)
    monkeypatch.chdir(ROOT)
    rates = {"lora": 0.003, "full": 0.0001, "bitfit": 0.002, "adapter_h": 0.001, "adapter_l": 0.004}
    with plan.hydra_session():
        for lines in stages.values():
            for words in lines:
                cfg = config.compose(*overrides(words, selected, model_dir, tmp_path / "lm"))
                kind, key, method, last = words[0].split("/")
                assert cfg.method.name == method and cfg.experiment == words[1]
                if last.startswith("lr"):
                    assert cfg.train.lr == float(last[2:]) and cfg.seed == 0
                else:
                    assert cfg.train.lr == rates[method] and cfg.seed == int(last)
                if kind.startswith("repro3_e2e"):
                    assert cfg.task.data_dir == "../shared/data/e2e/paper-format"
                    assert (cfg.model.gguf_file == SMOLLM2_GGUF) == (key == "smollm2-135m")
                    assert (cfg.task.max_train_samples, cfg.train.epochs) == (
                        (400, 3) if key == "smollm2-135m" else (8000, 6))
                else:
                    task = "cola" if key == "cola-e10" else key
                    assert cfg.task_name == f"glue/{task}" and cfg.task.data_dir.startswith("../shared/data/glue/")
                    assert (cfg.train.epochs, cfg.train.min_epochs) == ((10, 5) if key == "cola-e10" else (6, 0))


def test_a_fresh_clone_with_skip_kept_goes_on_where_the_committed_stages_stopped():
    """SKIP_KEPT=1: a run whose record results/repro/runs/ keeps is not run again (no python, no run folder), so a
    stage launched on a fresh clone, where outputs/ is empty, starts at the first run no session has committed."""
    kept = sorted((ROOT / "results/repro/runs/repro3_seeds").glob("*/*/*/metrics.json"))[0].parent
    rel = kept.relative_to(ROOT / "results/repro/runs")
    # `python` off PATH: a run that was not skipped fails at once instead of training for minutes
    out = subprocess.run(["bash", "analysis/reproduce.sh", "one", str(rel), "repro3_glue"], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, "SKIP_KEPT": "1", "PATH": "/usr/bin:/bin"},
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"kept: results/repro/runs/{rel}"), out.stdout
    assert not (ROOT / "outputs/repro" / rel).exists()
