"""Corpus NIST-5 of the E2E NLG Challenge scorer, in both of its versions (Doddington, 2002).

`paper` = the scorer's Python port (`measure_scores.py -p`, what the LoRA reference code runs), `challenge` = the Perl
mteval-v13a-sig.pl; bleu.py says why there are two. They differ in how they weigh n-grams and lengths:
- paper: information weights from the n-gram counts of all references (an n-gram no reference has weighs 0), each
  order's information divided by that order's output n-gram count (which short outputs can make negative, as
  pymteval counts len - n + 1 unclipped), and the length penalty against the sum of each MR's mean reference length;
- challenge: the same weights (a prefix that is the single token "0" reads as false in Perl and falls back to the
  word total), n-gram counts clipped at 0, and the length penalty against the total reference length over the mean
  number of non-empty references per MR.
"""
import math
from collections import Counter

import datasets
import evaluate

from lora_repro.metrics.bleu import check_groups, check_scorer, max_ref_counts, ngrams, tokenize

MAX_N = 5  # NIST-5
# Length penalty: a hypothesis 2/3 the average reference length scores half (beta from ratio 1.5 -> 0.5).
_BETA = -math.log(0.5) / math.log(1.5) ** 2


def length_penalty(ratio: float) -> float:
    """exp(-beta log^2(min(ratio, 1))): ratio is output length over the average reference length."""
    if ratio >= 1:
        return 1.0
    if ratio <= 0:
        return 0.0
    return math.exp(-_BETA * math.log(ratio) ** 2)


def information_weights(references_words: list[list[str]], scorer: str) -> dict[tuple, float]:
    """Info(w1..wn) = log2(count(w1..wn-1) / count(w1..wn)) over all reference segments (Doddington 2002, eq. 2).

    For unigrams the denominator is the total reference word count (the count of the empty prefix).
    """
    counts, total_words = Counter(), 0
    for words in references_words:
        total_words += len(words)
        for n in range(1, MAX_N + 1):
            counts.update(ngrams(words, n))
    info = {}
    for gram, count in counts.items():
        prefix = gram[:-1]
        perl_false = scorer == "challenge" and prefix == ("0",)  # `$mgram ? ... : ...` in mteval
        base = counts[prefix] if prefix and not perl_false else total_words
        info[gram] = math.log2(base / count)
    return info


def corpus_nist(references: list[list[str]], hypotheses: list[str], scorer: str = "paper") -> float:
    """Document-level multi-reference NIST-5 as the E2E scorer computes it with `scorer`."""
    check_scorer(scorer)
    check_groups(references, hypotheses)
    groups = [[tokenize(ref, scorer) for ref in group] for group in references]
    info = information_weights([words for group in groups for words in group], scorer)
    matched_info, totals = [0.0] * MAX_N, [0] * MAX_N
    for refs_words, hyp in zip(groups, hypotheses):
        hyp_words = tokenize(hyp, scorer)
        for n in range(1, MAX_N + 1):
            max_ref = max_ref_counts(refs_words, n)
            matched_info[n - 1] += sum(info[g] * min(c, max_ref[g]) for g, c in ngrams(hyp_words, n).items()
                                       if max_ref[g])
            count = len(hyp_words) - n + 1
            totals[n - 1] += count if scorer == "paper" else max(count, 0)
    if scorer == "paper":
        # pymteval divides by the order's total as it is (the official raises ZeroDivisionError at 0: counted as 0)
        score = sum(i / t for i, t in zip(matched_info, totals) if t)
        reference_length = sum(sum(map(len, group)) / len(group) for group in groups)
    else:
        score = sum(i / max(t, 1) for i, t in zip(matched_info, totals))
        refs_per_mr = sum(sum(1 for words in group if words) for group in groups) / len(groups)
        words = sum(len(w) for group in groups for w in group)
        if not words:
            return 0.0  # the Perl script dies on a division by zero here
        reference_length = words / refs_per_mr
    return score * length_penalty(totals[0] / reference_length)


class Nist(evaluate.Metric):
    """evaluate-compatible E2E NIST; `Nist(config_name="paper"|"challenge").compute(predictions=, references=)`."""

    def _info(self):
        return evaluate.MetricInfo(
            description="Corpus NIST-5 of the E2E NLG Challenge scorer (paper: measure_scores.py -p; challenge: "
                        "the Perl mteval-v13a).",
            citation="Doddington, Automatic evaluation of MT quality using n-gram co-occurrence statistics, HLT 2002",
            inputs_description="predictions: one output per MR; references: the list of references of each MR",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        scorer = "paper" if self.config_name == "default" else self.config_name
        return {"nist": corpus_nist(references, predictions, scorer)}
