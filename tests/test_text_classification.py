"""text-classification on the user's own data: AG News as CSV, JSONL and a save_to_disk folder (ClassLabel)
give the same numbers; metrics equal scikit-learn's / scipy's recomputed from predictions.tsv; pairs,
regression and multi-label; bad input is one line with exit 2."""

import csv
import json

import pytest

from tunelab.cli import main

TINY = ["--model", "minilm", "--max-seq-length", "32", "--epochs", "1", "--batch-size", "16", "--seed", "0"]


def run(capsys, *args):
    rc = main(["run", "--task", "text-classification", *args])
    return rc, capsys.readouterr().err


def read_rows(path, n):
    with open(path, encoding="utf-8", newline="") as f:
        return [r for _, r in zip(range(n), csv.DictReader(f))]


def write_csv(path, rows):
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return str(path)


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


@pytest.fixture(scope="module")
def ag(shared_data):
    d = shared_data / "text-classification" / "ag_news"
    if not (d / "train.csv").is_file():
        pytest.fail(f"AG News not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    return read_rows(d / "train.csv", 64), read_rows(d / "test.csv", 32)


def test_csv_jsonl_and_saved_classlabel_give_the_same_numbers(tmp_path, capsys, ag):
    import datasets
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    train, test = ag
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    files = {"csv": (write_csv(csv_dir / "train.csv", train), write_csv(csv_dir / "test.csv", test))}
    for name, rows in (("train", train), ("test", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    files["jsonl"] = (str(tmp_path / "train.jsonl"), str(tmp_path / "test.jsonl"))
    names = sorted({r["label"] for r in train})
    feats = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    datasets.DatasetDict({split: datasets.Dataset.from_list(
        [{"text": r["text"], "label": names.index(r["label"])} for r in rows], features=feats)
        for split, rows in (("train", train), ("validation", test))}).save_to_disk(str(tmp_path / "saved"))
    recs, preds = {}, {}
    for kind, data in (*files.items(), ("saved", ("--dataset", str(tmp_path / "saved")))):
        args = ["--train-file", data[0], "--validation-file", data[1]] if kind != "saved" else list(data)
        out = tmp_path / f"out-{kind}"
        rc, err = run(capsys, *args, "--method", "lora", "--output-dir", str(out), *TINY)
        assert rc == 0, err
        recs[kind] = json.loads((out / "run.json").read_text())
        preds[kind] = read_tsv(out / "predictions.tsv")
    rec, rows = recs["csv"], preds["csv"]
    assert recs["jsonl"]["metrics"] == rec["metrics"] == recs["saved"]["metrics"]
    assert [r["prediction"] for r in preds["saved"]] == [r["prediction"] for r in rows]
    assert set(rec["metrics"]) == {"accuracy", "macro_f1", "mcc"} and rec["main_metric"] == "accuracy"
    # predictions.tsv names the labels, in the order of test.csv, with its line numbers
    assert [r["label"] for r in rows] == [r["label"] for r in test]
    assert {r["prediction"] for r in rows} <= set(names)
    assert [int(r["line"]) for r in rows][:1] == [2]
    y, p = [r["label"] for r in rows], [r["prediction"] for r in rows]
    assert rec["metrics"]["accuracy"] == pytest.approx(accuracy_score(y, p), abs=1e-12)
    assert rec["metrics"]["macro_f1"] == pytest.approx(f1_score(y, p, average="macro"), abs=1e-12)
    assert rec["metrics"]["mcc"] == pytest.approx(matthews_corrcoef(y, p), abs=1e-12)
    cfg = json.loads((tmp_path / "out-csv" / "config.json").read_text())  # beside the LoRA adapter
    assert cfg["id2label"] == {str(i): n for i, n in enumerate(names)} and cfg["label2id"]["World"] == names.index("World")
    assert rec["text_classification"]["id2label"] == cfg["id2label"]
    from tunelab.tasks.base import sha256_file

    assert rec["data"] == {str(csv_dir / "train.csv"): sha256_file(files["csv"][0]),
                           str(csv_dir / "test.csv"): sha256_file(files["csv"][1])}


def test_pairs_regression_test_split_and_held_out_validation(tmp_path, capsys, glue_data_dir):
    """STS-B pairs with float scores -> regression (pearson/spearman = scipy's); no validation file: a
    seeded held-out share of train; --test-file evaluated alongside as test_*."""
    from scipy.stats import pearsonr, spearmanr

    rows = []
    with open(f"{glue_data_dir}/STS-B/train.tsv", encoding="utf-8") as f:
        header = f.readline().rstrip("\n").split("\t")
        for line, _ in zip(f, range(60)):
            c = dict(zip(header, line.rstrip("\n").split("\t")))
            rows.append({"sentence1": c["sentence1"], "sentence2": c["sentence2"], "score": float(c["score"])})
    tr = tmp_path / "train.jsonl"
    tr.write_text("".join(json.dumps(r) + "\n" for r in rows[:40]))
    te = write_csv(tmp_path / "test.csv", rows[40:])
    out = tmp_path / "out"
    rc, err = run(capsys, "--train-file", str(tr), "--test-file", te, "--eval-fraction", "0.2", "--method", "full",
                  "--output-dir", str(out), *TINY)
    assert rc == 0, err
    assert "no validation data: 8 of 40 train rows held out (seed 0, not stratified)" in err
    rec = json.loads((out / "run.json").read_text())
    assert rec["head"]["type"] == "regression" and rec["data_sizes"] == {"train": 32, "validation": 8, "test": 20}
    assert rec["text_classification"]["columns"] == {"text": "sentence1", "text_pair": "sentence2", "label": "score"}
    assert rec["data_notes"]["validation"]["held_out"]["seed"] == 0
    p = read_tsv(out / "predictions.tsv")
    for split, prefix in (("validation", ""), ("test", "test_")):
        y = [float(r["label"]) for r in p if r["split"] == split]
        yh = [float(r["prediction"]) for r in p if r["split"] == split]
        assert rec["metrics"][prefix + "pearson"] == pytest.approx(pearsonr(yh, y)[0], abs=1e-5)
        assert rec["metrics"][prefix + "spearman"] == pytest.approx(spearmanr(yh, y)[0], abs=1e-5)
    assert [r["label"] for r in p if r["split"] == "test"] == [f"{r['score']:.6g}" for r in rows[40:]]


def test_multi_label_lists_train_with_bce_and_sklearn_f1(tmp_path, capsys, ag):
    from sklearn.metrics import f1_score
    from sklearn.preprocessing import MultiLabelBinarizer

    train, test = ag
    topic = {"World": ["world"], "Sports": ["sports"], "Business": ["business", "economy"],
             "Sci/Tech": ["science", "technology"]}
    for name, rows in (("train", train), ("val", test)):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps({"text": r["text"], "labels": topic[r["label"]]}) + "\n"
                                                        for r in rows))
    out = tmp_path / "out"
    rc, err = run(capsys, "--train-file", str(tmp_path / "train.jsonl"), "--validation-file", str(tmp_path / "val.jsonl"),
                  "--method", "full", "--output-dir", str(out), *TINY)
    assert rc == 0, err
    rec = json.loads((out / "run.json").read_text())
    assert rec["head"]["type"] == "multi-label" and rec["main_metric"] == "micro_f1"
    names = sorted({t for v in topic.values() for t in v})
    assert list(rec["text_classification"]["id2label"].values()) == names
    p = read_tsv(out / "predictions.tsv")
    mlb = MultiLabelBinarizer(classes=names)
    y = mlb.fit_transform([r["label"].split(",") for r in p])
    yh = mlb.transform([[x for x in r["prediction"].split(",") if x] for r in p])
    assert [r["label"].split(",") for r in p] == [sorted(topic[r["label"]]) for r in test]
    assert rec["metrics"]["micro_f1"] == pytest.approx(f1_score(y, yh, average="micro", zero_division=0), abs=1e-12)
    assert rec["metrics"]["macro_f1"] == pytest.approx(f1_score(y, yh, average="macro", zero_division=0), abs=1e-12)


def _bad(tmp_path):
    good = "text,label\nfirst text,a\nsecond text,b\nthird,a\nfourth,b\n"
    return {
        "unseen-label": ({"t.csv": good, "v.csv": "text,label\nok,a\nnew one,c\n"}, "v.csv:3: label 'c' in column "
                         "'label' does not occur in the train split (labels: a, b)"),
        "empty-text": ({"t.csv": good, "v.csv": "text,label\nok,a\n  ,b\n"}, "v.csv:3: empty text in column 'text'"),
        "empty-label": ({"t.csv": "text,label\nx,a\ny,\nz,b\n", "v.csv": good}, "t.csv:3: empty label in column 'label'"),
        "wrong-fields": ({"t.csv": "text,label\nx,a\ny,b,c\n", "v.csv": good}, "t.csv:3: expected 2 fields (as the "
                         "header), found 3"),
        "missing-column": ({"t.csv": good, "v.csv": good}, "t.csv: no column 'topic' (--label-column); columns: text, "
                           "label", "--label-column", "topic"),
        "no-text-column": ({"t.csv": "body,label\nx,a\n", "v.csv": good}, "no text column found"),
        "extension": ({"t.xlsx": good, "v.csv": good}, "t.xlsx: unknown file extension '.xlsx'"),
        "one-class": ({"t.csv": "text,label\nx,a\ny,a\n", "v.csv": "text,label\nx,a\n"}, "has one class ('a')"),
    }


@pytest.mark.parametrize("case", ["unseen-label", "empty-text", "empty-label", "wrong-fields", "missing-column",
                                  "no-text-column", "extension", "one-class"])
def test_bad_input_is_one_line(tmp_path, capsys, case):
    files, expected, *extra = _bad(tmp_path)[case]
    paths = []
    for name, text in files.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    rc, err = run(capsys, "--train-file", paths[0], "--validation-file", paths[1], "--output-dir",
                  str(tmp_path / "out"), *extra)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out").exists()


def test_dataset_not_loadable_offline_is_one_line(tmp_path, capsys, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    rc, err = run(capsys, "--dataset", "someone/my-topics", "--output-dir", str(tmp_path / "out"))
    assert rc == 2 and len(err.strip().splitlines()) == 1, err
    assert "--dataset someone/my-topics: cannot be loaded offline" in err and "pass a local path" in err


@pytest.mark.slow
def test_ag_news_lora_well_above_majority(tmp_path, capsys, shared_data):
    """The issue's check: AG News CSV (string labels), LoRA on minilm, clearly above the majority class."""
    from collections import Counter

    d = shared_data / "text-classification" / "ag_news"
    out = tmp_path / "out"
    rc, err = run(capsys, "--train-file", str(d / "train.csv"), "--validation-file", str(d / "test.csv"), "--method",
                  "lora", "--model", "minilm", "--max-train-samples", "400", "--max-eval-samples", "200", "--epochs", "1",
                  "--output-dir", str(out))
    assert rc == 0, err
    rec = json.loads((out / "run.json").read_text())
    p = read_tsv(out / "predictions.tsv")
    majority = Counter(r["label"] for r in p).most_common(1)[0][1] / len(p)
    assert rec["metrics"]["accuracy"] > majority + 0.3 and rec["metrics"]["macro_f1"] > 0.5


STUDY = """\
name: user-data
tasks:
  - {name: agnews-mini, task: text-classification, train_file: data/train.csv, validation_file: data/val.jsonl}
methods: [lora]
max_train_samples: 32
max_seq_length: 32
epochs: 1
batch_size: 16
"""


def test_compare_study_with_a_user_task_runs_reports_its_name_and_resumes(tmp_path, capsys, ag):
    import sqlite3

    from tunelab.compare.config import load_compare_config

    train, test = ag
    (tmp_path / "study" / "data").mkdir(parents=True)
    write_csv(tmp_path / "study" / "data" / "train.csv", train)
    (tmp_path / "study" / "data" / "val.jsonl").write_text("".join(json.dumps(r) + "\n" for r in test[:16]))
    study = tmp_path / "study" / "study.yaml"
    study.write_text(STUDY)
    cc = load_compare_config(str(study))  # relative paths resolve against the study file, not the cwd
    assert cc.tasks[0].label == "agnews-mini" and cc.tasks[0].name == "text-classification"
    assert cc.tasks[0].options["train_file"] == str(tmp_path / "study" / "data" / "train.csv")
    out = tmp_path / "out"
    argv = ["compare", str(study), "--output-dir", str(out), "--isolation", "exec"]
    assert main(argv) == 0, capsys.readouterr().err
    capsys.readouterr()
    with sqlite3.connect(out / "results.sqlite") as con:
        rows = con.execute("SELECT task, method, status, run_dir FROM runs").fetchall()
    assert [r[:3] for r in rows] == [("agnews-mini", "lora", "completed")]
    rec = json.loads((out / "runs" / "agnews-mini--lora--minilm--s0" / "run.json").read_text())
    assert rec["task"] == "text-classification" and rec["data_sizes"] == {"train": 32, "validation": 16}
    assert "agnews-mini" in (out / "report.md").read_text()
    mtime = (out / "runs" / "agnews-mini--lora--minilm--s0" / "run.json").stat().st_mtime_ns
    assert main(argv) == 0  # the second time: the finished cell is kept, nothing re-runs
    assert (out / "runs" / "agnews-mini--lora--minilm--s0" / "run.json").stat().st_mtime_ns == mtime
