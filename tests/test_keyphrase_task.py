"""The keyphrase task family end to end (issue 9): runs with real minilm on tiny Inspec subsets, the
prediction file against an independent recomputation of the metrics, sliding windows over a long
document, early stopping in F1@10's direction, malformed folders, and `tunelab pretrain mlm`."""

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tunelab.cli import main
from tunelab.tasks.keyphrase.data import find_dataset, read_keyphrase_dir, stem_word, tokenize_words
from tunelab.tasks.keyphrase.metrics import keyphrase_scores

METRICS = ("f1@10", "f1@5", "f1@M", "p@5", "r@5", "p@10", "r@10", "p@M", "r@M")


def small_args(task, method, data_dir, out, *extra):
    return ["run", "--task", task, "--method", method, "--model", "minilm", "--data-dir", str(data_dir),
            "--output-dir", str(out), "--max-train-samples", "32", "--max-eval-samples", "16", "--epochs", "1",
            "--batch-size", "8", "--max-seq-length", "128", "--doc-stride", "32", "--threads", "1", "--seed", "0",
            *extra]


def read_tsv(path):
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    return header, [dict(zip(header, line.split("\t"))) for line in lines[1:]]


def present_count(words, keys):
    """Independent recount of the gold keys found in a text: stemmed word sequences as space-joined strings."""
    text = " " + " ".join(stem_word(w) for w in words) + " "
    seen, present = set(), 0
    for k in keys:
        key = " ".join(stem_word(w) for w in tokenize_words(k))
        if key and key not in seen:
            seen.add(key)
            present += f" {key} " in text
    return present, len(seen)


@pytest.mark.parametrize("method", [["full", "--epochs", "2"], ["lora"], ["selective", "--layers", "top:2"]],
                         ids=["full", "lora", "selective"])
def test_inspec_run_end_to_end_reproduces_its_metrics(tmp_path, kp_root, method, capsys):
    out = tmp_path / "run"
    rc = main(small_args("inspec", method[0], kp_root, out, *method[1:]))
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["main_metric"] == "f1@10"
    assert list(rec["metrics"]) == list(METRICS) + ["test_" + m for m in METRICS]
    assert rec["data_sizes"] == {"train": 32, "validation": 16, "test": 16}
    assert rec["head"]["modules"] == ["classifier"]
    split_note = rec["data_notes"]["train"]["split"]
    assert split_note["sizes"] == {"train": 1000, "validation": 500, "test": 500} and "Hulth" in split_note["rule"]

    header, rows = read_tsv(out / "predictions.tsv")
    assert header == ["split", "doc_id", "gold_keys", "predicted_keys", "scores", "ranked_keys", "ranked_scores"]
    by_split = {s: [r for r in rows if r["split"] == s] for s in ("validation", "test")}
    assert len(by_split["validation"]) == len(by_split["test"]) == 16 and len(rows) == 32
    docs = {d.id: d for d in read_keyphrase_dir(find_dataset(kp_root, "inspec"))[0]}
    for split, prefix in (("validation", ""), ("test", "test_")):
        preds = [json.loads(r["predicted_keys"]) for r in by_split[split]]
        gold = [json.loads(r["gold_keys"]) for r in by_split[split]]
        assert gold == [docs[r["doc_id"]].keys for r in by_split[split]]  # the key files, as read
        scores = [json.loads(r["scores"]) for r in by_split[split]]
        assert all(s == sorted(s, reverse=True) and len(s) == len(p) for s, p in zip(scores, preds))  # ranked
        ranked = [json.loads(r["ranked_keys"]) for r in by_split[split]]
        # the @k list: the argmax phrases first, then other spans, up to 10 (fewer only for a short text)
        assert all(rk[:len(p)] == p[:10] and len(rk) == 10 for rk, p in zip(ranked, preds))
        again = keyphrase_scores(preds, gold, ranked)
        for m in METRICS:
            assert again[m] == pytest.approx(rec["metrics"][prefix + m], abs=1e-12), (split, m)
        # the ceiling: gold keys absent from the evaluated documents, recounted independently
        counts = [present_count(docs[r["doc_id"]].words, docs[r["doc_id"]].keys) for r in by_split[split]]
        ceiling = rec["keyphrase"]["ceiling"][split]
        assert (ceiling["n_present"], ceiling["n_keys"]) == (sum(p for p, _ in counts), sum(n for _, n in counts))
        # every predicted phrase is a span of its document's words
        for r, p, rk in zip(by_split[split], preds, ranked):
            text = " " + " ".join(docs[r["doc_id"]].words) + " "
            assert all(f" {phrase} " in text for phrase in p + rk)
    if method[0] == "full":  # 2 epochs: it predicts something, so the recomputation above is not 0 == 0
        assert sum(len(json.loads(r["predicted_keys"])) for r in rows) > 0
        assert rec["metrics"]["f1@M"] + rec["metrics"]["test_f1@M"] > 0
    assert rec["keyphrase"]["windows"]["train"] >= 32  # long abstracts give several 128-token windows


def test_a_long_document_spans_several_windows_and_every_word_gets_a_prediction(kp_root):
    from tunelab.models import load_backbone
    from tunelab.tasks import get_task

    task = get_task("inspec")
    docs, _ = read_keyphrase_dir(find_dataset(kp_root, "inspec"))
    torch.manual_seed(0)
    model, tok, _, _ = load_backbone("minilm", "token-classification", 3)
    with torch.no_grad():  # a classifier that prefers B/I, so spans appear without training
        model.classifier.bias.copy_(torch.tensor([0.0, 0.3, 0.3]))
    doc = max(docs, key=lambda d: len(d.words))
    n_tok = len(tok(doc.words, is_split_into_words=True, add_special_tokens=False)["input_ids"])
    assert n_tok > 500
    from tunelab.tasks.keyphrase.data import encode_windows

    wins = encode_windows(doc.words, None, tok, 128, 32)
    assert len(wins) >= n_tok // 126 + 1
    covered = {w for win in wins for w in win["word_ids"] if w >= 0}
    assert covered == set(range(len(doc.words)))

    pred = task.predict_docs(model, [doc], [wins], task.collator(tok), 4, torch.device("cpu"))
    # independent: each window alone through the model, first sub-token probabilities averaged per word
    model.eval()
    acc, cnt = np.zeros((len(doc.words), 3)), np.zeros(len(doc.words))
    with torch.no_grad():
        for win in wins:
            ids = torch.tensor([win["input_ids"]])
            probs = torch.softmax(model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits[0], -1).numpy()
            prev = -1
            for t, w in enumerate(win["word_ids"]):
                if w >= 0 and w != prev:
                    acc[w] += probs[t]
                    cnt[w] += 1
                prev = w
    assert (cnt >= 1).all() and (cnt >= 2).sum() > 0  # every word seen; the overlaps twice
    word_probs = acc / cnt[:, None]
    tags = word_probs.argmax(1)
    expected = set()
    i = 0
    while i < len(tags):  # spans: B (or I after O) followed by I's
        if tags[i] in (1, 2):
            j = i + 1
            while j < len(tags) and tags[j] == 2:
                j += 1
            expected.add(tuple(stem_word(w) for w in doc.words[i:j]))
            i = j
        else:
            i += 1
    got = {tuple(stem_word(w) for w in tokenize_words(p)) for p in pred.predictions[0]}
    assert got == expected and len(got) > 0
    inside = word_probs[:, 1] + word_probs[:, 2]
    best = pred.predictions[0][0]  # the top-ranked phrase has the highest mean P(B)+P(I) of all spans
    starts = [k for k in range(len(doc.words)) if " ".join(doc.words[k:k + len(tokenize_words(best))]) == best]
    top = max(inside[k:k + len(tokenize_words(best))].mean() for k in starts)
    assert top == pytest.approx(pred.scores[0][0], abs=1e-4)


def test_early_stopping_follows_f1_at_10_upwards():
    from tunelab.metrics import lookup
    from tunelab.train.tracker import EpochTracker

    assert lookup("f1@10").higher_is_better and lookup("test_f1@10").name == "f1@10"
    tr = EpochTracker("f1@10", patience=1, write=lambda s: None)
    stops = [tr.end_epoch({"epoch": e + 1, "metrics": {"f1@10": v}}, None) for e, v in enumerate([0.10, 0.30, 0.20])]
    assert stops == [False, False, True] and tr.best_epoch == 2 and tr.best == 0.30


def test_early_stopping_in_a_run_keeps_the_best_f1_at_10(tmp_path, kp_root, capsys):
    out = tmp_path / "es"
    rc = main(small_args("www", "full", kp_root, out, "--epochs", "3", "--early-stopping-patience", "1",
                         "--max-train-samples", "16", "--max-eval-samples", "8"))
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    f1 = [h["metrics"]["f1@10"] for h in rec["history"]]
    assert rec["best_epoch"] == 1 + int(np.argmax(f1))  # first maximum: higher is better
    stop_at = next((e for e in range(1, len(f1)) if f1[e] <= max(f1[:e])), None)
    assert len(f1) == (3 if stop_at is None else stop_at + 1) and rec["stopped_early"] == (stop_at is not None)
    assert rec["data_notes"]["train"]["split"]["seed"] == 0  # kdd / www: the seeded split is recorded


def make_folder(root: Path, src: Path, n: int) -> Path:
    """A keyphrase folder nobody shipped: n documents of another set under new names."""
    (root / "docsutf8").mkdir(parents=True)
    (root / "keys").mkdir()
    for i, p in enumerate(sorted((src / "docsutf8").glob("*.txt"))[:n]):
        shutil.copy(p, root / "docsutf8" / f"paper-{i:03d}.txt")
        shutil.copy(src / "keys" / (p.stem + ".key"), root / "keys" / f"paper-{i:03d}.key")
    return root


def test_any_folder_runs_with_task_keyphrase_and_prompt_tuning(tmp_path, kp_root, capsys):
    data = make_folder(tmp_path / "mine", kp_root / "kdd", 40)
    out = tmp_path / "run"
    rc = main(["run", "--task", "keyphrase", "--method", "prompt", "--model", "minilm", "--data-dir", str(data),
               "--output-dir", str(out), "--epochs", "1", "--batch-size", "8", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["data_sizes"] == {"train": 28, "validation": 6, "test": 6}
    assert rec["keyphrase"]["window_tokens"] == 512 - 20  # + 20 virtual tokens fit the 512 positions
    _, rows = read_tsv(out / "predictions.tsv")
    val = {r["doc_id"] for r in rows if r["split"] == "validation"}
    test = {r["doc_id"] for r in rows if r["split"] == "test"}
    assert len(val) == len(test) == 6 and not val & test
    assert all(re.fullmatch(r"paper-\d{3}", i) for i in val | test)


@pytest.mark.parametrize("damage,needle", [
    ("orphan_key", "key file without its document"),
    ("empty_doc", "empty document"),
    ("latin1", "not valid UTF-8"),
])
def test_malformed_folder_is_one_line_exit_2_nothing_written(tmp_path, kp_root, damage, needle, capsys):
    data = make_folder(tmp_path / "bad", kp_root / "kdd", 12)
    if damage == "orphan_key":
        bad = data / "keys" / "lonely.key"
        bad.write_text("some key\n")
    elif damage == "empty_doc":
        bad = data / "docsutf8" / "paper-003.txt"
        bad.write_text(" \r\n")
    else:
        bad = data / "docsutf8" / "paper-005.txt"
        bad.write_bytes("Caf\u00e9 r\u00e9seaux\n".encode("latin-1"))
    out = tmp_path / "run"
    rc = main(["run", "--task", "keyphrase", "--data-dir", str(data), "--output-dir", str(out), "--threads", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and needle in err and str(bad.resolve()) in err
    assert not out.exists()


def test_bad_options_and_missing_data_are_one_line(tmp_path, kp_root, capsys, monkeypatch):
    monkeypatch.delenv("TUNELAB_DATA_DIR", raising=False)  # CI sets it to the GLUE folder
    rc = main(["run", "--task", "inspec", "--data-dir", str(kp_root), "--max-seq-length", "64", "--doc-stride", "64",
               "--output-dir", str(tmp_path / "a")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--doc-stride 64" in err and len(err.splitlines()) == 1
    rc = main(["run", "--task", "keyphrase", "--output-dir", str(tmp_path / "b")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--task keyphrase needs --data-dir" in err
    rc = main(["run", "--task", "sst2", "--doc-stride", "8", "--output-dir", str(tmp_path / "c")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--doc-stride does not apply" in err


def test_pretrain_mlm_on_train_abstracts_only_gives_a_model_run_accepts(tmp_path, kp_root, capsys):
    from tunelab.tasks.keyphrase.mlm import keyphrase_train_texts
    from tunelab.tasks import get_task

    texts, sources = keyphrase_train_texts(kp_root)
    held_out = set()
    for name in ("inspec", "kdd", "www"):
        t = get_task(name).configure(None)
        held_out |= {d.text for s in ("validation", "test") for d in t.load(s, str(kp_root)).examples}
    assert len(texts) == 1000 + 529 + 930 and not set(texts) & held_out
    assert [s["dataset"] for s in sources] == ["inspec", "kdd", "www"]

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for i, t in enumerate(texts[:24]):
        (corpus / f"{i}.txt").write_text(t, encoding="utf-8")
    model_dir = tmp_path / "minilm-domain"
    rc = main(["pretrain", "mlm", "--model", "minilm", "--corpus", str(corpus), "--output-dir", str(model_dir),
               "--max-steps", "3", "--head-warmup-steps", "2", "--seq-length", "64", "--batch-size", "4",
               "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((model_dir / "pretrain.json").read_text())
    h = rec["heldout_loss"]
    assert rec["steps"] == 3 and rec["corpus"]["heldout_documents"] == 2 and rec["corpus"]["train_documents"] == 22
    assert all(np.isfinite(h[k]) for k in ("random_head", "before", "after")) and h["before"] < h["random_head"]
    assert (model_dir / "config.json").exists() and (model_dir / "tokenizer.json").exists()
    data = make_folder(tmp_path / "mine", kp_root / "www", 24)
    out = tmp_path / "run"
    rc = main(["run", "--task", "keyphrase", "--method", "lora", "--model", str(model_dir), "--data-dir", str(data),
               "--output-dir", str(out), "--epochs", "1", "--batch-size", "8", "--max-seq-length", "128",
               "--doc-stride", "32", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["model_source"] == str(model_dir)
    # the encoder weights came from the new folder, not from minilm: they differ after 3 MLM steps
    from safetensors.torch import load_file

    from tunelab.models.aliases import resolve_model

    new = load_file(str(model_dir / "model.safetensors"))
    old = load_file(str(Path(resolve_model("minilm")) / "model.safetensors"))
    k_old = next(k for k in old if k.endswith("encoder.layer.0.attention.self.query.weight"))
    k_new = next(k for k in new if k.endswith("encoder.layer.0.attention.self.query.weight"))
    assert not torch.equal(old[k_old], new[k_new])


def test_report_marks_gold_and_predicted_phrases_by_stemmed_match():
    from tunelab.tasks.keyphrase.report import highlight_segments
    from tunelab.report.render_html import render_html
    from tunelab.report.render_md import render_md

    text = "Neural networks for graph-based ranking.\nWe rank Graphs."
    segs = highlight_segments(text, gold=["neural network", "graph"], predicted=["graph-based ranking", "networks for"])
    assert "".join(s for s, _ in segs) == text  # nothing lost or reordered
    assert segs == [("Neural", "gold"), (" ", ""), ("networks", "both"), (" ", ""), ("for graph-based ranking", "pred"),
                    (".\nWe rank ", ""), ("Graphs", "gold"), (".", "")]
    html = render_html([("marked", "doc 1", segs)], "t")
    assert '<mark class="both">networks</mark>' in html and '<mark class="gold">Graphs</mark>' in html
    assert "> **Neural** ***networks*** _for graph-based ranking_. We rank **Graphs**." in render_md(
        [("marked", "doc 1", segs)])


def test_keyphrase_quick_preset_expands_with_a_domain_model_folder(tmp_path, kp_root):
    from tunelab.compare.config import load_compare_config
    from tunelab.compare.grid import expand
    from tunelab.models.aliases import resolve_model

    cells = expand(load_compare_config(preset="keyphrase-quick"), str(tmp_path), str(kp_root))
    assert [(c.task, c.label) for c in cells] == [("inspec", "full"), ("inspec", "lora"), ("inspec", "selective")]
    cfg = cells[0].config
    assert (cfg.max_train_samples, cfg.epochs, cfg.max_seq_length, cfg.doc_stride, cfg.max_eval_samples) == \
        (300, 2, 256, 64, 200)
    folder = resolve_model("minilm")  # stands in for a `tunelab pretrain mlm` output folder
    cells = expand(load_compare_config(preset="keyphrase-quick", overrides=[f"models=minilm,{folder}"]),
                   str(tmp_path), str(kp_root))
    assert len(cells) == 6 and {c.config.model for c in cells} == {"minilm", folder}


def test_report_table_shows_the_f1_columns_of_both_splits():
    from tunelab.report.tables import report_columns

    names = list(METRICS) + ["test_" + m for m in METRICS]
    assert report_columns("inspec", names) == ["f1@10", "f1@5", "f1@M", "test_f1@10", "test_f1@5", "test_f1@M"]
    assert report_columns("sst2", ["accuracy"]) == ["accuracy"]
    assert report_columns("no-such-task", names) == names
