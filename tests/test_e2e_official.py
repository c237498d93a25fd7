"""Our E2E metrics equal the official scorer's (../shared/e2e-metrics) on many generated inputs, degenerate ones too.

Cases are random subsets of the real dev/test references of ../shared/data/e2e, with outputs drawn from them and
corrupted systematically: references of the MR, truncated (0-6 words: shorter than every reference), shuffled,
repeated (longer than every reference), other MRs' references, empty, punctuation only, upper case, non-ASCII,
"0" tokens, SGML entities, odd whitespace; whole cases of one MR, of one output repeated for every MR, of empty
outputs, and MRs with 1 to all of their references. The official scorer runs them in one process
(tests/e2e_oracle.py); ours reads the same files. `python tests/test_e2e_official.py` prints the largest differences.
"""
import json
import math
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from conftest import ROOT, SHARED
from lora_repro.metrics.bleu import corpus_bleu
from lora_repro.metrics.coco import corpus_coco, java_on_path
from lora_repro.metrics.e2e import read_hypotheses, read_references
from lora_repro.metrics.nist import corpus_nist

pytestmark = [pytest.mark.official, pytest.mark.skipif(not (SHARED / "e2e-metrics").is_dir(),
                                                       reason=f"official E2E scorer: {SHARED / 'e2e-metrics'} "
                                                              "is not beside the checkout")]
ORACLE = Path(__file__).with_name("e2e_oracle.py")


def perl_missing() -> str | None:
    """Why the official scorer's Perl mteval (the challenge BLEU/NIST) cannot run here, or None if it can."""
    if shutil.which("perl") is None:
        return "the official scorer's mteval-v13a needs perl, which is not on PATH"
    if subprocess.run(["perl", "-MXML::Twig", "-e", "1"], capture_output=True).returncode:
        return ("the official scorer's mteval-v13a needs the Perl module XML::Twig "
                "(apt-get install libxml-twig-perl, or cpan XML::Twig)")
    return None


PERL_MISSING = perl_missing()
N_CASES, N_PERL, N_COCO = 300, 60, 6  # all cases get the -p BLEU/NIST; the Perl and Java measures are slower
TOLERANCE = {"bleu": 1e-4, "nist": 1e-3, "meteor": 1e-4, "rouge_l": 1e-4, "cider": 1e-3,
             "bleu_challenge": 1e-4, "nist_challenge": 1e-4}  # the Perl script prints 4 decimals
EXTRA = ["café £20 naïve – ok", "Zoë's bistro, 5★", "&amp; &lt;tag&gt; &quot;x&quot;", "0 0 stars 0 price"]
PUNCT = [".", "!!", ", ,", "...", "-", "'", "( )"]


def real_groups() -> list[list[str]]:
    frames = [pd.read_csv(SHARED / "data/e2e" / name, dtype=str, keep_default_na=False)
              for name in ("devset.csv", "testset_w_refs.csv")]
    frame = pd.concat(frames)
    return [list(refs) for refs in frame.groupby("mr", sort=False)["ref"].apply(list)]


def corrupt(rng: random.Random, refs: list[str], pool: list[list[str]]) -> str:
    """One output for an MR with references `refs`: a reference, or one of the systematic corruptions."""
    words = rng.choice(refs).split()
    kind = rng.choice(["ref", "trunc", "trunc", "shuffle", "repeat", "other", "empty", "punct", "upper", "extra",
                       "spaces", "drop"])
    if kind == "trunc":
        return " ".join(words[:rng.randint(0, 6)])
    if kind == "shuffle":
        rng.shuffle(words)
    if kind == "repeat":
        words = words * rng.randint(2, 3)
    if kind == "other":
        return rng.choice(rng.choice(pool))
    if kind == "empty":
        return ""
    if kind == "punct":
        return rng.choice(PUNCT)
    if kind == "upper":
        return " ".join(words).upper()
    if kind == "extra":
        return rng.choice(EXTRA) if rng.random() < 0.3 else " ".join(words) + " " + rng.choice(EXTRA)
    if kind == "spaces":
        return "  \t ".join(words)
    if kind == "drop":
        words = [w for w in words if rng.random() < 0.5]
    return " ".join(words)


def generated_cases(seed: int = 0) -> list[dict]:
    rng, pool = random.Random(seed), real_groups()
    cases = []
    for index in range(N_CASES):
        n_mrs = rng.choice([1, 1, 2, 3, 5, 8, 13, 21, 40]) if index % 25 else rng.choice([150, 300])
        groups = [list(g) for g in rng.sample(pool, n_mrs)]
        if rng.random() < 0.5:  # unusual reference counts: 1 to all of each MR's references
            groups = [rng.sample(g, rng.randint(1, len(g))) for g in groups]
        if n_mrs == 1:  # a REFS file without a blank line is one reference per MR (the scorer's own reading)
            groups = [groups[0][:1]]
        style = rng.choice(["mixed"] * 6 + ["same", "empty", "trunc6", "refs"])
        if style == "same":  # one output repeated for every MR
            hyps = [corrupt(rng, groups[0], pool)] * n_mrs
        elif style == "empty":
            hyps = [""] * n_mrs
        elif style == "trunc6":  # each MR's reference cut after 6 words
            hyps = [" ".join(g[0].split()[:6]) for g in groups]
        elif style == "refs":
            hyps = [rng.choice(g) for g in groups]
        else:
            hyps = [corrupt(rng, g, pool) for g in groups]
        measures = (["pymteval"] + (["perl"] if index < N_PERL and not PERL_MISSING else [])
                    + (["coco"] if index < N_COCO else []))
        cases.append({"refs": groups, "hyps": hyps, "measures": measures, "style": style})
    return cases


def write_case(case: dict, folder: Path) -> tuple[Path, Path]:
    """The two files as measure_scores.py reads them (and as a run writes them)."""
    refs, hyp = folder / "refs.txt", folder / "hyp.txt"
    refs.write_text("\n\n".join("\n".join(group) for group in case["refs"]) + "\n", encoding="utf-8")
    hyp.write_text("\n".join(case["hyps"]) + "\n", encoding="utf-8")
    return refs, hyp


def official(cases: list[dict], folder: Path) -> list[dict]:
    """The official scorer's results for every case, as {metric: value}, a metric missing where it raised."""
    java_on_path()  # the oracle and our scorer run on the same Java runtime
    (folder / "cases.json").write_text(json.dumps(cases), encoding="utf-8")
    subprocess.run([sys.executable, str(ORACLE), str(folder / "cases.json"), str(folder / "out.json")],
                   check=True, timeout=1200)
    names = {"pymteval": {"BLEU": "bleu", "NIST": "nist"}, "perl": {"BLEU": "bleu_challenge", "NIST":
             "nist_challenge"}, "coco": {"METEOR": "meteor", "ROUGE_L": "rouge_l", "CIDEr": "cider"}}
    results = []
    for raw in json.loads((folder / "out.json").read_text(encoding="utf-8")):
        row, errors = {}, {}
        for measure, values in raw.items():
            if "error" in values:
                errors[measure] = values["error"]
                continue
            for key, value in values.items():
                if isinstance(value, dict):  # one of pymteval's two measures raised
                    errors[names[measure][key]] = value["error"]
                else:
                    row[names[measure][key]] = value
        results.append({"scores": row, "errors": errors})
    return results


def ours(case: dict, folder: Path) -> dict:
    refs_path, hyp_path = write_case(case, folder)
    refs, hyps = read_references(refs_path), read_hypotheses(hyp_path)
    scores = {"bleu": corpus_bleu(refs, hyps), "nist": corpus_nist(refs, hyps)}
    if "perl" in case["measures"]:
        scores.update(bleu_challenge=corpus_bleu(refs, hyps, "challenge"),
                      nist_challenge=corpus_nist(refs, hyps, "challenge"))
    if "coco" in case["measures"]:
        scores.update(corpus_coco(refs, hyps))
    return scores


def compare(folder: Path) -> dict:
    """Largest |ours - official| per metric, the cases compared, and the official's own failures."""
    cases = generated_cases()
    reference = official(cases, folder)
    worst, counts, failures = {}, {}, []
    for index, (case, expected) in enumerate(zip(cases, reference)):
        got = ours(case, folder)
        for metric, value in expected["scores"].items():
            diff = abs(got[metric] - value)
            counts[metric] = counts.get(metric, 0) + 1
            if diff > worst.get(metric, (-1,))[0]:
                worst[metric] = (diff, index, got[metric], value)
        for measure, error in expected["errors"].items():
            failures.append((index, measure, error, {k: got[k] for k in got if k not in expected["scores"]}))
    return {"worst": worst, "counts": counts, "failures": failures, "cases": cases}


@pytest.fixture(scope="module")
def agreement(tmp_path_factory) -> dict:
    return compare(tmp_path_factory.mktemp("official"))


def test_every_metric_equals_the_official_scorer_on_every_generated_case(agreement):
    assert agreement["counts"]["bleu"] == N_CASES and agreement["counts"]["meteor"] == N_COCO
    for metric, (diff, index, got, expected) in agreement["worst"].items():
        case = agreement["cases"][index]
        assert diff <= TOLERANCE[metric], (metric, got, expected, case["style"], case["hyps"][:5], case["refs"][:2])


@pytest.mark.skipif(PERL_MISSING is not None, reason=str(PERL_MISSING))
def test_the_challenge_bleu_and_nist_were_compared_with_the_perl_mteval_on_every_perl_case(agreement):
    assert agreement["counts"]["bleu_challenge"] == agreement["counts"]["nist_challenge"] == N_PERL


def test_where_the_official_scorer_fails_ours_gives_a_finite_score(agreement):
    # pymteval's NIST divides each n-gram order's information by that order's output n-gram count, which is 0 for
    # e.g. one MR with a 4-word output: it raises ZeroDivisionError, we count the order as contributing nothing.
    for index, measure, error, got in agreement["failures"]:
        assert measure == "nist" and error.startswith("ZeroDivisionError"), (index, measure, error)
        assert set(got) == {"nist"} and math.isfinite(got["nist"])
    assert agreement["counts"]["nist"] >= N_CASES // 2


def test_short_outputs_are_penalised_as_the_official_brevity_penalty_does(agreement):
    # the case: each MR's reference cut after 6 words scored BLEU 1.0 with our old scorer, 0.11 official
    cut = [i for i, case in enumerate(agreement["cases"]) if case["style"] == "trunc6"]
    assert cut
    for index in cut:
        case = agreement["cases"][index]
        refs, hyps = case["refs"], case["hyps"]
        assert corpus_bleu(refs, hyps) < 0.5 and corpus_bleu(refs, hyps, "challenge") < 0.5


def committed_runs() -> list[Path]:
    """Every E2E run directory committed under results/ (metrics.json beside its outputs)."""
    refs = (ROOT / "results").rglob("e2e_ref*.txt")
    return sorted({ref.parent for ref in refs if (ref.parent / "metrics.json").is_file()})


def scored_files(folder: Path, record: dict, epoch: int) -> list[tuple[Path, Path, str]]:
    """(references, outputs, metric suffix) of each split a run decoded at `epoch`: with carved MRs, theirs carry
    the unsuffixed metrics and the eval split its name as suffix (bleu_test); else the eval split, unsuffixed."""
    carved = record["eval_split"] == "carved"
    pairs = [(folder / "e2e_ref_carved.txt", folder / f"e2e_pred_carved_epoch{epoch}.txt", "")] if carved else []
    if (folder / "e2e_ref.txt").is_file():
        suffix = "_" + record["config"]["task"]["eval_split"] if carved else ""
        pairs.append((folder / "e2e_ref.txt", folder / f"e2e_pred_epoch{epoch}.txt", suffix))
    return pairs


def test_every_committed_e2e_run_records_the_official_scores_of_its_outputs(tmp_path):
    # the paper pipeline's BLEU/NIST of every committed run; the Perl and Java measures (20 s each per 630-MR run)
    # of the first run only: they are the same code on every input, which the generated cases check
    runs = committed_runs()
    assert runs, "no committed E2E run under results/"
    cases, records = [], []
    for folder in runs:
        record = json.loads((folder / "metrics.json").read_text())
        for entry in record["history"]:
            for refs, hyps, suffix in scored_files(folder, record, entry["epoch"]):
                measures = ["pymteval", "coco"] + ([] if PERL_MISSING else ["perl"]) if not cases else ["pymteval"]
                cases.append({"refs": read_references(refs), "hyps": read_hypotheses(hyps), "measures": measures})
                records.append((folder, entry, suffix))
    for (folder, entry, suffix), expected in zip(records, official(cases, tmp_path)):
        assert not expected["errors"], (folder, expected["errors"])
        for metric, value in expected["scores"].items():
            got = entry[metric + suffix]
            assert abs(got - value) <= TOLERANCE[metric], (folder, entry["epoch"], metric + suffix, got, value)


if __name__ == "__main__":
    import tempfile
    result = compare(Path(tempfile.mkdtemp()))
    for metric, (diff, index, got, expected) in sorted(result["worst"].items()):
        print(f"{metric:15s} cases {result['counts'][metric]:4d}  max |ours - official| {diff:.3g} "
              f"(case {index}: {got:.6f} vs {expected:.6f})")
    kinds = sorted({error.split(":")[0] for _, _, error, _ in result["failures"]})
    print(f"official failures: {len(result['failures'])}: {kinds}")
