"""Re-score E2E runs from their saved outputs with today's scorer: python -m lora_repro.metrics.rescore DIR [DIR ...].

Every run directory under DIR holding e2e_ref.txt and e2e_pred_epoch<N>.txt gets the paper pipeline's five metrics
(and the challenge's BLEU/NIST) recomputed for each epoch in its metrics.json history; `metrics` and `best_epoch`
follow the main metric as train.py picks them, `final_metrics` the last epoch. No model is loaded.
"""
import argparse
import json
from pathlib import Path

from lora_repro.errors import ConfigError, cli
from lora_repro.metrics.e2e import read_hypotheses, read_references, score_run
from lora_repro.record import write_json

SCORER = "measure_scores.py -p (lora_repro.metrics.e2e): BLEU/NIST pymteval, METEOR 1.5/ROUGE-L/CIDEr pycocoevalcap"


def rescore_run(folder: Path) -> dict:
    """metrics.json of one E2E run with every epoch re-scored from its e2e_pred_epoch<N>.txt; written back."""
    record = json.loads((folder / "metrics.json").read_text())
    references = read_references(folder / "e2e_ref.txt")
    for entry in record["history"]:
        outputs = folder / f"e2e_pred_epoch{entry['epoch']}.txt"
        if not outputs.is_file():
            raise ConfigError(f"{folder}: metrics.json has epoch {entry['epoch']} but no {outputs.name}")
        entry.update(score_run(references, read_hypotheses(outputs)))
    main = record["main_metric"]
    best = max(record["history"], key=lambda entry: entry[main])  # the first of equal ones, as train.py
    record["best_epoch"] = best["epoch"]
    record["metrics"] = {k: v for k, v in best.items() if k not in ("epoch", "step")}
    record["final_metrics"] = record["history"][-1]
    record["e2e_scorer"] = SCORER
    write_json(folder / "metrics.json", record)
    return record


def main(argv: list[str] | None = None) -> list[Path]:
    """Re-score every E2E run directory under the given folders; print one line per run."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories, or folders holding them")
    args = parser.parse_args(argv)
    runs = sorted({ref.parent for folder in args.dirs for ref in folder.rglob("e2e_ref.txt")
                   if (ref.parent / "metrics.json").is_file()})
    if not runs:
        raise ConfigError(f"no E2E run directory (metrics.json + e2e_ref.txt) under {[str(d) for d in args.dirs]}")
    for folder in runs:
        m = rescore_run(folder)["metrics"]
        print(f"{folder}: BLEU {m['bleu']:.4f} NIST {m['nist']:.4f} METEOR {m['meteor']:.4f} "
              f"ROUGE-L {m['rouge_l']:.4f} CIDEr {m['cider']:.4f} (challenge BLEU {m['bleu_challenge']:.4f} "
              f"NIST {m['nist_challenge']:.4f})")
    return runs


if __name__ == "__main__":
    cli(main)()
