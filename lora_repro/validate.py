"""Check a run's config before any work: each wrong field is one error naming the field, its value and the choices."""
from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from lora_repro import distributed, lora, methods, targets, tasks
from lora_repro.models import check_model_dir, local_config


def validate(cfg: DictConfig) -> DictConfig:
    """Raise ValueError / FileNotFoundError on the first wrong field; the checks are the ones deeper code runs."""
    tasks.check_name(cfg.task)
    distributed.grad_accum(cfg.train, distributed.world_size())  # global_batch_size divisible by batch x world
    if cfg.task.name == "glue":
        from lora_repro.tasks import glue
        spec = glue.subset(cfg.task)
        if cfg.task.get("bad_rows", "error") not in glue.BAD_ROWS:
            raise ValueError(f"task.bad_rows={cfg.task.bad_rows!r} is not a choice; "
                             f"valid choices: {list(glue.BAD_ROWS)}")
        if cfg.task.get("data_dir"):
            glue.check_data_dir(cfg.task, spec)
    if cfg.task.name == "e2e":
        from lora_repro.tasks import e2e
        for field in ("train_split", "eval_split"):
            e2e.check_split(cfg.task, field)
        if cfg.task.get("data_dir"):
            e2e.check_data_dir(cfg.task)
    methods.check_name(cfg.method)
    if cfg.method.get("init_adapter") and not Path(cfg.method.init_adapter).exists():
        raise FileNotFoundError(f"method.init_adapter={cfg.method.init_adapter!r} does not exist; valid choices: a "
                                f"run directory, an adapter.safetensors file, a loralib .bin, or null (start from W0)")
    lora_parts = [part for part in methods.method_parts(cfg.method) if part.name == "lora"]
    for part in lora_parts:
        targets.check_targets(part.get("targets") or [])
        lora.check_hparams(part.get("r"), part.get("alpha"), part.get("dropout", 0.0), part.get("init", "kaiming"))
    if cfg.model.get("path"):
        check_model_dir(cfg.model.path)
    config = local_config(cfg.model) if lora_parts else None  # a hub id is not fetched here
    width = config.hidden_size if config is not None else None
    for part in lora_parts:
        if width is not None and int(part.r) > width:  # apply_lora checks each layer again, exactly
            raise ValueError(f"method.r={part.r} is larger than the model allows: its layers are {width} wide, "
                             f"so valid choices are 1..{width}")
    return cfg
