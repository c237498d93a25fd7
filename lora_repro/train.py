"""The training loop: AdamW, linear warmup and decay, accumulation, clipping, bf16 or fp32, eval every epoch, DDP."""
from __future__ import annotations

import json
import logging
import math
import os
import random
import resource
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import BatchSampler, DataLoader, RandomSampler
from tqdm.auto import tqdm
from transformers import get_linear_schedule_with_warmup

from lora_repro import distributed
from lora_repro.errors import ConfigError
from lora_repro.lora import read_adapter
from lora_repro.record import save_adapter, write_json
from lora_repro.tasks import TaskData


class NonFiniteLoss(ConfigError, FloatingPointError):
    """The training loss became NaN or inf: the run stops rather than train on garbage (a setting's fault, e.g.
    train.lr: reported as one line)."""


def seed_everything(seed: int) -> None:
    """Same seed, same CPU run, bit for bit."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """train.precision (lora_repro.config.TrainConfig): bf16 autocasts to bfloat16 on CUDA (CPUs stay fp32), fp32 never casts."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda" and precision == "bf16")


def peak_memory_mb(device: torch.device) -> float:
    """CUDA: max allocated; CPU: peak resident set size of this process."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def micro_weight(i: int, rank: int, world: int, accum: int, batch_size: int, n_train: int) -> float:
    """The factor on micro-batch i's mean loss (on this rank) so that each optimizer step's gradient is the mean over
    the examples of its global batch, the epoch's last, partial one included (what the reference's DDP step averages):
    n_i / n_step, times world because DDP averages over the ranks; 0 for a rank's padding batch."""
    g, step_size = rank + i * world, accum * world  # g: the micro-batch's index in the one-process order
    first = (i // accum) * step_size * batch_size  # the step's first example
    n_step = min(first + step_size * batch_size, n_train) - first
    n_i = min(batch_size, n_train - g * batch_size)
    return n_i * world / n_step if n_i > 0 else 0.0


def optimizer_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Decay matrices (LoRA's A and B included, as the reference code does), not biases or norms (HF Trainer)."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


@torch.no_grad()
def evaluate(model: torch.nn.Module, data: TaskData, cfg, device: torch.device,
             out_dir: Path | None = None, tag: str = "") -> dict[str, float]:
    """The task's metrics on every eval split; splits after the first get their name as a suffix.

    A generation task (E2E) scores through its own data.evaluate, which may write its outputs to out_dir.
    """
    model.eval()
    if data.evaluate is not None:
        with autocast(device, cfg.precision):
            metrics = data.evaluate(model, device, cfg.eval_batch_size, out_dir, tag)
        model.train()
        return metrics
    metrics = {}
    for i, (split, dataset) in enumerate(data.evals.items()):
        logits, labels = [], []
        for batch in DataLoader(dataset, batch_size=cfg.eval_batch_size, collate_fn=data.collate):
            batch = {k: v.to(device) for k, v in batch.items()}
            with autocast(device, cfg.precision):
                logits.append(model(**{k: v for k, v in batch.items() if k != "labels"}).logits.float().cpu())
            labels.append(batch["labels"].cpu())
        scores = data.score(torch.cat(logits), torch.cat(labels))
        suffix = "" if i == 0 else "_" + split.removeprefix("validation_")
        metrics.update({name + suffix: value for name, value in scores.items()})
    model.train()
    return metrics


def numpy_state_as_tensors() -> tuple:
    """NumPy's RNG state with its key array as a tensor, so torch.load(weights_only=True) can read it back."""
    name, keys, *rest = np.random.get_state()
    return (name, torch.from_numpy(keys.astype(np.int64)), *rest)


def save_checkpoint(folder: Path, model: torch.nn.Module, optimizer, scheduler, order: torch.Tensor,
                    state: dict) -> None:
    """Trainable tensors, optimizer/scheduler/RNG state, then trainer_state.json (written last, so it marks a whole
    checkpoint). `order` is the data-order generator's state at the start of the epoch being trained."""
    save_adapter(folder / "checkpoint.safetensors", model, {}, {})  # the trainable tensors, atomically
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "order": order, "torch": torch.get_rng_state(), "random": random.getstate(),
                "numpy": numpy_state_as_tensors()}, folder / "optimizer.tmp")
    os.replace(folder / "optimizer.tmp", folder / "optimizer.pt")
    write_json(folder / "trainer_state.json", state)


def load_checkpoint(folder: Path, model: torch.nn.Module, optimizer, scheduler, order: torch.Generator) -> dict:
    """Restore what save_checkpoint wrote; returns trainer_state.json (epoch, batches done in it, step, history)."""
    state = json.loads((folder / "trainer_state.json").read_text())
    model.load_state_dict(read_adapter(folder / "checkpoint.safetensors"), strict=False)  # corrupt: a clear error
    extra = torch.load(folder / "optimizer.pt", weights_only=True)  # tensors and plain values only: no pickled code
    optimizer.load_state_dict(extra["optimizer"])
    scheduler.load_state_dict(extra["scheduler"])
    order.set_state(extra["order"])
    torch.set_rng_state(extra["torch"])
    random.setstate(extra["random"])
    name, keys, *rest = extra["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    return state


def check_steps(cfg, total: int, steps_per_epoch: int) -> None:
    """train.warmup_steps and train.snapshot_steps within the run's optimizer steps, which only the data's size tells
    (so not the config): one line before the first step."""
    steps = f"(the run's total steps: {cfg.epochs} epochs x {steps_per_epoch} steps)"
    if cfg.warmup_steps > total:
        raise ConfigError(f"train.warmup_steps={cfg.warmup_steps} is invalid; valid choices: an integer in [0, {total}] "
                         + steps)
    if any(s > total for s in cfg.snapshot_steps):
        raise ConfigError(f"train.snapshot_steps={list(cfg.snapshot_steps)} is invalid; valid choices: integers in "
                         f"[0, {total}] {steps}")


def train(model: torch.nn.Module, data: TaskData, cfg, device: torch.device, log,
          checkpoint_dir: Path | None = None, resume: bool = False, meta: dict | None = None) -> dict:
    """Train for cfg.epochs, evaluating after each; returns the summary that metrics.json records.

    `log(record)` receives one dict per logged step and per epoch (train_log.jsonl, W&B). With checkpoint_dir,
    a checkpoint is written there every cfg.checkpoint_every optimizer steps (0: none mid-epoch) and at the end of
    each epoch; resume=True continues from it when one exists, mid-epoch included, with the same data order.
    cfg.snapshot_steps saves the trainable tensors there too (snapshots/step<N>.safetensors, `meta` as metadata).

    Under torchrun / accelerate launch (lora_repro.distributed.setup called first), each process trains a DDP copy
    on every world-th batch of the one-process order, so a step sees the same global batch whatever the world size;
    only rank 0 writes checkpoints, and every rank evaluates the full eval set on its own (identical) model.
    """
    model.to(device).train()
    world, rank = distributed.world_size(), distributed.rank()
    order = torch.Generator().manual_seed(cfg.data_order_seed)
    batches = BatchSampler(RandomSampler(data.train, generator=order), cfg.batch_size, drop_last=False)
    # generator=order too: the loader draws its worker base seed from it, as DataLoader(shuffle=True) does
    # pinned host batches on CUDA, so the copy to the device below does not block the host (non_blocking)
    loader = DataLoader(data.train, batch_sampler=distributed.ShardedBatches(batches, rank, world),
                        collate_fn=data.collate, generator=order, pin_memory=device.type == "cuda")
    accum = distributed.grad_accum(cfg, world)
    # the last global batch of an epoch may be partial: it is trained as a step of its own, its examples averaged
    # (micro_weight), as the reference's DistributedSampler + DataLoader(drop_last=False) train it
    steps_per_epoch = -(-len(batches) // (accum * world))
    batches_per_epoch = len(loader.batch_sampler)  # on each rank, the same on every rank (ShardedBatches)
    wrapped = model if world == 1 else \
        DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    total = steps_per_epoch * cfg.epochs
    check_steps(cfg, total, steps_per_epoch)
    warmup = cfg.warmup_steps or int(cfg.warmup_ratio * total)
    optimizer = torch.optim.AdamW(optimizer_groups(model, cfg.weight_decay), lr=cfg.lr, eps=cfg.adam_eps)
    scheduler = get_linear_schedule_with_warmup(optimizer, warmup, total)
    trainable = [p for p in model.parameters() if p.requires_grad]
    history, best, step, tokens, train_time, first, skip = [], None, 0, 0, 0.0, 0, 0
    cpu_time = 0.0  # CPU seconds of this process in the epochs (on a shared machine, wall time counts others' too)
    if resume and checkpoint_dir and (checkpoint_dir / "trainer_state.json").is_file():
        state = load_checkpoint(checkpoint_dir, model, optimizer, scheduler, order)
        history, best, step, tokens, train_time = (state[k] for k in ("history", "best", "step", "tokens",
                                                                      "train_time"))
        cpu_time = state.get("train_cpu", 0.0)  # absent from checkpoints written before it was recorded
        first, skip = state["epoch"], state["batches_done"]  # skip = 0: that epoch is finished
        if not skip:
            first += 1
        if state.get("world", 1) != world:
            raise ConfigError(f"resume=true: the checkpoint in {checkpoint_dir} was written by {state.get('world', 1)} "
                             f"processes, this run has {world}; resume with the same number of processes")
    every = cfg.checkpoint_every
    snapshots = set(cfg.snapshot_steps)

    def snapshot() -> None:
        """ΔW as training goes (Sec. 7.3): the trainable tensors after `step` optimizer steps, 0 = the init."""
        if checkpoint_dir and step in snapshots and distributed.is_main():
            (checkpoint_dir / "snapshots").mkdir(exist_ok=True)
            save_adapter(checkpoint_dir / "snapshots" / f"step{step}.safetensors", model, {},
                         {**(meta or {}), "step": step})
    if step == 0:
        snapshot()
    bar = tqdm(total=total, initial=step, desc="train", dynamic_ncols=True, mininterval=1.0,
               disable=not distributed.is_main())
    running, last_log = torch.zeros((), device=device), step  # summed loss since the last log: no sync per step

    def mean_loss() -> float:
        """Mean loss per step since the last log, over all ranks; NaN or inf stops the run (one sync per call)."""
        value = distributed.all_sum(running).item() / max((step - last_log) * world, 1)
        if not math.isfinite(value):
            raise NonFiniteLoss(f"training loss is {value} at step {step} (epoch {epoch}; the mean since step "
                                f"{last_log}, checked every train.log_every={cfg.log_every} steps); "
                                f"lower train.lr={cfg.lr} or check the data")
        return value

    def patience_spent() -> bool:
        """train.patience evaluated epochs since the best one, after train.min_epochs: stop (from the history, so a
        resumed run agrees)."""
        return bool(cfg.patience and history and history[-1]["epoch"] + 1 >= cfg.min_epochs
                    and history[-1]["epoch"] - best["epoch"] >= cfg.patience)
    for epoch in range(first, cfg.epochs):
        if patience_spent():
            logging.getLogger("lora_repro").info("early stop after epoch %d: no better %s for train.patience=%d epochs (best: epoch %d)",
                      history[-1]["epoch"], data.main_metric, cfg.patience, best["epoch"])
            break
        start, cpu_start = time.perf_counter(), time.process_time()
        epoch_order = order.get_state()  # the loader draws this epoch's permutation from it
        optimizer.zero_grad(set_to_none=True)  # drop a partial accumulation left from the last epoch
        for i, batch in enumerate(loader):
            if epoch == first and i < skip:  # resumed mid-epoch: these batches were trained before the kill
                continue
            # tokens counted on the host-side batch: on the device, int(sum) would wait for the GPU every step
            tokens += int(batch["attention_mask"].sum()) if "attention_mask" in batch else batch["input_ids"].numel()
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            # DDP: all-reduce the gradients only on the last micro-batch of a step
            step_ends = (i + 1) % accum == 0 or i + 1 == batches_per_epoch
            weight = micro_weight(i, rank, world, accum, cfg.batch_size, len(data.train))
            with wrapped.no_sync() if world > 1 and not step_ends else nullcontext():
                with autocast(device, cfg.precision):
                    loss = (data.loss(wrapped, batch) if data.loss else wrapped(**batch).loss) * weight
                loss.backward()
            running += loss.detach().float()
            if not step_ends:
                continue
            if cfg.max_grad_norm > 0:
                torch.nn.utils.clip_grad_norm_(trainable, cfg.max_grad_norm)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.update()
            snapshot()
            if step % cfg.log_every == 0 or step == total:
                elapsed = train_time + time.perf_counter() - start
                # tokens: this rank's count x world (exact for fixed-length batches, close for padded text)
                record = {"step": step, "epoch": epoch, "loss": mean_loss(), "lr": scheduler.get_last_lr()[0],
                          "tokens_per_s": tokens * world / max(elapsed, 1e-9)}
                running.zero_()
                last_log = step
                bar.set_postfix(loss=f"{record['loss']:.4f}", tok_s=f"{record['tokens_per_s']:.0f}")
                log(record)
            if checkpoint_dir and every and step % every == 0 and i + 1 < batches_per_epoch:
                mean_loss()  # never checkpoint weights a NaN step has touched
                if distributed.is_main():
                    save_checkpoint(checkpoint_dir, model, optimizer, scheduler, epoch_order,
                                    {"epoch": epoch, "batches_done": i + 1, "step": step, "tokens": tokens,
                                     "train_time": train_time + time.perf_counter() - start,
                                     "train_cpu": cpu_time + time.process_time() - cpu_start, "history": history,
                                     "best": best, "world": world})
            if step >= total or i + 1 == batches_per_epoch:  # every rank runs the same number of micro-batches
                break
        mean_loss()  # a NaN since the last log stops the run before this epoch's eval and checkpoint; on CUDA its
        # one sync also ends the epoch's queued work, so the epoch's time below includes it
        train_time += time.perf_counter() - start
        cpu_time += time.process_time() - cpu_start
        if cfg.eval_each_epoch or epoch == cfg.epochs - 1:
            out_dir = checkpoint_dir if distributed.is_main() else None  # generated text: rank 0 writes it
            metrics = evaluate(model, data, cfg, device, out_dir, f"epoch{epoch}")
            history.append({"epoch": epoch, "step": step, **metrics})
            log({"step": step, "epoch": epoch, **{f"eval/{k}": v for k, v in metrics.items()}})
            if best is None or metrics[data.main_metric] > best["metrics"][data.main_metric]:
                best = {"epoch": epoch, "metrics": metrics}  # GLUE: the paper reports the best epoch (App. D)
        if checkpoint_dir and distributed.is_main():
            save_checkpoint(checkpoint_dir, model, optimizer, scheduler, order.get_state(),
                            {"epoch": epoch, "batches_done": 0, "step": step, "tokens": tokens, "train_time": train_time,
                             "train_cpu": cpu_time, "history": history, "best": best, "world": world})
    bar.close()
    return {"steps": step, "train_time_s": train_time, "train_cpu_s": cpu_time,
            "tokens_per_s": tokens * world / max(train_time, 1e-9),
            "peak_mem_mb": peak_memory_mb(device), "world_size": world, "grad_accum": accum,
            "global_batch_size": cfg.batch_size * accum * world, "metrics": best["metrics"],
            "best_epoch": best["epoch"], "final_metrics": history[-1], "history": history,
            "best_is_last": best["epoch"] == history[-1]["epoch"],  # still improving when it stopped
            "stopped_early": history[-1]["epoch"] < cfg.epochs - 1}
