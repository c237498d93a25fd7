"""method.init_adapter: a run starts from a saved adapter (ours or loralib's), with a new task head (App. D.1)."""
import json
from pathlib import Path

import pytest
import torch

from conftest import SHARED, tiny
from lora_repro.config import LoraMethod
from lora_repro.errors import ConfigError
from lora_repro.init_adapter import init_from_adapter
from lora_repro.methods import apply_method
from lora_repro.record import save_adapter

LORA = LoraMethod(targets=["q", "v"], r=4, alpha=8, dropout=0.0)
RELEASED = SHARED / "checkpoints" / "microsoft-lora" / "roberta_base_lora_mnli.bin"


def lora_model(num_labels: int, seed: int = 0, **method):
    model = tiny("roberta", num_labels=num_labels, seed=seed)
    return apply_method(model, LORA.model_copy(update=method))


def trained_adapter(folder: Path, num_labels: int = 3) -> dict[str, torch.Tensor]:
    """A run directory holding an adapter whose B is non-zero (as after training): its tensors."""
    model = lora_model(num_labels, seed=7)
    torch.manual_seed(7)
    for name, p in model.named_parameters():
        if p.requires_grad:
            p.data.normal_()
    folder.mkdir(exist_ok=True)
    save_adapter(folder / "adapter.safetensors", model, {}, {"method": "lora"})
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_a_run_directory_loads_lora_and_a_head_of_another_shape_is_new(tmp_path):
    saved = trained_adapter(tmp_path / "mnli")
    model = lora_model(num_labels=1)  # STS-B: 1 output, MNLI's head has 3
    fresh_head = model.classifier.out_proj.weight.clone()
    done = init_from_adapter(model, tmp_path / "mnli")
    assert done == {"path": str(tmp_path / "mnli"), "tensors_loaded": 8, "head": "reinitialised"}
    params = dict(model.named_parameters())
    lora = [n for n in saved if ".lora_" in n]
    assert len(lora) == 8 and all(torch.equal(params[n], saved[n]) for n in lora)
    assert torch.equal(model.classifier.out_proj.weight, fresh_head)
    with pytest.raises(ValueError, match=r"init_keep_head=true.*classifier\.out_proj\.bias has shape \(3,\), "
                                         r"the task needs \(1,\)"):
        init_from_adapter(lora_model(num_labels=1), tmp_path / "mnli", keep_head=True)


def test_a_head_of_the_same_shape_is_kept_only_when_asked(tmp_path):
    saved = trained_adapter(tmp_path / "run")
    model = lora_model(num_labels=3)
    fresh = model.classifier.dense.weight.clone()
    init_from_adapter(model, tmp_path / "run" / "adapter.safetensors")
    assert torch.equal(model.classifier.dense.weight, fresh)
    model = lora_model(num_labels=3)
    assert init_from_adapter(model, tmp_path / "run", keep_head=True)["tensors_loaded"] == 8 + 4
    assert torch.equal(model.classifier.dense.weight, saved["classifier.dense.weight"])
    assert not torch.equal(fresh, saved["classifier.dense.weight"])


def test_a_peft_folder_starts_a_run_with_the_same_lora_tensors(tmp_path):
    from lora_repro.formats import Adapter, write
    saved = trained_adapter(tmp_path / "run")
    write(Adapter(saved, r=4, alpha=8, targets=["q", "v"]), "peft", tmp_path / "peft")
    model = lora_model(num_labels=1)
    assert init_from_adapter(model, tmp_path / "peft")["head"] == "reinitialised"
    params = dict(model.named_parameters())
    lora = [n for n in saved if ".lora_" in n]
    assert len(lora) == 8 and all(torch.equal(params[n], saved[n]) for n in lora)


def test_an_adapter_that_does_not_fit_names_the_tensor(tmp_path):
    trained_adapter(tmp_path / "run")
    with pytest.raises(ValueError, match=r"lora_A has shape \(4, 32\), the model expects \(2, 32\)"):
        init_from_adapter(lora_model(3, r=2), tmp_path / "run")
    with pytest.raises(ValueError, match=r"lacks 4 of the method's trainable tensors, e\.g\. \S+key\.lora_A"):
        init_from_adapter(lora_model(3, targets=["q", "k", "v"]), tmp_path / "run")
    with pytest.raises(ConfigError, match="method.init_adapter: adapter .*nowhere does not exist"):
        init_from_adapter(lora_model(3), tmp_path / "nowhere")
    (tmp_path / "peft").mkdir()
    (tmp_path / "peft" / "adapter_config.json").write_text("{}")
    with pytest.raises(ValueError, match="peft_type=None; only LORA adapters convert"):
        init_from_adapter(lora_model(3), tmp_path / "peft")


def test_a_loralib_checkpoint_loads_under_its_own_names(tmp_path):
    saved = trained_adapter(tmp_path / "run")
    torch.save(saved, tmp_path / "lora.bin")  # loralib's split_lora / --lora_path format: torch.save(state_dict)
    model = lora_model(num_labels=2)
    assert init_from_adapter(model, tmp_path / "lora.bin")["head"] == "reinitialised"
    assert torch.equal(model.roberta.encoder.layer[1].attention.self.value.lora_B,
                       saved["roberta.encoder.layer.1.attention.self.value.lora_B"])


def test_mnli_then_mrpc_from_the_mnli_run_directory(tmp_path, monkeypatch):
    # the chain of App. D.1 through lora_repro.run: the MRPC run's first step starts from the MNLI adapter's LoRA
    # tensors (seen by the training loop as it is called), and training then moves them
    from safetensors.torch import load_file
    from lora_repro import run as run_module
    from test_glue import write_glue
    from test_run import compose_run
    (tmp_path / "mnli").mkdir()
    run_module.run(compose_run("task=glue/mnli", f"task.data_dir={write_glue(tmp_path / 'MNLI', 'mnli', rows=12)}",
                               "train.epochs=1", "train.batch_size=4"), tmp_path / "mnli")
    started, train = {}, run_module.train

    def train_from(model, *args, **kwargs):  # the training loop, noting the LoRA tensors it starts from
        started.update({n: p.detach().clone() for n, p in model.named_parameters() if ".lora_" in n})
        return train(model, *args, **kwargs)
    monkeypatch.setattr(run_module, "train", train_from)
    (tmp_path / "mrpc").mkdir()
    record = run_module.run(compose_run("task=glue/mrpc", f"task.data_dir={write_glue(tmp_path / 'MRPC', 'mrpc', 12)}",
                                        "train.epochs=1", "train.lr=1e-2", f"method.init_adapter={tmp_path / 'mnli'}",
                                        "seed=1"), tmp_path / "mrpc")
    mnli, mrpc = (load_file(str(tmp_path / d / "adapter.safetensors")) for d in ("mnli", "mrpc"))
    lora = [k for k in mnli if ".lora_" in k]
    assert len(lora) == 8 and sorted(started) == sorted(lora)
    assert all(torch.equal(mnli[k], started[k]) for k in lora)  # the MNLI tensors, not a fresh seed-1 init
    assert not any(torch.equal(mnli[k], mrpc[k]) for k in lora)  # then trained on MRPC
    assert mnli["classifier.weight"].shape == (3, 64) and mrpc["classifier.weight"].shape == (2, 64)
    assert record["init_adapter"]["head"] == "reinitialised" and record["init_adapter"]["tensors_loaded"] == 8
    written = json.loads((tmp_path / "mrpc" / "metrics.json").read_text())
    assert written["init_adapter"]["path"] == str(tmp_path / "mnli")


@pytest.mark.real
def test_the_released_roberta_base_mnli_checkpoint_starts_an_stsb_run():
    from transformers import RobertaConfig, RobertaForSequenceClassification
    torch.manual_seed(0)  # RoBERTa-base's shapes (random weights: no hub here), STS-B's 1-output head
    config = RobertaConfig(vocab_size=64, num_labels=1, max_position_embeddings=66)
    model = apply_method(RobertaForSequenceClassification(config), LORA.model_copy(update={"r": 8, "alpha": 16}))
    released = torch.load(RELEASED, weights_only=True, map_location="cpu")
    done = init_from_adapter(model, RELEASED)
    assert done["tensors_loaded"] == 48 and done["head"] == "reinitialised"  # 12 layers x (q, v) x (A, B)
    params = dict(model.named_parameters())
    assert all(torch.equal(params[k], v) for k, v in released.items() if ".lora_" in k)
    assert params["classifier.out_proj.weight"].shape == (1, 768)
    assert sum(v.numel() for k, v in released.items() if ".lora_" in k) == 294_912  # Table 2's 0.3M


def test_the_mnli_init_sweep_chains_mnli_then_mrpc_rte_stsb(tmp_path):
    # sweeps/glue_roberta_base_mnli_init.yaml on a tiny RoBERTa: job 0 trains MNLI, jobs 1-3 start from its folder
    # because conf/paper/roberta-base/lora/glue/{mrpc,rte,stsb}.yaml read mnli_adapter
    from conftest import run_python
    from test_glue import write_glue
    for task in ("mnli", "mrpc", "rte", "stsb"):
        write_glue(tmp_path / "glue" / task, task, rows=12)
    tiny_roberta = ("{model_type:roberta,vocab_size:256,hidden_size:32,num_hidden_layers:2,num_attention_heads:2,"
                    "intermediate_size:64,max_position_embeddings:130}")
    run_python("-m", "lora_repro.run", "--config-dir", "sweeps", "--config-name", "glue_roberta_base_mnli_init",
               "seed=0", f"model.config={tiny_roberta}", f"++task.data_dir={tmp_path / 'glue'}/${{task.subset}}",
               "++task.max_seq_len=64", "train.epochs=1", f"hydra.sweep.dir={tmp_path / 'sweep'}")
    records = [json.loads((tmp_path / "sweep" / str(i) / "metrics.json").read_text()) for i in range(4)]
    assert [r["task"] for r in records] == ["glue/mnli", "glue/mrpc", "glue/rte", "glue/stsb"]
    assert records[0]["init_adapter"] is None
    for r in records[1:]:
        assert r["init_adapter"] == {"path": str(tmp_path / "sweep" / "0"), "tensors_loaded": 8,
                                     "head": "reinitialised"}
        assert r["config"]["train"]["lr"] in (4e-4, 5e-4)  # the paper file of the task applied (Table 9)


def test_mnli_init_of_deberta_carries_the_trained_pooler_and_renews_only_the_classifier(tmp_path):
    # the reference's --lora_path start loads split_lora.py's file: LoRA tensors and every non-backbone tensor, so
    # DeBERTa's pooler (trained with LoRA, not label-shaped) moves from MNLI; the classifier is new for STS-B
    def deberta(num_labels, seed):
        return apply_method(tiny("deberta-v2", num_labels=num_labels, seed=seed), LORA)
    mnli = deberta(3, seed=7)
    torch.manual_seed(7)
    for p in (p for p in mnli.parameters() if p.requires_grad):
        p.data.normal_()
    (tmp_path / "mnli").mkdir()
    save_adapter(tmp_path / "mnli" / "adapter.safetensors", mnli, {}, {"method": "lora"})
    stsb = deberta(1, seed=0)
    fresh_classifier = stsb.classifier.weight.clone()
    done = init_from_adapter(stsb, tmp_path / "mnli")
    assert done["head"] == "reinitialised" and done["tensors_loaded"] == 8 + 2  # 2 layers x (q, v) x (A, B); pooler
    assert torch.equal(stsb.pooler.dense.weight, mnli.pooler.dense.weight)
    assert torch.equal(stsb.classifier.weight, fresh_classifier)
    same = deberta(3, seed=0)
    assert init_from_adapter(same, tmp_path / "mnli", keep_head=True)["tensors_loaded"] == 8 + 2 + 2
    assert torch.equal(same.classifier.weight, mnli.classifier.weight)
