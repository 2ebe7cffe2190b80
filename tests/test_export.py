"""tunelab export: a LoRA run merged into a plain model that transformers loads alone (same logits as
the unmerged PEFT run within 1e-4, label names in its config, a card naming the data sha256 and the
metrics, safetensors only); runs PEFT cannot merge give the adapter folder and say so."""

import json
import os

import pytest
import torch

from conftest import tiny_run_args
from tunelab.cli import main

SENTENCES = ["a gripping , funny and moving film", "dull , lifeless and far too long .", "it 's fine"]


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, glue_data_dir):
    out = tmp_path_factory.mktemp("export") / "lora"
    assert main(tiny_run_args("sst2", "lora", glue_data_dir, str(out), "--max-train-samples", "48",
                              "--max-eval-samples", "16", "--lr", "5e-3")) == 0
    return out


def logits_of(model, tok):
    batch = tok(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        return model(**batch).logits


def test_lora_merge_loads_alone_with_the_same_logits(tmp_path, lora_run):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.predict import load_run

    exp = tmp_path / "merged"
    assert main(["export", str(lora_run), "--output", str(exp), "--merge"]) == 0
    files = sorted(os.listdir(exp))
    assert "model.safetensors" in files and "config.json" in files and "adapter_config.json" not in files
    assert not [f for f in files if f.endswith((".bin", ".pt", ".pth", ".pkl"))]
    model = AutoModelForSequenceClassification.from_pretrained(str(exp)).eval()
    tok = AutoTokenizer.from_pretrained(str(exp))
    _, peft_model, processor, _, rec = load_run(str(lora_run))
    assert type(peft_model).__name__.startswith("Peft")  # the unmerged run: base + adapter + head
    merged, unmerged = logits_of(model, tok), logits_of(peft_model, processor)
    assert torch.allclose(merged, unmerged, atol=1e-4), (merged, unmerged)
    assert model.config.id2label == {0: "0", 1: "1"} and model.config.label2id == {"0": 0, "1": 1}
    card = (exp / "README.md").read_text()
    for path, sha in rec["data"].items():
        assert sha in card and path in card
    assert f"| accuracy | {rec['metrics']['accuracy']:.4f} |" in card
    assert "tunelab run --task sst2 --method lora" in card


def test_bf16_export_and_adapter_without_merge(tmp_path, lora_run):
    from safetensors import safe_open

    exp = tmp_path / "bf16"
    assert main(["export", str(lora_run), "--output", str(exp), "--merge", "--dtype", "bf16"]) == 0
    with safe_open(str(exp / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}
    ad = tmp_path / "adapter"
    assert main(["export", str(lora_run), "--output", str(ad)]) == 0
    assert {"adapter_config.json", "adapter_model.safetensors", "README.md"} <= set(os.listdir(ad))
    assert "not merged" in (ad / "README.md").read_text()
    assert json.loads((ad / "tunelab_export.json").read_text())["kind"] == "peft-adapter"


def test_prompt_tuning_cannot_merge_says_so(tmp_path, glue_data_dir):
    run = tmp_path / "prompt"
    assert main(tiny_run_args("sst2", "prompt", glue_data_dir, str(run), "--max-train-samples", "16",
                              "--max-eval-samples", "8")) == 0
    exp = tmp_path / "exp"
    assert main(["export", str(run), "--output", str(exp), "--merge"]) == 0
    assert "adapter_config.json" in os.listdir(exp)
    assert "cannot be merged" in (exp / "README.md").read_text()


def test_export_errors_one_line(tmp_path, lora_run, capsys, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for args, needle in [(["--output", str(tmp_path / "full")], "exists and is not an empty folder"),
                         (["--output", str(tmp_path / "o"), "--push-to-hub", "me/model"], "needs the internet")]:
        capsys.readouterr()
        assert main(["export", str(lora_run), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


@pytest.mark.parametrize("method", ["dora", "ia3"])
def test_other_mergeable_adapters(tmp_path, glue_data_dir, method):
    """Export is generic over PEFT methods: DoRA / IA3 (branch peftmethods) merge like LoRA."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.methods import method_names
    from tunelab.predict import load_run

    if method not in method_names():
        pytest.skip(f"method {method} is not registered in this tree")
    run, exp = tmp_path / "run", tmp_path / "exp"
    assert main(tiny_run_args("sst2", method, glue_data_dir, str(run), "--max-train-samples", "32",
                              "--max-eval-samples", "8")) == 0
    assert main(["export", str(run), "--output", str(exp), "--merge"]) == 0
    assert json.loads((exp / "tunelab_export.json").read_text())["kind"] == "merged"  # not the adapter fallback
    assert not (exp / "adapter_config.json").exists()
    model = AutoModelForSequenceClassification.from_pretrained(str(exp)).eval()
    _, peft_model, processor, _, _ = load_run(str(run))
    assert torch.allclose(logits_of(model, AutoTokenizer.from_pretrained(str(exp))), logits_of(peft_model, processor),
                          atol=1e-4)
