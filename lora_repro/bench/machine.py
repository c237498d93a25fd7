"""Where the figures come from: the machine, the accelerator and the library versions; the PEFT import."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def machine() -> dict:
    """Where the numbers come from: CPU model, cores, threads, accelerator, torch and transformers versions."""
    cpu = platform.processor()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import transformers
    info = dict(cpu=cpu, cores=os.cpu_count(), threads=torch.get_num_threads(), torch=torch.__version__,
                transformers=transformers.__version__, device="cpu")
    if torch.cuda.is_available():
        info["device"] = torch.cuda.get_device_name()
    try:
        import peft
        info["peft"] = peft.__version__
    except ImportError:
        pass
    return info


def require_peft():
    """The peft package, or an ImportError saying how to get it."""
    try:
        import peft
    except ImportError:
        raise ImportError("the benchmark compares against Hugging Face PEFT, which is not installed; "
                          "install it with: pip install 'lora-repro[bench]'  (or pip install 'peft>=0.10')") from None
    return peft

