"""The planted task has ground truth: ΔW* has the planted rank and size, and only it separates teacher and student."""
import torch
from conftest import tiny
from lora_repro.config import SyntheticTask
from lora_repro.tasks.synthetic import load, plant

CFG = SyntheticTask(num_labels=2, n_train=64, n_eval=32, seq_len=8, planted_rank=3, planted_targets=["q", "v"],
                    planted_scale=0.5, data_seed=7)


def test_planted_delta_has_the_planted_rank_and_relative_size():
    model = tiny("bert")
    w0 = model.bert.encoder.layer[0].attention.self.value.weight.detach().clone()
    planted = plant(model, ["q", "v"], rank=3, scale=0.5, gen=torch.Generator().manual_seed(0))
    assert len(planted) == 4  # 2 layers x (q, v)
    delta = planted["bert.encoder.layer.0.attention.self.value"]
    assert torch.linalg.matrix_rank(delta) == 3
    assert abs(delta.norm() / w0.norm() - 0.5) < 1e-4
    torch.testing.assert_close(model.bert.encoder.layer[0].attention.self.value.weight, w0 + delta)


def test_gpt2_fused_slices_are_planted_separately():
    planted = plant(tiny("gpt2"), ["q", "v"], rank=2, scale=0.5, gen=torch.Generator().manual_seed(0))
    assert sorted(planted) == [f"transformer.h.{i}.attn.c_attn:{s}" for i in range(2) for s in (0, 2)]
    assert all(d.shape == (32, 32) for d in planted.values())


def test_the_untrained_student_differs_from_the_teacher_and_the_base_model_is_untouched():
    model = tiny("bert", initializer_range=0.2)  # as conf/model/tiny-bert.yaml: weights large enough to matter
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    data = load(CFG, model)
    for n, p in model.named_parameters():
        assert torch.equal(p, before[n])  # the teacher is a copy
    ids, targets = data.evals["validation"].tensors
    with torch.no_grad():
        scores = data.score(model(input_ids=ids).logits, targets)
    assert scores["r2"] < 0.9  # there is something to learn
    assert data.score(targets, targets)["r2"] == 1.0
    assert sorted(data.extras)[0].startswith("planted.bert.encoder.layer.0")
