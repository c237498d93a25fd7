"""The five E2E NLG Challenge metrics: hand-worked cases from the papers' definitions, the CLI, the official example."""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_repro.metrics.bleu import Bleu, corpus_bleu, mteval_tokenize
from lora_repro.metrics.cider import corpus_cider
from lora_repro.metrics.e2e import main, read_references, score_e2e
from lora_repro.metrics.meteor import BETA, GAMMA, corpus_meteor
from lora_repro.metrics.nist import corpus_nist, length_penalty
from lora_repro.metrics.rouge import corpus_rouge_l

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO.parent / "shared" / "data" / "e2e" / "official-example"


def test_mteval_tokenization_splits_punctuation_but_not_decimals_or_apostrophes():
    assert mteval_tokenize("Hello, World. It's 3.5-star &amp; £20!") == \
        ["hello", ",", "world", ".", "it's", "3.5", "-", "star", "&", "£20", "!"]


def test_identical_output_scores_bleu_one_and_rouge_one():
    refs, hyps = [["the cat sat on the mat today"]], ["the cat sat on the mat today"]
    assert corpus_bleu(refs, hyps) == pytest.approx(1.0)
    assert corpus_rouge_l(refs, hyps) == pytest.approx(1.0)
    assert corpus_meteor([["cat sat mat"]], ["cat sat mat"]) == pytest.approx(1.0)  # no fragmentation penalty


def test_bleu_brevity_penalty_is_exp_one_minus_r_over_c():
    # every n-gram of the 6-word output is in the 8-word reference: BLEU = BP = exp(1 - 8/6)
    assert corpus_bleu([["a b c d e f g h"]], ["a b c d e f"]) == pytest.approx(math.exp(1 - 8 / 6))


def test_bleu_brevity_uses_the_closest_reference_length_ties_to_the_shorter():
    hyp = ["a b c d e f"]  # 6 words
    assert corpus_bleu([["a b c d e f g", "a b c d"]], hyp) == pytest.approx(math.exp(1 - 7 / 6))  # 7 closer than 4
    assert corpus_bleu([["a b c d e f g", "a b c d e"]], hyp) == pytest.approx(1.0)  # 5 and 7 tie: take 5


def test_bleu_smooths_a_zero_match_count_to_one_over_two_k():
    # 4 words, unigrams 2/4 match ("a", "b" in order => bigram "a b" 1/3), no 3- or 4-gram: 1/(2*2), 1/(4*1)
    expected = (2 / 4 * 1 / 3 * 1 / 4 * 1 / 4) ** 0.25 * math.exp(1 - 5 / 4)
    assert corpus_bleu([["a b x y z"]], ["a b c d"]) == pytest.approx(expected)


def test_nist_single_reference_information_by_hand():
    # info(a) = info(b) = log2(2 words / 1) = 1; info("a b") = log2(count(a) / count(a b)) = 0 -> (1 + 1) / 2
    assert corpus_nist([["a b"]], ["a b"]) == pytest.approx(1.0)


def test_nist_pads_missing_references_with_empty_ones_like_the_official_sgml():
    # ref sets: ("a b", ""), ("a b", "c d"): 6 words; info(a) = log2(6/2), info(c) = log2(6/1), bigrams 0;
    # average reference length 6 words / 2 ref sets = 3 < 4 output words: no length penalty
    score = corpus_nist([["a b"], ["a b", "c d"]], ["a b", "c d"])
    assert score == pytest.approx((2 * math.log2(3) + 2 * math.log2(6)) / 4)


def test_nist_length_penalty_halves_at_two_thirds_of_the_reference_length():
    assert length_penalty(2 / 3) == pytest.approx(0.5)
    assert length_penalty(1.2) == 1.0


def test_rouge_l_on_a_known_lcs():
    # LCS("a b c d e", "a c e f") = "a c e": P = 3/4, R = 3/5, F_1.2 = (1 + 1.44) P R / (R + 1.44 P)
    p, r = 3 / 4, 3 / 5
    assert corpus_rouge_l([["a b c d e"]], ["a c e f"]) == pytest.approx(2.44 * p * r / (r + 1.44 * p))


def test_rouge_l_takes_best_precision_and_best_recall_from_different_references():
    # "a b": P 2/3, R 1; "a b c d e f g h": P 1, R 3/8 -> max P = max R = 1 -> F = 1
    assert corpus_rouge_l([["a b", "a b c d e f g h"]], ["a b c"]) == pytest.approx(1.0)


def test_meteor_fragmentation_penalty_on_a_known_alignment():
    # all 3 words match, chunks "dog" | "cat bird" = 2: Pen = gamma (2/3)^beta, Fmean = 1
    assert corpus_meteor([["cat bird dog"]], ["dog cat bird"]) == pytest.approx(1 - GAMMA * (2 / 3) ** BETA)


def test_meteor_stem_match_weighs_point_six():
    # dogs~dog by stem (0.6), cat exact (1.0), both content words: P = R = (0.6 + 1) / 2; one chunk covering all
    assert corpus_meteor([["dog cat"]], ["dogs cat"]) == pytest.approx(0.8)


def test_meteor_function_words_weigh_one_minus_delta():
    # "the"/"a" are unmatched function words: P = R = 0.75 / (0.75 + 0.25); 1 chunk / 1 match -> Pen = gamma
    assert corpus_meteor([["a dog"]], ["the dog"]) == pytest.approx(0.75 * (1 - GAMMA))


def test_meteor_keeps_the_best_reference():
    best = 1 - GAMMA * (2 / 3) ** BETA  # against "cat bird dog"; "bird fish" scores lower
    assert corpus_meteor([["bird fish", "cat bird dog"]], ["dog cat bird"]) == pytest.approx(best)


def test_cider_on_a_tiny_corpus_by_hand():
    # df of every n-gram is 1 of 2 MRs: idf = log 2. MR 1 identical: cos 1 for n = 1, 2, no 3-/4-grams -> 10 * 2 / 4.
    # MR 2: unigram cos = log2^2 / (log2 * sqrt(2) log2) = 1/sqrt 2, no bigram in the output, bigram-count gap 1
    mr2 = 10 * (1 / math.sqrt(2)) * math.exp(-1 / (2 * 6.0 ** 2)) / 4
    assert corpus_cider([["a b"], ["c d"]], ["a b", "c"]) == pytest.approx((5.0 + mr2) / 2)


def test_cider_averages_over_references():
    # the second reference shares nothing with the output: the first MR scores (5 + 0) / 2 references
    assert corpus_cider([["a b", "x y"], ["c d"]], ["a b", "c d"]) == pytest.approx((2.5 + 5.0) / 2)


def test_metric_modules_have_evaluate_interface():
    result = Bleu().compute(predictions=["a b c d e f"], references=[["a b c d e f g h"]])
    assert result["bleu"] == pytest.approx(math.exp(1 - 8 / 6))


def test_mismatched_counts_is_a_clear_error(tmp_path):
    (tmp_path / "refs.txt").write_text("a b c\na b d\n\ne f g\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("a b c\n", encoding="utf-8")
    with pytest.raises(SystemExit, match=r"refs\.txt has 2 MR reference groups but .*hyp\.txt has 1 output"):
        main([str(tmp_path / "refs.txt"), str(tmp_path / "hyp.txt")])
    with pytest.raises(ValueError, match="2 reference groups but 1 hypotheses"):
        score_e2e([["a"], ["b"]], ["a"])


def test_cli_prints_the_five_scores_as_json(tmp_path):
    refs = tmp_path / "refs.txt"
    refs.write_text("The Eagle is a pub near the river.\nA pub, The Eagle, is by the river.\n\n"
                    "Aromi serves Chinese food in the city centre.\n", encoding="utf-8")
    hyp = tmp_path / "hyp.txt"
    hyp.write_text("The Eagle is a pub near the river.\nAromi serves Chinese food in the city centre.\n",
                   encoding="utf-8")
    assert read_references(refs) == [["The Eagle is a pub near the river.", "A pub, The Eagle, is by the river."],
                                      ["Aromi serves Chinese food in the city centre."]]
    out = subprocess.run([sys.executable, "-m", "lora_repro.metrics.e2e", str(refs), str(hyp)], cwd=REPO,
                         env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                         check=True).stdout
    scores = json.loads(out)
    assert set(scores) == {"bleu", "nist", "meteor", "rouge_l", "cider"}
    assert scores["bleu"] == pytest.approx(1.0) and scores["rouge_l"] == pytest.approx(1.0)
    assert scores["meteor"] == pytest.approx(1 - GAMMA * (2 / 16) ** BETA)  # 2 chunks (one per MR), 16 matches
    assert scores == pytest.approx(score_e2e(read_references(refs), hyp.read_text().splitlines()))


@pytest.mark.real
def test_official_example_matches_the_perl_mteval_scores():
    if not EXAMPLE.is_dir():
        pytest.skip(f"official E2E example: {EXAMPLE} is absent")
    scores = score_e2e(read_references(EXAMPLE / "devel-conc.txt"),
                       (EXAMPLE / "baseline-output.txt").read_text(encoding="utf-8").splitlines())
    assert round(scores["bleu"], 4) == 0.7203
    assert round(scores["nist"], 4) == 7.8212  # the Perl script's; the scorer's Python port gives 7.7889
    assert 0 < scores["meteor"] < 1 and 0 < scores["rouge_l"] < 1 and scores["cider"] > 0
