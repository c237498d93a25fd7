"""A run's records: metrics.json, adapter.safetensors, train_log.jsonl in its run directory, and W&B."""
from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from lora_repro import distributed
from lora_repro.errors import ConfigError
from lora_repro.lora import lora_state_dict

log = logging.getLogger("lora_repro")
STORED_CONFIG = "run_config.json"  # the config a run started with (Hydra rewrites .hydra/ on every start)
# fields a resumed run may change: they change what is logged or how fast it is evaluated, not what is trained
RESUME_MAY_CHANGE = ("resume", "experiment", "logger", "train.log_every", "train.eval_batch_size",
                     "train.checkpoint_every")


def write_atomic(path: Path, text: str) -> None:
    """Write to a temporary file beside `path`, then rename: a killed run never leaves half a file."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
        f.write(text)
    os.replace(f.name, path)


def write_json(path: Path, obj) -> None:
    write_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_adapter(path: Path, model: torch.nn.Module, extras: dict[str, torch.Tensor], metadata: dict) -> None:
    """The trainable tensors only (LoRA's A and B, the head; for full FT, everything), as safetensors."""
    tensors = {**lora_state_dict(model), **{k: v.contiguous() for k, v in extras.items()}}
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={k: json.dumps(v) for k, v in metadata.items()})
    os.replace(tmp, path)


class Logger:
    """train_log.jsonl in the run directory, and W&B when logger.name=wandb (offline unless logger.mode says).
    On ranks other than 0 of a distributed run it records nothing."""

    def __init__(self, run_dir: Path, run=None):
        """run: the run's config (lora_repro.config.RunConfig), whose logger group says W&B or not; None: the log
        file only."""
        self.file, self.wandb = None, None
        if not distributed.is_main():
            return
        self.file = open(run_dir / "train_log.jsonl", "a")
        if run is not None and run.logger.name == "wandb":
            import wandb
            name = run_name(run)  # a W&B group holds the seeds of one cell: the name without its seed
            self.wandb = wandb.init(project=run.logger.project, mode=run.logger.mode, dir=str(run_dir),
                                    name=name, group=name.rpartition("/")[0], job_type=str(run.experiment),
                                    config=run.model_dump(mode="json"))

    def __call__(self, record: dict) -> None:
        if self.file is None:
            return
        self.file.write(json.dumps(record) + "\n")
        self.file.flush()
        if self.wandb:
            self.wandb.log(record, step=record.get("step"))

    def summary(self, values: dict) -> None:
        if self.wandb:
            self.wandb.summary.update(values)

    def artifact(self, path: Path, kind: str, metadata: dict) -> None:
        """Log a file (the adapter) as a W&B artifact of type `kind`, named after the run."""
        if self.wandb:
            import wandb
            art = wandb.Artifact(f"{kind}-{self.wandb.id}", type=kind, metadata=metadata)
            art.add_file(str(path))
            self.wandb.log_artifact(art)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
        if self.wandb:
            self.wandb.finish()


def run_name(run) -> str:
    """experiment/model/task/method/r/seed: what a reader needs to tell runs apart."""
    r = run.method.lora_knobs()["r"]
    parts = (run.experiment, run.model.name, run.task_name, run.method.name, f"r{r}" if r else "", f"seed{run.seed}")
    return "/".join(str(p) for p in parts if p)


def flat(data, prefix: str = "") -> dict:
    """{dotted path: value} of a nested mapping; lists are values."""
    if not isinstance(data, dict):
        return {prefix: data}
    out = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out if out or not prefix else {prefix: data}


# fields added after runs were recorded: absent from a stored config, they count as this value (what those runs did)
ADDED_FIELDS = {"train.min_epochs": 0}


def check_resume(config: dict, run_dir: Path) -> None:
    """resume=true continues only the run its directory holds: a field that changes the result (model, task,
    method, data, optimizer, schedule, seed) must be what it was; logging and evaluation batch size may change.
    config: the run's config as plain values (RunConfig.model_dump)."""
    if not config["resume"]:
        return
    stored_file = run_dir / STORED_CONFIG
    if not stored_file.is_file() and (run_dir / "metrics.json").is_file():
        stored_file = run_dir / "metrics.json"  # a finished run written before run_config.json existed
    if not stored_file.is_file():
        if (run_dir / "trainer_state.json").is_file():
            log.warning("resume=true: %s holds a checkpoint but no %s; its config cannot be compared", run_dir,
                        STORED_CONFIG)
        return
    stored = json.loads(stored_file.read_text())
    stored = stored["config"] if stored_file.name == "metrics.json" else stored
    new = flat(config)
    old = {**{k: v for k, v in ADDED_FIELDS.items() if k in new}, **flat(stored)}
    changed = [path for path in sorted(set(old) | set(new)) if old.get(path, "<absent>") != new.get(path, "<absent>")
               and not any(path == free or path.startswith(free + ".") for free in RESUME_MAY_CHANGE)]
    if changed:
        path = changed[0]
        more = f" ({len(changed) - 1} more: {', '.join(changed[1:4])}{' ...' if len(changed) > 4 else ''})" \
            if len(changed) > 1 else ""
        raise ConfigError(f"resume=true: {path}={new.get(path, '<absent>')!r} differs from the run being resumed "
                          f"({path}={old.get(path, '<absent>')!r} in {stored_file}){more}; it changes the result: "
                          f"resume with {path}={old.get(path, '<absent>')!r}, or start a new run directory")


def store_config(config: dict, run_dir: Path) -> None:
    """Write the config the run starts with (kept as it was when a run is resumed)."""
    if not (config["resume"] and (run_dir / STORED_CONFIG).is_file()):
        write_json(run_dir / STORED_CONFIG, config)
