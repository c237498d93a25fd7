"""python -m lora_repro.bench: see lora_repro/bench/__init__.py."""
from lora_repro.bench.cli import main

main()
