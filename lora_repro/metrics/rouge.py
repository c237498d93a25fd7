"""ROUGE-L as the MS-COCO caption code (pycocoevalcap `Rouge`) computes it for the E2E NLG Challenge (Lin, 2004)."""
import datasets
import evaluate

from lora_repro.metrics.ptb import coco_text

BETA = 1.2  # pycocoevalcap's recall weight in the F-measure


def lcs_length(a: list[str], b: list[str]) -> int:
    """Length of the longest common subsequence of two token lists (dynamic programming, O(len(a) len(b)))."""
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def sentence_rouge_l(references: list[str], hypothesis: str) -> float:
    """F_beta of the best LCS precision and the best LCS recall over the references (each maximised apart).

    Takes already tokenised text; splits on single spaces as pycocoevalcap does (an empty text is one empty token).
    """
    hyp = hypothesis.split(" ")
    precision, recall = 0.0, 0.0
    for reference in references:
        ref = reference.split(" ")
        lcs = lcs_length(ref, hyp)
        precision, recall = max(precision, lcs / len(hyp)), max(recall, lcs / len(ref))
    if precision == 0 or recall == 0:
        return 0.0
    return (1 + BETA ** 2) * precision * recall / (recall + BETA ** 2 * precision)


def corpus_rouge_l(references: list[list[str]], hypotheses: list[str]) -> float:
    """Mean sentence ROUGE-L over the MRs, in [0, 1], after the COCO tokenisation (ptb.py)."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference groups but {len(hypotheses)} hypotheses; need one per MR")
    scores = [sentence_rouge_l([coco_text(r) for r in refs], coco_text(hyp))
              for refs, hyp in zip(references, hypotheses)]
    return sum(scores) / len(scores) if scores else 0.0


class RougeL(evaluate.Metric):
    """evaluate-compatible COCO ROUGE-L; `RougeL().compute(predictions=[...], references=[[...], ...])`."""

    def _info(self):
        return evaluate.MetricInfo(
            description="ROUGE-L (LCS F-measure, beta 1.2) as pycocoevalcap computes it (E2E NLG Challenge).",
            citation="Lin, ROUGE: A package for automatic evaluation of summaries, 2004",
            inputs_description="predictions: one output per MR; references: the list of references of each MR",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        return {"rouge_l": corpus_rouge_l(references, predictions)}
