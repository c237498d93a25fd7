"""The five E2E NLG Challenge metrics as the paper's pipeline scores them, and the scorer's CLI.

    python -m lora_repro.metrics.e2e REFS HYP [--scorer paper|challenge]

Equal to tuetschek/e2e-metrics `measure_scores.py REFS HYP -p`, as the LoRA reference code runs it (scorer `paper`,
the default): BLEU and NIST from its Python port of mteval, METEOR 1.5, ROUGE-L and CIDEr from the MS-COCO caption
code. `--scorer challenge` takes BLEU and NIST as the Perl mteval-v13a gives them (the scorer without -p); METEOR,
ROUGE-L and CIDEr are the same in both. REFS holds the references of each MR on consecutive lines, MR groups
separated by a blank line (a file without blank lines is one reference per MR); HYP holds one output per line.
"""
import argparse
import json
import sys
from pathlib import Path

from lora_repro.errors import ConfigError, cli
from lora_repro.metrics.bleu import SCORERS, check_groups, check_scorer, corpus_bleu
from lora_repro.metrics.coco import corpus_coco
from lora_repro.metrics.nist import corpus_nist


def score_e2e(references: list[list[str]], hypotheses: list[str], scorer: str = "paper") -> dict[str, float]:
    """{bleu, nist, meteor, rouge_l, cider} of the outputs; BLEU, METEOR and ROUGE-L as fractions in [0, 1]."""
    check_scorer(scorer)
    check_groups(references, hypotheses)
    if not hypotheses:
        raise ValueError("no hypotheses to score")
    return {"bleu": corpus_bleu(references, hypotheses, scorer), "nist": corpus_nist(references, hypotheses, scorer),
            **corpus_coco(references, hypotheses)}


def score_run(references: list[list[str]], hypotheses: list[str]) -> dict[str, float]:
    """What a run records: the paper pipeline's five metrics, and the challenge's BLEU/NIST beside them."""
    scores = score_e2e(references, hypotheses)
    scores["bleu_challenge"] = corpus_bleu(references, hypotheses, "challenge")
    scores["nist_challenge"] = corpus_nist(references, hypotheses, "challenge")
    return scores


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
    parser.add_argument("--scorer", choices=SCORERS, default="paper",
                        help="BLEU/NIST of measure_scores.py -p (paper, the LoRA reference code's) or of the Perl "
                             "mteval-v13a (challenge)")
    args = parser.parse_args(argv)
    references, hypotheses = read_references(args.refs), read_hypotheses(args.hyp)
    if len(references) != len(hypotheses):
        raise ConfigError(f"count mismatch: {args.refs} has {len(references)} MR reference groups but {args.hyp} "
                         f"has {len(hypotheses)} output lines; they need one output per MR, in the same order")
    try:
        scores = score_e2e(references, hypotheses, args.scorer)
    except ValueError as error:  # an MR group without references, no outputs at all: the files' problem
        raise ConfigError(f"{args.refs}, {args.hyp}: {error}") from None
    json.dump(scores, sys.stdout, indent=2)
    print()
    return scores


if __name__ == "__main__":
    cli(main)()
