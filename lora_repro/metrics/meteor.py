"""METEOR 1.5 (English defaults) as closely as can be done offline: exact and stem matches only.

The official E2E scorer runs the METEOR 1.5 jar (`-l en -norm`) through pycocoevalcap on PTB-tokenised, lowercased
text, scores each output against every reference keeping the best, and reports the score of the corpus's summed
statistics. This module keeps all of that and METEOR 1.5's English parameters (Denkowski & Lavie, 2014):
alpha 0.85, beta 0.2, gamma 0.6, delta 0.75, module weights exact 1.0 / stem 0.6 / synonym 0.8 / paraphrase 0.6.

Known deviations (so scores are close to, not equal to, the official METEOR):
- no synonym module (needs WordNet data, not downloadable here) and no paraphrase module (needs METEOR's
  paraphrase table): only exact and stem matches are found, so METEOR here is a lower bound of the official one;
- stems from NLTK's Snowball English stemmer (METEOR uses the Snowball English stemmer too);
- function words (weighted 1 - delta) are scikit-learn's English stop-word list, not METEOR's own English
  function-word list (shipped inside the jar);
- the alignment is a beam search with METEOR's resolution order (most covered words, then fewest chunks, then
  smallest summed distance), not METEOR's own search: ties may resolve differently;
- text is tokenised by ptb.py, an approximation of Stanford's PTBTokenizer.
"""
from dataclasses import dataclass, field

import datasets
import evaluate
from nltk.stem.snowball import SnowballStemmer
from sklearn.feature_extraction.text import ENGLISH_STOP_WORDS

from lora_repro.metrics.ptb import ptb_tokenize

ALPHA, BETA, GAMMA, DELTA = 0.85, 0.2, 0.6, 0.75  # METEOR 1.5, task "default", language en
WEIGHTS = {"exact": 1.0, "stem": 0.6}  # (synonym 0.8 and paraphrase 0.6 need resources we do not have)
BEAM = 40  # METEOR's default beam size
FUNCTION_WORDS = frozenset(ENGLISH_STOP_WORDS)
_stemmer = SnowballStemmer("english")


@dataclass
class MeteorStats:
    """METEOR's sufficient statistics; summing them over segments gives the corpus score (as METEOR does)."""
    test_length: int = 0
    ref_length: int = 0
    test_function: int = 0
    ref_function: int = 0
    test_matches: dict = field(default_factory=lambda: {m: [0, 0] for m in WEIGHTS})  # module: [content, function]
    ref_matches: dict = field(default_factory=lambda: {m: [0, 0] for m in WEIGHTS})
    chunks: int = 0

    def __add__(self, other: "MeteorStats") -> "MeteorStats":
        return MeteorStats(
            self.test_length + other.test_length, self.ref_length + other.ref_length,
            self.test_function + other.test_function, self.ref_function + other.ref_function,
            {m: [a + b for a, b in zip(self.test_matches[m], other.test_matches[m])] for m in WEIGHTS},
            {m: [a + b for a, b in zip(self.ref_matches[m], other.ref_matches[m])] for m in WEIGHTS},
            self.chunks + other.chunks)

    def score(self) -> float:
        """(1 - Pen) * Fmean with Pen = gamma (chunks / matches)^beta (Denkowski & Lavie 2014, sec. 2)."""
        def weighted(matches, length, function):
            hits = sum(WEIGHTS[m] * (DELTA * c + (1 - DELTA) * f) for m, (c, f) in matches.items())
            return hits, DELTA * (length - function) + (1 - DELTA) * function
        test_hits, test_len = weighted(self.test_matches, self.test_length, self.test_function)
        ref_hits, ref_len = weighted(self.ref_matches, self.ref_length, self.ref_function)
        if test_hits == 0 or ref_hits == 0:
            return 0.0
        precision, recall = test_hits / test_len, ref_hits / ref_len
        fmean = precision * recall / (ALPHA * precision + (1 - ALPHA) * recall)
        test_total = sum(sum(v) for v in self.test_matches.values())
        ref_total = sum(sum(v) for v in self.ref_matches.values())
        if test_total == self.test_length and ref_total == self.ref_length and self.chunks == 1:
            fragmentation = 0.0  # METEOR: a hypothesis equal to the reference gets no penalty
        else:
            fragmentation = self.chunks / ((test_total + ref_total) / 2)
        return fmean * (1 - GAMMA * fragmentation ** BETA)


def align(hyp: list[str], ref: list[str]) -> list[tuple[int, int, str]]:
    """One-to-one word alignment (hyp index, ref index, module): most matches, then fewest chunks, then least
    summed |i - j|, then most exact matches; found by a beam search over the hypothesis words."""
    hyp_stems, ref_stems = [_stemmer.stem(w) for w in hyp], [_stemmer.stem(w) for w in ref]
    candidates = [[(j, "exact" if h == r else "stem") for j, r in enumerate(ref)
                   if h == r or hyp_stems[i] == ref_stems[j]] for i, h in enumerate(hyp)]
    # state: (matches, chunks, distance, -weight, used ref mask, last pair, pairs)
    beam = [(0, 0, 0, 0.0, 0, None, ())]
    for i, options in enumerate(candidates):
        grown = {}
        for matches, chunks, distance, neg_weight, used, last, pairs in beam:
            steps = [(matches, chunks, distance, neg_weight, used, last, pairs)]
            for j, module in options:
                if used >> j & 1:
                    continue
                extends = last is not None and last == (i - 1, j - 1)
                steps.append((matches + 1, chunks + (0 if extends else 1), distance + abs(i - j),
                              neg_weight - WEIGHTS[module], used | 1 << j, (i, j), pairs + ((i, j, module),)))
            for state in steps:
                key = (state[4], state[5])
                if key not in grown or _rank(state) < _rank(grown[key]):
                    grown[key] = state
        beam = sorted(grown.values(), key=_rank)[:BEAM]
    return list(min(beam, key=_rank)[6])


def _rank(state) -> tuple:
    matches, chunks, distance, neg_weight = state[:4]
    return -matches, chunks, distance, neg_weight


def segment_stats(hyp: list[str], ref: list[str]) -> MeteorStats:
    """METEOR statistics of one tokenised hypothesis against one tokenised reference."""
    stats = MeteorStats(len(hyp), len(ref), sum(w in FUNCTION_WORDS for w in hyp),
                        sum(w in FUNCTION_WORDS for w in ref))
    last = None
    for i, j, module in sorted(align(hyp, ref)):
        stats.test_matches[module][hyp[i] in FUNCTION_WORDS] += 1
        stats.ref_matches[module][ref[j] in FUNCTION_WORDS] += 1
        stats.chunks += 0 if last == (i - 1, j - 1) else 1  # a chunk: adjacent and in order on both sides
        last = (i, j)
    return stats


def corpus_meteor(references: list[list[str]], hypotheses: list[str]) -> float:
    """METEOR of the corpus, in [0, 1]: per MR the best-scoring reference's statistics, summed, then scored."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} reference groups but {len(hypotheses)} hypotheses; need one per MR")
    total = MeteorStats()
    for refs, hyp in zip(references, hypotheses):
        hyp_words = ptb_tokenize(hyp)
        candidates = [segment_stats(hyp_words, ptb_tokenize(ref)) for ref in refs]
        total = total + max(candidates, key=MeteorStats.score)
    return total.score()


class Meteor(evaluate.Metric):
    """evaluate-compatible offline METEOR 1.5 (exact + stem); `Meteor().compute(predictions=..., references=...)`."""

    def _info(self):
        return evaluate.MetricInfo(
            description="METEOR 1.5 English defaults with exact and stem matches only (see the module docstring).",
            citation="Denkowski & Lavie, Meteor Universal, WMT 2014",
            inputs_description="predictions: one output per MR; references: the list of references of each MR",
            features=datasets.Features({"predictions": datasets.Value("string"),
                                        "references": datasets.Sequence(datasets.Value("string"))}))

    def _compute(self, predictions, references):
        return {"meteor": corpus_meteor(references, predictions)}
