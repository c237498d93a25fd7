"""The singular values of ΔW = (alpha / r) B A per layer and target, and phi between updates (any adapter format)."""
import numpy as np
import pandas as pd
import pytest
import torch

from conftest import SHARED, tiny
from lora_repro import formats
from lora_repro.analysis.spectrum import delta_svd, main, similarity_table, spectrum_table
from lora_repro.lora import apply_lora, lora_layers, save_lora

RELEASED = SHARED / "checkpoints/microsoft-lora/roberta_base_lora_mnli.bin"


def test_delta_svd_is_the_svd_of_b_a_without_forming_it():
    gen = torch.Generator().manual_seed(0)
    A, B = torch.randn(4, 40, generator=gen, dtype=torch.float64), torch.randn(30, 4, generator=gen, dtype=torch.float64)
    U, S, V = delta_svd(A.numpy(), B.numpy(), scaling=2.0)  # NumPy in, as the analysis functions take
    torch.testing.assert_close(S, 2.0 * torch.linalg.svdvals(B @ A)[:4])
    torch.testing.assert_close(U @ torch.diag(S) @ V.T, 2.0 * B @ A)
    torch.testing.assert_close(U.T @ U, torch.eye(4, dtype=torch.float64))
    torch.testing.assert_close(V.T @ V, torch.eye(4, dtype=torch.float64))


def test_a_rank_one_update_has_stable_rank_one_and_shared_updates_score_phi_one(tmp_path):
    model = apply_lora(tiny("bert"), ["q", "v"], r=4, alpha=8)
    u, w = torch.randn(32, 1), torch.randn(1, 32)
    with torch.no_grad():
        for layer in lora_layers(model):  # every update: ΔW = 2 (u 1^T)(1 w) = 8 u w, rank 1
            layer.lora_A.copy_(w.repeat(4, 1))
            layer.lora_B.copy_(u.repeat(1, 4))
    save_lora(model, tmp_path / "a.safetensors", {"r": 4, "alpha": 8, "targets": ["q", "v"]})
    adapter = formats.read(tmp_path / "a.safetensors")
    spectrum = spectrum_table(adapter)
    assert len(spectrum) == 2 * 2 * 4  # layers x targets x r
    top = spectrum[spectrum.k == 1]
    assert np.allclose(top.sigma, 8 * u.norm() * w.norm()) and np.allclose(top.stable_rank, 1.0)
    assert np.allclose(top.energy_top_k, 1.0) and (spectrum[spectrum.k > 1].sigma_rel < 1e-6).all()
    phi = similarity_table(adapter)
    top1 = phi[phi.k == 1]
    assert len(top1) == 2 * (4 * 5 // 2) and np.allclose(top1.phi, 1.0)  # 2 sides x pairs of 4 updates
    assert np.allclose(top1.random, 1 / 32)


@pytest.mark.real
def test_released_mnli_adapter_spectrum_is_far_from_flat(tmp_path):
    main([str(RELEASED), "--r", "8", "--alpha", "16", "--out", str(tmp_path)])
    spectrum = pd.read_csv(tmp_path / "spectrum.csv")
    assert (tmp_path / "spectrum.png").stat().st_size > 10_000
    top = spectrum[spectrum.k == 1].set_index(["target", "layer"])
    assert len(top) == 24 and spectrum.k.max() == 8
    # measured: Wq of layers 10, 11 is rank one in all but name (top-1 carries 94%, 99% of ||ΔW||_F^2)
    assert top.loc[("q", 11), "energy_top_k"] == pytest.approx(0.993, abs=1e-3)
    assert top.loc[("q", 10), "energy_top_k"] == pytest.approx(0.944, abs=1e-3)
    # no update uses its 8 directions evenly (stable rank 8); medians: Wq 2.05, Wv 2.89
    assert top.stable_rank.max() < 3.7
    assert top.xs("q").stable_rank.median() == pytest.approx(2.054, abs=1e-3)
    assert top.xs("v").stable_rank.median() == pytest.approx(2.886, abs=1e-3)
    phi = pd.read_csv(tmp_path / "similarity.csv")
    out = phi[(phi.side == "output") & (phi.k == 4) & ~((phi.layer_a == phi.layer_b) & (phi.target_a == phi.target_b))]
    assert out.phi.mean() == pytest.approx(4 / 768, rel=0.1)  # output directions: as unrelated as random ones
