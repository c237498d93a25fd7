"""The five E2E NLG Challenge metrics: hand-worked cases of both scorers' rules, the CLI, the official example.

The comparison with the official scorer on many generated inputs is tests/test_e2e_official.py.
"""
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lora_repro.errors import ConfigError
from lora_repro.metrics.bleu import Bleu, corpus_bleu, mteval_normalize, tokenize
from lora_repro.metrics.coco import corpus_coco
from lora_repro.metrics.e2e import main, read_references, score_e2e, score_run
from lora_repro.metrics.nist import corpus_nist, length_penalty

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO.parent / "shared" / "data" / "e2e" / "official-example"


def test_mteval_tokenization_splits_punctuation_but_not_decimals_or_apostrophes():
    assert mteval_normalize("Hello, World. It's 3.5-star &amp; £20!") == "Hello , World . It's 3.5 - star & £20 !"
    # the paper scorer lowercases with Python (every letter), the Perl script ASCII letters only
    assert tokenize("Café ÉTÉ", "paper") == ["café", "été"]
    assert tokenize("Café ÉTÉ", "challenge") == ["café", "ÉtÉ"]


def test_identical_output_scores_bleu_one_with_both_scorers():
    refs, hyps = [["the cat sat on the mat today"]], ["the cat sat on the mat today"]
    assert corpus_bleu(refs, hyps) == pytest.approx(1.0)
    assert corpus_bleu(refs, hyps, "challenge") == pytest.approx(1.0)


@pytest.mark.parametrize("scorer", ["paper", "challenge"])
def test_bleu_brevity_penalty_is_exp_one_minus_r_over_c(scorer):
    # every n-gram of the 6-word output is in the 8-word reference: BLEU = BP = exp(1 - 8/6)
    assert corpus_bleu([["a b c d e f g h"]], ["a b c d e f"], scorer) == pytest.approx(math.exp(1 - 8 / 6))


@pytest.mark.parametrize("scorer", ["paper", "challenge"])
def test_bleu_brevity_uses_the_closest_reference_length_ties_to_the_shorter(scorer):
    hyp = ["a b c d e f"]  # 6 words
    assert corpus_bleu([["a b c d e f g", "a b c d"]], hyp, scorer) == pytest.approx(math.exp(1 - 7 / 6))
    assert corpus_bleu([["a b c d e f g", "a b c d e"]], hyp, scorer) == pytest.approx(1.0)  # 5 and 7 tie: 5


def test_paper_bleu_floors_a_zero_precision_where_the_challenge_smooths_it():
    # 4 words, unigrams 2/4 ("a", "b"), bigram "a b" 1/3, no 3- or 4-gram match.
    refs, hyps, bp = [["a b x y z"]], ["a b c d"], math.exp(1 - 5 / 4)
    # paper (pymteval): a zero match count is floored at 1e-15
    assert corpus_bleu(refs, hyps) == pytest.approx((2 / 4 * 1 / 3 * 1e-15 / 2 * 1e-15 / 1) ** 0.25 * bp)
    # challenge (mteval-v13a): the k-th zero match count is 1 / 2^k
    assert corpus_bleu(refs, hyps, "challenge") == pytest.approx((2 / 4 * 1 / 3 * 1 / 4 * 1 / 4) ** 0.25 * bp)


def test_an_output_shorter_than_n_counts_negative_n_grams_in_the_paper_scorer_only():
    # "a" against "a b c": pymteval adds len - n + 1 = 0, -1, -2 output n-grams for n = 2, 3, 4 (floored at 1e-9,
    # their zero matches at 1e-15); mteval counts no 2-, 3-, 4-grams and takes their precision as 1.
    refs, hyps, bp = [["a b c"]], ["a"], math.exp(1 - 3 / 1)
    assert corpus_bleu(refs, hyps) == pytest.approx(bp * (1 * (1e-15 / 1e-9) ** 3) ** 0.25)
    assert corpus_bleu(refs, hyps, "challenge") == pytest.approx(bp)


def test_an_empty_output_is_one_empty_token_for_the_paper_scorer_and_nothing_for_the_challenge():
    assert tokenize("", "paper") == [""] and tokenize("", "challenge") == []
    assert corpus_bleu([["a b"]], [""], "challenge") == 0.0
    # paper: 1 output word, 0 matches (floored at 1e-15), n-gram counts 0, -1, -2 floored at 1e-9; BP exp(1 - 2/1)
    assert corpus_bleu([["a b"]], [""]) == pytest.approx(math.exp(-1) * (1e-15 * (1e-15 / 1e-9) ** 3) ** 0.25)


def test_nist_single_reference_information_by_hand():
    # info(a) = info(b) = log2(2 words / 1) = 1; info("a b") = log2(count(a) / count(a b)) = 0 -> (1 + 1) / 2.
    # The paper scorer's 3-gram count is 2 - 3 + 1 = 0 here: the official raises ZeroDivisionError, we add nothing.
    assert corpus_nist([["a b"]], ["a b"]) == pytest.approx(1.0)
    assert corpus_nist([["a b"]], ["a b"], "challenge") == pytest.approx(1.0)


def test_nist_length_penalty_of_each_scorer():
    # MRs with 1 and 2 references (6 reference words) and 4 output words.
    refs, hyps = [["a b"], ["a b", "c d"]], ["a b", "c d"]
    info = (2 * math.log2(6 / 2) + 2 * math.log2(6 / 1)) / 4  # bigrams carry no information here
    # challenge: 6 words / 1.5 non-empty references per MR = 4 = the output length: no penalty
    assert corpus_nist(refs, hyps, "challenge") == pytest.approx(info)
    # paper: each MR's mean reference length, 2 + 2 = 4: no penalty either; a third MR changes them apart
    assert corpus_nist(refs, hyps) == pytest.approx(info)
    refs, hyps = refs + [["e f g h", "e"]], hyps + ["e f"]
    assert corpus_nist(refs, hyps) != pytest.approx(corpus_nist(refs, hyps, "challenge"))


def test_nist_length_penalty_halves_at_two_thirds_of_the_reference_length():
    assert length_penalty(2 / 3) == pytest.approx(0.5)
    assert length_penalty(1.2) == 1.0


def test_an_mr_without_references_or_an_unknown_scorer_is_a_clear_error():
    with pytest.raises(ValueError, match="MR group 1 .* has no references"):
        corpus_bleu([["a"], []], ["a", "b"])
    with pytest.raises(ValueError, match=r"scorer='perl' is not an E2E scorer; valid choices: \['paper', 'chall"):
        corpus_nist([["a"]], ["a"], "perl")


def test_meteor_rouge_and_cider_come_from_pycocoevalcap_on_ptb_tokens():
    # PTB tokens, lowercased, punctuation dropped: "The cat sat." and "the cat sat" are the same caption
    scores = corpus_coco([["The cat sat.", "A dog ran."], ["Fish swim fast."]], ["the cat sat", "Fish swim fast"])
    assert scores["rouge_l"] == pytest.approx(1.0)
    assert 0.9 < scores["meteor"] <= 1.0  # METEOR 1.5's fragmentation penalty keeps it below 1
    assert scores["cider"] > 0


def test_metric_modules_have_evaluate_interface():
    refs, hyps = [["a b c d e f g h"]], ["a b c"]
    assert Bleu().compute(predictions=hyps, references=refs)["bleu"] == pytest.approx(corpus_bleu(refs, hyps))
    challenge = Bleu(config_name="challenge").compute(predictions=hyps, references=refs)["bleu"]
    assert challenge == pytest.approx(corpus_bleu(refs, hyps, "challenge")) != corpus_bleu(refs, hyps)


def test_mismatched_counts_is_a_clear_error(tmp_path):
    (tmp_path / "refs.txt").write_text("a b c\na b d\n\ne f g\n", encoding="utf-8")
    (tmp_path / "hyp.txt").write_text("a b c\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"refs\.txt has 2 MR reference groups but .*hyp\.txt has 1 output"):
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
    out = subprocess.run([sys.executable, "-m", "lora_repro.metrics.e2e", str(refs), str(hyp), "--scorer",
                          "challenge"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                         text=True, check=True).stdout
    scores = json.loads(out)
    assert set(scores) == {"bleu", "nist", "meteor", "rouge_l", "cider"}
    assert scores["bleu"] == pytest.approx(1.0) and scores["rouge_l"] == pytest.approx(1.0)
    run = score_run(read_references(refs), hyp.read_text().splitlines())
    assert scores["nist"] == pytest.approx(run["nist_challenge"]) != pytest.approx(run["nist"])
    coco = ("meteor", "rouge_l", "cider")
    assert {k: scores[k] for k in coco} == pytest.approx({k: run[k] for k in coco})


@pytest.mark.real
def test_official_example_gives_the_official_scores():
    if not EXAMPLE.is_dir():
        pytest.skip(f"official E2E example: {EXAMPLE} is absent")
    scores = score_run(read_references(EXAMPLE / "devel-conc.txt"),
                       (EXAMPLE / "baseline-output.txt").read_text(encoding="utf-8").splitlines())
    # ../shared/e2e-metrics/README.md: measure_scores.py -p, and the Perl mteval's BLEU/NIST
    assert scores == pytest.approx({"bleu": 0.720293, "nist": 7.788888, "meteor": 0.480072, "rouge_l": 0.790953,
                                    "cider": 2.303943, "bleu_challenge": 0.7203, "nist_challenge": 7.8212}, abs=1e-4)
