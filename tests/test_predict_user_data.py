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


def test_token_classification_predict_reproduces_predictions_tsv(tmp_path, shared_data, capsys):
    from seqeval.metrics.sequence_labeling import get_entities

    d = shared_data / "ner" / "conll2003"
    if not (d / "train.txt").is_file():
        pytest.fail(f"CoNLL-2003 not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    out = tmp_path / "run"
    # windows of 32 tokens overlapping by 8: long sentences are cut and merged as in evaluation
    assert main(["run", "--task", "token-classification", "--method", "full", "--model", "minilm",
                 "--train-file", str(d / "train.txt"), "--validation-file", str(d / "valid.txt"),
                 "--output-dir", str(out), "--max-train-samples", "64", "--max-eval-samples", "32", "--epochs", "2",
                 "--lr", "6e-4", "--batch-size", "8", "--max-seq-length", "32", "--doc-stride", "8",
                 "--threads", "1", "--seed", "0"]) == 0
    rows = read_tsv(out / "predictions.tsv")
    sents = [json.loads(r["tokens"]) for r in rows]
    want = [json.loads(r["predicted_tags"]) for r in rows]
    assert any(t != "O" for tags in want for t in tags)  # entities to reproduce
    rec = json.loads((out / "run.json").read_text())
    assert rec["token_classification"]["longer_than_a_window"]["validation"] > 0
    # a CoNLL file of the tokens alone (one column) and a JSONL of them: the same tags
    conll = tmp_path / "in.conll"
    conll.write_text("\n\n".join("\n".join(s) for s in sents) + "\n", encoding="utf-8")
    rows_in = tmp_path / "in.jsonl"
    rows_in.write_text("".join(json.dumps({"tokens": s}) + "\n" for s in sents), encoding="utf-8")
    for inp in (conll, rows_in):
        pred = tmp_path / f"{inp.name}.pred.jsonl"
        assert main(["predict", str(out), "--input", str(inp), "--output", str(pred)]) == 0
        got = jsonl(pred)
        assert [g["tokens"] for g in got] == sents
        assert [g["tags"] for g in got] == want
        for g in got:  # entities are seqeval's spans of the tags, end exclusive
            assert [(e["type"], e["start"], e["end"] - 1) for e in g["entities"]] == get_entities(g["tags"])
            for e in g["entities"]:
                assert e["text"] == " ".join(g["tokens"][e["start"]:e["end"]]) and 0 < e["score"] <= 1
    # --text: whitespace-split words (CoNLL tokens have no spaces), the same tags
    k = next(i for i, t in enumerate(want) if any(x != "O" for x in t))
    capsys.readouterr()
    assert main(["predict", str(out), "--text", " ".join(sents[k])]) == 0
    (one,) = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert one["tags"] == want[k] and one["entities"]


def test_text_classification_multi_label(tmp_path, ag, capsys):
    """Multi-label: labels over 0.5 as predictions.tsv has them, per-label probabilities; the run's
    text column missing from --input: one line, exit 2."""
    train, val = ag
    topic = {"World": ["world"], "Sports": ["sports"], "Business": ["business", "economy"],
             "Sci/Tech": ["science", "technology"]}
    for name, rows in (("train", train[:48]), ("val", val[:16])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": r["text"], "labels": topic[r["label"]]})
                                                        + "\n" for r in rows))
    out = tmp_path / "run"
    assert main(["run", "--task", "text-classification", "--method", "full", "--train-file", str(tmp_path / "train.jsonl"),
                 "--validation-file", str(tmp_path / "val.jsonl"), "--output-dir", str(out), "--lr", "1e-3", *TINY]) == 0
    rows = read_tsv(out / "predictions.tsv")
    names = sorted({t for v in topic.values() for t in v})
    inp = write_csv(tmp_path / "in.csv", val[:16], ["text"])  # CSV without labels
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inp), "--output", str(pred)]) == 0
    got = jsonl(pred)
    assert [",".join(g["labels"]) for g in got] == [r["prediction"] for r in rows]
    assert any(g["labels"] for g in got)
    for g in got:
        assert list(g["probabilities"]) == names
        assert g["labels"] == [n for n in names if g["probabilities"][n] > 0.5]
    bad = write_csv(tmp_path / "bad.csv", val[:2], ["label"])
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no column 'text'" in err[0], err


def test_text_classification_pair_regression(tmp_path, glue_data_dir, capsys):
    """Sentence pairs with float scores: the score per input, from a file's two columns or --text
    "FIRST<TAB>SECOND", as predictions.tsv has it."""
    rows = []
    with open(f"{glue_data_dir}/STS-B/train.tsv", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line, _ in zip(f, range(44)):
            c = dict(zip(header, line.rstrip("\n").split("\t")))
            rows.append({"sentence1": c["sentence1"], "sentence2": c["sentence2"], "score": float(c["score"])})
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:32]))
    va = write_csv(tmp_path / "val.csv", rows[32:], ["sentence1", "sentence2", "score"])
    out = tmp_path / "run"
    assert main(["run", "--task", "text-classification", "--method", "full", "--train-file", str(tmp_path / "train.jsonl"),
                 "--validation-file", str(va), "--output-dir", str(out), *TINY]) == 0
    want = [float(r["prediction"]) for r in read_tsv(out / "predictions.tsv")]
    inp = tmp_path / "in.tsv"
    inp.write_text("sentence2\tsentence1\n" + "".join(f"{r['sentence2']}\t{r['sentence1']}\n" for r in rows[32:]))
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(inp)]) == 0
    got = [json.loads(x)["score"] for x in capsys.readouterr().out.splitlines()]
    assert got == pytest.approx(want, rel=1e-5, abs=1e-5)  # predictions.tsv keeps 6 significant digits
    assert main(["predict", str(out), "--text", rows[32]["sentence1"] + "\t" + rows[32]["sentence2"]]) == 0
    (one,) = [json.loads(x)["score"] for x in capsys.readouterr().out.splitlines()]
    assert one == pytest.approx(got[0], abs=1e-5)
