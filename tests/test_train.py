"""The training loop: every example of an epoch is trained, the last partial global batch as a step of its own."""
import pytest
import torch
from hydra import compose, initialize_config_dir

from lora_repro.config import from_hydra
from lora_repro.formats import read
from lora_repro.lora import read_adapter
from lora_repro.methods import apply_method
from lora_repro.run import build as run_build, run
from lora_repro.train import micro_weight, train
from test_reliability import ROOT, build


def config(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return from_hydra(compose("config", overrides=list(overrides)))


def test_rte_base_last_partial_step_is_weighted_by_its_examples():
    # RoBERTa-base RTE: 2,490 examples, batch 16 x 8 GPUs = 128: 19 full steps and one of 58 (2490 - 19 x 128)
    n, bs, accum = 2490, 16, 8
    weights = [micro_weight(i, 0, 1, accum, bs, n) for i in range(-(-n // bs))]
    assert len(weights) == 156 and weights[:8] == [1 / 8] * 8
    assert weights[152:] == [16 / 58, 16 / 58, 16 / 58, 10 / 58]  # 3 x 16 + 10 = 58 examples, averaged
    steps = [sum(weights[s * accum:(s + 1) * accum]) for s in range(20)]
    assert steps == pytest.approx([1.0] * 20)


def test_two_ranks_weight_their_shares_and_the_padding_zero():
    # 5 micro-batches of 4 over 2 ranks x accum 2: step 0 = batches 0-3 (16 examples), step 1 = batch 4 (+ padding)
    n, bs, accum, world = 20, 4, 2, 2
    w = {(r, i): micro_weight(i, r, world, accum, bs, n) for r in range(world) for i in range(3)}
    assert [w[0, 0], w[0, 1], w[1, 0], w[1, 1]] == [0.5] * 4  # n_i x world / n_step = 4 x 2 / 16
    assert (w[0, 2], w[1, 2]) == (2.0, 0.0)  # batch 4 alone: 4 x 2 / 4 (DDP halves it back); rank 1 pads


def test_accumulation_trains_what_one_big_batch_does_the_partial_step_included():
    # 18 examples: batch 4 x accum 2 gives steps of 8, 8, 2 examples, as batch 8 x accum 1 does
    quick = ["task.n_train=18", "task.n_eval=16", "train.epochs=2", "train.lr=1e-2"]
    runs = {}
    for name, over in (("accum", ["train.batch_size=4", "train.grad_accum=2"]), ("big", ["train.batch_size=8"])):
        model, data = build(config(*quick, *over))
        result = train(model, data, config(*quick, *over).train, torch.device("cpu"), lambda record: None)
        runs[name] = result, {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    (accum, a), (big, b) = runs["accum"], runs["big"]
    assert accum["steps"] == big["steps"] == 2 * 3  # before: 2 x 2 with accumulation, its last 2 examples unseen
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-6)
    assert accum["history"][-1]["r2"] == pytest.approx(big["history"][-1]["r2"], rel=1e-4)


def test_the_scripts_global_batches_and_weight_decay_apply():
    cola = config("model=roberta-base", "task=glue/cola").train
    assert (cola.batch_size, cola.global_batch_size) == (32, 64)  # CoLA-base's script: 2 GPUs
    mrpc = config("model=roberta-base", "task=glue/mrpc").train
    assert (mrpc.batch_size, mrpc.global_batch_size) == (16, 128)  # every other script: 8 GPUs
    for name in ("adapter_h", "adapter_h_small", "adapter_p", "adapter_p_small"):
        for task in ("mnli", "rte"):
            train_cfg = config("model=roberta-large", f"method={name}", f"task=glue/{task}").train
            assert (train_cfg.batch_size, train_cfg.global_batch_size, train_cfg.weight_decay) == (32, 256, 0.0)
            assert train_cfg.warmup_ratio == 0.1


def test_snapshots_hold_the_init_and_the_trained_tensors(tmp_path):
    # Sec. 7.3 against training steps: step 0 is the init (B = 0, A as drawn), the last one the run's adapter
    cfg = config("task.n_train=32", "task.n_eval=16", "train.batch_size=8", "train.lr=1e-2", "train.epochs=2",
                 "train.snapshot_steps=[0,3,8]", "logger=none")
    assert run(cfg, tmp_path)["steps"] == 8
    folder = tmp_path / "snapshots"
    assert sorted(p.name for p in folder.iterdir()) == [f"step{s}.safetensors" for s in (0, 3, 8)]
    step0, step3, step8 = (read_adapter(folder / f"step{s}.safetensors") for s in (0, 3, 8))
    model, _ = run_build(cfg)
    init = {n: p for n, p in apply_method(model, cfg.method).named_parameters() if p.requires_grad}
    lora_b = [n for n in step0 if n.endswith("lora_B")]
    assert lora_b and all(step0[n].abs().max() == 0 for n in lora_b)  # B starts at zero
    final = read_adapter(tmp_path / "adapter.safetensors")
    for name, tensor in step0.items():
        torch.testing.assert_close(tensor, init[name].detach(), rtol=0, atol=0)
        torch.testing.assert_close(step8[name], final[name], rtol=0, atol=0)
    assert any((step3[n] - step0[n]).abs().max() > 0 for n in lora_b)
    snapshot = read(folder / "step3.safetensors")  # a snapshot is an adapter file like the run's own
    assert (snapshot.r, snapshot.alpha, snapshot.targets) == (cfg.method.r, cfg.method.alpha, list(cfg.method.targets))


def test_a_snapshot_step_past_the_run_is_refused_before_training():
    quick = ["task.n_train=32", "task.n_eval=16", "train.batch_size=8", "train.epochs=1", "train.snapshot_steps=[0,5]"]
    model, data = build(config(*quick))
    message = r"^train.snapshot_steps=\[0, 5\] is invalid; valid choices: integers in \[0, 4\] \(the run's total steps"
    with pytest.raises(ValueError, match=message + r": 1 epochs x 4 steps\)$"):
        train(model, data, config(*quick).train, torch.device("cpu"), lambda record: None)


def test_warmup_beyond_the_runs_steps_is_one_line_before_the_first_step():
    # 18 examples in batches of 8: 3 steps an epoch, 6 in 2 epochs; the total is known only once the data is
    quick = ["task.n_train=18", "task.n_eval=16", "train.epochs=2", "train.batch_size=8"]
    model, data = build(config(*quick))
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    logged = []
    with pytest.raises(ValueError) as err:
        train(model, data, config(*quick, "train.warmup_steps=7").train, torch.device("cpu"), logged.append)
    assert str(err.value) == ("train.warmup_steps=7 is invalid; valid choices: an integer in [0, 6] (the run's total "
                              "steps: 2 epochs x 3 steps)")
    assert logged == [] and all(torch.equal(p, before[n]) for n, p in model.named_parameters() if p.requires_grad)
    whole = config(*quick, "train.warmup_steps=6", "train.log_every=1").train  # warming up all run long is allowed
    assert train(model, data, whole, torch.device("cpu"), logged.append)["steps"] == 6
    lrs = [record["lr"] for record in logged if "lr" in record]
    assert lrs[:5] == pytest.approx([whole.lr * step / 6 for step in range(1, 6)])


def test_training_stops_once_the_selection_score_has_not_improved_for_patience_epochs(tmp_path):
    # scripted scores per evaluated epoch: best at epoch 1, then two epochs without a better one -> stop after 3;
    # a resumed run reads the same stop from its history and trains no further
    import dataclasses
    quick = ["task.n_train=16", "task.n_eval=8", "train.epochs=8", "train.batch_size=8", "train.patience=2"]
    cfg = config(*quick)
    scores = iter([0.5, 0.7, 0.6, 0.7, 0.9, 0.9, 0.9, 0.9])
    model, data = build(cfg)
    data = dataclasses.replace(data, evaluate=lambda *args: {"r2": next(scores)})
    result = train(model, data, cfg.train, torch.device("cpu"), lambda record: None, tmp_path, meta={})
    assert [h["epoch"] for h in result["history"]] == [0, 1, 2, 3] and result["best_epoch"] == 1
    assert result["stopped_early"] and not result["best_is_last"] and result["steps"] == 4 * 2
    again = train(model, data, cfg.train, torch.device("cpu"), lambda record: None, tmp_path, resume=True, meta={})
    assert again["steps"] == 8 and [h["r2"] for h in again["history"]] == [0.5, 0.7, 0.6, 0.7]
    full = train(*build(config(*quick[:-1]))[:1], dataclasses.replace(data, evaluate=lambda *a: {"r2": 0.1}),
                 config(*quick[:-1]).train, torch.device("cpu"), lambda record: None)
    assert not full["stopped_early"] and full["best_epoch"] == 0 and len(full["history"]) == 8
    floor = iter([0.0, 0.0, 0.0, 0.0, 0.2, 0.3, 0.3, 0.3])  # at its floor for 4 epochs, then it climbs
    late = train(*build(cfg)[:1], dataclasses.replace(data, evaluate=lambda *a: {"r2": next(floor)}),
                 config(*quick, "train.min_epochs=5").train, torch.device("cpu"), lambda record: None)
    assert [h["r2"] for h in late["history"]] == [0.0, 0.0, 0.0, 0.0, 0.2, 0.3, 0.3, 0.3] and late["best_epoch"] == 5
    with pytest.raises(Exception, match=r"train.patience=2 needs train.eval_each_epoch=true"):
        config(*quick, "train.eval_each_epoch=false")
