"""The five official E2E NLG Challenge metrics at once, and the scorer's CLI: python -m lora_repro.metrics.e2e REFS HYP.

Follows tuetschek/e2e-metrics `measure_scores.py`: BLEU and NIST from mteval-v13a on the raw text (its own
tokenisation, lowercased); METEOR, ROUGE-L and CIDEr from the MS-COCO caption code on PTB-tokenised, lowercased
text without punctuation. REFS holds the references of each MR on consecutive lines, MR groups separated by a
blank line (a file without blank lines is one reference per MR); HYP holds one output per line.
"""
import argparse
import json
import sys
from pathlib import Path

from lora_repro.metrics.bleu import corpus_bleu
from lora_repro.metrics.cider import corpus_cider
from lora_repro.metrics.meteor import corpus_meteor
from lora_repro.metrics.nist import corpus_nist
from lora_repro.metrics.rouge import corpus_rouge_l


def score_e2e(references: list[list[str]], hypotheses: list[str]) -> dict:
    """{bleu, nist, meteor, rouge_l, cider} of the outputs; BLEU, METEOR and ROUGE-L as fractions in [0, 1]."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference groups but {len(hypotheses)} hypotheses; need one per MR")
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    return {"bleu": corpus_bleu(references, hypotheses), "nist": corpus_nist(references, hypotheses),
            "meteor": corpus_meteor(references, hypotheses), "rouge_l": corpus_rouge_l(references, hypotheses),
            "cider": corpus_cider(references, hypotheses)}


def read_references(path: str | Path) -> list[list[str]]:
    """MR groups of references: consecutive lines, groups split by blank lines (as measure_scores.read_lines)."""
    groups = [[]]
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            groups[-1].append(line)
        else:
            groups.append([])
    if not groups[-1]:
        groups.pop()
    if len(groups) == 1:  # no blank line: a single-reference file, one MR per line
        groups = [[line] for line in groups[0]]
    return groups


def read_hypotheses(path: str | Path) -> list[str]:
    """One output per line, stripped (an empty line is an empty output)."""
    return [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines()]


def main(argv: list[str] | None = None) -> dict:
    """Score HYP against REFS and print the five scores as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("refs", help="references: one per line, MR groups separated by a blank line")
    parser.add_argument("hyp", help="system outputs: one per line, in the MR order of REFS")
    args = parser.parse_args(argv)
    references, hypotheses = read_references(args.refs), read_hypotheses(args.hyp)
    if len(references) != len(hypotheses):
        raise SystemExit(f"count mismatch: {args.refs} has {len(references)} MR reference groups but {args.hyp} "
                         f"has {len(hypotheses)} output lines; they need one output per MR, in the same order")
    scores = score_e2e(references, hypotheses)
    json.dump(scores, sys.stdout, indent=2)
    print()
    return scores


if __name__ == "__main__":
    main()
