"""Subspace similarity (paper eq. 4, Figures 3 and 4), and reading A and B back from adapter files."""
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from conftest import tiny
from lora_repro.config import from_hydra
from lora_repro.analysis.subspace import (adapter_matrices, planted_delta, random_gaussian, similarity_grid,
                                          subspace_similarity)
from lora_repro.lora import apply_lora, lora_layers, save_lora
from lora_repro.run import run

CONF = Path(__file__).resolve().parents[1] / "conf"


def rows(d: int, spec: dict[int, float]) -> torch.Tensor:
    """An 'A' whose rows are scaled basis vectors e_k: its right-singular vectors, strongest first, are known."""
    A = torch.zeros(len(spec), d)  # (r, d)
    for row, (k, s) in enumerate(spec.items()):
        A[row, k] = s
    return A


def test_identical_matrices_share_every_direction():
    A = torch.randn(8, 32)
    grid = similarity_grid(A, A)
    torch.testing.assert_close(grid.diagonal(), torch.ones(8))
    assert subspace_similarity(A, A, 3, 3) == pytest.approx(1.0)


def test_orthogonal_row_spaces_share_nothing():
    A1, A2 = torch.randn(4, 32), torch.randn(4, 32)
    A1[:, 16:], A2[:, :16] = 0, 0  # row spaces in disjoint coordinates
    assert similarity_grid(A1, A2).abs().max() < 1e-6


def test_a_shared_top_direction_gives_its_known_value():
    A1 = rows(16, {1: 2.0, 2: 1.0})  # top direction e1, then e2
    A2 = rows(16, {1: 3.0, 3: 0.5})  # top direction e1, then e3
    assert subspace_similarity(A1, A2, 1, 1) == pytest.approx(1.0)  # both top directions are e1
    assert subspace_similarity(A1, A2, 2, 2) == pytest.approx(0.5)  # span{e1, e2} vs span{e1, e3}: one of two shared
    assert subspace_similarity(A1, A2, 1, 2) == pytest.approx(1.0)  # e1 lies in span{e1, e3}
    A3 = rows(16, {2: 3.0, 1: 0.5})  # the same span as A1, but e2 on top
    assert subspace_similarity(A1, A3, 1, 1) == pytest.approx(0.0, abs=1e-12)
    assert subspace_similarity(A1, A3, 2, 2) == pytest.approx(1.0)


def test_similarity_is_symmetric_and_in_unit_interval():
    A1, A2 = torch.randn(8, 40), torch.randn(16, 40)
    assert subspace_similarity(A1, A2, 3, 7) == pytest.approx(subspace_similarity(A2, A1, 7, 3))
    grid = similarity_grid(A1, A2)
    torch.testing.assert_close(grid, similarity_grid(A2, A1).T)
    assert grid.min() >= 0 and grid.max() <= 1 + 1e-6


def test_grid_matches_the_definition_pointwise():
    A1, A2 = torch.randn(6, 24), torch.randn(5, 24)
    grid = similarity_grid(A1, A2)
    assert grid.shape == (6, 5)
    for i in range(1, 7):
        for j in range(1, 6):
            assert grid[i - 1, j - 1].item() == pytest.approx(subspace_similarity(A1, A2, i, j), abs=1e-6)


def test_b_side_uses_left_singular_vectors():
    # paper footnote: B (d x r) with its left-singular vectors is the same analysis as A (r x d) with its right ones
    A1, A2 = torch.randn(8, 32), torch.randn(8, 32)
    assert subspace_similarity(A1.T, A2.T, 2, 5, side="B") == pytest.approx(subspace_similarity(A1, A2, 2, 5))
    torch.testing.assert_close(similarity_grid(A1.T, A2.T, side="B"), similarity_grid(A1, A2))


def test_two_random_gaussian_matrices_share_little():
    # Figure 4's control panel: phi(i, j) of random subspaces is about max(i, j) / d
    grid = similarity_grid(random_gaussian(8, 512, seed=0), random_gaussian(8, 512, seed=1))
    assert grid.max() < 0.1


def test_bad_arguments_are_clear_errors():
    A = torch.randn(4, 16)
    with pytest.raises(ValueError, match="1 <= i <= 4"):
        subspace_similarity(A, A, 5, 1)
    with pytest.raises(ValueError, match="1 <= j <= 4"):
        subspace_similarity(A, A, 1, 0)
    with pytest.raises(ValueError, match="side"):
        subspace_similarity(A, A, 1, 1, side="C")
    with pytest.raises(ValueError, match="different spaces"):
        similarity_grid(A, torch.randn(4, 8))


def saved(kind: str, targets, r: int, path: Path) -> torch.nn.Module:
    model = apply_lora(tiny(kind), targets, r=r, alpha=2 * r)
    with torch.no_grad():
        for layer in lora_layers(model):
            layer.lora_B.normal_()  # B = 0 at init; give it something to read back
    save_lora(model, path, {"r": r, "alpha": 2 * r, "targets": list(targets)})
    return model


def test_reads_a_and_b_of_one_layer_and_target_from_an_adapter_file(tmp_path):
    model = saved("bert", ["q", "v"], 4, tmp_path / "a.safetensors")
    A, B = adapter_matrices(tmp_path / "a.safetensors", 1, "v")
    value = model.bert.encoder.layer[1].attention.self.value
    assert A.shape == (4, 32) and B.shape == (32, 4)  # A: (r, d_in); B: (d_out, r)
    torch.testing.assert_close(A, value.lora_A.detach())
    torch.testing.assert_close(B, value.lora_B.detach())
    with pytest.raises(KeyError, match="attention.self.query"):  # lists what the file has
        adapter_matrices(tmp_path / "a.safetensors", 0, "k")
    with pytest.raises(ValueError, match="target"):
        adapter_matrices(tmp_path / "a.safetensors", 0, "mlp")


def test_reads_one_slice_of_gpt2s_fused_c_attn(tmp_path):
    model = saved("gpt2", ["q", "v"], 4, tmp_path / "g.safetensors")
    c_attn = model.transformer.h[0].attn.c_attn  # slices (0, 2): q and v stacked in A and B
    A, B = adapter_matrices(tmp_path / "g.safetensors", 0, "v")
    assert A.shape == (4, 32) and B.shape == (32, 4)
    torch.testing.assert_close(A, c_attn.lora_A.detach()[4:])
    # the slice's ΔW = scaling * B A is the v block of the merged update (Conv1D stores W as (d_in, d_out))
    torch.testing.assert_close(c_attn.scaling * B @ A, c_attn.delta_weight().detach().T[64:96])
    q_A, _ = adapter_matrices(tmp_path / "g.safetensors", 0, "q")
    torch.testing.assert_close(q_A, c_attn.lora_A.detach()[:4])
    with pytest.raises(KeyError, match="does not adapt 'k'"):
        adapter_matrices(tmp_path / "g.safetensors", 0, "k")


def test_learned_a_aligns_with_the_planted_update(tmp_path):
    # Sec. 7.2 with ground truth: after training on the planted task (rank-4 ΔW* on q and v), the top direction of
    # the learned A (r=8) lies in ΔW*'s row space, far above a random Gaussian matrix (expected phi = 4/64).
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["task.n_train=2048", "train.epochs=3", "device=cpu", "method.r=8"])
    record = run(from_hydra(cfg), tmp_path)
    assert record["metrics"]["r2"] > 0.5
    path = tmp_path / "adapter.safetensors"
    A, B = adapter_matrices(path, 0, "v")
    planted = planted_delta(path, 0, "v")  # (d_out, d_in), rank 4: its right-singular vectors play A's part
    assert torch.linalg.matrix_rank(planted) == 4
    learned = subspace_similarity(A, planted, 1, 4)
    chance = subspace_similarity(random_gaussian(8, 64, seed=1), planted, 1, 4)
    assert learned > 0.5 and chance < 0.15  # measured: 0.70 vs 0.04
    assert subspace_similarity(B, planted, 1, 4, side="B") > 0.6  # B's column space too (footnote); measured 0.80


def test_reads_the_planted_update_of_a_fused_slice(tmp_path):
    from lora_repro.record import save_adapter
    model = apply_lora(tiny("gpt2"), ["q", "v"], r=2, alpha=2)
    planted = {f"planted.transformer.h.1.attn.c_attn:{s}": torch.randn(32, 32) for s in (0, 2)}
    save_adapter(tmp_path / "p.safetensors", model, planted, {"r": 2, "alpha": 2, "targets": ["q", "v"]})
    torch.testing.assert_close(planted_delta(tmp_path / "p.safetensors", 1, "v"),
                               planted["planted.transformer.h.1.attn.c_attn:2"])
    with pytest.raises(KeyError, match="c_attn:0"):  # names what the file has
        planted_delta(tmp_path / "p.safetensors", 1, "k")
    with pytest.raises(KeyError, match="no module"):
        planted_delta(tmp_path / "p.safetensors", 0, "v")


def test_takes_numpy_arrays_as_it_takes_tensors():
    A1, A2 = rows(8, {0: 3.0, 1: 1.0}), rows(8, {1: 2.0, 0: 1.0})
    assert subspace_similarity(A1.numpy(), A2.numpy(), 1, 1) == subspace_similarity(A1, A2, 1, 1) == 0.0
    torch.testing.assert_close(similarity_grid(A1.numpy(), A2.numpy()), similarity_grid(A1, A2))


@pytest.mark.parametrize("kind,target", [("bert", "v"), ("gpt2", "v")])
def test_reads_a_and_b_from_peft_and_loralib_forms_of_the_same_adapter(tmp_path, kind, target):
    from lora_repro import formats
    saved(kind, ["q", "v"], 4, tmp_path / "a.safetensors")
    A, B = adapter_matrices(tmp_path / "a.safetensors", 1, target)
    adapter = formats.read(tmp_path / "a.safetensors")
    peft = formats.write(adapter, "peft", tmp_path / "peft")
    loralib = formats.write(adapter, "loralib", tmp_path / "a.bin")
    for src, extra in ((peft, {}), (loralib, {"r": 4, "alpha": 8, "targets": "q,v"})):
        A2, B2 = adapter_matrices(src, 1, target, **extra)
        assert torch.equal(A2, A) and torch.equal(B2, B)
