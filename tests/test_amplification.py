"""ΔW vs W (paper Sec. 7.3, Table 7): projections of W onto ΔW's, W's own and random directions; the factor."""
import json
import math

import pytest
import torch

from lora_repro.analysis.amplification import amplification, projection_norm, random_orthonormal, top_singular

D = 16
W = torch.diag(torch.arange(D, 0, -1, dtype=torch.float64))  # singular values 16, 15, ..., 1 along e0, e1, ...


def basis_update(strengths: dict[int, float]) -> torch.Tensor:
    """ΔW = sum_k s_k e_k e_k^T: known singular directions."""
    delta = torch.zeros(D, D, dtype=torch.float64)  # (d_out, d_in)
    for k, s in strengths.items():
        delta[k, k] = s
    return delta


def test_update_along_ws_weak_directions_is_amplified():
    # ΔW on e15 (W's sigma 1) and e14 (sigma 2): U^T W V^T = diag(1, 2), so proj_delta = sqrt(5)
    out = amplification(basis_update({15: 5.0, 14: 3.0}), W, r=2)
    assert out["delta_norm"] == pytest.approx(math.sqrt(34))
    assert out["w_norm"] == pytest.approx(math.sqrt(sum(k * k for k in range(1, D + 1))))
    assert out["proj_delta"] == pytest.approx(math.sqrt(5))
    assert out["proj_w"] == pytest.approx(math.sqrt(16 ** 2 + 15 ** 2))  # W's own top-2
    assert out["factor"] == pytest.approx(out["delta_norm"] / out["proj_delta"])
    assert out["factor"] == pytest.approx(math.sqrt(34 / 5))


def test_update_along_ws_top_directions_is_not_amplified():
    weak = amplification(basis_update({15: 5.0, 14: 3.0}), W, r=2)
    strong = amplification(basis_update({0: 5.0, 1: 3.0}), W, r=2)
    assert strong["proj_delta"] == pytest.approx(strong["proj_w"])  # same subspace as W's top-2
    assert strong["factor"] < 1 < weak["factor"]


def test_ws_own_directions_bound_any_other_projection():
    # ||U^T W V^T||_F over r-dim U, V is largest for W's top-r singular vectors (sum of its top r sigma^2)
    gen = torch.Generator().manual_seed(0)
    W = torch.randn(48, 32, generator=gen, dtype=torch.float64)
    for r in (1, 4, 8):
        out = amplification(torch.randn(48, 32, generator=gen, dtype=torch.float64), W, r)
        assert out["proj_w"] >= out["proj_delta"] and out["proj_w"] >= out["proj_random"]
        sigma = torch.linalg.svdvals(W)
        assert out["proj_w"] == pytest.approx(sigma[:r].norm().item())


def test_random_directions_capture_little_of_w():
    # Table 7's random column: E ||U^T W V^T||_F^2 = r^2 / (d_out d_in) ||W||_F^2, tiny next to W's own top-r
    gen = torch.Generator().manual_seed(1)
    U, _ = torch.linalg.qr(torch.randn(256, 256, generator=gen, dtype=torch.float64))
    W = U @ torch.diag(0.9 ** torch.arange(256, dtype=torch.float64)) @ U.T * 60  # a decaying spectrum
    out = amplification(torch.randn(256, 256, generator=gen, dtype=torch.float64), W, r=4)
    assert out["proj_random"] < 0.1 * out["proj_w"]


def test_projection_norm_and_helpers_have_the_documented_shapes():
    U, Vh = random_orthonormal(12, 10, 3, seed=0)
    assert U.shape == (12, 3) and Vh.shape == (3, 10)
    torch.testing.assert_close(U.T @ U, torch.eye(3, dtype=U.dtype))
    torch.testing.assert_close(Vh @ Vh.T, torch.eye(3, dtype=U.dtype))
    M = torch.randn(12, 10, dtype=torch.float64)
    Ut, Vt = top_singular(M, 3)
    assert projection_norm(M, Ut, Vt) == pytest.approx(torch.linalg.svdvals(M)[:3].norm().item())
    a, b = amplification(M, M, 3, seed=5), amplification(M, M, 3, seed=5)
    assert a["proj_random"] == b["proj_random"]  # seeded


def test_bad_arguments_are_clear_errors():
    with pytest.raises(ValueError, match="one shape"):
        amplification(torch.zeros(4, 5), torch.zeros(5, 4), 1)
    with pytest.raises(ValueError, match=r"r=9 must be in \[1, 4\]"):
        amplification(torch.zeros(4, 5), torch.zeros(4, 5), 9)


def test_takes_numpy_arrays_as_it_takes_tensors():
    delta = basis_update({15: 5.0, 14: 3.0})
    assert amplification(delta.numpy(), W.numpy(), r=2) == amplification(delta, W, r=2)


def test_table7_on_gpt2_reads_each_slice_of_the_fused_conv1d_c_attn(tmp_path):
    # GPT-2's c_attn is one Conv1D (W stored (d_in, 3 d)) holding q, k, v: W0 and ΔW of q and of v are its slices
    from lora_repro.analysis.amplification import frozen_weight
    from lora_repro.analysis.subspace import adapter_matrices, module_for
    from lora_repro.config import compose
    from lora_repro.lora import apply_lora, merge_lora
    from lora_repro.models import load_model
    from lora_repro.record import save_adapter
    from lora_repro.tasks import head
    run = compose("model=tiny-gpt2", "task=e2e", "method.targets=[q,v]", "method.r=2", "method.alpha=4")
    (tmp_path / "metrics.json").write_text(json.dumps({"config": run.model_dump(mode="json")}))
    model = apply_lora(load_model(run.model, *head(run.task)), ["q", "v"], r=2, alpha=4)
    torch.manual_seed(0)
    for layer in (m for m in model.modules() if hasattr(m, "lora_B")):
        layer.lora_B.data.normal_()
    save_adapter(tmp_path / "adapter.safetensors", model, {}, {"method": "lora", "r": 2, "alpha": 4,
                                                               "targets": ["q", "v"]})
    w0 = model.transformer.h[1].attn.c_attn.weight.detach().T.clone()  # (3 d, d_in), before the merge
    merge_lora(model.eval())
    merged = model.transformer.h[1].attn.c_attn.weight.detach().T
    for target, index in (("q", 0), ("v", 2)):
        module, slice_index, _ = module_for(["transformer.h.1.attn.c_attn.lora_A"], 1, target)
        W = frozen_weight(tmp_path, module, slice_index)
        A, B = adapter_matrices(tmp_path, 1, target)
        rows = slice(index * 64, (index + 1) * 64)
        assert (module, slice_index) == ("transformer.h.1.attn.c_attn", index) and W.shape == (64, 64)
        assert torch.equal(W, w0[rows])
        torch.testing.assert_close(W + 2.0 * (B @ A), merged[rows], rtol=0, atol=1e-5)  # alpha / r = 2
        out = amplification(2.0 * (B @ A), W, r=2)
        assert all(math.isfinite(v) for v in out.values()) and out["factor"] > 0
