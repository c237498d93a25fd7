"""Corpus NIST-5 exactly as mteval-v13a.pl scores it for the E2E NLG Challenge (Doddington, 2002)."""
import math
from collections import Counter

import datasets
import evaluate

from lora_repro.metrics.bleu import mteval_tokenize, ngrams, pad_references

MAX_N = 5  # NIST-5 (mteval's reported "NIST score")
# Length penalty: a hypothesis 2/3 the average reference length scores half (beta from ratio 1.5 -> 0.5).
_BETA = -math.log(0.5) / math.log(1.5) ** 2


def information_weights(references_words: list[list[str]]) -> dict[tuple, float]:
    """Info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn)) over all reference segments (Doddington 2002, eq. 2).

    For unigrams the denominator is the total reference word count. A prefix that is the single token "0" is
    false in Perl, so mteval falls back to the word total for it; kept for parity with the official score.
    """
    counts, total_words = Counter(), 0
    for words in references_words:
        total_words += len(words)
        for n in range(1, MAX_N + 1):
            counts.update(ngrams(words, n))
    info = {}
    for gram, count in counts.items():
        prefix = gram[:-1]
        base = counts[prefix] if prefix and " ".join(prefix) != "0" else total_words
        info[gram] = -math.log(count / base) / math.log(2)
    return info


def length_penalty(ratio: float) -> float:
    """exp(-beta log^2(min(ratio, 1))): ratio is hypothesis length over the average reference length."""
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    return math.exp(-_BETA * math.log(ratio) ** 2)


def corpus_nist(references: list[list[str]], hypotheses: list[str]) -> float:
    """Document-level multi-reference NIST-5 of mteval-v13a (information-weighted n-gram matches)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference groups but {len(hypotheses)} hypotheses; need one per MR")
    padded = [[mteval_tokenize(ref) for ref in group] for group in pad_references(references)]
    n_refsets = len(padded[0]) if padded else 0
    info = information_weights([words for group in padded for words in group])
    matched_info, totals, ref_words = [0.0] * MAX_N, [0] * MAX_N, 0
    for refs_words, hyp in zip(padded, hypotheses):
        hyp_words = mteval_tokenize(hyp)
        ref_words += sum(len(words) for words in refs_words)
        for n in range(1, MAX_N + 1):
            max_ref = Counter()
            for words in refs_words:
                max_ref |= ngrams(words, n)
            matched_info[n - 1] += sum(info[g] * min(c, max_ref[g]) for g, c in ngrams(hyp_words, n).items()
                                       if g in max_ref)
            totals[n - 1] += max(len(hyp_words) - n + 1, 0)
    if ref_words == 0:
        return 0.0
    score = sum(i / max(t, 1) for i, t in zip(matched_info, totals))
    return score * length_penalty(totals[0] / (ref_words / n_refsets))


class Nist(evaluate.Metric):
    """evaluate-compatible mteval-v13a NIST; `Nist().compute(predictions=[...], references=[[...], ...])`."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Corpus NIST-5 as the NIST mteval-v13a Perl script computes it (E2E NLG Challenge).",
            citation="Doddington, Automatic evaluation of MT quality using n-gram co-occurrence statistics, HLT 2002",
            inputs_description="predictions: one output per MR; references: the list of references of each MR",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        return {"nist": corpus_nist(references, predictions)}
