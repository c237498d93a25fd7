"""CIDEr as the MS-COCO caption code (pycocoevalcap `Cider`) computes it for the E2E NLG Challenge.

pycocoevalcap's `Cider` is the CIDEr-D variant of Vedantam et al. (2015, sec. 8) in all but name: hypothesis
tf-idf weights clipped by the reference's, a Gaussian length penalty (sigma 6), and the mean over n = 1..4 times
10. Document frequencies come from the references of the evaluated corpus itself (one document per MR). Two quirks
are kept for parity: the "length" in the penalty counts bigrams, and the score is divided by the number of
references after summing over them.
"""
import math
from collections import Counter

import datasets
import evaluate

from lora_repro.metrics.ptb import coco_text

MAX_N = 4
SIGMA = 6.0


def _counts(text: str) -> Counter:
    words = text.split()
    return Counter(tuple(words[i:i + n]) for n in range(1, MAX_N + 1) for i in range(len(words) - n + 1))


def _vector(counts: Counter, df: Counter, log_docs: float) -> tuple[list[dict], list[float], int]:
    """tf-idf vector per n, its norms, and the bigram count (pycocoevalcap's 'length')."""
    vec = [{} for _ in range(MAX_N)]
    for gram, tf in counts.items():
        vec[len(gram) - 1][gram] = tf * (log_docs - math.log(max(1.0, df[gram])))  # tf * idf, eq. 1
    norms = [math.sqrt(sum(v * v for v in vn.values())) for vn in vec]
    return vec, norms, sum(tf for gram, tf in counts.items() if len(gram) == 2)


def cider_scores(references: list[list[str]], hypotheses: list[str]) -> list[float]:
    """CIDEr of each hypothesis against its references; inputs are already tokenised (space-separated)."""
    ref_counts = [[_counts(r) for r in refs] for refs in references]
    df = Counter(gram for refs in ref_counts for gram in set().union(*refs))  # in how many MRs' refs
    log_docs = math.log(len(references))
    scores = []
    for refs, hyp in zip(ref_counts, hypotheses):
        vec, norm, length = _vector(_counts(hyp), df, log_docs)
        total = [0.0] * MAX_N
        for ref in refs:
            vec_ref, norm_ref, length_ref = _vector(ref, df, log_docs)
            penalty = math.exp(-((length - length_ref) ** 2) / (2 * SIGMA ** 2))
            for n in range(MAX_N):
                dot = sum(min(v, vec_ref[n].get(g, 0.0)) * vec_ref[n].get(g, 0.0) for g, v in vec[n].items())
                if norm[n] != 0 and norm_ref[n] != 0:
                    dot /= norm[n] * norm_ref[n]
                total[n] += dot * penalty
        scores.append(10.0 * sum(total) / MAX_N / len(refs))
    return scores


def corpus_cider(references: list[list[str]], hypotheses: list[str]) -> float:
    """Mean CIDEr over the MRs after the COCO tokenisation (ptb.py)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference groups but {len(hypotheses)} hypotheses; need one per MR")
    if not hypotheses:
        return 0.0
    scores = cider_scores([[coco_text(r) for r in refs] for refs in references], [coco_text(h) for h in hypotheses])
    return sum(scores) / len(scores)


class Cider(evaluate.Metric):
    """evaluate-compatible COCO CIDEr; `Cider().compute(predictions=[...], references=[[...], ...])`."""

    def _info(self):
        return evaluate.MetricInfo(
            description="CIDEr as pycocoevalcap computes it (E2E NLG Challenge): n=4, sigma=6, corpus df.",
            citation="Vedantam et al., CIDEr: Consensus-based image description evaluation, CVPR 2015",
            inputs_description="predictions: one output per MR; references: the list of references of each MR",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        return {"cider": corpus_cider(references, predictions)}
