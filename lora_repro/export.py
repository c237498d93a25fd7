"""python -m lora_repro.export SRC --to peft|loralib|lora_repro --out DST: an adapter from one format to another."""
from __future__ import annotations

import argparse
import sys

from lora_repro.errors import cli
from lora_repro.formats import FORMATS, read, write


def main(argv: list[str] | None = None) -> int:
    """Read SRC in whatever format it is (lora_repro.formats.detect), write it as --to; one line says what went where."""
    parser = argparse.ArgumentParser(prog="python -m lora_repro.export", description=__doc__)
    parser.add_argument("src", help="a run directory, an adapter.safetensors of ours, a PEFT folder, a loralib .bin/.pt")
    parser.add_argument("--to", required=True, choices=FORMATS)
    parser.add_argument("--out", required=True, help="PEFT: a folder; loralib: a .bin file; ours: a file or folder")
    parser.add_argument("--r", type=int, help="the rank, for loralib files (they store none)")
    parser.add_argument("--alpha", type=float, help="LoRA's alpha (scale alpha / r), for loralib files")
    parser.add_argument("--targets", help="paper names, e.g. q,v; needed for a loralib GPT-2 c_attn with 2 slices")
    parser.add_argument("--base", help="the base model (hub id or folder) recorded in the output")
    args = parser.parse_args(argv)
    adapter = read(args.src, args.r, args.alpha, args.targets)
    path = write(adapter, args.to, args.out, args.base)
    head = ", head " + ",".join(sorted({n.split(".", 1)[0] for n in adapter.head})) if adapter.head else ""
    print(f"{adapter.meta['format']} -> {args.to}: {len(adapter.modules)} {adapter.arch} modules, r={adapter.r}, "
          f"alpha={adapter.alpha:g}, targets {','.join(adapter.targets)}{head} -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(cli(main)())
