"""python -m lora_repro.export: one line per conversion, one clear error line for what cannot be converted."""
import subprocess
import sys

import pytest
import torch
from peft import PeftModel

from conftest import ROOT, tiny
from lora_repro.errors import cli
from lora_repro.export import main
from test_formats import logits, our_adapter


def test_export_command_line_converts_a_run_adapter_to_peft_and_loralib(tmp_path, capsys):
    _, ours, path = our_adapter(tmp_path, "roberta", ["q", "v"])
    assert main([str(tmp_path), "--to", "peft", "--out", str(tmp_path / "peft"), "--base", "FacebookAI/roberta-base"]) == 0
    assert "lora_repro -> peft: 4 roberta modules, r=4, alpha=8, targets q,v, head classifier" in capsys.readouterr().out
    peft_model = PeftModel.from_pretrained(tiny("roberta"), str(tmp_path / "peft")).eval()
    assert torch.allclose(logits(peft_model), ours, atol=1e-5, rtol=0)
    assert main([str(tmp_path / "peft"), "--to", "loralib", "--out", str(tmp_path / "a.bin")]) == 0
    assert main([str(tmp_path / "a.bin"), "--r", "4", "--alpha", "8", "--to", "lora_repro", "--out",
                 str(tmp_path / "again")]) == 0
    assert (tmp_path / "again/adapter.safetensors").is_file()


def test_export_says_what_a_loralib_file_lacks_in_one_line_and_exits_2(tmp_path, capsys):
    _, _, path = our_adapter(tmp_path, "bert", ["q"])
    assert main([str(path), "--to", "loralib", "--out", str(tmp_path / "a.bin")]) == 0
    out = subprocess.run([sys.executable, "-m", "lora_repro.export", str(tmp_path / "a.bin"), "--to", "peft",
                          "--out", str(tmp_path / "p")], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert out.stderr.startswith("error: ") and "stores no r or alpha: give them (--r R --alpha A" in out.stderr
    with pytest.raises(SystemExit) as exit_:
        cli(main)([str(path), "--alpha", "3", "--to", "peft", "--out", str(tmp_path / "p")])
    wrong = capsys.readouterr().err
    assert exit_.value.code == 2 and "--alpha 3" in wrong and "alpha=8" in wrong and not (tmp_path / "p").exists()
