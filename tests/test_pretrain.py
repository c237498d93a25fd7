"""Pretraining the base LM resumes where it died: a killed run continued with resume=true is the uninterrupted run."""
import json

import pytest
import torch
from safetensors.torch import load_file

from lora_repro import config, pretrain as pretraining, train as training

TEXT = [f"The {food} place number {i} is near the {area} and serves {food} food." for i in range(120)
        for food, area in (("Italian", "river"), ("French", "centre"))]


def lm_config(tmp_path, out: str, *overrides: str):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXT))
    return config.compose("lm=tiny", "lm.vocab_size=300", "lm.block=32", "lm.epochs=2", f"out_dir={tmp_path / out}",
                          f"corpus=[{{path: {corpus}, heldout: true}}]", *overrides, config_name="pretrain",
                          model=config.PretrainConfig)


def weights(folder) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def test_a_pretraining_killed_after_an_epoch_resumes_to_the_uninterrupted_lm(tmp_path, monkeypatch):
    whole = pretraining.pretrain(lm_config(tmp_path, "whole"))
    real_evaluate, calls = training.evaluate, []

    def dies_in_the_second_epoch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt("killed")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(training, "evaluate", dies_in_the_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretraining.pretrain(lm_config(tmp_path, "killed"))
    monkeypatch.setattr(training, "evaluate", real_evaluate)
    assert (tmp_path / "killed/checkpoint/trainer_state.json").is_file()
    resumed = pretraining.pretrain(lm_config(tmp_path, "killed", "resume=true"))
    assert resumed["heldout_perplexity"] == whole["heldout_perplexity"] and resumed["steps"] == whole["steps"]
    ours, theirs = weights(tmp_path / "killed"), weights(tmp_path / "whole")
    assert all(torch.equal(ours[name], theirs[name]) for name in theirs)
    assert json.loads((tmp_path / "killed/pretrain.json").read_text())["heldout_perplexity"] == \
        whole["heldout_perplexity"]


def test_resuming_with_a_field_that_changes_the_lm_is_refused(tmp_path):
    pretraining.pretrain(lm_config(tmp_path, "lm"))
    with pytest.raises(ValueError, match=r"resume=true: lm.lr=0.01 differs from the run being resumed"):
        pretraining.pretrain(lm_config(tmp_path, "lm", "resume=true", "lm.lr=1e-2"))
