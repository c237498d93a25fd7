"""Each GLUE task reads its original TSV layout offline and scores with the paper's metric (Table 2)."""
import pytest
import torch

from lora_repro.config import GlueTask, validated
from lora_repro.metrics.glue import Glue
from lora_repro.models import char_tokenizer
from lora_repro.tasks.glue import SUBSETS, load

# The original GLUE files' layouts (header row, columns, label spelling), a few rows each.
ROWS = 6
FIXTURES = {
    "cola": (None, lambda i: ["gj04", str(i % 2), "", f"the cat sat {i}"]),
    "sst2": ("sentence\tlabel", lambda i: [f"a fine film {i}", str(i % 2)]),
    "mrpc": ("Quality\t#1 ID\t#2 ID\t#1 String\t#2 String", lambda i: [str(i % 2), "1", "2", f"he said {i}", "he did"]),
    "qqp": ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate", lambda i: [str(i), "1", "2", "why?", f"how {i}?", str(i % 2)]),
    "stsb": ("index\tgenre\tfilename\tyear\told_index\tsource1\tsource2\tsentence1\tsentence2\tscore",
             lambda i: [str(i), "g", "f", "y", "0", "s", "s", f"a man {i}", "a dog", f"{i * 0.8:.1f}"]),
    "mnli": ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\tsentence2_binary_parse\tsentence1_parse\t"
             "sentence2_parse\tsentence1\tsentence2\tlabel1\tgold_label",
             lambda i: [str(i), "1", "1", "g", "(", "(", "(", "(", f"it rains {i}", "it is wet", "x",
                        ["entailment", "neutral", "contradiction"][i % 3]]),
    "qnli": ("index\tquestion\tsentence\tlabel", lambda i: [str(i), "who?", f"him {i}", ["entailment", "not_entailment"][i % 2]]),
    "rte": ("index\tsentence1\tsentence2\tlabel", lambda i: [str(i), f"dogs bark {i}", "dogs", ["entailment", "not_entailment"][i % 2]]),
}


def write_glue(folder, subset, rows=ROWS):
    header, row = FIXTURES[subset]
    folder.mkdir(parents=True, exist_ok=True)
    for name in SUBSETS[subset].tsv.values():
        lines = ([header] if header else []) + ["\t".join(row(i)) for i in range(rows)]
        (folder / name).write_text("\n".join(lines) + "\n")
    return folder


def task_cfg(subset, folder):
    return GlueTask(subset=subset, data_dir=str(folder), max_seq_len=32)


@pytest.mark.parametrize("subset", sorted(SUBSETS))
def test_each_glue_task_loads_from_its_tsv_and_scores_with_its_metric(subset, tmp_path):
    data = load(task_cfg(subset, write_glue(tmp_path / subset, subset)), char_tokenizer())
    spec = SUBSETS[subset]
    assert len(data.train) == ROWS and all(len(d) == ROWS for d in data.evals.values())
    assert list(data.evals) == [s for s in spec.tsv if s != "train"]
    batch = data.collate([data.train[i] for i in range(3)])
    assert batch["input_ids"].shape[0] == 3 and batch["input_ids"][0, 0] == 2  # [CLS]
    labels = torch.stack([data.train[i]["labels"] for i in range(ROWS)])
    perfect = labels.unsqueeze(-1).float() if spec.num_labels == 1 else torch.nn.functional.one_hot(labels, spec.num_labels).float()
    scores = data.score(perfect, labels)
    assert data.main_metric == spec.metrics[0] and set(scores) == set(spec.metrics)
    assert scores[data.main_metric] == pytest.approx(1.0)


def test_sample_limits_cut_train_and_dev_each_by_their_own_field(tmp_path):
    cfg = task_cfg("sst2", write_glue(tmp_path, "sst2", rows=10)).model_copy(
        update={"max_train_samples": 8, "max_eval_samples": 3})
    data = load(cfg, char_tokenizer())
    assert len(data.train) == 8 and len(data.evals["validation"]) == 3


def test_mnli_labels_follow_the_hub_order_and_both_dev_sets_are_scored(tmp_path):
    data = load(task_cfg("mnli", write_glue(tmp_path, "mnli")), char_tokenizer())
    assert [int(data.train[i]["labels"]) for i in range(3)] == [0, 1, 2]  # entailment, neutral, contradiction
    assert list(data.evals) == ["validation_matched", "validation_mismatched"]


def test_metric_values_match_their_definitions():
    assert Glue(config_name="cola").compute(predictions=[1, 1, 0, 0], references=[1, 0, 1, 0]) == {"matthews_correlation": 0.0}
    mrpc = Glue(config_name="mrpc").compute(predictions=[1, 1, 0, 0], references=[1, 0, 0, 0])
    assert mrpc == {"accuracy": 0.75, "f1": pytest.approx(2 / 3)}
    stsb = Glue(config_name="stsb").compute(predictions=[1.0, 2.0, 3.0, 5.0], references=[1.0, 2.0, 3.0, 4.0])
    assert stsb["spearmanr"] == pytest.approx(1.0) and 0.95 < stsb["pearson"] < 1.0


def test_a_folder_without_the_glue_files_names_what_is_missing(tmp_path):
    with pytest.raises(ValueError, match=r"task.data_dir=.* lacks \['train.tsv', 'dev.tsv'\]"):
        load(task_cfg("sst2", tmp_path), char_tokenizer())


def test_a_label_outside_the_task_range_is_refused(tmp_path):
    folder = write_glue(tmp_path, "sst2")
    (folder / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t7\n")
    with pytest.raises(ValueError, match="label '7' outside 0..1"):
        load(task_cfg("sst2", folder), char_tokenizer())


def test_a_missing_column_is_named(tmp_path):
    folder = write_glue(tmp_path, "rte")
    (folder / "train.tsv").write_text("index\tpremise\tsentence2\tlabel\n0\ta\tb\tentailment\n")
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['sentence1'\]"):
        load(task_cfg("rte", folder), char_tokenizer())


def test_a_row_with_the_wrong_field_count_is_refused_naming_file_and_line(tmp_path):
    folder = write_glue(tmp_path, "sst2")
    (folder / "train.tsv").write_text("sentence\tlabel\ngood\t1\nbad\t0\textra\nfine\t1\nshort\n")
    with pytest.raises(ValueError, match=r"train.tsv line 3 has 3 tab-separated fields, the header has 2 \(2 such "
                                         r"row\(s\) in the file\).*task.bad_rows=skip"):
        load(task_cfg("sst2", folder), char_tokenizer())


def test_bad_rows_skip_counts_and_reports_the_lines(tmp_path, caplog):
    import logging
    folder = write_glue(tmp_path, "cola")  # CoLA: no header row, 4 fields
    rows = (folder / "train.tsv").read_text().splitlines()
    (folder / "train.tsv").write_text("\n".join(rows[:2] + ["gj04\t1\tbroken"] + rows[2:] + ["x\t0\t\tsome\tmore"]) + "\n")
    cfg = task_cfg("cola", folder).model_copy(update={"bad_rows": "skip"})
    with caplog.at_level(logging.WARNING, logger="lora_repro"):
        data = load(cfg, char_tokenizer())
    assert len(data.train) == ROWS  # the 6 good rows, the 2 bad ones left out
    assert "skipped 2 malformed row(s) (field count is not 4), at line(s) 3, 8" in caplog.text
    with pytest.raises(ValueError, match=r"task.bad_rows='maybe' is invalid: Input should be 'error' or 'skip'"):
        validated(GlueTask, {**cfg.model_dump(), "bad_rows": "maybe"}, "task")


def test_a_byte_order_mark_before_the_header_is_not_part_of_the_first_column(tmp_path):
    folder = write_glue(tmp_path, "mrpc")  # the official MRPC TSVs open with one
    for name in ("train.tsv", "dev.tsv"):
        (folder / name).write_bytes(b"\xef\xbb\xbf" + (folder / name).read_bytes())
    data = load(task_cfg("mrpc", folder), char_tokenizer())
    assert len(data.train) == ROWS


@pytest.mark.real
def test_the_real_sst2_files_have_no_malformed_row(tmp_path):
    from conftest import SHARED
    from lora_repro.tasks.glue import read_tsv
    for name, n in (("train.tsv", 67_349), ("dev.tsv", 872)):
        frame = read_tsv(SHARED / "data" / "glue" / "SST-2" / name, SUBSETS["sst2"])
        assert len(frame) == n and set(frame.label) == {0, 1}


@pytest.mark.real
@pytest.mark.parametrize("subset, folder, rows", [("cola", "CoLA", (8_551, 1_043)), ("mrpc", "MRPC", (3_668, 408)),
                                                  ("rte", "RTE", (2_490, 277)), ("stsb", "STS-B", (5_749, 1_500))])
def test_the_real_glue_files_read_whole(subset, folder, rows):
    from conftest import SHARED
    from lora_repro.tasks.glue import read_tsv
    for name, n in zip(("train.tsv", "dev.tsv"), rows):
        assert len(read_tsv(SHARED / "data" / "glue" / folder / name, SUBSETS[subset])) == n
