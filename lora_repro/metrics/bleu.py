"""Corpus BLEU-4 of the E2E NLG Challenge scorer, in both of its versions (Papineni et al., 2002).

The scorer (tuetschek/e2e-metrics `measure_scores.py`) computes BLEU and NIST two ways, and they disagree on short,
empty and unevenly referenced outputs:
- `paper`: its Python port of mteval (`metrics/pymteval.py`, run by `measure_scores.py -p`), which the LoRA
  reference code runs (examples/NLG/README.md), so the paper's Table 3 numbers are these (PAPER.md Sec. 3.4);
- `challenge`: NIST's Perl mteval-v13a-sig.pl on SGML files (its default, the challenge's leaderboard).
Both are written here from the scorers' rules, in Python; tests/test_e2e_official.py checks them against the
official scorer itself on generated inputs.
"""
import math
import re
from collections import Counter

import datasets
import evaluate

SCORERS = ("paper", "challenge")
MAX_N = 4  # BLEU-4

# mteval-v13a's `tokenization` (the non-international one), which the Python port transcribes.
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
_PUNCT = re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])")  # ASCII punctuation except ' - . , (handled apart)
_PERIOD_COMMA_AFTER = re.compile(r"([^0-9])([\.,])")   # split . and , unless preceded by a digit
_PERIOD_COMMA_BEFORE = re.compile(r"([\.,])([^0-9])")  # ... unless followed by a digit
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")
_SPACES = re.compile(r"\s+")
_LOWER_ASCII = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def mteval_normalize(text: str) -> str:
    """One segment normalised and tokenised as mteval-v13a does, case kept, tokens joined by single spaces."""
    text = text.replace("<skipped>", "").replace("-\n", "").replace("\n", " ")
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    text = _PUNCT.sub(r" \1 ", f" {text} ")
    text = _PERIOD_COMMA_AFTER.sub(r"\1 \2 ", text)
    text = _PERIOD_COMMA_BEFORE.sub(r" \1 \2", text)
    text = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)
    return _SPACES.sub(" ", text).strip()


def tokenize(text: str, scorer: str) -> list[str]:
    """Lowercased tokens of one segment as `scorer` counts them.

    paper: Python's str.lower and `split(" ")`, so an empty segment is one empty token (length 1);
    challenge: Perl's tr/[A-Z]/[a-z]/ (ASCII letters only) and split /\\s+/, so an empty segment has no tokens.
    """
    normalized = mteval_normalize(text)
    if scorer == "paper":
        return [token.lower() for token in normalized.split(" ")]
    return normalized.translate(_LOWER_ASCII).split()


def check_scorer(scorer: str) -> str:
    if scorer not in SCORERS:
        raise ValueError(f"scorer={scorer!r} is not an E2E scorer; valid choices: {list(SCORERS)} (paper = "
                         f"measure_scores.py -p, as the LoRA reference code; challenge = the Perl mteval-v13a)")
    return scorer


def check_groups(references: list[list[str]], hypotheses: list[str]) -> None:
    """One non-empty reference group per hypothesis (the official scorer fails on either with no message)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference groups but {len(hypotheses)} hypotheses; need one per MR")
    empty = [i for i, group in enumerate(references) if not group]
    if empty:
        raise ValueError(f"MR group {empty[0]} (0-based) has no references; every MR needs at least one")


def ngrams(words: list[str], n: int) -> Counter:
    """Counts of the n-grams (as tuples) of one tokenised segment."""
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def max_ref_counts(refs_words: list[list[str]], n: int) -> Counter:
    """Each n-gram's largest count in any one reference: the clip of multi-reference matching."""
    best = Counter()
    for words in refs_words:
        best |= ngrams(words, n)  # |: elementwise max
    return best


def clipped_matches(hyp_words: list[str], max_ref: Counter, n: int) -> int:
    return sum(min(count, max_ref[gram]) for gram, count in ngrams(hyp_words, n).items())


def closest_length_paper(ref_lengths: list[int], hyp_length: int) -> int:
    """The reference length closest to the output's, ties to the shorter (pymteval)."""
    return min(ref_lengths, key=lambda r: (abs(r - hyp_length), r))


def closest_length_challenge(ref_lengths: list[int], hyp_length: int) -> int:
    """mteval-v13a-sig `brevity_penalty_closest`: the first reference's length, then each later non-empty reference
    that is closer (ties to the shorter); the empty references the SGML padding adds are skipped."""
    best = ref_lengths[0]
    for length in ref_lengths[1:]:
        if length and (abs(hyp_length - length), length) < (abs(hyp_length - best), best):
            best = length
    return best


def corpus_bleu(references: list[list[str]], hypotheses: list[str], scorer: str = "paper") -> float:
    """Document-level multi-reference BLEU-4 as the E2E scorer computes it with `scorer`, in [0, 1]."""
    check_scorer(scorer)
    check_groups(references, hypotheses)
    closest = closest_length_paper if scorer == "paper" else closest_length_challenge
    ref_length, matches, totals = 0, [0] * MAX_N, [0] * MAX_N
    for group, hyp in zip(references, hypotheses):
        hyp_words, refs_words = tokenize(hyp, scorer), [tokenize(ref, scorer) for ref in group]
        ref_length += closest([len(words) for words in refs_words], len(hyp_words))
        for n in range(1, MAX_N + 1):
            matches[n - 1] += clipped_matches(hyp_words, max_ref_counts(refs_words, n), n)
            # pymteval adds len - n + 1 even when negative (outputs shorter than n), the Perl script clips at 0
            count = len(hyp_words) - n + 1
            totals[n - 1] += count if scorer == "paper" else max(count, 0)
    if scorer == "paper":
        return bleu_paper(ref_length, matches, totals)
    return bleu_challenge(ref_length, matches, totals)


def bleu_paper(ref_length: int, matches: list[int], totals: list[int]) -> float:
    """pymteval `BLEUScore.bleu`: BP = exp(1 - r/c) when c <= r (c = 0 read as 1e-5); every precision floored at
    1e-15 / 1e-9 instead of smoothed."""
    brevity = 1.0
    if totals[0] <= ref_length:
        brevity = math.exp(1.0 - ref_length / (totals[0] if totals[0] else 1e-5))
    log_sum = sum(math.log(max(m, 1e-15) / max(t, 1e-9)) for m, t in zip(matches, totals))
    return brevity * math.exp(log_sum / MAX_N)


def bleu_challenge(ref_length: int, matches: list[int], totals: list[int]) -> float:
    """mteval-v13a `bleu_score`: a zero match count is smoothed to 1/2^k (k-th such n), an order with no output
    n-grams counts as precision 1, no output words scores 0."""
    if totals[0] == 0:
        return 0.0
    brevity = math.exp(min(0.0, 1.0 - ref_length / totals[0]))
    log_sum, smooth = 0.0, 1
    for match, total in zip(matches, totals):
        if total == 0:
            continue
        if match == 0:
            smooth *= 2
            log_sum += math.log(1.0 / (smooth * total))
        else:
            log_sum += math.log(match / total)
    return math.exp(log_sum / MAX_N) * brevity


class Bleu(evaluate.Metric):
    """evaluate-compatible E2E BLEU; `Bleu(config_name="paper"|"challenge").compute(predictions=, references=)`."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Corpus BLEU-4 of the E2E NLG Challenge scorer (paper: measure_scores.py -p; challenge: "
                        "the Perl mteval-v13a).",
            citation="Papineni et al., BLEU, ACL 2002; Dusek et al., E2E NLG Challenge, 2020",
            inputs_description="predictions: one output per MR; references: the list of references of each MR",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        scorer = "paper" if self.config_name == "default" else self.config_name
        return {"bleu": corpus_bleu(references, predictions, scorer)}
