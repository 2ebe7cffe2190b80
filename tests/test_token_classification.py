"""The token-classification family (issue 22): CoNLL and JSON-lines readers against the published counts
and each other, tag schemes to IOB2, bad input as one line (exit 2), and tiny real runs on CoNLL-2003
whose metrics equal seqeval's recomputed from predictions.tsv, the same for the CoNLL and JSONL forms."""

import json
from collections import Counter
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.errors import UserError
from tunelab.tasks.tokencls.data import Sentence, read_conll, read_json_file, to_iob2
from tunelab.tasks.tokencls.task import read_predictions


@pytest.fixture(scope="session")
def conll(shared_data) -> Path:
    d = shared_data / "ner" / "conll2003"
    if not (d / "train.txt").is_file():
        pytest.fail(f"CoNLL-2003 not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    return d


def tiny_args(train, valid, out, *extra, test=None):
    args = ["run", "--task", "token-classification", "--method", "full", "--model", "minilm",
            "--train-file", str(train), "--validation-file", str(valid), "--output-dir", str(out),
            "--max-train-samples", "96", "--max-eval-samples", "40", "--epochs", "2", "--lr", "6e-4",
            "--batch-size", "8", "--max-seq-length", "32", "--doc-stride", "8", "--threads", "1", "--seed", "0"]
    if test:
        args += ["--test-file", str(test)]
    return args + list(extra)


# --- readers ---

def test_conll_and_jsonl_read_the_same_sentences_with_the_published_counts(conll):
    labels = json.loads((conll / "labels.json").read_text())
    for txt, jsonl, (n_sent, n_tok, ents) in (
            ("train.txt", "train.jsonl", (14041, 203621, {"PER": 6600, "LOC": 7140, "ORG": 6321, "MISC": 3438})),
            ("valid.txt", "validation.jsonl", (3250, 51362, {"PER": 1842, "LOC": 1837, "ORG": 1341, "MISC": 922}))):
        a = read_conll(conll / txt)
        b, info = read_json_file(conll / jsonl)  # integer tags named by the labels.json beside the file
        assert info["tokens_column"] == "tokens" and info["tags_column"] == "ner_tags"
        assert (len(a), sum(len(s.tokens) for s in a)) == (n_sent, n_tok)  # SOURCE.md's verified counts
        assert [(s.tokens, s.tags) for s in a] == [(s.tokens, s.tags) for s in b]
        assert Counter(t[2:] for s in a for t in s.tags if t.startswith("B-")) == ents
        # independently: the JSONL's integer ids through labels.json
        rows = [json.loads(line) for line in (conll / jsonl).read_text().splitlines()]
        assert [[labels[i] for i in r["ner_tags"]] for r in rows[:50]] == [s.tags for s in b[:50]]
    first = read_conll(conll / "train.txt")[0]
    assert first.tokens[:3] == ["EU", "rejects", "German"] and first.tags[:3] == ["B-ORG", "O", "B-MISC"]
    assert first.line == 3  # line 1 is -DOCSTART-, line 2 blank


def test_tag_schemes_become_iob2():
    s = [Sentence(["a", "b", "c", "d", "e", "f"], ["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "I-ORG"], 1, "x")]
    info = to_iob2(s, "train")  # IOB1: an entity starts with I- unless it follows one of its type
    assert s[0].tags == ["B-PER", "I-PER", "O", "B-LOC", "B-LOC", "B-ORG"] and info["scheme_read"] == "IOB1"
    assert info["tags_changed_to_iob2"] == 3
    s = [Sentence(list("abcdef"), ["S-PER", "O", "B-ORG", "I-ORG", "E-ORG", "S-LOC"], 1, "x")]
    assert to_iob2(s, "train")["scheme_read"] == "IOBES"
    assert s[0].tags == ["B-PER", "O", "B-ORG", "I-ORG", "I-ORG", "B-LOC"]
    s = [Sentence(list("abcd"), ["U-PER", "B-ORG", "L-ORG", "O"], 1, "x")]
    assert to_iob2(s, "train")["scheme_read"] == "BILOU" and s[0].tags == ["B-PER", "B-ORG", "I-ORG", "O"]
    s = [Sentence(list("ab"), ["B-PER", "I-PER"], 1, "x")]
    assert to_iob2(s, "train") == {"scheme_read": "IOB2", "tags_changed_to_iob2": 0}
    with pytest.raises(UserError, match="unknown tag scheme"):
        to_iob2([Sentence(["a"], ["PER"], 4, "f.conll", conll=True)], "train")
    with pytest.raises(UserError, match="mixes IOBES"):
        to_iob2([Sentence(list("ab"), ["S-PER", "U-LOC"], 1, "x")], "train")


# --- bad input: one line, exit 2, nothing written ---

def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


GOOD = "EU B-ORG\nrejects O\nGerman B-MISC\n\nPeter B-PER\nBlackburn I-PER\n"


@pytest.mark.parametrize("train,valid,needle", [
    ("train.jsonl:" + json.dumps({"id": "0", "tokens": ["a", "b"], "ner_tags": ["O", "B-PER"]}) + "\n"
     + json.dumps({"id": "7", "tokens": ["a", "b", "c"], "ner_tags": ["O", "O"]}) + "\n",
     "valid.conll:" + GOOD, r"train\.jsonl: line 2 \(sentence id 7\): 3 tokens but 2 tags"),
    ("train.conll:EU NNP B-ORG\nrejects O\n", "valid.conll:" + GOOD, r"train\.conll: line 2: 2 columns where line 1 has 3"),
    ("train.conll:EU\n", "valid.conll:" + GOOD, r"train\.conll: line 1: one column"),
    ("train.conll:" + GOOD + "\nParis LOCATION\n", "valid.conll:" + GOOD,
     r"train\.conll: line 8: tag 'LOCATION': unknown tag scheme"),
    ("train.conll:" + GOOD, "valid.conll:" + GOOD + "\nParis B-LOC\n",
     r"valid\.conll: line 8: tag 'B-LOC' in the validation data: entity type 'LOC' never occurs in the train"),
    ("train.jsonl:" + json.dumps({"words": ["a"], "ner": ["O"]}) + "\n", "valid.conll:" + GOOD,
     r"train\.jsonl: no tags column .*the columns are: words, ner"),
    ("train.jsonl:" + json.dumps({"tokens": ["a"], "ner_tags": [1]}) + "\n", "valid.conll:" + GOOD,
     r"train\.jsonl: line 1: integer tags but no label names: give --label-list"),
    ("train.xlsx:tokens,ner_tags\n", "valid.conll:" + GOOD, r"--train-file .*train\.xlsx: unknown file extension"),
], ids=["length", "columns", "one-column", "scheme", "unseen-type", "missing-column", "ints-no-names", "extension"])
def test_bad_input_is_one_line_naming_file_and_line(tmp_path, capsys, train, valid, needle):
    (tname, ttext), (vname, vtext) = train.split(":", 1), valid.split(":", 1)
    out = tmp_path / "run"
    rc = main(tiny_args(_write(tmp_path / tname, ttext), _write(tmp_path / vname, vtext), out))
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert __import__("re").search(needle, err), err
    assert not (out / "run.json").exists()


def test_label_list_names_integer_tags(tmp_path):
    p = _write(tmp_path / "t.jsonl", json.dumps({"tokens": ["Ann", "runs"], "ner_tags": [1, 0]}) + "\n")
    sents, _ = read_json_file(p, ["O", "B-PER", "I-PER"])
    assert sents[0].tags == ["B-PER", "O"]
    with pytest.raises(UserError, match=r"t\.jsonl: line 1: tag id 1 outside the 1 label names"):
        read_json_file(p, ["O"])


# --- real runs ---

def test_conll_run_metrics_equal_seqeval_on_its_predictions(conll, tmp_path, capsys):
    from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score

    out = tmp_path / "conll"
    rc = main(tiny_args(conll / "train.txt", conll / "valid.txt", out, test=conll / "test.txt"))
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["main_metric"] == "f1"
    assert rec["data_sizes"] == {"train": 96, "validation": 40, "test": 40}
    m = rec["metrics"]
    assert m["f1"] > 0.15 and m["test_f1"] > 0.15  # learns something in 24 steps (0.39 / 0.36 measured)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["id2label"] == {"0": "O", "1": "B-LOC", "2": "I-LOC", "3": "B-MISC", "4": "I-MISC", "5": "B-ORG",
                               "6": "I-ORG", "7": "B-PER", "8": "I-PER"}
    assert cfg["label2id"]["B-PER"] == 7
    # --max-seq-length 32: some sentences span several windows, and every word still gets one tag
    assert rec["token_classification"]["longer_than_a_window"]["validation"] > 0
    preds = read_predictions(out / "predictions.tsv")
    assert set(preds) == {"validation", "test"} and len(preds["validation"]) == 40
    for split, prefix in (("validation", ""), ("test", "test_")):
        toks, gold, pred = zip(*preds[split])
        assert all(len(t) == len(g) == len(p) for t, g, p in zip(toks, gold, pred))
        gold, pred = list(gold), list(pred)
        assert m[prefix + "f1"] == pytest.approx(f1_score(gold, pred), abs=1e-12)
        assert m[prefix + "precision"] == pytest.approx(precision_score(gold, pred), abs=1e-12)
        assert m[prefix + "recall"] == pytest.approx(recall_score(gold, pred), abs=1e-12)
        assert m[prefix + "accuracy"] == pytest.approx(accuracy_score(gold, pred), abs=1e-12)
        report = classification_report(gold, pred, output_dict=True, zero_division=0)
        for t in ("LOC", "MISC", "ORG", "PER"):
            got = rec["per_type"][split][t]
            assert (got["precision"], got["recall"], got["f1"], got["support"]) == pytest.approx(
                (report[t]["precision"], report[t]["recall"], report[t]["f1-score"], report[t]["support"]))
            assert m[f"{prefix}{t}_f1"] == pytest.approx(report[t]["f1-score"])
    # the gold tags in predictions.tsv are the file's own (the sentence at its line in valid.txt)
    lines = (conll / "valid.txt").read_text().split("\n")
    with open(out / "predictions.tsv", encoding="utf-8") as f:
        row = f.readlines()[1].rstrip("\n").split("\t")
    n, toks, gold = int(row[2]), json.loads(row[3]), json.loads(row[4])
    assert [ln.split(" ")[0] for ln in lines[n - 1:n - 1 + len(toks)]] == toks
    assert [ln.split(" ")[-1] for ln in lines[n - 1:n - 1 + len(toks)]] == gold


def test_jsonl_form_trains_and_scores_like_the_conll_files(conll, tmp_path, capsys):
    """The same sentences, labels and label ids whichever form: the same losses and metrics (LoRA)."""
    recs = []
    for form, (tr, va) in {"conll": ("train.txt", "valid.txt"), "jsonl": ("train.jsonl", "validation.jsonl")}.items():
        out = tmp_path / form
        args = tiny_args(conll / tr, conll / va, out)
        args[args.index("--max-train-samples") + 1], args[args.index("--epochs") + 1] = "48", "1"
        args[args.index("--max-eval-samples") + 1] = "24"
        args[args.index("--method") + 1] = "lora"
        args[args.index("--lr") + 1] = "2e-3"
        assert main(args) == 0, capsys.readouterr().err
        recs.append(json.loads((out / "run.json").read_text()))
        # adapters only: the base config beside them carries the labels
        assert (out / "adapter_model.safetensors").is_file() and not (out / "model.safetensors").exists()
        assert json.loads((out / "config.json").read_text())["id2label"]["7"] == "B-PER"
    a, b = recs
    assert a["data_sizes"] == b["data_sizes"] == {"train": 48, "validation": 24}
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    assert a["history"][0]["train_loss"] > 0 and a["metrics"]["accuracy"] > 0.5
    assert a["metrics"] == b["metrics"] and a["token_classification"] == b["token_classification"]


def test_no_validation_file_holds_out_a_seeded_share_and_iob1_files_become_iob2(tmp_path):
    from tunelab.resolve import build_config
    from tunelab.tasks import get_task

    sents = [f"w{i} I-PER\nx{i} O\ny{i} I-LOC\nz{i} I-LOC\n" for i in range(20)]  # IOB1: no B- at all
    train = _write(tmp_path / "train.iob", "\n".join(sents))
    cfg = build_config({"task": "token-classification", "train_file": str(train), "eval_fraction": 0.25})
    task = get_task("token-classification").configure(cfg)
    tr, va = task.load("train", None), task.load("validation", None)
    assert task.eval_splits == ("validation",)
    assert (len(tr.examples), len(va.examples)) == (15, 5)
    assert sorted(s.tokens[0] for s in tr.examples + va.examples) == sorted(f"w{i}" for i in range(20))
    assert tr.info["held_out"] == va.info["held_out"] and va.info["held_out"]["fraction"] == 0.25
    again = get_task("token-classification").configure(cfg)
    assert [s.tokens for s in again.load("validation", None).examples] == [s.tokens for s in va.examples]
    assert all(s.tags == ["B-PER", "O", "B-LOC", "I-LOC"] for s in tr.examples)
    assert tr.info["scheme_read"] == "IOB1" and tr.info["tags_changed_to_iob2"] == 30
    assert task.labels == ["O", "B-LOC", "I-LOC", "B-PER", "I-PER"] and task.num_labels == 5


def test_a_save_to_disk_dataset_names_its_integer_tags_by_classlabel(tmp_path):
    import datasets

    from tunelab.resolve import build_config
    from tunelab.tasks import get_task

    names = ["O", "B-PER", "I-PER", "B-ORG", "I-ORG"]
    feats = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                               "ner_tags": datasets.Sequence(datasets.ClassLabel(names=names))})
    rows = {"tokens": [["Ann", "Lee", "joined", "Acme"], ["Bob", "left"]], "ner_tags": [[1, 2, 0, 3], [1, 0]]}
    d = datasets.Dataset.from_dict(rows, features=feats)
    datasets.DatasetDict({"train": d, "validation": d, "test": d}).save_to_disk(str(tmp_path / "ds"))
    cfg = build_config({"task": "token-classification", "dataset": str(tmp_path / "ds")})
    task = get_task("token-classification").configure(cfg)
    tr = task.load("train", None)
    assert task.eval_splits == ("validation", "test")
    assert [s.tags for s in tr.examples] == [["B-PER", "I-PER", "O", "B-ORG"], ["B-PER", "O"]]
    assert task.labels == ["O", "B-ORG", "I-ORG", "B-PER", "I-PER"]
    assert tr.files and all(len(v) == 64 for v in tr.files.values())  # the arrow files' sha256
