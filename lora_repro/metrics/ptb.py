"""The MS-COCO caption code's tokenisation (Stanford PTBTokenizer, lowercased, punctuation dropped), offline.

pycocoevalcap runs `PTBTokenizer -preserveLines -lowerCase` from Stanford CoreNLP (Java) on every reference and
output before METEOR, ROUGE-L and CIDEr, then drops the punctuation tokens below. CoreNLP is not available here,
so this is a regex approximation of the PTB rules that matter for E2E text: clitics split off (can't -> ca n't,
it's -> it 's), currency symbols split from numbers, brackets and quotes split (and then dropped as punctuation),
hyphenated words and decimal numbers kept whole, sentence periods split off (and dropped).
"""
import re

# pycocoevalcap/tokenizer/ptbtokenizer.py: tokens removed after tokenising.
PUNCTUATIONS = {"''", "'", "``", "`", "-LRB-", "-RRB-", "-LCB-", "-RCB-", ".", "?", "!", ",", ":", "-", "--",
                "...", ";"}
_BRACKETS = set("()[]{}")  # CoreNLP writes these as -LRB- etc., which are then dropped
_CLITICS = re.compile(r"(?i)(n't|'s|'re|'ve|'ll|'d|'m)$")
_SPLIT = re.compile(r"""(\.\.\.|--|[?!,;:"()\[\]{}`$£€¥#]|''|``)""")


def ptb_tokenize(text: str) -> list[str]:
    """Lowercased PTB-style tokens of one sentence, without pycocoevalcap's punctuation tokens."""
    tokens = []
    for chunk in _SPLIT.sub(r" \1 ", text.lower()).split():
        # strip quotes and sentence periods at the edges; keep u.s.-style abbreviations and 3.5 whole
        while len(chunk) > 1 and chunk[0] == "'" and not _CLITICS.match(chunk):
            tokens.append("'")
            chunk = chunk[1:]
        tail = []
        while len(chunk) > 1 and (chunk[-1] == "'" or (chunk[-1] == "." and "." not in chunk[:-1])):
            tail.insert(0, chunk[-1])
            chunk = chunk[:-1]
        clitic = _CLITICS.search(chunk)
        if clitic and clitic.start() > 0:
            tokens += [chunk[:clitic.start()], clitic.group(1)]
        else:
            tokens.append(chunk)
        tokens += tail
    return [t for t in tokens if t not in PUNCTUATIONS and t not in _BRACKETS and t != '"']


def coco_text(text: str) -> str:
    """One sentence as pycocoevalcap's scorers receive it: tokens joined by single spaces."""
    return " ".join(ptb_tokenize(text))
