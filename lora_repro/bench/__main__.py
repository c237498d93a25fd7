"""python -m lora_repro.bench: see lora_repro/bench/__init__.py. A wrong setting or a missing file: one line, exit 2."""
from lora_repro.bench.cli import main
from lora_repro.errors import cli

cli(main)()
