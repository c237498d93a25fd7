"""Data parallelism (DDP) under `torchrun` or `accelerate launch`: who this process is, and the global batch.

We call torch.distributed directly rather than wrap the loop in accelerate.Accelerator: the loop already owns what
Accelerator.prepare would take over (its resumable, seeded data order; the LR schedule, which AcceleratedScheduler
steps once per process; checkpoints), and DDP needs only three things here: a process group, the DDP wrapper and a
shard of the batches. Both launchers set the same env:// variables (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR), so
either starts these runs; without them, a run is one process and nothing here changes it.
"""
from __future__ import annotations

import itertools
import os

import torch
import torch.distributed as dist


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else int(os.environ.get("WORLD_SIZE", 1))


def rank() -> int:
    return dist.get_rank() if dist.is_initialized() else int(os.environ.get("RANK", 0))


def is_main() -> bool:
    """Rank 0: the one process that writes records, logs, checkpoints and the adapter."""
    return rank() == 0


def from_submitit() -> None:
    """In a submitit job of several tasks (hydra/launcher=slurm with tasks_per_node > 1), export its ranks as the
    env:// variables torchrun would set; elsewhere, nothing."""
    if "WORLD_SIZE" in os.environ or not os.environ.get("SUBMITIT_EXECUTOR"):
        return
    from submitit import JobEnvironment
    from submitit.helpers import TorchDistributedEnvironment
    if JobEnvironment().num_tasks > 1:
        TorchDistributedEnvironment().export(set_cuda_visible_devices=False)


def setup(device: torch.device) -> torch.device:
    """Join the launcher's process group (NCCL on CUDA, gloo on CPU); returns this process's device."""
    if int(os.environ.get("WORLD_SIZE", 1)) == 1 or dist.is_initialized():
        return device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        torch.cuda.set_device(device)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return device


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def broadcast(obj):
    """Rank 0's value of a picklable object on every rank (e.g. its run directory)."""
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_sum(value: torch.Tensor) -> torch.Tensor:
    """The sum over ranks of a tensor on this rank's device (one collective: call it at log steps, not every step)."""
    if dist.is_initialized():
        value = value.clone()
        dist.all_reduce(value)
    return value


def grad_accum(cfg, world: int) -> int:
    """Micro-batches per optimizer step on each device: global_batch_size / (batch_size x world) when the global
    batch is set, else train.grad_accum (so the global batch is batch_size x grad_accum x world)."""
    per_device = cfg.batch_size  # cfg: the train config (lora_repro.config.TrainConfig)
    if cfg.global_batch_size is None:
        return cfg.grad_accum
    total = cfg.global_batch_size
    if total % (per_device * world):  # the config keeps it >= 1
        raise ValueError(f"train.global_batch_size={total} is not a positive multiple of train.batch_size "
                         f"({per_device}, per device) x {world} processes; valid choices: multiples of "
                         f"{per_device * world}, or change train.batch_size")
    return total // (per_device * world)


class ShardedBatches(torch.utils.data.Sampler):
    """Rank k of W takes batches k, k+W, k+2W, ... of the one-process batch order: W processes accumulating
    accum/W micro-batches each train on the same global batches as one process accumulating accum. When the
    batches do not split evenly, the ranks short of one get a repeat of the epoch's first batches (as
    DistributedSampler pads), which the loop weights 0 (train.micro_weight): every rank runs the same count."""

    def __init__(self, batches: torch.utils.data.BatchSampler, rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world

    def __iter__(self):
        # lazily (a generator: nothing is drawn before the loader's first batch), so the data-order generator is
        # consumed in the order one process consumes it
        if len(self.batches) % self.world == 0:
            yield from itertools.islice(iter(self.batches), self.rank, None, self.world)
            return
        order = list(self.batches)
        padded = order + order[:len(self) * self.world - len(order)]
        yield from itertools.islice(padded, self.rank, None, self.world)

    def __len__(self) -> int:
        return -(-len(self.batches) // self.world)  # ceil: the same on every rank
