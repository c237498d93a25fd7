"""Our E2E pipeline is the reference pipeline's (microsoft/LoRA examples/NLG) on the paper's data format, byte for byte.

The reference's steps are transcribed below as a small oracle, each function named for its script:
format_converting_e2e.py and gpt2_encode.py --add_bos --add_eos (create_datasets.sh), encoder.py, FT_Dataset's input
and loss mask (data_utils.py), gpt2_beam.py's prompts and zero-padded outputs, gpt2_decode.py's e2e branch as the
README runs it (no --tokenize, no --lower) and measure_scores.py's reading of the two files. Ours runs through
`e2e.load` and its `evaluate`, the beam search replaced by an output drawn for each prompt, on generated cases,
degenerate ones included: MRs repeated (apart, and differing only by a space before "||"), with one reference,
empty MRs and references, spaces, tabs and other whitespace around the line and the separator, "|||",
"<|endoftext|>" written as text, unicode, line breaks the scorer reads (\\x0c, \\x85, \\u2028) inside a line, CRLF
files; outputs that are empty, cut at <|endoftext|> or a blank line with text after it, run the whole 16 tokens,
hold partial UTF-8 bytes or bare line breaks. Where the reference writes files the scorer misreads (a line break
inside a line, an empty reference), ours differs as docs/tasks-and-data.md says and equals the oracle's files so
repaired. The unit tier uses a small BPE in GPT-2's file format; the tier marked `real` GPT-2's own BPE files and
the real ../shared/data/e2e/paper-format data.
"""
import json
import random
import re
from pathlib import Path

import pytest
import regex
import torch

from conftest import SHARED
from lora_repro import beam
from lora_repro.config import E2ETask
from lora_repro.errors import ConfigError
from lora_repro.metrics import e2e as e2e_metrics
from lora_repro.pretrain import gpt2_tokenizer
from lora_repro.tasks import e2e
from test_baselines import compose
from test_e2e import gpt2_style_files

PAPER = SHARED / "data/e2e/paper-format"
GPT2 = SHARED / "models/gpt2-tokenizer"


# ---------------------------------------------------------------------------------------------------------------
# The oracle: the reference's scripts, transcribed (examples/NLG/src/*.py at microsoft/LoRA HEAD)
# ---------------------------------------------------------------------------------------------------------------

def bytes_to_unicode() -> dict[int, str]:
    """encoder.py: each byte as a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(2 ** 8):
        if b not in bs:
            bs.append(b)
            cs.append(2 ** 8 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs]))


def get_pairs(word: tuple) -> set:
    return set(zip(word, word[1:]))


class Encoder:
    """encoder.py's Encoder (get_encoder(folder): encoder.json + vocab.bpe), errors='replace'."""

    def __init__(self, folder: Path):
        self.encoder = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
        self.decoder = {v: k for k, v in self.encoder.items()}
        self.byte_encoder = bytes_to_unicode()
        self.byte_decoder = {v: k for k, v in self.byte_encoder.items()}
        merges = (folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:-1]
        self.bpe_ranks = {tuple(m.split()): i for i, m in enumerate(merges)}
        self.cache = {}
        self.pat = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(self, token: str) -> str:
        if token in self.cache:
            return self.cache[token]
        word = tuple(token)
        pairs = get_pairs(word)
        if not pairs:
            return token
        while True:
            bigram = min(pairs, key=lambda pair: self.bpe_ranks.get(pair, float("inf")))
            if bigram not in self.bpe_ranks:
                break
            first, second = bigram
            new_word, i = [], 0
            while i < len(word):
                try:
                    j = word.index(first, i)
                    new_word.extend(word[i:j])
                    i = j
                except ValueError:
                    new_word.extend(word[i:])
                    break
                if word[i] == first and i < len(word) - 1 and word[i + 1] == second:
                    new_word.append(first + second)
                    i += 2
                else:
                    new_word.append(word[i])
                    i += 1
            word = tuple(new_word)
            if len(word) == 1:
                break
            pairs = get_pairs(word)
        word = " ".join(word)
        self.cache[token] = word
        return word

    def encode(self, text: str) -> list[int]:
        bpe_tokens = []
        for token in regex.findall(self.pat, text):
            token = "".join(self.byte_encoder[b] for b in token.encode("utf-8"))
            bpe_tokens.extend(self.encoder[bpe_token] for bpe_token in self.bpe(token).split(" "))
        return bpe_tokens

    def decode(self, tokens: list[int]) -> str:
        text = "".join(self.decoder[token] for token in tokens)
        return bytearray(self.byte_decoder[c] for c in text).decode("utf-8", errors="replace")


def format_converting_e2e(src: Path, dst: Path) -> None:
    """format_converting_e2e.py SRC DST."""
    with open(src, "r", encoding="utf8") as reader, open(dst, "w", encoding="utf8") as writer:
        for line in reader:
            items = line.strip().split("||")
            context = items[0]
            completion = items[1].strip("\n")
            writer.write(json.dumps({"context": context, "completion": completion}) + "\n")


def gpt2_encode(enc: Encoder, src: Path, dst: Path, eos: int) -> None:
    """gpt2_encode.py --add_bos --add_eos (bos = eos = the vocabulary's <|endoftext|>: 50256 in GPT-2's)."""
    with open(src, "r") as reader, open(dst, "w") as writer:
        for line in reader:
            items = json.loads(line.strip())
            context_bpes = enc.encode(items["context"]) + [eos]
            completion_bpes = enc.encode(" " + items["completion"]) + [eos]
            writer.write(json.dumps({"context": context_bpes, "completion": completion_bpes}) + "\n")


def read_ft_file(path: Path) -> list[tuple[list[int], list[int]]]:
    """FT_Dataset.read_ft_file."""
    with open(path, "r") as reader:
        return [(items["context"], items["completion"]) for items in map(json.loads, map(str.strip, reader))]


def padding_tokens(tokens, max_seq_length, pad_token, direct, max_context_length=0):
    """data_utils.padding_tokens."""
    if max_context_length == 0:
        max_context_length = max_seq_length
    if len(tokens) > max_context_length:
        pad_tokens = tokens[:max_context_length] if direct > 0 else tokens[-max_context_length:]
    else:
        pad_tokens = tokens
    token_len = len(pad_tokens)
    return pad_tokens + [pad_token for _ in range(max_seq_length - token_len)], token_len


def ft_item(context: list[int], completion: list[int], max_seq_length: int, max_eval_length: int) -> dict:
    """FT_Dataset.__getitem__ (no prefix or infix tokens, joint_lm off): the training input, its targets and loss
    mask, and gpt2_beam.py's query (the prompt, left-truncated to seq_len - eval_len)."""
    conditions = context
    _input, _input_len = padding_tokens(conditions + completion, max_seq_length, 0, 1)
    pad_targets = context + completion
    _target, _ = padding_tokens(pad_targets[1:], max_seq_length, 0, 1)
    _msk = [0.0] * (len(conditions) - 1) + [1.0] * (_input_len - len(conditions))
    _msk, _ = padding_tokens(_msk, max_seq_length, 0.0, 1)
    _query, _query_len = padding_tokens(conditions, max_seq_length, 0, -1,
                                        max_context_length=max_seq_length - max_eval_length)
    return {"input": _input[:_input_len], "loss": [(t, _target[t]) for t, m in enumerate(_msk) if m],
            "query": _query[:_query_len]}


def write_e2e(references: list[list[str]], hypothesis: list[str], ref_file: Path, pred_file: Path) -> None:
    """gpt2_decode.py's e2e writer, post_process without --tokenize and --lower (the README's E2E command)."""
    with open(ref_file, "w", encoding="utf8") as ref_writer, open(pred_file, "w", encoding="utf8") as pred_writer:
        for ref, hyp in zip(references, hypothesis):
            for r in ref:
                ref_writer.write(r + "\n")
            ref_writer.write("\n")
            pred_writer.write(hyp + "\n")


def gpt2_decode(enc: Encoder, sample_file: Path, input_file: Path, ref_file: Path, pred_file: Path):
    """gpt2_decode.py --ref_type e2e (no ref_unique_file, filter all): references grouped by the exact context string
    in first-seen order, each output cut and stripped, the last sample of a repeated MR kept. Returns what it wrote."""
    refer_dict, context_list = {}, []
    with open(input_file, "r", encoding="utf8") as input_reader:
        for line in input_reader:
            items = json.loads(line.strip())
            context, completion = items["context"], items["completion"]
            context_list.append(context)
            refer_dict.setdefault(context, {"references": []})
            refer_dict[context]["references"].append(completion.split("<|endoftext|>")[0].split("\n\n")[0].strip())
    with open(sample_file, "r") as sample_reader:
        for line in sample_reader:
            items = json.loads(line.strip())
            _key = context_list[items["id"]]
            if _key in refer_dict:
                refer_dict[_key]["sample"] = enc.decode(items["predict"]).split("<|endoftext|>")[0].split("\n\n")[0].strip()
    references = [refer_dict[s]["references"] for s in refer_dict]
    hypothesis = [refer_dict[s]["sample"] for s in refer_dict]
    write_e2e(references, hypothesis, ref_file, pred_file)
    return references, hypothesis


def read_lines(file_name: Path, multi_ref: bool = False) -> list:
    """measure_scores.read_lines: what the scorer reads from each file."""
    import codecs
    buf = [[]] if multi_ref else []
    with codecs.open(str(file_name), "rb", "UTF-8") as fh:
        for line in fh:
            line = line.strip()
            if multi_ref:
                if not line:
                    buf.append([])
                else:
                    buf[-1].append(line)
            else:
                buf.append(line)
    if multi_ref and not buf[-1]:
        del buf[-1]
    return buf


def reference_pipeline(enc: Encoder, txt: Path, outputs: dict, tails, seq_len: int, eval_len: int, eos: int,
                       folder: Path) -> dict:
    """create_datasets.sh, gpt2_beam.py (every line decoded: its output `outputs[query]`, padded to eval_len with
    `tails(line)` as best_sequence is: zeros, or a longer earlier candidate's tokens) and gpt2_decode.py, on `txt`."""
    formatted, encoded = folder / "formatted.jsonl", folder / "encoded.jsonl"
    format_converting_e2e(txt, formatted)
    gpt2_encode(enc, formatted, encoded, eos)
    items = [ft_item(context, completion, seq_len, eval_len) for context, completion in read_ft_file(encoded)]
    with open(folder / "predict.jsonl", "w") as writer:
        for _id, item in enumerate(items):
            best = outputs[tuple(item["query"])]
            predict = best + tails(_id)[:eval_len - len(best)]
            writer.write(json.dumps({"id": _id, "predict": predict}) + "\n")
    references, hypothesis = gpt2_decode(enc, folder / "predict.jsonl", formatted, folder / "ref.txt",
                                         folder / "pred.txt")
    contexts = [json.loads(line)["context"] for line in formatted.read_text(encoding="utf8").splitlines()]
    queries = {c: item["query"] for c, item in zip(contexts, items)}
    return {"items": items, "references": references, "hypothesis": hypothesis, "queries": queries,
            "ref": (folder / "ref.txt").read_bytes(), "pred": (folder / "pred.txt").read_bytes()}


# ---------------------------------------------------------------------------------------------------------------
# Where we differ on purpose: the reference writes files the scorer misreads; ours are those, repaired
# ---------------------------------------------------------------------------------------------------------------

BREAKS = re.compile("\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")  # what measure_scores' codecs reader splits at


def repaired(references: list[list[str]], hypothesis: list[str]) -> tuple[list[list[str]], list[str], list[int]]:
    """The oracle's groups with each line break a space, empty references left out, and MRs left without one."""
    refs = [[BREAKS.sub(" ", r) for r in group if r] for group in references]
    kept = [i for i, group in enumerate(refs) if group]
    return [refs[i] for i in kept], [BREAKS.sub(" ", hypothesis[i]) for i in kept], kept


# ---------------------------------------------------------------------------------------------------------------
# Generated cases
# ---------------------------------------------------------------------------------------------------------------

SLOTS = ["name", "Type", "food", "price", "customer rating", "area", "family friendly", "near", ""]
VALUES = ["The Eagle", "Café Rouge", "Zoë's", "£20 - 25", "city centre", "5 out of 5", "日本料理", "🍕 pizza",
          "e\u0301te", "no", "yes", "Alimentum", "", "x|", "<|endoftext|>", "a\u2028b", "tab\there", "\xa0nbsp"]
WORDS = ["The", "Eagle", "is", "a", "family", "-", "friendly", ".", ",", "café", "£20", "near", "the", "river",
         "Zoë's", "日本", "🍕", "is n't", "isn't", "'s", "  ", "|", "<|endoftext|>", "\x0c", "\x85", "\u2028",
         "\x0b", "\x1c", "\u2029", "\t", "\xa0", "\u3000", "e\u0301", "0", "ﬁ", "\U0001F600"]
EDGE = ["", " ", "  ", "\t", "\xa0", "\u3000", "\x0c", "\x85", " \t "]  # around the line and the separator
OUTPUT_PIECES = [" The Eagle", " is", " family - friendly", " .", ".", "\n", "\n\n", " ", "   ", "<|endoftext|>",
                 " café £20", "\u2028", "\x85", "\x0c", "\r", "\r\n", " 日本", " 🍕", "\t", " isn't", " n't",
                 "name : x | area : y", "||", " Zoë's", "\xa0"]


def draw_mr(rng: random.Random, pool: list[str]) -> str:
    if pool and rng.random() < 0.6:
        return rng.choice(pool)
    if rng.random() < 0.05:
        return ""
    while True:
        pairs = [f"{rng.choice(SLOTS)} : {rng.choice(VALUES)}" for _ in range(rng.randint(1, 4))]
        mr = rng.choice([" | ", "|", " |  "]).join(pairs)
        if "||" not in mr:  # a second separator on every line of this MR
            return mr


def plain(pieces: list[str]) -> list[str]:
    """The pieces a well-formed file can hold: no line break the scorer reads, no <|endoftext|>, not blank."""
    return [p for p in pieces if p.strip() and not BREAKS.search(p) and "<|endoftext|>" not in p]


def draw_ref(rng: random.Random, pool: list[str], clean: bool) -> str:
    kind = rng.random()
    if clean:  # a reference gpt2_decode.py writes as one non-empty line
        return " ".join(rng.choice(plain(WORDS)) for _ in range(rng.randint(1, 12)))
    if kind < 0.06:
        return rng.choice(["", "<|endoftext|>", "<|endoftext|> after the end", "   "])
    if pool and kind < 0.6:
        ref = rng.choice(pool)
    else:
        ref = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 12)))
    if rng.random() < 0.1:  # text after an <|endoftext|> written in the reference: gpt2_decode.py cuts it
        ref += rng.choice([" <|endoftext|> more", "<|endoftext|>"])
    if rng.random() < 0.05:
        ref = "|" + ref  # "MR|||ref": the reference's split gives the reference a leading "|"
    return ref


def draw_file(rng: random.Random, mr_pool: list[str], ref_pool: list[str], clean: bool) -> tuple[bytes, int]:
    """An MR||reference file: MRs repeated, apart or together, some with one reference; edges of odd whitespace.
    `clean`: every reference one non-empty line, so that the reference's own files are well formed."""
    mrs = [draw_mr(rng, mr_pool) for _ in range(rng.choice([1, 1, 2, 3, 5, 8, 12]))]
    if len(mrs) > 1 and rng.random() < 0.3:  # the same MR with a space before "||": another context to the reference
        mrs.append(mrs[0] + " ")
    lines, n_lines = [], rng.randint(1, 40)
    while len(lines) < n_lines:
        mr = rng.choice(mrs)
        for _ in range(rng.choice([1, 1, 2, 4])):
            line = (rng.choice(EDGE) + mr + rng.choice(EDGE[:4]) + "||" + rng.choice(EDGE[:4]) + draw_ref(rng, ref_pool, clean)
                    + rng.choice(EDGE))
            if len(line.strip().split("||")) == 2:  # a second separator is an error for us, a crash or a cut there
                lines.append(line)
    end = rng.choice(["\n", "\n", "\r\n"])
    text = end.join(lines) + (end if rng.random() < 0.8 else "")
    return text.encode("utf-8"), len(lines)


def draw_output(rng: random.Random, enc: Encoder, stops: list[int], vocab: int, eval_len: int,
                clean: bool = False) -> list[int]:
    """One best sequence as the beam search returns it: ending in a stop token, or the whole eval_len without one.
    `clean`: text pieces without line breaks and the stops only, an output gpt2_decode.py writes as one line."""
    ids = []
    while rng.random() < 0.85 and len(ids) < 2 * eval_len:
        r = rng.random()
        if clean:
            ids += enc.encode(rng.choice(plain(OUTPUT_PIECES))) if r < 0.9 else [rng.choice(stops)]
        elif r < 0.6:
            ids += enc.encode(rng.choice(OUTPUT_PIECES))
        elif r < 0.75:
            ids.append(rng.randrange(256))  # a single byte: partial UTF-8 sequences
        elif r < 0.9:
            ids.append(rng.randrange(vocab))
        else:
            ids.append(rng.choice(stops))  # a stop mid-way: the decoded text is cut there
    if rng.random() < 0.3:
        filler = enc.encode(" and more") * eval_len
        return (ids + filler)[:eval_len]
    return ids[:rng.randint(0, eval_len - 1)] + [rng.choice(stops)]


def tails(rng: random.Random, vocab: int, eval_len: int):
    """best_sequence's content after the best candidate, per line: zeros, or an earlier longer candidate's tokens."""
    drawn = {}

    def tail(line: int) -> list[int]:
        if line not in drawn:
            drawn[line] = [0] * eval_len if rng.random() < 0.5 else [rng.randrange(vocab) for _ in range(eval_len)]
        return drawn[line]
    return tail


# ---------------------------------------------------------------------------------------------------------------
# Ours, through e2e.load and its evaluate, the beam search replaced by the drawn outputs
# ---------------------------------------------------------------------------------------------------------------

class Pipeline:
    """e2e.load + evaluate with beam_search answering each prompt from `outputs` and score_run recording its input."""

    def __init__(self, monkeypatch):
        self.outputs, self.prompts, self.scored = {}, [], {}
        monkeypatch.setattr(beam, "beam_search", self.beam_search)
        monkeypatch.setattr(e2e_metrics, "score_run", self.score_run)

    def beam_search(self, model, input_ids, attention_mask, *args):
        rows = [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]  # left padding dropped
        self.prompts += rows
        return [list(self.outputs[tuple(row)]) for row in rows]

    def score_run(self, references, hypotheses):
        self.scored = {"references": references, "hypotheses": hypotheses}
        return {"bleu": 0.0}

    def run(self, tokenizer, folder: Path, out: Path, seq_len: int, eval_len: int, split: str = "dev"):
        self.prompts, self.scored = [], {}
        cfg = E2ETask(data_dir=str(folder), train_split=split, eval_split=split, max_seq_len=seq_len,
                      decode={"num_beams": 2, "max_new_tokens": eval_len})
        data = e2e.load(cfg, tokenizer)
        out.mkdir(exist_ok=True)
        data.evaluate(None, torch.device("cpu"), 3, out, "x")
        return data


def loss_pairs(row: dict) -> list[tuple[int, int]]:
    """(position, target) of every token the loss covers: labels are shifted inside smoothed_lm_loss."""
    labels = row["labels"]
    return [(t, labels[t + 1]) for t in range(len(row["input_ids"]) - 1) if labels[t + 1] != -100]


def check_case(pipeline: Pipeline, tokenizer, enc: Encoder, case_dir: Path, rng: random.Random, text: bytes,
               seq_len: int, eval_len: int, draw=draw_output, clean: bool = False) -> bool:
    """Our training rows, prompts, written files and scored lines against the reference pipeline's, for one file.
    Returns whether the reference's own files were well formed (then ours equal them unrepaired)."""
    case_dir.mkdir()
    (case_dir / "valid.txt").write_bytes(text)
    eos, vocab = tokenizer.eos_token_id, len(tokenizer)
    stops = e2e.stop_ids(tokenizer, ["\n\n"])
    assert len(stops) == 2  # <|endoftext|> and the blank line's token, gpt2_beam.py's --eos_token_id 628 in GPT-2
    # the outputs per prompt, drawn before either pipeline runs: the oracle's queries are the prompts
    formatted = case_dir / "probe.jsonl"
    format_converting_e2e(case_dir / "valid.txt", formatted)
    contexts = [json.loads(line)["context"] for line in formatted.read_text(encoding="utf8").splitlines()]
    queries = {tuple(ft_item(enc.encode(c) + [eos], [], seq_len, eval_len)["query"]) for c in contexts}
    pipeline.outputs = {q: draw(rng, enc, stops, vocab, eval_len, clean) for q in sorted(queries)}
    oracle = reference_pipeline(enc, case_dir / "valid.txt", pipeline.outputs, tails(rng, vocab, eval_len), seq_len,
                                eval_len, eos, case_dir)
    refs, hyps, kept = repaired(oracle["references"], oracle["hypothesis"])
    pairs = [json.loads(line) for line in formatted.read_text(encoding="utf8").splitlines()]
    if not refs or not any(p["context"] and p["completion"] for p in pairs):
        # nothing to score, or no line with both an MR and a reference: ours stops with a clear error, the reference
        # writes a file of blank lines or decodes the empty MR
        with pytest.raises(ConfigError):
            pipeline.run(tokenizer, case_dir, case_dir / "ours", seq_len, eval_len)
        return False
    data = pipeline.run(tokenizer, case_dir, case_dir / "ours", seq_len, eval_len)
    # training: gpt2_encode.py's ids into FT_Dataset's input, the loss on the same tokens at the same positions
    assert [row["input_ids"] for row in data.train] == [item["input"] for item in oracle["items"]]
    assert [loss_pairs(row) for row in data.train] == [item["loss"] for item in oracle["items"]]
    # decoding: one prompt per kept MR, in first-seen order, gpt2_beam.py's query
    unique = list(oracle["queries"])
    assert pipeline.prompts == [oracle["queries"][unique[i]] for i in kept]
    # the files, byte for byte: the reference's own where well formed, else the reference's repaired
    expected_ref, expected_pred = case_dir / "expected_ref.txt", case_dir / "expected_pred.txt"
    write_e2e(refs, hyps, expected_ref, expected_pred)
    ours_ref, ours_pred = (case_dir / "ours/e2e_ref.txt").read_bytes(), (case_dir / "ours/e2e_pred_x.txt").read_bytes()
    assert ours_ref == expected_ref.read_bytes() and ours_pred == expected_pred.read_bytes()
    well_formed = (refs, hyps) == (oracle["references"], oracle["hypothesis"])
    if well_formed:
        assert (ours_ref, ours_pred) == (oracle["ref"], oracle["pred"])
    # what the scorer reads from our files is what we scored: every MR's references, one output per MR
    assert read_lines(case_dir / "ours/e2e_ref.txt", multi_ref=True) == refs == pipeline.scored["references"]
    assert read_lines(case_dir / "ours/e2e_pred_x.txt") == hyps == pipeline.scored["hypotheses"]
    return well_formed


def run_cases(monkeypatch, tmp_path, tokenizer, enc: Encoder, n: int, seed: int, mr_pool=(), ref_pool=()) -> dict:
    rng, pipeline = random.Random(seed), Pipeline(monkeypatch)
    counts = {"cases": 0, "well_formed": 0, "lines": 0}
    for index in range(n):
        clean = rng.random() < 0.5  # half the files with references and outputs the reference writes well formed
        text, n_lines = draw_file(rng, list(mr_pool), list(ref_pool), clean)
        seq_len = rng.choice([512, 512, 48, 24])  # 24: prompts cut to 8 tokens, training rows to 24
        counts["well_formed"] += check_case(pipeline, tokenizer, enc, tmp_path / str(index), rng, text, seq_len, 16,
                                            clean=clean)
        counts["cases"] += 1
        counts["lines"] += n_lines
    return counts


# ---------------------------------------------------------------------------------------------------------------
# Unit tier: a small BPE in GPT-2's file format (encoder.json + vocab.bpe), no ../shared
# ---------------------------------------------------------------------------------------------------------------

MERGES = (("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("Ċ", "Ċ"), ("e", "r"), ("Ġ", "a"), ("Ġ", "f"), ("a", "m"),
          ("Ġ", "E"), ("a", "g"), ("ag", "l"), ("Ġ", "."), ("i", "s"), ("Ġ", "is"), ("Ã", "©"), ("Ġ", "-"))


@pytest.fixture(scope="module")
def small_bpe(tmp_path_factory):
    folder = gpt2_style_files(tmp_path_factory.mktemp("bpe"), MERGES)
    return gpt2_tokenizer(str(folder), 1024), Encoder(folder)


def test_our_files_prompts_and_training_rows_are_the_reference_pipelines_on_generated_cases(monkeypatch, tmp_path,
                                                                                           small_bpe):
    tokenizer, enc = small_bpe
    counts = run_cases(monkeypatch, tmp_path, tokenizer, enc, n=300, seed=0)
    assert counts["cases"] == 300 and counts["lines"] > 3000
    assert 100 < counts["well_formed"] < 300  # both kinds: equal to the reference's files, and to them repaired


def test_decoding_equals_encoder_py_on_any_tokens(small_bpe):
    # gpt2_decode.py's enc.decode, then its cut and strip, on random token ids (partial UTF-8, stops anywhere)
    tokenizer, enc = small_bpe
    rng = random.Random(1)
    ids = [[rng.randrange(len(tokenizer)) for _ in range(rng.randint(0, 30))] for _ in range(2000)]
    expected = [enc.decode(i).split("<|endoftext|>")[0].split("\n\n")[0].strip() for i in ids]
    assert e2e.decode(tokenizer, ids, ["<|endoftext|>", "\n\n"]) == expected


def test_endoftext_written_in_the_data_is_text_as_the_reference_encodes_it(small_bpe):
    tokenizer, enc = small_bpe
    (row,) = e2e.encode(tokenizer, ["name : <|endoftext|>"], ["the <|endoftext|> end"], 512)
    eos = tokenizer.eos_token_id
    assert row["input_ids"] == enc.encode("name : <|endoftext|>") + [eos] + enc.encode(" the <|endoftext|> end") + [eos]
    assert row["input_ids"].count(eos) == 2  # the separator and the end, no more


def test_blank_lines_are_skipped_and_a_second_separator_is_a_clear_error(tmp_path):
    # the reference stops on both (IndexError), or keeps only the text before a second "||"
    (tmp_path / "valid.txt").write_text("a||b\n\n  \nc||d\n")
    assert e2e.read_file(tmp_path / "valid.txt").values.tolist() == [["a", "b"], ["c", "d"]]
    (tmp_path / "test.txt").write_text("a||b\nc||d||e\n")
    with pytest.raises(ConfigError, match=r"test.txt line 2 has 2 '\|\|' separators; a line is 'MR\|\|reference'"):
        e2e.read_file(tmp_path / "test.txt")


# ---------------------------------------------------------------------------------------------------------------
# Real tier: GPT-2's own BPE files and ../shared/data/e2e/paper-format
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def gpt2():
    if not (GPT2 / "encoder.json").is_file():
        pytest.skip(f"real tier: {GPT2} (GPT-2's BPE files, in ../shared) is not on this machine")
    return gpt2_tokenizer(str(GPT2), 1024), Encoder(GPT2)


def paper_lines(name: str) -> list[str]:
    return (PAPER / name).read_text(encoding="utf-8").splitlines()


@pytest.mark.real
def test_the_paper_format_files_have_the_papers_pairs_and_mrs_read_as_the_reference_reads_them(tmp_path):
    counts = {}
    for name, pairs, mrs in (("train.txt", 42_061, 4_862), ("valid.txt", 4_672, 547), ("test.txt", 4_693, 630)):
        frame = e2e.read_file(PAPER / name)
        format_converting_e2e(PAPER / name, tmp_path / name)
        oracle = [json.loads(line) for line in (tmp_path / name).read_text(encoding="utf8").splitlines()]
        assert list(frame.mr) == [o["context"] for o in oracle] and list(frame.ref) == [o["completion"] for o in oracle]
        counts[name] = (len(frame), len(e2e.group_references(frame)[0]))
        assert counts[name] == (pairs, mrs), name


@pytest.mark.real
def test_the_paper_format_folder_composes_and_loads_with_its_training_split(gpt2):
    tokenizer, enc = gpt2
    cfg = compose("task=e2e", f"task.data_dir={PAPER}")
    assert (cfg.task.train_split, cfg.task.eval_split) == ("train", "test")
    assert e2e.check_data_dir(cfg.task) == PAPER
    data = e2e.load(cfg.task, tokenizer)
    mrs, references = data.evals["test"]
    assert len(data.train) == 42_061 and len(mrs) == 630 and sum(map(len, references)) == 4_693
    # every 7th training row is gpt2_encode.py's context + completion, cut to --seq_len 512 by FT_Dataset
    lines = paper_lines("train.txt")
    for index in range(0, len(lines), 7):
        context, completion = lines[index].strip().split("||")
        item = ft_item(enc.encode(context) + [50256], enc.encode(" " + completion) + [50256], 512, 64)
        assert data.train[index]["input_ids"] == item["input"]
        assert loss_pairs(data.train[index]) == item["loss"]


@pytest.mark.real
def test_the_real_test_sets_files_are_the_reference_pipelines_byte_for_byte(monkeypatch, tmp_path, gpt2):
    # the whole test.txt: 630 MRs, outputs drawn from each MR's references (cut, with text after the end, empty)
    tokenizer, enc = gpt2
    ref_pool = [line.strip().split("||")[1] for line in paper_lines("test.txt")]

    def from_references(rng, enc, stops, vocab, eval_len, clean):
        ids = enc.encode(" " + rng.choice(ref_pool))
        if rng.random() < 0.2:  # cut anywhere, a blank line and more text after it
            ids = ids[:rng.randint(0, len(ids))] + enc.encode("\n\nname : x")
        return ids[:eval_len - 1] + [rng.choice(stops)]
    pipeline = Pipeline(monkeypatch)
    assert check_case(pipeline, tokenizer, enc, tmp_path / "case", random.Random(2), (PAPER / "test.txt").read_bytes(),
                      512, 64, draw=from_references)
    assert len(pipeline.scored["hypotheses"]) == 630 and len(pipeline.prompts) == 630


@pytest.mark.real
def test_generated_cases_with_gpt2s_own_bpe_and_real_mrs(monkeypatch, tmp_path, gpt2):
    tokenizer, enc = gpt2
    lines = paper_lines("valid.txt")[::5] + paper_lines("test.txt")[::5]
    mrs, refs = zip(*(line.strip().split("||") for line in lines))
    counts = run_cases(monkeypatch, tmp_path, tokenizer, enc, n=120, seed=3, mr_pool=mrs, ref_pool=refs)
    assert counts["cases"] == 120 and 30 < counts["well_formed"] < 120
