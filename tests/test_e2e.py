"""E2E NLG (paper Sec. 5.4): references grouped per MR, loss on the reference only with label smoothing, batched
beam search equal to one-by-one decoding, the pipeline end to end, and a small LM pretrained offline."""
import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from conftest import SHARED, tiny
from lora_repro.config import E2ETask, validated
from lora_repro.errors import ConfigError
from lora_repro.models import byte_tokenizer
from lora_repro.tasks import e2e
from test_baselines import compose
from test_run import cli

MRS = ["name[Blue Spice], eatType[coffee shop], area[city centre]", "name[Alimentum], area[riverside]",
       "name[The Eagle], food[French], priceRange[cheap], customer rating[5 out of 5]"]
REFS = [["A coffee shop in the city centre area called Blue Spice.", "Blue Spice is a coffee shop in city centre."],
        ["Alimentum is by the riverside.", "There is a place by the riverside called Alimentum.",
         "Alimentum is located in the riverside area."],
        ["The Eagle serves cheap French food and is rated 5 out of 5."]]


def write_e2e(folder, splits=("dev", "test"), fmt="csv", copies=1):
    """An E2E folder with the challenge's CSVs (or the reference code's MR||ref text files) of the given splits;
    the training splits repeat the pairs `copies` times."""
    folder.mkdir(parents=True, exist_ok=True)
    pairs = [(mr, ref) for mr, refs in zip(MRS, REFS) for ref in refs]
    for split in splits:
        rows = pairs if split == "test" else pairs * copies
        if fmt == "csv":
            pd.DataFrame(rows, columns=["mr", "ref"]).to_csv(folder / e2e.CSV_FILES[split], index=False)
        else:
            (folder / e2e.TXT_FILES[split]).write_text("".join(f"{mr}||{ref}\n" for mr, ref in rows))
    return folder


def test_references_are_grouped_by_mr_in_first_seen_order(tmp_path):
    frame = e2e.read_file(write_e2e(tmp_path) / "devset.csv")
    mrs, refs = e2e.group_references(frame)
    assert mrs == MRS and refs == REFS


def test_reference_code_text_files_read_like_the_csvs(tmp_path):
    csv = e2e.read_file(write_e2e(tmp_path / "a") / "devset.csv")
    txt = e2e.read_file(write_e2e(tmp_path / "b", fmt="txt") / "valid.txt")
    pd.testing.assert_frame_equal(csv, txt)


def test_loss_covers_only_the_reference_and_its_end_token():
    tok = byte_tokenizer()
    (row,) = e2e.encode(tok, [MRS[1]], [REFS[1][0]], 512)
    prompt = tok.encode(MRS[1], add_special_tokens=False)
    assert row["input_ids"][len(prompt)] == tok.eos_token_id  # the separator
    assert row["labels"][:len(prompt) + 1] == [-100] * (len(prompt) + 1)
    assert tok.decode(row["labels"][len(prompt) + 1:-1]) == " " + REFS[1][0]
    assert row["labels"][-1] == tok.eos_token_id


def test_smoothed_loss_is_the_reference_codes_formula_and_plain_nll_without_smoothing():
    model = tiny("gpt2", causal=True, vocab_size=257)
    batch = e2e.collate_right(256)(e2e.encode(byte_tokenizer(), MRS[:2], [REFS[0][0], REFS[1][1]], 512))
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    # eps = 0: the model's own causal-LM loss on the same labels
    own = model(**batch).loss
    torch.testing.assert_close(e2e.smoothed_lm_loss(logits, batch["labels"], 0.0), own)
    # eps = 0.1: (1 - eps) NLL + eps mean_vocab(-log p), averaged over the reference tokens (PAPER.md Sec. 3.2)
    logp = F.log_softmax(logits[:, :-1].float(), -1)
    labels = batch["labels"][:, 1:]
    mask = labels != -100
    nll = -logp.gather(-1, labels.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    by_hand = ((0.9 * nll + 0.1 * -logp.mean(-1)) * mask).sum() / mask.sum()
    torch.testing.assert_close(e2e.smoothed_lm_loss(logits, batch["labels"], 0.1), by_hand)


def test_batched_left_padded_beam_search_equals_one_by_one():
    torch.manual_seed(0)
    model = tiny("gpt2", causal=True, vocab_size=257, n_positions=512)
    tok = byte_tokenizer()
    cfg = E2ETask(max_seq_len=256, decode={"num_beams": 3, "length_penalty": 0.9, "no_repeat_ngram_size": 4,
                                           "max_new_tokens": 12, "stop_strings": ["\n\n"]})
    together = e2e.generate(model, tok, MRS, cfg, torch.device("cpu"), batch_size=3)
    alone = [e2e.generate(model, tok, [mr], cfg, torch.device("cpu"), batch_size=1)[0] for mr in MRS]
    assert together == alone
    assert len(set(together)) > 1  # the prompts differ, so do the continuations


def test_a_folder_without_the_training_split_is_a_clear_error_naming_the_offline_folders(tmp_path):
    cfg = E2ETask(data_dir=str(write_e2e(tmp_path)), train_split="train", eval_split="test")
    with pytest.raises(ConfigError, match=r"no train split: expected train.txt .* or trainset.csv .*"
                                          r"\.\./shared/data/e2e/paper-format .* or set task.train_split"):
        e2e.check_data_dir(cfg)
    with pytest.raises(ConfigError, match=r"task.eval_split='validation' is invalid: Input should be 'train', 'dev' or"):
        validated(E2ETask, {"eval_split": "validation"}, "task")


def test_reference_text_lines_are_split_as_format_converting_e2e_does(tmp_path):
    # the line is stripped (test.txt's lines end in a space), the parts are not: the reference's model reads the MR
    # with its space before "||"
    (tmp_path / "valid.txt").write_text(" name : Aromi | area : riverside ||Aromi is by the river . \n")
    assert e2e.read_file(tmp_path / "valid.txt").values.tolist() == [["name : Aromi | area : riverside ",
                                                                       "Aromi is by the river ."]]


def test_e2e_trains_as_gpt2_ft_without_backbone_dropout_in_fp32(tmp_path):
    # transformers' GPT2Config puts 0.1 on attention, residual and embeddings; the reference GPT-2 has none
    from transformers import GPT2Config, GPT2LMHeadModel
    from lora_repro.models import load_model
    from lora_repro.train import autocast
    GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=16, n_head=2, vocab_size=257)).save_pretrained(tmp_path)
    cfg = compose("task=e2e", f"model.path={tmp_path}")
    model = load_model(cfg.model, "causal_lm")
    assert (model.config.resid_pdrop, model.config.embd_pdrop, model.config.attn_pdrop) == (0.0, 0.0, 0.0)
    assert load_model(compose(f"model.path={tmp_path}").model, "causal_lm").config.resid_pdrop == 0.1
    assert (cfg.train.adam_eps, cfg.train.precision, cfg.train.max_grad_norm) == (1e-6, "fp32", 0.0)
    assert autocast(torch.device("cuda"), "fp32")._enabled is False  # train.precision=fp32: no bf16 on CUDA either


def test_cut_at_stop_strings():
    assert e2e.clean(" The Eagle is cheap.\n\nname[x]<|endoftext|>", ["<|endoftext|>", "\n\n"]) == "The Eagle is cheap."


def test_lora_on_gpt2_trains_decodes_and_scores_all_five_metrics(tmp_path):
    data = write_e2e(tmp_path / "data", copies=4)
    cli("lora_repro.run", "model=tiny-gpt2", "task=e2e", f"task.data_dir={data}", "task.train_split=dev",
        "task.decode.num_beams=2", "task.decode.max_new_tokens=8", "train.epochs=2", "train.warmup_steps=0",
        "method.r=4", f"hydra.run.dir={tmp_path / 'run'}")
    record = json.loads((tmp_path / "run/metrics.json").read_text())
    assert record["trainable_params"] == 2 * 2 * (2 * 4 * 64)  # q and v slices of c_attn, 2 layers, A + B at r=4
    assert set(record["metrics"]) >= {"bleu", "nist", "meteor", "rouge_l", "cider"}
    # the test set is decoded once, after the last epoch: no epoch is picked on it
    assert record["main_metric"] == "bleu" and [h["epoch"] for h in record["history"]] == [1]
    assert record["best_epoch"] == 1 and not (tmp_path / "run/e2e_pred_epoch0.txt").exists()
    refs = (tmp_path / "run/e2e_ref.txt").read_text().strip().split("\n\n")
    assert [group.split("\n") for group in refs] == REFS
    assert len((tmp_path / "run/e2e_pred_epoch1.txt").read_text().splitlines()) == len(MRS)


def many_mrs(folder, n=12):
    """A training file of n MRs with 1 to 3 references each (the reference's text format) and a test file."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [f"name : Place {i} | area : riverside||Place {i} is by the river , take {k} ." for i in range(n)
             for k in range(1 + i % 3)]
    (folder / "train.txt").write_text("\n".join(lines) + "\n")
    (folder / "test.txt").write_text("".join(f"{mr}||{ref}\n" for mr, refs in zip(MRS, REFS) for ref in refs))
    return folder


def test_carved_validation_holds_out_whole_mrs_of_the_training_split(tmp_path):
    data = many_mrs(tmp_path)
    cfg = validated(E2ETask, {"data_dir": str(data), "carved_validation": 4, "data_seed": 3}, "task")
    task = e2e.load(cfg, byte_tokenizer())
    assert list(task.evals) == ["carved", "test"]  # the carved MRs first: they pick the epoch
    carved_mrs, carved_refs = task.evals["carved"]
    assert len(carved_mrs) == 4 and task.evals["test"][0] == MRS
    train = e2e.read_file(data / "train.txt")
    kept = train[~train.mr.isin(carved_mrs)]
    assert len(task.train) == len(kept) == len(train) - sum(map(len, carved_refs))  # no carved MR trains
    assert carved_refs == [list(train.ref[train.mr == mr]) for mr in carved_mrs]  # with all its references
    again = e2e.load(cfg, byte_tokenizer())
    assert again.evals["carved"] == task.evals["carved"]  # task.data_seed fixes the draw
    other = e2e.load(validated(E2ETask, {"data_dir": str(data), "carved_validation": 4, "data_seed": 4}, "task"),
                     byte_tokenizer())
    assert other.evals["carved"][0] != carved_mrs
    only = e2e.load(validated(E2ETask, {"data_dir": str(data), "carved_validation": 4, "carved_only": True,
                                        "data_seed": 3}, "task"), byte_tokenizer())
    assert list(only.evals) == ["carved"] and only.evals["carved"] == task.evals["carved"]  # the test set unread
    with pytest.raises(ConfigError, match=r"task.carved_validation=12 .*12 distinct MRs"):
        e2e.load(validated(E2ETask, {"data_dir": str(data), "carved_validation": 12}, "task"), byte_tokenizer())


def test_with_carved_mrs_the_test_set_is_reported_at_the_epoch_they_pick(tmp_path):
    from lora_repro.run import run as train_run
    from test_run import compose_run
    data, run = many_mrs(tmp_path / "data"), tmp_path / "run"
    run.mkdir()
    record = train_run(compose_run("model=tiny-gpt2", "task=e2e", f"task.data_dir={data}", "task.carved_validation=3",
                                   "task.decode.num_beams=2", "task.decode.max_new_tokens=8", "train.epochs=2",
                                   "train.warmup_steps=0", "train.eval_each_epoch=true"), run)
    assert record["eval_split"] == "carved" and [h["epoch"] for h in record["history"]] == [0, 1]
    best = record["history"][record["best_epoch"]]
    assert best["bleu"] == max(h["bleu"] for h in record["history"])  # the carved MRs' BLEU picks
    assert record["metrics"] == {k: v for k, v in best.items() if k not in ("epoch", "step")}
    assert {"bleu_test", "nist_test", "meteor_test", "rouge_l_test", "cider_test"} <= set(record["metrics"])
    from lora_repro.metrics.e2e import read_hypotheses, read_references, score_run
    for epoch in (0, 1):  # each split's files score what the record says
        test = score_run(read_references(run / "e2e_ref.txt"), read_hypotheses(run / f"e2e_pred_epoch{epoch}.txt"))
        carved = score_run(read_references(run / "e2e_ref_carved.txt"),
                           read_hypotheses(run / f"e2e_pred_carved_epoch{epoch}.txt"))
        assert test["bleu"] == record["history"][epoch]["bleu_test"]
        assert carved["bleu"] == record["history"][epoch]["bleu"]
    assert [g.split("\n") for g in (run / "e2e_ref.txt").read_text().strip().split("\n\n")] == REFS


def test_pretrained_lm_is_saved_in_hugging_face_format_and_runs_e2e(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"{ref} It is number {i}." for i in range(60) for refs in REFS for ref in refs))
    out = tmp_path / "lm"
    cli("lora_repro.pretrain", "lm=tiny", "lm.vocab_size=300", "lm.block=32", f"out_dir={out}",
        f"corpus=[{{path: {corpus}, heldout: true}}]", f"hydra.run.dir={tmp_path / 'log'}")
    report = json.loads((out / "pretrain.json").read_text())
    assert report["heldout_perplexity"] < 300 / 4  # well below a uniform guess over the vocabulary
    data = write_e2e(tmp_path / "data")
    cli("lora_repro.run", f"model.path={out}", "model.name=local-gpt2", "task=e2e", f"task.data_dir={data}",
        "task.train_split=dev", "task.decode.num_beams=2", "task.decode.max_new_tokens=8", "train.epochs=1",
        "train.warmup_steps=0", f"hydra.run.dir={tmp_path / 'run'}")  # Table 11's 500 would outlast these steps
    assert json.loads((tmp_path / "run/metrics.json").read_text())["trainable_params"] == 2 * 2 * (2 * 4 * 64 * 2)


@pytest.mark.real
def test_e2e_smoke_on_the_real_challenge_data(tmp_path):
    stdout = cli("lora_repro.run", "+experiment=e2e_smoke", f"task.data_dir={SHARED / 'data/e2e'}",
                 f"hydra.run.dir={tmp_path}")
    record = json.loads((tmp_path / "metrics.json").read_text())
    assert all(0 <= record["metrics"][k] < float("inf") for k in ("bleu", "nist", "meteor", "rouge_l", "cider"))
    assert len((tmp_path / "e2e_ref.txt").read_text().strip().split("\n\n")) == 16  # the first 16 test MRs
    assert "bleu=" in stdout


def gpt2_byte_symbols() -> dict[int, str]:
    """GPT-2's bytes_to_unicode: each byte as a printable character (the printable ones as themselves)."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs, cs, n = bs + [b], cs + [256 + n], n + 1
    return dict(zip(bs, map(chr, cs)))


def gpt2_reference_encoder(folder):
    """GPT-2's released encoder (openai/gpt-2 src/encoder.py, which the reference code's examples/NLG/src/encoder.py
    is): bytes to printable characters, the regex pre-split, then BPE merges by rank. Returns encode, decode."""
    import regex
    byte_encoder = gpt2_byte_symbols()
    byte_decoder = {c: b for b, c in byte_encoder.items()}
    vocab = json.loads((folder / "encoder.json").read_text(encoding="utf-8"))
    ranks = {tuple(line.split()): i for i, line in
             enumerate((folder / "vocab.bpe").read_text(encoding="utf-8").split("\n")[1:-1])}
    pattern = regex.compile(r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""")

    def bpe(word: tuple[str, ...]) -> tuple[str, ...]:
        while len(word) > 1:
            pair = min(zip(word, word[1:]), key=lambda p: ranks.get(p, float("inf")))
            if pair not in ranks:
                break
            merged, i = [], 0
            while i < len(word):
                if i < len(word) - 1 and (word[i], word[i + 1]) == pair:
                    merged.append(word[i] + word[i + 1])
                    i += 2
                else:
                    merged.append(word[i])
                    i += 1
            word = tuple(merged)
        return word

    def encode(text: str) -> list[int]:
        return [vocab[t] for piece in pattern.findall(text)
                for t in bpe(tuple(byte_encoder[b] for b in piece.encode("utf-8")))]

    inverse = {i: t for t, i in vocab.items()}

    def decode(ids: list[int]) -> str:
        return bytearray(byte_decoder[c] for i in ids for c in inverse[i]).decode("utf-8", errors="replace")
    return encode, decode


def test_decoding_keeps_spaces_before_punctuation_whatever_the_tokenizers_default():
    # gpt2_decode.py's enc.decode is byte-level decoding only; a tokenizer whose default cleans up spaces
    # ("is n't ." -> "isn't.") must not change our outputs
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast
    words = ["<eos>", "is", "n't", ".", "family", "-", "friendly", ","]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<eos>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    cleaning = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", clean_up_tokenization_spaces=True)
    ids = [[1, 2, 3, 7, 4, 5, 6, 3, 0]]
    assert cleaning.batch_decode(ids) == ["isn't., family - friendly. <eos>"]  # what the default would give
    assert e2e.decode(cleaning, ids, ["<eos>"]) == ["is n't . , family - friendly ."]


def gpt2_style_files(folder, merges=(("Ġ", "t"), ("h", "e"), ("Ġt", "he"))):
    """encoder.json + vocab.bpe in GPT-2's format: its 256 byte symbols, a few merges, <|endoftext|> last."""
    symbols = list(gpt2_byte_symbols().values())
    vocab = {s: i for i, s in enumerate(symbols + ["".join(m) for m in merges] + ["<|endoftext|>"])}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "encoder.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "vocab.bpe").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges), encoding="utf-8")
    return folder


def test_gpt2s_bpe_files_are_the_pretrained_lms_vocabulary_when_asked(tmp_path):
    from lora_repro import config
    from lora_repro.pretrain import gpt2_tokenizer, pretrain
    files = gpt2_style_files(tmp_path / "bpe")
    tokenizer = gpt2_tokenizer(str(files), 64)
    encode, decode = gpt2_reference_encoder(files)
    text = "the pub, the theatre ... Zoë's café"
    assert tokenizer.encode(text) == encode(text) and tokenizer.decode(encode(text)) == decode(encode(text)) == text
    assert len(tokenizer) == 256 + 3 + 1 and tokenizer.eos_token_id == 259
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(f"the {ref} {i}" for i in range(20) for refs in REFS for ref in refs))
    cfg = config.compose("lm=tiny", "lm.block=32", f"lm.tokenizer={files}", f"out_dir={tmp_path / 'lm'}",
                         f"corpus=[{{path: {corpus}, heldout: true}}]", config_name="pretrain",
                         model=config.PretrainConfig)
    report = pretrain(cfg)
    assert report["tokenizer"] == str(files)
    saved = json.loads((tmp_path / "lm/config.json").read_text())
    assert saved["vocab_size"] == 260 and saved["eos_token_id"] == 259
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"lm.tokenizer='.*empty' holds neither tokenizer.json nor encoder.json"):
        gpt2_tokenizer(str(tmp_path / "empty"), 64)


@pytest.mark.real
@pytest.mark.skipif(not (SHARED / "models/gpt2-tokenizer").is_dir(), reason="../shared/models/gpt2-tokenizer absent")
def test_our_prompts_and_decoding_are_gpt2s_own_on_e2e_text(tmp_path):
    import shutil
    from lora_repro.pretrain import gpt2_tokenizer
    folder = SHARED / "models/gpt2-tokenizer"
    for name in ("encoder.json", "vocab.bpe"):  # the release's two files alone, as the reference code reads them
        shutil.copy(folder / name, tmp_path / name)
    encode, decode = gpt2_reference_encoder(folder)
    frame = pd.read_csv(SHARED / "data/e2e/devset.csv", dtype=str, keep_default_na=False).iloc[::7][:400]
    paper = (SHARED / "data/e2e/paper-format/valid.txt").read_text(encoding="utf-8").splitlines()[::11][:200]
    pairs = list(zip(frame.mr, frame.ref)) + [tuple(line.split("||", 1)) for line in paper]
    for tokenizer in (gpt2_tokenizer(str(folder), 1024), gpt2_tokenizer(str(tmp_path), 1024)):  # tokenizer.json
        eos = tokenizer.eos_token_id
        assert eos == 50256 and len(tokenizer) == 50257
        rows = e2e.encode(tokenizer, [mr for mr, _ in pairs], [ref for _, ref in pairs], 1024)
        for (mr, ref), row in zip(pairs, rows):
            assert row["input_ids"] == encode(mr) + [eos] + encode(" " + ref) + [eos]
        completions = [encode(" " + ref) + [eos] for _, ref in pairs]
        assert e2e.decode(tokenizer, completions, ["<|endoftext|>", "\n\n"]) == [decode(encode(ref)).strip()
                                                                                 for _, ref in pairs]
