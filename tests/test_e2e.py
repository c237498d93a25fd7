"""E2E NLG (paper Sec. 5.4): references grouped per MR, loss on the reference only with label smoothing, batched
beam search equal to one-by-one decoding, the pipeline end to end, and a small LM pretrained offline."""
import json

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from conftest import SHARED, tiny
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
    cfg = OmegaConf.create({"max_seq_len": 256, "decode": {"num_beams": 3, "length_penalty": 0.9,
                                                           "no_repeat_ngram_size": 4, "max_new_tokens": 12,
                                                           "stop_strings": ["\n\n"]}})
    together = e2e.generate(model, tok, MRS, cfg, torch.device("cpu"), batch_size=3)
    alone = [e2e.generate(model, tok, [mr], cfg, torch.device("cpu"), batch_size=1)[0] for mr in MRS]
    assert together == alone
    assert len(set(together)) > 1  # the prompts differ, so do the continuations


def test_no_training_split_offline_is_a_clear_error(tmp_path):
    cfg = OmegaConf.create({"data_dir": str(write_e2e(tmp_path)), "train_split": "train", "eval_split": "test"})
    with pytest.raises(FileNotFoundError, match="task.train_split=dev"):
        e2e.check_data_dir(cfg)
    with pytest.raises(ValueError, match=r"task.eval_split='validation'.*\['train', 'dev', 'test'\]"):
        e2e.check_split(OmegaConf.create({"eval_split": "validation"}), "eval_split")


def test_reference_text_lines_are_stripped_on_both_sides(tmp_path):
    (tmp_path / "valid.txt").write_text("name : Aromi | area : riverside ||Aromi is by the river . \n")
    assert e2e.read_file(tmp_path / "valid.txt").values.tolist() == [["name : Aromi | area : riverside",
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
