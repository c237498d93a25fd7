"""analysis/*.ipynb run top to bottom on a real subspace sweep and print the numbers they are for."""
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import ROOT

NOTEBOOKS = sorted((ROOT / "analysis").glob("*.ipynb"))


def execute(path: Path, results: Path) -> dict[str, float]:
    """Run one notebook on `results` (its LORA_REPRO_RESULTS) in analysis/; the `name = value` lines it printed."""
    nb = nbformat.read(path, as_version=4)
    with pytest.MonkeyPatch.context() as env:  # the kernel inherits these
        env.setenv("LORA_REPRO_RESULTS", str(results))
        env.setenv("PYTHONPATH", str(ROOT))
        NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}).execute()
    printed = "".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs
                      if out.output_type == "stream" and out.name == "stdout")
    return {name: float(value) for name, value in re.findall(r"^(\w+) = (-?[\d.]+(?:e-?\d+)?)$", printed, re.M)}


@pytest.fixture(scope="module")
def printed(sweep) -> dict[str, dict[str, float]]:
    return {path.stem: execute(path, sweep) for path in NOTEBOOKS}


def test_every_notebook_is_committed_without_outputs():
    assert {p.stem for p in NOTEBOOKS} == {"subspace_similarity", "amplification", "rank_ablation"}
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert all(not c.outputs and c.execution_count is None for c in code), path.name
        assert "LORA_REPRO_RESULTS" in code[0].source  # the one input, first code cell


def test_subspace_notebook_prints_similarities_in_the_unit_interval(printed):
    phi = printed["subspace_similarity"]
    assert set(phi) == {"phi_r8_r64_top1", "phi_seeds_top1", "phi_random_top1", "phi_A_planted", "phi_random_planted"}
    assert all(0 <= v <= 1 for v in phi.values())
    assert phi["phi_r8_r64_top1"] > phi["phi_random_top1"]  # learned adapters share more than random matrices


def test_amplification_notebook_prints_table7_numbers(printed):
    amp = printed["amplification"]
    assert amp["factor"] > 0 and amp["delta_norm"] > 0
    assert amp["factor"] == pytest.approx(amp["delta_norm"] / amp["proj_delta"], rel=1e-3)
    assert amp["proj_w"] > amp["proj_random"]  # r=8 < width 64: W's own top directions carry more of W


def test_rank_ablation_notebook_pivots_both_ranks(printed):
    ranks = printed["rank_ablation"]
    assert ranks["ranks"] == 2 and ranks["best_r"] in (8, 64)
    assert 0 < ranks["worst_over_best"] <= 1
