"""python -m lora_repro.bench: see lora_repro/bench/__init__.py. A wrong setting or a missing file: one line, exit 1."""
import sys

from lora_repro.bench.cli import main

try:
    main()
except (ValueError, FileNotFoundError) as err:
    sys.exit(f"python -m lora_repro.bench: {err}")
