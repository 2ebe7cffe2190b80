"""tunelab predict on the user-data families (issue 25): a finished text-classification or
token-classification run, reloaded from its folder alone, reproduces its predictions.tsv on the same
evaluation inputs given as a file (label / tag column dropped) or as --text; a LoRA run reloads its
adapter and head, and ``tunelab export --merge`` of it names the string labels in config.json."""

import csv
import json

import pytest

from tunelab.cli import main

TINY = ["--model", "minilm", "--max-seq-length", "32", "--epochs", "1", "--batch-size", "16", "--seed", "0",
        "--threads", "1"]


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def csv_rows(path, n):
    with open(path, encoding="utf-8", newline="") as f:
        return [r for _, r in zip(range(n), csv.DictReader(f))]


def write_csv(path, rows, fields):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture(scope="module")
def ag(shared_data):
    d = shared_data / "text-classification" / "ag_news"
    if not (d / "train.csv").is_file():
        pytest.fail(f"AG News not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    return csv_rows(d / "train.csv", 64), csv_rows(d / "test.csv", 32)


def test_text_classification_lora_predict_and_export(tmp_path, ag, monkeypatch):
    train, val = ag
    tr = write_csv(tmp_path / "train.csv", train, ["text", "label"])
    va = write_csv(tmp_path / "val.csv", val, ["text", "label"])
    out = tmp_path / "run"
    assert main(["run", "--task", "text-classification", "--method", "lora", "--train-file", str(tr),
                 "--validation-file", str(va), "--output-dir", str(out), "--lr", "5e-3", *TINY]) == 0
    rows = read_tsv(out / "predictions.tsv")
    names = sorted({r["label"] for r in train})
    # the evaluated rows reversed, as JSONL without the label column; the training files gone
    inp = tmp_path / "in.jsonl"
    inp.write_text("".join(json.dumps({"text": r["text"]}) + "\n" for r in val[::-1]), encoding="utf-8")
    tr.unlink()
    va.unlink()
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inp), "--output", str(pred), "--batch-size", "5"]) == 0
    got = jsonl(pred)[::-1]
    assert [g["label"] for g in got] == [r["prediction"] for r in rows]
    assert len({g["label"] for g in got}) > 1  # not one constant answer
    for g in got:
        assert list(g["probabilities"]) == names and names[g["label_id"]] == g["label"]
        assert sum(g["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert g["probabilities"][g["label"]] == max(g["probabilities"].values())
    # --text: the same text, the same probabilities
    monkeypatch.chdir(tmp_path)
    assert main(["predict", str(out), "--text", val[0]["text"], "--output", "t.jsonl"]) == 0
    (one,) = jsonl(tmp_path / "t.jsonl")
    assert one["probabilities"] == pytest.approx(got[0]["probabilities"], abs=1e-5)
    # export --merge: a plain model whose config names the string labels
    exp = tmp_path / "exp"
    assert main(["export", str(out), "--output", str(exp), "--merge"]) == 0
    cfg = json.loads((exp / "config.json").read_text())
    assert cfg["id2label"] == {str(i): n for i, n in enumerate(names)}
    assert json.loads((exp / "tunelab_export.json").read_text())["kind"] == "merged"
