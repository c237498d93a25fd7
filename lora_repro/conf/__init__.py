"""The run configs Hydra composes (pkg://lora_repro.conf): groups and experiments; knobs in lora_repro/config.py."""
