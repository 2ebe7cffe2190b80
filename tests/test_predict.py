"""tunelab predict: a finished run, reloaded from its folder alone (run.json -> base model -> the
method's saved weights), reproduces its predictions.tsv on the same evaluation inputs, for every
family and for full / PEFT / layer-method runs; one JSONL line per input, in input order."""

import csv
import os
import json

import pytest

from conftest import tiny_run_args
from tunelab.cli import main


def read_tsv(path):
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))


def jsonl(path):
    return [json.loads(line) for line in open(path, encoding="utf-8")]


def glue_subset(src, lines, dst, drop_label=None):
    """The source file's header and the given 1-based lines, in that order (a label column dropped)."""
    rows = open(src, encoding="utf-8").read().split("\n")
    out = [rows[0]] + [rows[i - 1] for i in lines]
    if drop_label is not None:
        k = rows[0].lstrip("\ufeff").split("\t").index(drop_label)  # MRPC starts with a BOM
        out = ["\t".join(c for j, c in enumerate(r.split("\t")) if j != k) for r in out]
    dst.write_text("\n".join(out) + "\n", encoding="utf-8")
    return dst


@pytest.mark.parametrize("task, method, extra, folder", [
    ("sst2", "lora", (), "SST-2"),
    ("mrpc", "full", ("--max-train-samples", "32"), "MRPC"),
])
def test_glue_predict_reproduces_predictions_tsv(tmp_path, glue_data_dir, task, method, extra, folder):
    out = tmp_path / "run"
    assert main(tiny_run_args(task, method, glue_data_dir, str(out), "--max-eval-samples", "48", *extra)) == 0
    rows = read_tsv(out / "predictions.tsv")
    # the evaluated lines in a shuffled order, the label column dropped: predict needs neither
    lines = [int(r["line"]) for r in rows][::-1]
    label_col = "Quality" if task == "mrpc" else "label"
    inp = glue_subset(f"{glue_data_dir}/{folder}/dev.tsv", lines, tmp_path / "in.tsv", drop_label=label_col)
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inp), "--output", str(pred), "--batch-size", "7"]) == 0
    got = jsonl(pred)
    assert len(got) == len(lines)
    want = {int(r["line"]): int(r["prediction"]) for r in rows}
    assert [g["label_id"] for g in got] == [want[i] for i in lines]
    names = ["0", "1"]
    for g in got:
        assert list(g["probabilities"]) == names and g["label"] == names[g["label_id"]]
        assert sum(g["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.slow  # one tiny run per method (~4 s of CPU each)
@pytest.mark.parametrize("method, extra", [("prefix", ()), ("prompt", ()), ("selective", ("--layers", "top:2")),
                                           ("alf", ("--alf-interval", "2")),
                                           ("lisa", ()), ("autofreeze", ()), ("badam", ()),
                                           ("alf", ("--adapter", "lora", "--alf-interval", "2"))])
def test_every_method_predicts_its_predictions_tsv(tmp_path, glue_data_dir, method, extra):
    out = tmp_path / "run"
    assert main(tiny_run_args("sst2", method, glue_data_dir, str(out), "--max-eval-samples", "32", *extra)) == 0
    rows = read_tsv(out / "predictions.tsv")
    lines = [int(r["line"]) for r in rows]
    inp = glue_subset(f"{glue_data_dir}/SST-2/dev.tsv", lines, tmp_path / "in.tsv")
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inp), "--output", str(pred)]) == 0
    assert [g["label_id"] for g in jsonl(pred)] == [int(r["prediction"]) for r in rows]


def test_glue_regression_and_text_inputs(tmp_path, glue_data_dir, capsys):
    out = tmp_path / "run"
    assert main(tiny_run_args("stsb", "lora", glue_data_dir, str(out), "--max-eval-samples", "24")) == 0
    rows = read_tsv(out / "predictions.tsv")
    lines = [int(r["line"]) for r in rows]
    inp = glue_subset(f"{glue_data_dir}/STS-B/dev.tsv", lines, tmp_path / "in.tsv")  # with its score column
    capsys.readouterr()
    assert main(["predict", str(out), "--input", str(inp)]) == 0  # JSONL on stdout
    got = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [g["score"] for g in got] == pytest.approx([float(r["prediction"]) for r in rows], abs=1e-4)
    # --text: a sentence pair as FIRST<TAB>SECOND gives the same score as the file's row
    src = open(f"{glue_data_dir}/STS-B/dev.tsv", encoding="utf-8").read().split("\n")
    header = src[0].split("\t")
    cols = src[lines[0] - 1].split("\t")
    pair = cols[header.index("sentence1")] + "\t" + cols[header.index("sentence2")]
    assert main(["predict", str(out), "--text", pair, "--text", pair]) == 0
    twice = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert len(twice) == 2 and twice[0]["score"] == pytest.approx(got[0]["score"], abs=1e-4)


def test_predict_errors_one_line(tmp_path, glue_data_dir, capsys):
    out = tmp_path / "run"
    assert main(tiny_run_args("sst2", "full", glue_data_dir, str(out), "--max-train-samples", "16",
                              "--max-eval-samples", "16")) == 0
    bad = tmp_path / "bad.tsv"
    bad.write_text("words\tlabel\nfine\t1\n")
    for args, needle in [([str(tmp_path / "nope"), "--text", "x"], "no run.json there"),
                         ([str(out), "--input", str(bad)], "header lacks column(s) ['sentence']"),
                         ([str(out)], "give --input FILE or --text TEXT"),
                         ([str(out), "--input", str(tmp_path / "missing.tsv")], "no such file")]:
        capsys.readouterr()
        assert main(["predict", *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], err


@pytest.mark.slow  # ~25 s of CPU: reading and stemming the 2,000 Inspec documents, windows, two eval splits
def test_keyphrase_predict_reproduces_predictions_tsv(tmp_path, kp_root):
    import shutil

    out = tmp_path / "run"
    assert main(["run", "--task", "inspec", "--method", "lora", "--model", "minilm", "--data-dir", str(kp_root),
                 "--output-dir", str(out), "--max-train-samples", "16", "--max-eval-samples", "8", "--epochs", "1",
                 "--batch-size", "8", "--max-seq-length", "64", "--doc-stride", "16", "--lr", "1e-2", "--seed", "0"]) == 0
    rows = [r for r in read_tsv(out / "predictions.tsv") if r["split"] == "validation"]
    docs = tmp_path / "in" / "docsutf8"  # the dataset layout, without keys/
    docs.mkdir(parents=True)
    for r in rows:
        shutil.copy(kp_root / "Inspec" / "docsutf8" / f"{r['doc_id']}.txt", docs)
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(tmp_path / "in"), "--output", str(pred)]) == 0
    got = {g["id"]: g for g in jsonl(pred)}
    assert list(got) == sorted(r["doc_id"] for r in rows)  # file order
    assert any(json.loads(r["predicted_keys"]) for r in rows)  # phrases to reproduce (lr 1e-2 finds some)
    for r in rows:
        assert got[r["doc_id"]]["keyphrases"] == json.loads(r["predicted_keys"])
        assert got[r["doc_id"]]["scores"] == pytest.approx(json.loads(r["scores"]), abs=2e-4)


def test_image_predict_reproduces_predictions_tsv(tmp_path, shared_data):
    import shutil

    src = shared_data / "images" / "chest-xray-sample"
    out = tmp_path / "run"
    assert main(["run", "--task", "image-folder", "--method", "lora", "--model", "vit-tiny", "--data-dir", str(src),
                 "--output-dir", str(out), "--epochs", "1", "--batch-size", "8", "--eval-fraction", "0.25",
                 "--lr", "1e-2", "--seed", "0"]) == 0
    rows = read_tsv(out / "predictions.tsv")
    inp = tmp_path / "in"  # the evaluated images, in ImageFolder layout
    for r in rows:
        (inp / os.path.dirname(r["source"])).mkdir(parents=True, exist_ok=True)
        shutil.copy(src / r["source"], inp / r["source"])
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inp), "--output", str(pred), "--batch-size", "3"]) == 0
    got = {g["source"]: g for g in jsonl(pred)}
    assert sorted(got) == sorted(r["source"] for r in rows)
    for r in rows:
        g = got[r["source"]]
        assert (g["label_id"], g["label"]) == (int(r["prediction"]), r["prediction_name"])
        assert list(g["probabilities"]) == ["NORMAL", "PNEUMONIA"]


@pytest.mark.slow  # ~80 s of CPU (whisper-tiny: the base model's evaluation on three splits, training, decoding)
def test_asr_predict_reproduces_predictions_tsv(tmp_path, shared_data):
    import shutil

    speech = shared_data / "speech"
    out = tmp_path / "run"
    assert main(["run", "--task", "speech-accents", "--method", "lora", "--model", "whisper-tiny", "--data-dir",
                 str(speech), "--output-dir", str(out), "--max-train-samples", "4", "--max-eval-samples", "3",
                 "--epochs", "1", "--batch-size", "4", "--eval-batch-size", "12", "--lr", "1e-2"]) == 0
    rows = [r for r in read_tsv(out / "predictions.tsv") if r["split"] == "validation"]
    inp = tmp_path / "in"  # a folder of audio files, no metadata.csv
    inp.mkdir()
    for r in rows:
        shutil.copy(speech / "accents" / "validation" / r["file"], inp / r["file"])
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inp), "--output", str(pred)]) == 0
    got = {g["file"]: g["transcript"] for g in jsonl(pred)}
    assert got == {r["file"]: r["hypothesis"] for r in rows}
    assert any(r["hypothesis"] != r["base_hypothesis"] for r in rows)  # the adapter changed what it says


def test_alignment_predict_reproduces_scores_and_generations(tmp_path, tiny_llama_dir, hh_data_dir, alignment_cache):
    import gzip

    out = tmp_path / "run"
    assert main(["run", "--task", "sft", "--method", "lora", "--model", tiny_llama_dir, "--data-dir", hh_data_dir,
                 "--output-dir", str(out), "--max-train-samples", "8", "--max-eval-samples", "6",
                 "--max-prompt-length", "32", "--max-response-length", "8", "--batch-size", "2", "--grad-accum", "2",
                 "--judge", "none", "--lr", "1e-2", "--seed", "0"]) == 0
    rec = json.loads((out / "run.json").read_text())
    rows = read_tsv(out / "predictions.tsv")
    src = next(p for p in rec["data"] if p.endswith(".gz"))
    lines = gzip.open(src, "rt", encoding="utf-8").read().split("\n")
    inp = tmp_path / "pairs.jsonl"
    inp.write_text("".join(lines[int(r["line"]) - 1] + "\n" for r in rows), encoding="utf-8")
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inp), "--output", str(pred)]) == 0
    got = jsonl(pred)
    assert len(got) == len(rows)
    for g, r in zip(got, rows):
        assert g["chosen_score"] == pytest.approx(float(r["chosen_score"]), rel=1e-4, abs=1e-4)
        assert g["rejected_score"] == pytest.approx(float(r["rejected_score"]), rel=1e-4, abs=1e-4)
        assert (g["chosen_tokens"], g["rejected_tokens"]) == (int(r["chosen_tokens"]), int(r["rejected_tokens"]))
    samples = rec["samples"]  # the first held-out prompts, generated by the final model (greedy)
    assert samples and all("model" in s for s in samples)
    assert [g["generation"] for g in got[:len(samples)]] == [s["model"] for s in samples]


@pytest.mark.slow  # ~30 s of CPU: docrep's evaluation fits its classifiers on every train document
def test_docrep_predict_embeds_documents(tmp_path, bbc_dir):
    """docrep's product is the document vector: one per input, the same for a file and for --text of
    its content, and the trained encoder's (not the base model's); with the saved probe's label, that of
    predictions.tsv."""
    import numpy as np

    out = tmp_path / "run"
    assert main(["run", "--task", "bbc-docrep", "--method", "full", "--data-dir", bbc_dir, "--output-dir", str(out),
                 "--docrep-max-docs", "40", "--docrep-chunk-length", "32", "--max-train-samples", "16",
                 "--batch-size", "8", "--epochs", "1", "--lr", "1e-3", "--seed", "0"]) == 0
    sources = [r["source"] for r in read_tsv(out / "predictions.tsv")][:3]
    inp = tmp_path / "in"
    for s in sources:
        (inp / os.path.dirname(s)).mkdir(parents=True, exist_ok=True)
        (inp / s).write_bytes((open(os.path.join(bbc_dir, s), "rb")).read())
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(inp), "--output", str(pred)]) == 0
    got = jsonl(pred)
    assert [g["source"] for g in got] == sorted(sources) and {len(g["embedding"]) for g in got} == {384}
    expected = {r["source"]: r["predicted_category"] for r in read_tsv(out / "predictions.tsv")}
    assert [g["label"] for g in got] == [expected[s] for s in sorted(sources)]
    text = open(os.path.join(bbc_dir, sorted(sources)[0]), encoding="utf-8", errors="replace").read().strip()
    one = tmp_path / "one.jsonl"
    assert main(["predict", str(out), "--text", text, "--output", str(one)]) == 0
    assert np.allclose(jsonl(one)[0]["embedding"], got[0]["embedding"], atol=1e-5)
    from tunelab.predict import load_run

    _, trained, _, _, _ = load_run(str(out))
    from tunelab.tasks import get_task

    base, *_ = get_task("bbc-docrep").load_model("minilm")
    assert any(not torch_equal(a, b) for a, b in zip(trained.state_dict().values(), base.state_dict().values()))


def torch_equal(a, b):
    import torch

    return a.shape == b.shape and torch.equal(a, b)


def _short_bbc(bbc_dir, dst, per_category=6, chars=300):
    """A small real corpus: the first ``per_category`` BBC articles of each category (sorted file names),
    each cut to its first ``chars`` characters (whole words), as DIR/<category>/<file>.txt."""
    for cat in sorted(os.listdir(bbc_dir)):
        if not os.path.isdir(os.path.join(bbc_dir, cat)):
            continue
        (dst / cat).mkdir(parents=True)
        for name in sorted(f for f in os.listdir(os.path.join(bbc_dir, cat)) if f.endswith(".txt"))[:per_category]:
            text = open(os.path.join(bbc_dir, cat, name), encoding="utf-8", errors="replace").read()
            (dst / cat / name).write_text(text[:chars].rsplit(" ", 1)[0].strip(), encoding="utf-8")
    return dst


def test_docrep_predict_labels_reproduce_predictions_tsv(tmp_path, bbc_dir):
    """The run saves the logistic regression behind predictions.tsv (probe.safetensors, no pickle);
    predict on the run's test documents gives each its vector, the probe's label -- exactly
    predictions.tsv's predicted_category -- and probabilities (one per category, summing to 1, the
    largest at the label)."""
    corpus = _short_bbc(bbc_dir, tmp_path / "bbc-short")
    out = tmp_path / "run"
    assert main(["run", "--task", "docrep", "--method", "lora", "--data-dir", str(corpus), "--output-dir", str(out),
                 "--docrep-chunk-length", "32", "--batch-size", "8", "--max-train-samples", "8", "--epochs", "1",
                 "--threads", "1", "--seed", "0"]) == 0
    assert (out / "probe.safetensors").is_file()
    rows = read_tsv(out / "predictions.tsv")
    pred = tmp_path / "pred.jsonl"
    assert main(["predict", str(out), "--input", str(corpus), "--output", str(pred)]) == 0
    got = {g["source"]: g for g in jsonl(pred)}
    assert len(got) == 30 and {r["source"] for r in rows} <= set(got)
    categories = sorted(os.listdir(corpus))
    for r in rows:
        g = got[r["source"]]
        assert g["label"] == r["predicted_category"], r["source"]
        assert set(g["probabilities"]) == set(categories) and len(g["embedding"]) == 384
        assert abs(sum(g["probabilities"].values()) - 1) < 1e-6  # float32 vectors: float32 softmax
        assert max(g["probabilities"], key=g["probabilities"].get) == g["label"]


@pytest.mark.parametrize("n_classes, sparse", [(5, False), (2, False), (3, True)])
def test_docrep_probe_file_is_the_fitted_classifier(tmp_path, n_classes, sparse):
    """save_probe -> load_probe: fresh scikit-learn objects with the saved attributes predict and give
    probabilities exactly as the fitted pipeline (multinomial, binary, sparse TF-IDF-like input)."""
    import numpy as np
    import scipy.sparse as sp

    from tunelab.tasks.docrep.evaluate import fit_probe, load_probe, save_probe

    rng = np.random.default_rng(0)
    y = np.arange(60) % n_classes
    x = (rng.normal(size=(60, 12)) + y[:, None] * 0.3).astype(np.float32)
    test = rng.normal(size=(25, 12)).astype(np.float32)
    if sparse:
        x, test = sp.csr_matrix(np.abs(x) * (x > 0.5)), sp.csr_matrix(np.abs(test) * (test > 0.5))
    clf = fit_probe(x, y, seed=0)
    names = [f"class-{i}" for i in range(n_classes)]
    save_probe(str(tmp_path / "probe.safetensors"), clf, names)
    loaded, got_names = load_probe(str(tmp_path / "probe.safetensors"))
    assert got_names == names
    assert np.array_equal(loaded.predict(test), clf.predict(test))
    assert np.array_equal(loaded.predict_proba(test), clf.predict_proba(test))
    assert not np.array_equal(clf.predict_proba(test)[0], np.full(n_classes, 1 / n_classes))
