"""Corpus BLEU exactly as NIST mteval-v13a.pl scores it for the E2E NLG Challenge (Papineni et al., 2002)."""
import math
import re
from collections import Counter

import datasets
import evaluate

MAX_N = 4  # BLEU-4 (mteval's reported "BLEU score")

_LOWER_ASCII = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# mteval-v13a `tokenization` (its default, non-international one), step by step.
_ENTITIES = (("&quot;", '"'), ("&amp;", "&"), ("&lt;", "<"), ("&gt;", ">"))
_PUNCT = re.compile(r"([\{-\~\[-\` -\&\(-\+\:-\@\/])")  # ASCII punctuation except ' - . , (handled apart)
_PERIOD_COMMA_AFTER = re.compile(r"([^0-9])([\.,])")   # split . and , unless preceded by a digit
_PERIOD_COMMA_BEFORE = re.compile(r"([\.,])([^0-9])")  # ... unless followed by a digit
_DASH_AFTER_DIGIT = re.compile(r"([0-9])(-)")


def mteval_tokenize(text: str, preserve_case: bool = False) -> list[str]:
    """mteval-v13a's normalisation and tokenisation of one segment (lowercased, as the e2e scorer runs it)."""
    text = text.replace("<skipped>", "")
    for entity, char in _ENTITIES:
        text = text.replace(entity, char)
    text = f" {text} "
    if not preserve_case:
        text = text.translate(_LOWER_ASCII)  # Perl's tr/[A-Z]/[a-z]/: ASCII letters only
    text = _PUNCT.sub(r" \1 ", text)
    text = _PERIOD_COMMA_AFTER.sub(r"\1 \2 ", text)
    text = _PERIOD_COMMA_BEFORE.sub(r" \1 \2", text)
    text = _DASH_AFTER_DIGIT.sub(r"\1 \2 ", text)
    return text.split()


def pad_references(references: list[list[str]]) -> list[list[str]]:
    """Every MR gets as many references as the largest group, missing ones empty: the e2e scorer's SGML ref sets.

    mteval needs one reference *system* per reference slot, so measure_scores.py writes max(len(group)) ref sets
    and pads the shorter groups with empty segments. The empty segments count: NIST divides the reference length
    by the number of ref sets, and an empty reference can be the closest length for BLEU's brevity penalty.
    """
    width = max((len(group) for group in references), default=0)
    return [list(group) + [""] * (width - len(group)) for group in references]


def ngrams(words: list[str], n: int) -> Counter:
    """Counts of the n-grams (as tuples) of one tokenised segment."""
    return Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))


def closest_length(ref_lengths: list[int], hyp_length: int) -> int:
    """mteval's 'closest' reference length (ties go to the shorter), as IBM BLEU."""
    return min(ref_lengths, key=lambda r: (abs(hyp_length - r), r))


def bleu_stats(references: list[list[str]], hypotheses: list[str]) -> tuple[int, list[int], list[int]]:
    """(reference length, matched n-grams per n, hypothesis n-grams per n), summed over the corpus."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference groups but {len(hypotheses)} hypotheses; need one per MR")
    ref_length, matches, totals = 0, [0] * MAX_N, [0] * MAX_N
    for group, hyp in zip(pad_references(references), hypotheses):
        hyp_words = mteval_tokenize(hyp)
        refs_words = [mteval_tokenize(ref) for ref in group]
        ref_length += closest_length([len(r) for r in refs_words], len(hyp_words))
        for n in range(1, MAX_N + 1):
            max_ref = Counter()
            for ref_words in refs_words:
                max_ref |= ngrams(ref_words, n)  # |: elementwise max, the clip count of each n-gram
            matches[n - 1] += sum(min(c, max_ref[g]) for g, c in ngrams(hyp_words, n).items())
            totals[n - 1] += max(len(hyp_words) - n + 1, 0)
    return ref_length, matches, totals


def bleu_from_stats(ref_length: int, matches: list[int], totals: list[int]) -> float:
    """mteval-v13a `bleu_score`: geometric mean of n-gram precisions times the brevity penalty.

    A zero match count is smoothed to 1/2^k (k-th such n), an order with no hypothesis n-grams counts as
    precision 1, and an empty hypothesis side scores 0: all three as the Perl script does.
    """
    if totals[0] == 0:
        return 0.0
    brevity = math.exp(min(0.0, 1.0 - ref_length / totals[0]))  # BP = exp(min(0, 1 - r/c))
    log_sum, smooth = 0.0, 1
    for match, total in zip(matches, totals):
        if total == 0:
            continue
        if match == 0:
            smooth *= 2
            log_sum += math.log(1.0 / (smooth * total))
        else:
            log_sum += math.log(match / total)
    return math.exp(log_sum / len(matches)) * brevity


def corpus_bleu(references: list[list[str]], hypotheses: list[str]) -> float:
    """Document-level multi-reference BLEU-4 of mteval-v13a, in [0, 1]."""
    return bleu_from_stats(*bleu_stats(references, hypotheses))


class Bleu(evaluate.Metric):
    """evaluate-compatible mteval-v13a BLEU; `Bleu().compute(predictions=[...], references=[[...], ...])`."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Corpus BLEU-4 as the NIST mteval-v13a Perl script computes it (E2E NLG Challenge).",
            citation="Papineni et al., BLEU, ACL 2002; Dusek et al., E2E NLG Challenge, 2020",
            inputs_description="predictions: one output per MR; references: the list of references of each MR",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        return {"bleu": corpus_bleu(references, predictions)}
