"""Check a run's config before any work: the schema (lora_repro/schema.py), then the rules that join fields."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lora_repro import distributed, schema, targets
from lora_repro.lora import check_rank
from lora_repro.methods.prefix import check_lengths
from lora_repro.methods.top_k import check_k
from lora_repro.models import check_model_dir, local_config

log = logging.getLogger("lora_repro")
STORED_CONFIG = "run_config.json"  # the resolved config a run started with (Hydra rewrites .hydra/ on every start)
# fields a resumed run may change: they change what is logged or how fast it is evaluated, not what is trained
RESUME_MAY_CHANGE = ("resume", "experiment", "logger", "train.log_every", "train.eval_batch_size",
                     "train.checkpoint_every")


def resolved(cfg: DictConfig) -> dict:
    """The config as plain values, interpolations resolved; a dangling one is a ValueError naming it."""
    try:
        return OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        raise ValueError(f"{err.full_key or 'the config'}: {str(err).splitlines()[0]}") from None


def typed_config(cfg: DictConfig) -> dict[str, Any]:
    """The config's typed groups (schema.check of the resolved config): what the code reads."""
    return schema.check(resolved(cfg))


def check_rules(typed: dict) -> None:
    """The cross-field rules: batches that divide, targets and r that fit the architecture, decode within the length."""
    distributed.grad_accum(typed["train"], distributed.world_size())  # global_batch_size divisible by batch x world
    task = typed["task"]
    if task.name == "synthetic":
        targets.check_targets(task.planted_targets)
    if task.name == "e2e" and task.decode.max_new_tokens >= task.max_seq_len:
        raise ValueError(f"task.decode.max_new_tokens={task.decode.max_new_tokens} is invalid; valid choices: an "
                         f"integer < task.max_seq_len ({task.max_seq_len}): the prompt keeps the rest")
    for part in typed["parts"]:
        if part.name in ("prefix_embed", "prefix_layer"):
            check_lengths(part.prefix_len, part.infix_len)
    lora_parts = [part for part in typed["parts"] if part.name == "lora"]
    for part in lora_parts:
        targets.check_targets(part.targets)
    config = local_config(typed["model"]) if lora_parts or task.name == "synthetic" else None  # no hub fetch here
    if config is None:
        return
    kind = getattr(config, "model_type", None)
    if kind not in targets.ARCHITECTURES:
        raise ValueError(f"model.config.model_type={kind!r} has no known LoRA targets; valid choices: "
                         f"{sorted(targets.ARCHITECTURES)}")
    for part in lora_parts:
        check_rank(part.r, config.hidden_size)  # apply_lora checks each layer again, exactly
    for part in typed["parts"]:
        if part.name in ("ft_top2", "ft_topk"):
            check_k(part.k, config.num_hidden_layers)


def check_files(typed: dict) -> None:
    """The folders named by the config exist and hold what they should (their contents load in run())."""
    task = typed["task"]
    if task.name == "glue" and task.data_dir:
        from lora_repro.tasks import glue
        glue.check_data_dir(task, glue.subset(task))
    if task.name == "e2e" and task.data_dir:
        from lora_repro.tasks import e2e
        e2e.check_data_dir(task)
    init_adapter = typed["method"].init_adapter
    if init_adapter and not Path(init_adapter).exists():
        raise FileNotFoundError(f"method.init_adapter={init_adapter!r} does not exist; valid choices: a "
                                f"run directory, an adapter.safetensors file, a loralib .bin, or null (start from W0)")
    if typed["model"].path:
        check_model_dir(typed["model"].path)


def validate(cfg: DictConfig) -> dict[str, Any]:
    """Raise ValueError / FileNotFoundError of one line on the first wrong field; nothing is loaded or written.
    Returns the typed groups (typed_config)."""
    typed = typed_config(cfg)
    check_files(typed)
    check_rules(typed)
    return typed


def flat(data, prefix: str = "") -> dict:
    """{dotted path: value} of a nested mapping; lists are values."""
    if not isinstance(data, dict):
        return {prefix: data}
    out = {}
    for key, value in data.items():
        out.update(flat(value, f"{prefix}.{key}" if prefix else str(key)))
    return out if out or not prefix else {prefix: data}


def check_resume(cfg: DictConfig, run_dir: Path) -> None:
    """resume=true continues only the run its directory holds: a field that changes the result (model, task,
    method, data, optimizer, schedule, seed) must be what it was; logging and evaluation batch size may change."""
    new = resolved(cfg)
    if not schema.typed(schema.TopLevel, new, "").resume:
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
    old, new = flat(stored), flat(new)
    changed = [path for path in sorted(set(old) | set(new)) if old.get(path, "<absent>") != new.get(path, "<absent>")
               and not any(path == free or path.startswith(free + ".") for free in RESUME_MAY_CHANGE)]
    if changed:
        path = changed[0]
        more = f" ({len(changed) - 1} more: {', '.join(changed[1:4])}{' ...' if len(changed) > 4 else ''})" \
            if len(changed) > 1 else ""
        raise ValueError(f"resume=true: {path}={new.get(path, '<absent>')!r} differs from the run being resumed "
                         f"({path}={old.get(path, '<absent>')!r} in {stored_file}){more}; it changes the result: "
                         f"resume with {path}={old.get(path, '<absent>')!r}, or start a new run directory")


def store_config(cfg: DictConfig, run_dir: Path) -> None:
    """Write the resolved config the run starts with (kept as it was when a run is resumed)."""
    from lora_repro.record import write_json
    config = resolved(cfg)
    if not (schema.typed(schema.TopLevel, config, "").resume and (run_dir / STORED_CONFIG).is_file()):
        write_json(run_dir / STORED_CONFIG, config)
