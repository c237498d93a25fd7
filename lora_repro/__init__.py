"""lora-repro: the experiments of LoRA (Hu et al., 2021), reproducible on one CPU or many GPUs."""
