"""The benchmark (lora_repro/bench/) and the LoRA forward's fast path it measures (lora_repro/lora.py)."""
import json
import math

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from conftest import tiny
from lora_repro import bench
from lora_repro.lora import LoRALinear, apply_lora, lora_layers


def run_both(layer: LoRALinear, x: torch.Tensor, grad: torch.Tensor) -> dict[bool, tuple]:
    """Output and gradients (x, A, B) of the fast path and of the reference path, on the same layer and input."""
    results = {}
    for fast in (True, False):
        layer.fast = fast
        x_ = x.detach().clone().requires_grad_()
        layer.zero_grad(set_to_none=True)
        out = layer(x_)
        out.backward(grad)
        results[fast] = (out.detach(), x_.grad, layer.lora_A.grad, layer.lora_B.grad)
    return results


@pytest.mark.parametrize("slices, n_slices", [((0,), 1), ((0, 2), 3), ((1,), 3), ((0, 1, 2), 3)])
@pytest.mark.parametrize("conv", [False, True])
def test_fast_path_matches_reference_outputs_and_gradients(slices, n_slices, conv):
    torch.manual_seed(0)
    base = Conv1D(3 * 8, 16) if conv else torch.nn.Linear(16, 3 * 8)
    layer = LoRALinear(base, r=4, alpha=8, slices=slices, n_slices=n_slices)
    with torch.no_grad():
        layer.lora_B.normal_()  # B = 0 would hide a wrong B path
    x, grad = torch.randn(2, 5, 16), torch.randn(2, 5, 3 * 8)
    res = run_both(layer, x, grad)
    for fast, ref in zip(res[True], res[False]):
        torch.testing.assert_close(fast, ref, rtol=1e-5, atol=1e-5)
    assert res[True][3].abs().sum() > 0 and res[True][2].abs().sum() > 0


def test_fast_path_of_a_whole_layer_is_one_accumulating_gemm_with_no_python_in_backward():
    layer = LoRALinear(torch.nn.Linear(16, 8), r=4, alpha=8)
    out = layer(torch.randn(2, 5, 16))
    assert out.grad_fn.next_functions[0][0].name() == "AddmmBackward0"
    fused = LoRALinear(Conv1D(3 * 8, 16), r=4, alpha=8, slices=(0, 2), n_slices=3)
    assert fused(torch.randn(2, 5, 16)).grad_fn.next_functions[0][0].name() == "_LoRAUpdateBackward"


def test_median_ci_is_the_sign_test_interval():
    xs = [float(i) for i in range(1, 31)]
    assert bench.median_ci(xs) == [10.0, 21.0]  # n = 30: the 10th and 21st order statistics (sign-test tables)
    assert bench.median_ci(list(reversed(xs))) == [10.0, 21.0]
    assert bench.median_ci([1.0, 2.0, 3.0]) == [1.0, 3.0]  # too few rounds for 95%: the whole range


def test_fast_path_matches_reference_through_a_whole_model():
    model = apply_lora(tiny("gpt2", causal=True), targets=["q", "v", "o"], r=4, alpha=8)
    for layer in lora_layers(model):
        torch.nn.init.normal_(layer.lora_B, std=0.1)
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    grads = {}
    for fast in (True, False):
        for layer in lora_layers(model):
            layer.fast = fast
        model.zero_grad(set_to_none=True)
        model(input_ids=ids, labels=ids).loss.backward()
        grads[fast] = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    for name in grads[True]:
        torch.testing.assert_close(grads[True][name], grads[False][name], rtol=1e-5, atol=1e-6)


def test_fast_path_with_dropout_is_the_reference_under_the_same_mask():
    torch.manual_seed(0)
    layer = LoRALinear(torch.nn.Linear(16, 8), r=4, alpha=8, dropout=0.5).train()
    with torch.no_grad():
        layer.lora_B.normal_()
    x, grad = torch.randn(3, 16), torch.randn(3, 8)
    outs = []
    for fast in (True, False):
        layer.fast = fast
        torch.manual_seed(1)
        outs.append(layer(x))
    torch.testing.assert_close(outs[0], outs[1])


def test_floor_computes_no_weight_gradients():
    preset = bench.PRESETS["tiny"]
    variants = bench.make_variants(preset, torch.device("cpu"), with_peft=False)
    floor = next(v for v in variants if v.floor)
    bench.train_step(floor, bench.make_batch(preset, floor.model, torch.device("cpu")))
    assert all(p.grad is None for p in floor.model.parameters())
    assert floor.trainable() == 0


def finite_positive_ratios(result: dict) -> None:
    for key, value in result["ratios"].items():
        assert math.isfinite(value) and value > 0, key


@pytest.mark.parametrize("preset", ["tiny", "tiny-gpt2"])
def test_train_command_writes_json_with_the_ratios(tmp_path, preset):
    pytest.importorskip("peft")
    out = tmp_path / "bench.json"
    bench.main(["train", "--preset", preset, "--steps", "2", "--warmup", "0", "--out", str(out)])
    result = json.loads(out.read_text())
    assert {"ours_over_peft", "ours_over_floor", "merged_over_base_latency"} <= result["ratios"].keys()
    finite_positive_ratios(result)
    assert {"full", "floor", "ours-qv-r2", "peft-qkvo-r4"} <= result["variants"].keys()
    assert result["machine"]["torch"] == torch.__version__
    for setting in result["ratios_by_setting"].values():
        low, high = setting["ours_over_peft_ci"]
        assert low <= setting["ours_over_peft"] <= high
    if preset == "tiny":  # BERT: ours and PEFT are the same function, so the same matrix products
        assert all(s["flops_ours_over_peft"] == 1.0 for s in result["ratios_by_setting"].values())
    rows = result["variants"]
    assert rows["floor"]["grads_mb"] == 0 and rows["floor"]["optimizer_state_mb"] == 0
    assert rows["full"]["train_state_mb"] > rows["ours-qv-r2"]["train_state_mb"]


def test_ours_and_peft_train_the_same_parameters_on_bert():
    pytest.importorskip("peft")
    variants = {v.name: v for v in bench.make_variants(bench.PRESETS["tiny"], torch.device("cpu"))}
    for t in bench.TARGETS:
        for r in bench.PRESETS["tiny"]["ranks"]:
            assert variants[f"ours-{t}-r{r}"].trainable() == variants[f"peft-{t}-r{r}"].trainable()


def test_ours_and_peft_compute_the_same_loss_and_gradient_norm_on_bert():
    """With PEFT's A and B copied into ours, both are the same function: same loss, same gradients."""
    peft = pytest.importorskip("peft")
    model = tiny("bert")
    ours = apply_lora(tiny("bert"), targets=["q", "v"], r=4, alpha=8)
    theirs = peft.get_peft_model(model, peft.LoraConfig(r=4, lora_alpha=8, target_modules=["query", "value"]))
    for layer in lora_layers(ours):
        torch.nn.init.normal_(layer.lora_B, std=0.1)
    with torch.no_grad():
        for name, p in theirs.named_parameters():
            if ".lora_" in name:
                site = name.removeprefix("base_model.model.").split(".lora_")[0]
                mine = ours.get_submodule(site)
                p.copy_(mine.lora_A if ".lora_A." in name else mine.lora_B)
    ids = torch.randint(5, 100, (2, 6), generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1])
    losses, norms = [], []
    for m in (ours, theirs):
        loss = m(input_ids=ids, labels=labels).loss
        loss.backward()
        losses.append(loss.detach())
        norms.append(torch.stack([p.grad.norm() for n, p in m.named_parameters() if ".lora_" in n]).norm())
    torch.testing.assert_close(losses[0], losses[1])
    torch.testing.assert_close(norms[0], norms[1])


def test_latency_command_writes_json_with_every_table1_variant(tmp_path):
    out = tmp_path / "latency.json"
    bench.main(["latency", "--grid", "tiny", "--trials", "2", "--out", str(out)])
    result = json.loads(out.read_text())
    finite_positive_ratios(result)
    assert {r["variant"] for r in result["table"]} == {"base", "lora_merged", "lora_unmerged", "adapter_l",
                                                        "adapter_h"}


def test_missing_peft_is_a_clear_error(monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_peft(name, *args, **kwargs):
        if name == "peft":
            raise ImportError("no peft")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_peft)
    with pytest.raises(ImportError, match="pip install"):
        bench.require_peft()


def conv1d_lora(slices, n_slices) -> LoRALinear:
    """A GPT-2-style Conv1D (32 -> 3 x 16) with LoRA on the given slices and a non-zero B (B = 0 hides its path)."""
    torch.manual_seed(0)
    layer = LoRALinear(Conv1D(3 * 16, 32), r=4, alpha=8, slices=slices, n_slices=n_slices)
    with torch.no_grad():
        layer.lora_B.normal_()
    return layer


@pytest.mark.parametrize("slices, n_slices", [((0,), 1), ((0, 2), 3)])
def test_fast_path_under_bf16_autocast_keeps_the_reference_dtypes(slices, n_slices):
    """Under autocast the GEMMs run in bf16 (no fp32 upcast); gradients come back in each parameter's dtype."""
    layer = conv1d_lora(slices, n_slices)
    x = torch.randn(2, 5, 32)
    res = {}
    for fast in (True, False):
        layer.fast = fast
        layer.zero_grad(set_to_none=True)
        x_ = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = layer(x_)
        out.float().square().sum().backward()
        res[fast] = (out, x_.grad, layer.lora_A.grad, layer.lora_B.grad)
    for fast, ref in zip(res[True], res[False]):
        assert fast.dtype == ref.dtype
        assert (fast.float() - ref.float()).norm() <= 0.02 * ref.float().norm()  # bf16 rounding, in another order
    assert res[True][0].dtype == torch.bfloat16


@pytest.mark.parametrize("slices, n_slices", [((0,), 1), ((0, 2), 3)])
def test_fast_path_runs_a_bf16_base_with_fp32_lora_weights(slices, n_slices):
    """A bf16 model with A and B kept in fp32 (as PEFT keeps adapters): bf16 output, fp32 gradients, the fp32 result."""
    layer = conv1d_lora(slices, n_slices)
    ref = layer(torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(1)))
    layer.weight.data, layer.bias.data = layer.weight.data.bfloat16(), layer.bias.data.bfloat16()
    out = layer(torch.randn(2, 5, 32, generator=torch.Generator().manual_seed(1)).bfloat16())
    out.float().sum().backward()
    assert out.dtype == torch.bfloat16 and layer.lora_A.grad.dtype == layer.lora_B.grad.dtype == torch.float32
    assert (out.float() - ref).norm() <= 0.02 * ref.norm()


def test_suite_smoke_writes_one_json_with_every_part_and_the_four_ratios(tmp_path):
    pytest.importorskip("peft")
    out = tmp_path / "suite.json"
    bench.main(["suite", "--smoke", "--out", str(out)])
    result = json.loads(out.read_text())
    assert set(result["ratios"]) == {"ours_over_peft", "ours_over_floor", "merged_over_base_latency",
                                     "loop_ours_over_hf_trainer"}
    finite_positive_ratios(result)
    assert set(result["train"]) == {"tiny", "tiny-gpt2"} and result["device"] == "cpu"
    assert {"full", "floor", "ours-qkvo-r4", "peft-qv-r2"} <= result["train"]["tiny-gpt2"]["variants"].keys()
    assert {r["variant"] for r in result["latency"]["table"]} >= {"base", "lora_merged", "adapter_h"}
    assert {"torch", "transformers", "peft", "accelerate", "device"} <= result["machine"].keys()
    assert result["peak_mem_mb"] > 0 and set(result["wall_s"]) == {"train/tiny", "train/tiny-gpt2", "latency", "loop"}
    loop = result["loop"]["sides"]
    assert loop["ours"]["steps"] == loop["hf_trainer"]["steps"] == result["loop"]["schedule"]["steps"]


def test_suite_without_smoke_asks_for_a_gpu():
    with pytest.raises(ValueError, match="CUDA"):
        bench.run_suite(torch.device("cpu"), smoke=False)


def test_loop_feeds_both_sides_the_same_batches_and_they_log_the_same_losses():
    """Same order, batches, start weights, optimizer and schedule: the two loops train the same run, step for step."""
    pytest.importorskip("peft")
    from lora_repro.bench import loop
    preset = loop.LOOP_PRESETS["smoke"]
    template, data = loop.build(preset)
    seen = []  # every training batch's input ids, both sides (deep copies of the template keep its hook)
    template.bert.embeddings.register_forward_pre_hook(
        lambda m, args, kw: seen.append(kw["input_ids"].clone()) if m.training else None, with_kwargs=True)
    ours = loop.run_ours(template, data, preset, torch.device("cpu"))
    n = len(seen)
    theirs = loop.run_trainer(template, data, preset, torch.device("cpu"))
    assert n == len(seen) - n == ours["steps"] == theirs["steps"] == loop.schedule(preset)["steps"]
    for a, b in zip(seen[:n], seen[n:]):
        assert torch.equal(a, b)
    assert len(ours["losses"]) == len(theirs["losses"]) == n // preset["log_every"]
    torch.testing.assert_close(torch.tensor(ours["losses"]), torch.tensor(theirs["losses"]), rtol=1e-4, atol=1e-5)
    assert ours["losses"][0] != ours["losses"][-1]  # it trained
    assert ours["epoch_cpu_s"] > 0 and theirs["epoch_cpu_s"] > 0  # the CPU clock the ratio uses on CPU


def test_gpu_suite_names_presets_that_exist_and_the_papers_latency_grid():
    """The GPU run cannot be tried here: at least every name it composes must resolve."""
    from lora_repro.bench import loop, suite
    gpu = suite.PARTS["gpu"]
    assert set(gpu["train"]) == {"roberta-base", "gpt2-medium"} and set(gpu["train"]) <= bench.PRESETS.keys()
    assert gpu["latency"] == "paper" and gpu["loop"] in loop.LOOP_PRESETS and not gpu["counts"]
    assert loop.LOOP_PRESETS[gpu["loop"]]["data"] == "generated"  # nothing to download on the GPU machine
    assert bench.median_ci(list(range(loop.LOOP_PRESETS[gpu["loop"]]["rounds"])))[0] > 0  # CI narrower than the range


@pytest.mark.parametrize("name", ["smoke", "cpu-minilm", "roberta-base"])
def test_loop_presets_log_as_often_on_both_sides(name):
    """Our loop logs every log_every steps and the last; Trainer every log_every: equal when the steps divide."""
    from lora_repro.bench import loop
    preset = loop.LOOP_PRESETS[name]
    assert loop.schedule(preset)["steps"] % preset["log_every"] == 0
