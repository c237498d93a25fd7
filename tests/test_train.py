"""The training loop: every example of an epoch is trained, the last partial global batch as a step of its own."""
import pytest
import torch
from hydra import compose, initialize_config_dir

from lora_repro.train import micro_weight, train
from test_reliability import ROOT, build


def config(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose("config", overrides=list(overrides))


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
