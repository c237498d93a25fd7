"""python -m lora_repro.bench loop: our whole training loop (lora_repro.train) against transformers' Trainer + PEFT.

Both sides train LoRA (q, v; rank r, alpha 2r, LoRA dropout 0; the classifier head trains) on the same start weights
(PEFT's A is copied from ours, B = 0 on both: on BERT/RoBERTa the same function), the same examples in the same
batches in the same order (Trainer's sampler replays the permutation our loop draws), the same number of steps, AdamW
(torch's, lr, weight decay on matrices only, betas and eps at their defaults), linear warmup and decay, gradient
clipping at 1.0, a loss logged every `log_every` steps, no checkpoints, no mixed precision on CPU and bf16 autocast on
CUDA. Timed: whole epochs, from the epoch's first batch to the end of its last step, data loading and collation,
forward, backward, clipping, optimizer and scheduler steps and logging included; evaluation and the setup before the
first epoch excluded on both sides (ours evaluates a small split after the last epoch, out of the timed epochs;
Trainer evaluates nothing). The clock is timing.clock's: wall time, synchronized, on CUDA; on CPU this process's CPU
time (one thread: the work done, not the time other processes held the core; wall seconds are recorded beside it).
Rounds alternate which side runs first; a round's ratio is ours / Trainer's time, and
`ratios.loop_ours_over_hf_trainer` is their median with its 95% CI (timing.median_ci).
"""
from __future__ import annotations

import copy
import statistics
import tempfile
import time
from pathlib import Path

import datasets
import torch
from transformers import (AutoConfig, AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                          Trainer, TrainerCallback, TrainingArguments)

from lora_repro.bench.machine import machine, require_peft
from lora_repro.bench.timing import median_ci, sync
from lora_repro.config import GlueTask, LoraMethod, TrainConfig
from lora_repro.errors import ConfigError
from lora_repro.methods import apply_method
from lora_repro.models import char_tokenizer
from lora_repro.tasks import TaskData
from lora_repro.train import train

SHARED = Path(__file__).resolve().parents[3] / "shared"
# Shapes and schedules. `generated`: a random-init model of `config` on random token ids of 4..seq tokens (offline,
# any machine); `sst2`: a local Hugging Face model folder and the GLUE SST-2 TSVs (the real thing, where present).
# 9 rounds or more: the fewest for which the 95% interval of the median is narrower than the whole range. Steps are a
# multiple of log_every: our loop also logs the last step, Trainer only every log_every steps.
LOOP_PRESETS = {
    "smoke": dict(data="generated", arch="bert", config=dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                             intermediate_size=64, vocab_size=100,
                                                             hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0),
                  examples=32, seq=12, batch=8, epochs=2, log_every=2, r=4, lr=1e-3, rounds=2, warmup_rounds=0),
    "cpu-minilm": dict(data="sst2", model_dir=str(SHARED / "models" / "all-MiniLM-L6-v2"),
                       data_dir=str(SHARED / "data" / "glue" / "SST-2"), examples=640, seq=128, batch=32, epochs=1,
                       log_every=10, r=8, lr=1e-3, rounds=12, warmup_rounds=1),
    "roberta-base": dict(data="generated", arch="roberta", config=dict(), examples=4096, seq=128, batch=32, epochs=1,
                         log_every=8, r=8, lr=5e-4, rounds=9, warmup_rounds=1),
}


def generated_task(preset: dict, vocab: int) -> TaskData:
    """Random token ids of 4..seq tokens with random binary labels: padded batches as real text gives them."""
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(4, preset["seq"] + 1, (preset["examples"] + 16,), generator=gen).tolist()
    ids = [torch.randint(5, vocab, (n,), generator=gen).tolist() for n in lengths]
    rows = {"input_ids": ids, "attention_mask": [[1] * n for n in lengths],
            "labels": torch.randint(0, 2, (len(ids),), generator=gen).tolist()}
    splits = {name: datasets.Dataset.from_dict({k: v[sl] for k, v in rows.items()}).with_format("torch")
              for name, sl in (("train", slice(preset["examples"])), ("validation", slice(preset["examples"], None)))}

    def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        return {"accuracy": (logits.argmax(-1) == labels).float().mean().item()}

    return TaskData(train=splits["train"], evals={"validation": splits["validation"]},
                    collate=DataCollatorWithPadding(char_tokenizer()), score=accuracy, main_metric="accuracy")


def build(preset: dict) -> tuple[torch.nn.Module, TaskData]:
    """The start model (random init, or the preset's model folder with a seeded head) and the task data."""
    torch.manual_seed(0)
    if preset["data"] == "generated":
        config = AutoConfig.for_model(preset["arch"], num_labels=2, **preset["config"])
        model = AutoModelForSequenceClassification.from_config(config)
        return model, generated_task(preset, config.vocab_size)
    for key in ("model_dir", "data_dir"):
        if not Path(preset[key]).is_dir():
            raise ConfigError(f"--{key.replace('_', '-')} {preset[key]} is not a folder; the {preset['data']} "
                              "loop needs a local Hugging Face model folder and the GLUE SST-2 TSVs")
    from lora_repro.tasks.glue import load
    model = AutoModelForSequenceClassification.from_pretrained(preset["model_dir"], num_labels=2)
    task = GlueTask(subset="sst2", data_dir=preset["data_dir"], max_train_samples=preset["examples"],
                    max_eval_samples=64, max_seq_len=preset["seq"], data_seed=0)  # eval: untimed
    return model, load(task, AutoTokenizer.from_pretrained(preset["model_dir"]))


def schedule(preset: dict) -> dict:
    """The hyperparameters both loops share (paper-style LoRA fine-tuning: warmup 6% of the steps, then linear)."""
    steps = -(-preset["examples"] // preset["batch"]) * preset["epochs"]
    return dict(epochs=preset["epochs"], batch_size=preset["batch"], lr=preset["lr"], weight_decay=0.1,
                warmup_steps=max(1, int(0.06 * steps)), max_grad_norm=1.0, log_every=preset["log_every"], steps=steps)


def ours_model(template: torch.nn.Module, preset: dict) -> torch.nn.Module:
    """Our LoRA on q, v of a copy of the template, as lora_repro.run applies it (the head trains); A seeded."""
    torch.manual_seed(1)
    return apply_method(copy.deepcopy(template),
                        LoraMethod(targets=["q", "v"], r=preset["r"], alpha=2 * preset["r"], dropout=0.0))


def run_ours(template: torch.nn.Module, data: TaskData, preset: dict, device: torch.device) -> dict:
    """lora_repro.train.train on our LoRA model; epoch seconds, loss log, steps."""
    model, s = ours_model(template, preset), schedule(preset)
    cfg = TrainConfig(epochs=s["epochs"], batch_size=s["batch_size"], grad_accum=1, global_batch_size=None,
                      eval_batch_size=64, lr=s["lr"], warmup_ratio=0.0, warmup_steps=s["warmup_steps"],
                      weight_decay=s["weight_decay"], max_grad_norm=s["max_grad_norm"],
                      adam_eps=1e-8, precision="bf16",  # Trainer's adam_epsilon; bf16 autocast on CUDA
                      log_every=s["log_every"], checkpoint_every=0, data_order_seed=0, eval_each_epoch=False)
    records: list[dict] = []
    start = time.perf_counter()
    out = train(model, data, cfg, device, records.append)
    return dict(epoch_s=out["train_time_s"], epoch_cpu_s=out["train_cpu_s"], call_s=time.perf_counter() - start,
                steps=out["steps"],
                losses=[r["loss"] for r in records if "loss" in r])


class SameOrder(torch.utils.data.Sampler):
    """The permutation lora_repro.train draws each epoch from Generator().manual_seed(data_order_seed): its
    DataLoader first takes one int64 from the generator (the workers' base seed), then RandomSampler a randperm."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.generator = n, torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        torch.empty((), dtype=torch.int64).random_(generator=self.generator)
        yield from torch.randperm(self.n, generator=self.generator).tolist()


class SameOrderTrainer(Trainer):
    """transformers' Trainer, unchanged but for the data order: the one our loop uses."""

    def _get_train_sampler(self, train_dataset=None):
        return SameOrder(len(train_dataset if train_dataset is not None else self.train_dataset))


class EpochClock(TrainerCallback):
    """Wall and CPU seconds of each epoch (on_epoch_begin to on_epoch_end, synchronized), and the logged losses."""

    def __init__(self, device: torch.device):
        self.device, self.epoch_s, self.epoch_cpu_s, self.losses, self.start = device, [], [], [], (0.0, 0.0)

    def on_epoch_begin(self, args, state, control, **kwargs):
        sync(self.device)
        self.start = (time.perf_counter(), time.process_time())

    def on_epoch_end(self, args, state, control, **kwargs):
        sync(self.device)
        self.epoch_s.append(time.perf_counter() - self.start[0])
        self.epoch_cpu_s.append(time.process_time() - self.start[1])

    def on_log(self, args, state, control, logs=None, **kwargs):
        if logs and "loss" in logs:
            self.losses.append(logs["loss"])


def peft_model(template: torch.nn.Module, preset: dict) -> torch.nn.Module:
    """PEFT's LoRA on q, v of a copy of the template, the classifier trained (modules_to_save); A copied from ours
    (B = 0 on both), so both loops start from the same function."""
    peft = require_peft()
    cfg = peft.LoraConfig(r=preset["r"], lora_alpha=2 * preset["r"], lora_dropout=0.0, bias="none",
                          target_modules=["query", "value"], modules_to_save=["classifier"])
    model, ours = peft.get_peft_model(copy.deepcopy(template), cfg), ours_model(template, preset)
    with torch.no_grad():
        for name, module in model.named_modules():
            if isinstance(getattr(module, "lora_A", None), torch.nn.ModuleDict) and "default" in module.lora_A:
                module.lora_A["default"].weight.copy_(ours.get_submodule(name.removeprefix("base_model.model.")).lora_A)
    return model


def run_trainer(template: torch.nn.Module, data: TaskData, preset: dict, device: torch.device) -> dict:
    """transformers' Trainer with PEFT's LoRA, the same data, order, schedule and optimizer as run_ours."""
    model, s, clock = peft_model(template, preset), schedule(preset), EpochClock(device)
    with tempfile.TemporaryDirectory() as tmp:
        args = TrainingArguments(
            output_dir=tmp, per_device_train_batch_size=s["batch_size"], num_train_epochs=s["epochs"],
            learning_rate=s["lr"], weight_decay=s["weight_decay"], warmup_steps=s["warmup_steps"],
            lr_scheduler_type="linear", max_grad_norm=s["max_grad_norm"], optim="adamw_torch",
            logging_strategy="steps", logging_steps=s["log_every"], save_strategy="no", eval_strategy="no",
            report_to="none", bf16=device.type == "cuda", use_cpu=device.type == "cpu", seed=0,
            remove_unused_columns=False, dataloader_pin_memory=device.type == "cuda", dataloader_num_workers=0)
        trainer = SameOrderTrainer(model=model, args=args, train_dataset=data.train, data_collator=data.collate,
                                   callbacks=[clock])
        start = time.perf_counter()
        out = trainer.train()
        call_s = time.perf_counter() - start
    return dict(epoch_s=sum(clock.epoch_s), epoch_cpu_s=sum(clock.epoch_cpu_s), call_s=call_s, steps=out.global_step,
                losses=clock.losses)


def run_loop(preset_name: str, device: torch.device, rounds: int | None = None, examples: int | None = None,
             model_dir: str | None = None, data_dir: str | None = None) -> dict:
    """Rounds of (ours, Trainer + PEFT) in alternating order; epoch times, the paired ratio and its CI, loss logs."""
    preset = {**LOOP_PRESETS[preset_name], **{k: v for k, v in dict(rounds=rounds, examples=examples,
                                                                      model_dir=model_dir, data_dir=data_dir).items()
                                              if v is not None}}
    template, data = build(preset)
    key = "epoch_s" if device.type == "cuda" else "epoch_cpu_s"  # timing.clock: wall on CUDA, CPU time on CPU
    times, wall = {"ours": [], "hf_trainer": []}, {"ours": [], "hf_trainer": []}
    last = {}
    for i in range(preset["warmup_rounds"] + preset["rounds"]):
        sides = {"ours": lambda: run_ours(template, data, preset, device),
                 "hf_trainer": lambda: run_trainer(template, data, preset, device)}
        order = list(sides) if i % 2 == 0 else list(sides)[::-1]  # who runs first alternates
        ran = {name: sides[name]() for name in order}
        ours, theirs = ran["ours"], ran["hf_trainer"]
        if i >= preset["warmup_rounds"]:
            for name, side in (("ours", ours), ("hf_trainer", theirs)):
                times[name].append(side[key])
                wall[name].append(side["epoch_s"])
        last = {"ours": ours, "hf_trainer": theirs}
        if device.type == "cuda":
            torch.cuda.empty_cache()
    ratios = [a / b for a, b in zip(times["ours"], times["hf_trainer"])]
    wall_ratios = [a / b for a, b in zip(wall["ours"], wall["hf_trainer"])]
    s = schedule(preset)
    sides = {name: dict(epoch_s=times[name], median_epoch_s=statistics.median(times[name]), wall_epoch_s=wall[name],
                        steps_per_s=last[name]["steps"] / statistics.median(times[name]), steps=last[name]["steps"],
                        call_s_last_round=last[name]["call_s"], losses_last_round=last[name]["losses"])
             for name in times}
    return dict(command="loop", preset=preset_name, data=preset["data"],
                model=preset.get("model_dir") or f"{preset['arch']} random init, {preset['config'] or 'default shape'}",
                examples=preset["examples"], max_seq=preset["seq"], schedule=s, lora=dict(targets=["q", "v"],
                r=preset["r"], alpha=2 * preset["r"]), rounds=preset["rounds"], warmup_rounds=preset["warmup_rounds"],
                timing=("wall seconds (synchronized)" if device.type == "cuda" else "process CPU seconds") +
                       " of the epochs; ratio: median over rounds of ours/Trainer",
                machine=machine(), sides=sides, round_ratios=ratios,
                ratios={"loop_ours_over_hf_trainer": statistics.median(ratios)},
                ratios_ci={"loop_ours_over_hf_trainer": median_ci(ratios)},
                wall_ratio=dict(median=statistics.median(wall_ratios), ci=median_ci(wall_ratios), rounds=wall_ratios))


def print_loop(result: dict) -> None:
    s = result["schedule"]
    print(f"loop: {result['model']}, {result['examples']} examples ({result['data']}), batch {s['batch_size']}, "
          f"{s['steps']} steps, {result['rounds']} rounds (+{result['warmup_rounds']} warm-up) on "
          f"{result['machine']['device']}, {result['machine']['threads']} thread(s)")
    for name, side in result["sides"].items():
        print(f"  {name:<11} median {side['median_epoch_s']:.2f} s ({side['steps_per_s']:.2f} steps/s); rounds "
              + " ".join(f"{t:.2f}" for t in side["epoch_s"]) + f"; last losses {side['losses_last_round'][-3:]}")
    low, high = result["ratios_ci"]["loop_ours_over_hf_trainer"]
    w = result["wall_ratio"]
    print(f"  ours/Trainer+PEFT {result['ratios']['loop_ours_over_hf_trainer']:.3f} [{low:.3f}, {high:.3f}] "
          f"({result['timing'].split(' of ')[0]}); wall {w['median']:.3f} [{w['ci'][0]:.3f}, {w['ci'][1]:.3f}]")
