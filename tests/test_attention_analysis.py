"""``tunelab analyze attention``: token categories, padding handled exactly, sane numbers, and both
files for a full run, an ALF run and a PEFT (prompt tuning) run."""

import json
import math

import numpy as np
import pytest
import torch

from conftest import tiny_run_args
from tunelab.analysis.attention import attention_stats, stopwords, token_categories
from tunelab.cli import main
from tunelab.models import load_backbone
from tunelab.tasks.base import Example


def run_args(*a):
    return tiny_run_args(*a) + ["--threads", "1"]  # shared 2-core machine: one thread is much faster


@pytest.fixture(scope="module")
def minilm():
    torch.set_num_threads(1)
    model, tok, _, _ = load_backbone("minilm", "classification", 2)
    model.set_attn_implementation("eager")
    return model, tok


def test_token_categories_follow_whole_words(minilm):
    _, tok = minilm
    texts = ("The movie was wonderfully acted!", "Is it?")
    enc = tok([texts[0]], [texts[1]], return_offsets_mapping=True)
    cats = token_categories(enc, 0, texts, stopwords())
    toks = tok.convert_ids_to_tokens(enc["input_ids"][0])
    got = dict(zip(toks, cats))
    assert got["[CLS]"] == "special" and got["[SEP]"] == "special"
    assert got["the"] == "function" and got["was"] == "function" and got["is"] == "function"
    assert got["movie"] == "content" and got["acted"] == "content"
    assert got["!"] == "function" and got["?"] == "function"
    # a word split into pieces: every piece takes the word's category
    pieces = [c for t, c in zip(toks, cats) if t.startswith("wonder") or t.startswith("##")]
    assert pieces and set(pieces) == {"content"}


def test_padding_is_excluded_exactly_and_shares_are_a_distribution(minilm):
    model, tok = minilm
    examples = [Example(("A gripping, beautifully shot film.",), 1), Example(("Dull.",), 0),
                Example(("It is neither funny nor moving, and far too long for what it has to say.",), 0),
                Example(("Great fun!",), 1)]
    one = attention_stats(model, tok, examples, batch_size=1)  # no padding at all
    padded = attention_stats(model, tok, examples, batch_size=4)  # padded to the longest
    for m in ("entropy", "special", "content", "function", "cls_content"):
        np.testing.assert_allclose(one[m], padded[m], atol=1e-5)
    assert one["queries"] == padded["queries"] == sum(len(tok(e.texts[0])["input_ids"]) for e in examples)
    total = padded["special"] + padded["content"] + padded["function"] + padded["virtual"]
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    assert np.abs(padded["pad"]).max() < 1e-6
    assert (padded["entropy"] >= 0).all() and (padded["entropy"] <= padded["max_entropy"] + 1e-6).all()
    assert padded["max_entropy"] <= math.log(max(len(tok(e.texts[0])["input_ids"]) for e in examples))
    assert padded["entropy"].shape == (6, 12)


@pytest.mark.parametrize("method,extra", [("full", []), ("alf", ["--alf-interval", "1"]), ("prompt", [])])
def test_analyze_attention_writes_both_files(method, extra, glue_data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    args = run_args("sst2", method, glue_data_dir, str(out), *extra)
    args[args.index("--max-train-samples") + 1] = "48"
    assert main(args) == 0
    assert main(["analyze", "attention", str(out), "--samples", "12", "--threads", "1"]) == 0
    assert "attention.json" in capsys.readouterr().out
    assert (out / "attention.png").stat().st_size > 1000
    with open(out / "attention.json", encoding="utf-8") as f:
        r = json.load(f)
    assert r["samples"] == 12 and r["layers"] == 6 and r["heads"] == 12 and r["method"] == method
    base, ft, delta = (np.asarray(r["per_head"][k]["entropy"]) for k in ("base", "finetuned", "delta"))
    assert base.shape == (6, 12)
    np.testing.assert_allclose(delta, ft - base, atol=2e-6)
    for key in ("base", "finetuned"):
        h = {m: np.asarray(r["per_head"][key][m]) for m in ("entropy", "special", "content", "function", "virtual", "pad")}
        np.testing.assert_allclose(h["special"] + h["content"] + h["function"] + h["virtual"], 1.0, atol=1e-4)
        assert (h["entropy"] >= 0).all() and (h["entropy"] <= r["max_entropy"][key] + 1e-6).all()
        assert np.abs(h["pad"]).max() < 1e-6
    assert np.abs(delta).max() > 1e-4  # fine-tuning changed the attention somewhere
    if method == "prompt":
        assert np.asarray(r["per_head"]["finetuned"]["virtual"]).min() > 0  # virtual tokens get attention
        assert np.asarray(r["per_head"]["base"]["virtual"]).max() == 0
    else:
        assert np.asarray(r["per_head"]["finetuned"]["virtual"]).max() == 0


def test_analyze_attention_rejects_a_folder_without_a_run(tmp_path, capsys):
    assert main(["analyze", "attention", str(tmp_path)]) == 2
    assert "run.json" in capsys.readouterr().err
