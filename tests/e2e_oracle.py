"""The official E2E scorer (../shared/e2e-metrics, unchanged) scoring many cases in one process: the test oracle.

    python tests/e2e_oracle.py CASES.json OUT.json

CASES.json: [{"refs": [[str, ...], ...], "hyps": [str, ...], "measures": ["pymteval", "perl", "coco"]}, ...].
Each case is written to the files measure_scores.py reads (REFS: MR groups split by blank lines; HYP: one output per
line), loaded with its `load_data`, and scored with its own functions: `run_pymteval` (what `-p` prints),
`run_mteval` (the Perl mteval-v13a) and `run_coco_eval` (METEOR, ROUGE-L, CIDEr). A measure that raises is recorded
as {"error": "..."}. Runs in its own process: the scorer vendors its own `pycocoevalcap`, which must not mix with
the installed one the project uses.
"""
import contextlib
import importlib.util
import io
import json
import multiprocessing
import os
import shutil
import sys
import tempfile
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared" / "e2e-metrics"


def load_official():
    """official_scores.py's own set-up (a writable copy of the scorer, jars linked in), then its measure_scores."""
    spec = importlib.util.spec_from_file_location("official_scores", SHARED / "official_scores.py")
    official_scores = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(official_scores)
    root = official_scores.setup()
    sys.path.insert(0, str(root))
    os.chdir(root)
    import measure_scores
    return root, measure_scores


def pymteval(ms, ref: list, hyp: list) -> dict:
    """run_pymteval's BLEU and NIST, each on its own: its NIST can raise where its BLEU is still defined."""
    out = {}
    for name, scorer in (("BLEU", ms.BLEUScore()), ("NIST", ms.NISTScore())):
        for sents_ref, sent_sys in zip(ref, hyp):
            scorer.append(sent_sys, sents_ref)
        try:
            out[name] = scorer.score()
        except ZeroDivisionError as error:
            out[name] = {"error": f"ZeroDivisionError: {error}"}
    return out


def score_case(ms, case: dict, folder: Path) -> dict:
    (folder / "refs.txt").write_text("\n\n".join("\n".join(group) for group in case["refs"]) + "\n", encoding="utf-8")
    (folder / "hyp.txt").write_text("\n".join(case["hyps"]) + "\n", encoding="utf-8")
    out = {}
    for measure in case["measures"]:
        try:
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
                src, ref, hyp = ms.load_data(str(folder / "refs.txt"), str(folder / "hyp.txt"))
                if measure == "pymteval":
                    out[measure] = pymteval(ms, ref, hyp)
                elif measure == "perl":
                    out[measure] = ms.run_mteval(ref, hyp, src)
                else:
                    coco = ms.run_coco_eval(ref, hyp).eval
                    out[measure] = {k: coco[k] for k in ("METEOR", "ROUGE_L", "CIDEr")}
        except Exception as error:  # the oracle's own failure is a result to compare against, not a crash
            out[measure] = {"error": f"{type(error).__name__}: {error}"}
    return out


MS, ROOT, FOLDER = None, None, None  # the loaded scorer, its copy, and per process the folder of its case files


def score_one(case: dict) -> dict:
    global FOLDER
    if FOLDER is None:
        FOLDER = Path(tempfile.mkdtemp(prefix="cases-", dir=ROOT.parent))  # removed with the copy
    return score_case(MS, case, FOLDER)


def main(cases_path: str, out_path: str) -> None:
    """Every case, in order, over one process per core (forked after the scorer is loaded)."""
    global MS, ROOT
    cases = json.loads(Path(cases_path).read_text(encoding="utf-8"))
    out_path = Path(out_path).resolve()
    ROOT, MS = load_official()
    workers = min(len(os.sched_getaffinity(0)), len(cases)) if cases else 1
    if workers > 1:
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = pool.map(score_one, cases, chunksize=1)
    else:
        results = [score_one(case) for case in cases]
    out_path.write_text(json.dumps(results), encoding="utf-8")
    shutil.rmtree(ROOT.parent, ignore_errors=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
