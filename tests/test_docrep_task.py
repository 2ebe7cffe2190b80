"""The docrep task family end to end through `tunelab run` on real BBC articles (40 documents, 32-token
chunks): metric keys, the recorded metrics against sklearn on the saved predictions, a stratified split
in run.json, labels that never reach training, a baseline on the same split, a corpus nobody gave us,
bad input as one line, and the docrep-quick preset's grid."""

import csv
import json
import os
import random
from collections import Counter

import pytest
import torch

from tunelab.cli import main

torch.set_num_threads(1)

METRICS = {"macro_f1", "accuracy", "knn_accuracy", "nmi"}
TINY = ["--docrep-max-docs", "40", "--docrep-chunk-length", "32", "--max-train-samples", "16", "--batch-size", "8",
        "--epochs", "1", "--threads", "1", "--seed", "0"]


def run(capsys, *args):
    rc = main(["run", *args])
    err = capsys.readouterr().err
    return rc, err


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def check_against_sklearn(rec, rows):
    """The recorded metrics, recomputed from predictions.tsv with sklearn (an independent computation)."""
    from sklearn.metrics import accuracy_score, f1_score, normalized_mutual_info_score

    y = [int(r["label"]) for r in rows]
    assert rec["metrics"]["macro_f1"] == pytest.approx(f1_score(y, [int(r["prediction"]) for r in rows],
                                                                average="macro"), abs=1e-12)
    assert rec["metrics"]["accuracy"] == pytest.approx(accuracy_score(y, [int(r["prediction"]) for r in rows]))
    assert rec["metrics"]["knn_accuracy"] == pytest.approx(accuracy_score(y, [int(r["knn_prediction"]) for r in rows]))
    assert rec["metrics"]["nmi"] == pytest.approx(normalized_mutual_info_score(y, [int(r["cluster"]) for r in rows]))


@pytest.mark.parametrize("method", ["lora", "full", "selective"])
def test_run_end_to_end_metrics_match_sklearn_and_split_is_stratified(tmp_path, capsys, bbc_dir, method):
    out = tmp_path / method
    extra = ["--layers", "top:1"] if method == "selective" else []
    rc, err = run(capsys, "--task", "bbc-docrep", "--method", method, "--data-dir", bbc_dir, "--output-dir", str(out),
                  *TINY, *extra)
    assert rc == 0, err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["main_metric"] == "macro_f1" and set(rec["metrics"]) == METRICS
    assert rec["head"]["type"] == "feature-extraction" and rec["params"]["head"] == 0
    assert rec["time"]["steps"] == 2 and rec["time"]["samples_seen"] == 16  # 16 documents, 8 per batch
    assert rec["docrep"]["pairing"]["two_chunk_pairs"] == 16  # every article is longer than one 32-token chunk
    rows = read_tsv(out / "predictions.tsv")
    check_against_sklearn(rec, rows)

    # the split: the 40-document subset keeps BBC's category shares, the test split 20 % of each category
    split = rec["data_notes"]["train"]["split"]
    assert (split["seed"], split["test_fraction"]) == (0, 0.2) == (rec["config"]["docrep_split_seed"],
                                                                   rec["config"]["docrep_test_fraction"])
    corpus = {c: len([f for f in os.listdir(os.path.join(bbc_dir, c)) if f.endswith(".txt")])
              for c in sorted(os.listdir(bbc_dir)) if os.path.isdir(os.path.join(bbc_dir, c))}
    per = split["per_category_train_test"]
    assert sum(a + b for a, b in per.values()) == 40 and set(per) == set(corpus)
    for c, (n_train, n_test) in per.items():
        assert abs((n_train + n_test) - 40 * corpus[c] / sum(corpus.values())) <= 1, c
        assert abs(n_test - 0.2 * (n_train + n_test)) <= 1, c
    # the test documents: the recorded corpus indices, each with its category folder as the reference
    assert [int(r["line"]) - 1 for r in rows] == split["test_indices"]
    assert Counter(r["source"].split("/")[0] for r in rows) == Counter({c: n for c, (_, n) in per.items()})
    assert all(r["category"] == r["source"].split("/")[0] for r in rows)


def test_labels_never_reach_training(tmp_path, capsys, bbc_dir, monkeypatch):
    """The same run with every document's label shuffled (after the split): bit-identical trained weights,
    while the label-using evaluation changes."""
    from safetensors.torch import load_file

    from tunelab.tasks.docrep.task import DocrepTask

    outs = {}
    for shuffle in (False, True):
        if shuffle:
            original = DocrepTask.corpus

            def shuffled(self, data_dir):
                examples, tr, te, files, notes = original(self, data_dir)
                if not getattr(self, "_shuffled", False):
                    labels = [e.label for e in examples]
                    random.Random(1).shuffle(labels)
                    for e, label in zip(examples, labels):
                        e.label = label
                    self._shuffled = True
                return examples, tr, te, files, notes

            monkeypatch.setattr(DocrepTask, "corpus", shuffled)
        out = tmp_path / f"shuffle-{shuffle}"
        rc, err = run(capsys, "--task", "bbc-docrep", "--method", "full", "--data-dir", bbc_dir,
                      "--output-dir", str(out), *TINY, "--docrep-max-docs", "25")  # 20 train, 5 test documents
        assert rc == 0, err
        outs[shuffle] = out
    a, b = (load_file(str(outs[s] / "model.safetensors")) for s in (False, True))
    base = load_file(os.path.join(json.loads((outs[False] / "run.json").read_text())["model_source"],
                                  "model.safetensors"))
    name = next(k for k in a if k.endswith("encoder.layer.5.attention.self.query.weight"))
    assert not torch.equal(a[name], base[next(k for k in base if k.endswith(name.split("encoder.", 1)[1]))])  # trained
    assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a)
    refs = [[r["category"] for r in read_tsv(outs[s] / "predictions.tsv")] for s in (False, True)]
    assert refs[0] != refs[1]  # the evaluation did see the shuffled labels


def test_tfidf_baseline_same_split_same_classifier(tmp_path, capsys, bbc_dir):
    """A baseline run trains nothing and scores exactly what TF-IDF + the same logistic regression give on
    the recorded split (recomputed here from the files)."""
    import numpy as np
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    out = tmp_path / "tfidf"
    rc, err = run(capsys, "--task", "bbc-docrep", "--docrep-baseline", "tfidf", "--data-dir", bbc_dir,
                  "--output-dir", str(out), *TINY)
    assert rc == 0, err
    rec = json.loads((out / "run.json").read_text())
    assert rec["params"]["trainable"] == 0 and rec["time"]["steps"] == 0 and set(rec["metrics"]) == METRICS
    rows = read_tsv(out / "predictions.tsv")
    check_against_sklearn(rec, rows)
    # independent: list the corpus, rebuild the split from run.json, fit TF-IDF + LR on the train files
    files = [f"{c}/{f}" for c in sorted(os.listdir(bbc_dir)) if os.path.isdir(os.path.join(bbc_dir, c))
             for f in sorted(os.listdir(os.path.join(bbc_dir, c))) if f.endswith(".txt")]
    split = rec["data_notes"]["train"]["split"]
    test_idx = split["test_indices"]
    sources = [r["source"] for r in rows]
    assert sources == [files[i] for i in test_idx]
    train_n = sum(a for a, _ in split["per_category_train_test"].values())
    assert rec["docrep"]["classifier_train_docs"] == train_n == 32

    def text(rel):  # UTF-8; BBC's one Latin-1 file (sport/199.txt) as Latin-1
        with open(os.path.join(bbc_dir, rel), "rb") as f:
            raw = f.read()
        try:
            return raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            return raw.decode("latin-1").strip()

    # the documented subset: sklearn train_test_split(train_size=40, stratify=labels, random_state=split seed)
    labels = [f.split("/")[0] for f in files]
    keep, _ = train_test_split(np.arange(len(files)), train_size=40, stratify=labels, random_state=0, shuffle=True)
    assert set(test_idx) <= set(keep.tolist())
    train_idx = sorted(int(i) for i in keep if i not in set(test_idx))
    vec = TfidfVectorizer(sublinear_tf=True, min_df=2)
    xtr = vec.fit_transform([text(files[i]) for i in train_idx])
    xte = vec.transform([text(files[i]) for i in test_idx])
    scaler = StandardScaler(with_mean=False).fit(xtr)
    cats = sorted(set(labels))
    clf = LogisticRegression(C=1.0, max_iter=5000, random_state=0).fit(scaler.transform(xtr),
                                                                       [cats.index(labels[i]) for i in train_idx])
    assert clf.predict(scaler.transform(xte)).tolist() == [int(r["prediction"]) for r in rows]
    assert np.all([r["category"] == labels[i] for r, i in zip(rows, test_idx)])


def _sst2_corpus(root, shared_data, per_class=12):
    """A folder-per-category corpus nobody gave us: SST-2 train sentences as negative/ and positive/ files."""
    rows = read_tsv(shared_data / "glue" / "SST-2" / "train.tsv")
    got = {"0": 0, "1": 0}
    for r in rows:
        lab = r["label"]
        if got[lab] < per_class and len(r["sentence"].split()) > 12:
            d = root / {"0": "negative", "1": "positive"}[lab]
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{got[lab]:03d}.txt").write_text(r["sentence"], encoding="utf-8")
            got[lab] += 1
    return root


def test_generic_folder_corpus_runs_unchanged(tmp_path, capsys, shared_data):
    corpus = _sst2_corpus(tmp_path / "sst2-folders", shared_data)
    out = tmp_path / "run"
    rc, err = run(capsys, "--task", "docrep", "--method", "lora", "--data-dir", str(corpus), "--output-dir", str(out),
                  "--docrep-chunk-length", "16", "--batch-size", "8", "--epochs", "1", "--threads", "1",
                  "--docrep-test-fraction", "0.25")
    assert rc == 0, err
    rec = json.loads((out / "run.json").read_text())
    assert rec["data_sizes"] == {"train": 18, "test": 6}
    assert rec["data_notes"]["train"]["split"]["per_category_train_test"] == {"negative": [9, 3], "positive": [9, 3]}
    check_against_sklearn(rec, read_tsv(out / "predictions.tsv"))

    # the same documents as one CSV with its own column names, in a folder of its own
    table = tmp_path / "sst2-table"
    table.mkdir()
    with open(table / "sentences.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sentence", "sentiment"])
        for cat in ("negative", "positive"):
            for p in sorted((corpus / cat).iterdir()):
                w.writerow([p.read_text(encoding="utf-8"), cat])
    out2 = tmp_path / "run-csv"
    rc, err = run(capsys, "--task", "docrep", "--method", "lora", "--data-dir", str(table), "--output-dir", str(out2),
                  "--text-column", "sentence", "--label-column", "sentiment", "--docrep-chunk-length", "16",
                  "--batch-size", "8", "--epochs", "1", "--threads", "1", "--docrep-test-fraction", "0.25")
    assert rc == 0, err
    rec2 = json.loads((out2 / "run.json").read_text())
    assert rec2["data_notes"]["train"]["split"] == rec["data_notes"]["train"]["split"]  # same order, same split
    assert rec2["data_notes"]["train"]["corpus"]["text_column"] == "sentence"


def _write(root, files: dict):
    for rel, raw in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(raw)
    return str(root)


OK = {f"{c}/{i}.txt": f"{c} story number {i}".encode() for c in ("a", "b") for i in range(3)}
BAD = {
    "one-document-category": ({**OK, "c/0.txt": b"alone"}, [], "category 'c' has 1 document"),
    "empty-file": ({**OK, "b/9.txt": b"  \n"}, [], "b/9.txt: empty file"),
    "latin1-file": ({**OK, "a/7.txt": "caf\u00e9".encode("latin-1")}, [], "a/7.txt: not valid UTF-8 at byte offset 3"),
    "csv-missing-column": ({"news.csv": b"body,label\nx,a\n"}, [], "news.csv:2: needs columns 'text' and 'label'"),
    "two-tables": ({"a.csv": b"text,label\nx,a\n", "b.jsonl": b""}, [], "exactly one .csv / .jsonl file; found 2"),
    "baseline-with-lora": (OK, ["--method", "lora", "--docrep-baseline", "tfidf"],
                           "--docrep-baseline tfidf trains nothing: run it with --method full"),
    "columns-on-folder": (OK, ["--text-column", "body"], "--text-column: "),
    "unknown-baseline": (OK, ["--docrep-baseline", "bm25"], "--docrep-baseline bm25: must be one of tfidf"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line(tmp_path, capsys, case):
    files, extra, expected = BAD[case]
    data = _write(tmp_path / "data", files)
    rc, err = run(capsys, "--task", "docrep", "--data-dir", data, "--output-dir", str(tmp_path / "out"), *extra)
    assert rc == 2 and len(err.strip().splitlines()) == 1 and expected in err, err
    assert not (tmp_path / "out" / "run.json").exists()


def test_docrep_quick_preset_expands_to_baselines_and_methods(tmp_path):
    from tunelab.compare.config import load_compare_config
    from tunelab.compare.grid import expand

    cc = load_compare_config(preset="docrep-quick")
    cells = expand(cc, str(tmp_path))
    by_label = {c.label: c for c in cells}
    assert list(by_label)[:2] == ["full", "lora"]  # full first: the report's reference
    baselines = {label: c.config.docrep_baseline for label, c in by_label.items() if c.config.docrep_baseline}
    assert baselines == {b: b for b in ("tfidf", "doc2vec", "encoder-trunc-128", "encoder-trunc-512", "encoder-chunks")}
    assert all(c.method == "full" for c in cells if c.config.docrep_baseline)
    assert len({(c.config.docrep_max_docs, c.config.docrep_split_seed, c.config.docrep_test_fraction,
                 c.config.docrep_chunk_length) for c in cells}) == 1  # one split, one chunk length for every row


def test_hub_dataset_is_read_through_dataset_option(monkeypatch, tmp_path):
    """--dataset / --dataset-config (the same options as asr) reach datasets.load_dataset; every hub
    split is pooled, read through the named columns, and re-split by the usual stratified split."""
    import datasets

    from tunelab.resolve import build_config
    from tunelab.errors import UserError
    from tunelab.tasks import get_task

    texts = {c: [f"{c} story number {i} about {c}" for i in range(10)] for c in ("arts", "sport")}
    rows = [(t, c) for c in texts for t in texts[c]]
    dd = datasets.DatasetDict({
        "train": datasets.Dataset.from_dict({"body": [t for t, _ in rows[::2]], "topic": [c for _, c in rows[::2]]}),
        "test": datasets.Dataset.from_dict({"body": [t for t, _ in rows[1::2]], "topic": [c for _, c in rows[1::2]]})})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda name, config=None: calls.append((name, config)) or dd)
    cfg = build_config({"task": "docrep", "dataset": "someone/news", "dataset_config": "v2", "text_column": "body",
                        "label_column": "topic", "docrep_test_fraction": 0.2})
    task = get_task("docrep").configure(cfg)
    task.validate(cfg)
    train, test = task.load("train", None), task.load("test", None)
    assert calls == [("someone/news", "v2")]
    got = sorted((e.texts[0], e.label) for e in train.examples + test.examples)
    assert got == sorted(rows)  # every split pooled, the named columns read
    assert Counter(e.label for e in test.examples) == {"arts": 2, "sport": 2}  # re-split, stratified
    with pytest.raises(UserError, match="--dataset: give either it or --data-dir, not both"):
        task.validate(build_config({"task": "docrep", "dataset": "someone/news", "data_dir": str(tmp_path)}))
