"""Data-parallel runs of the families with their own batching (issue 26): `torchrun --nproc_per_node 2`
(gloo on CPU) against a 1-process run with the same global --batch-size. Timings on an idle 2-core
machine: image ~16 s, docrep ~20 s, image --semi-supervised ~17 s; keyphrase ~42 s and asr ~47 s
(slow)."""

import json
from pathlib import Path

import pytest

from tunelab.cli import main

from test_distributed import torchrun


def record(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def one_and_two_processes(args: list, tmp_path: Path) -> tuple:
    """The same `tunelab run` in one process and under torchrun with 2: (folders, records)."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args + ["--output-dir", str(one)]) == 0
    p = torchrun(args + ["--output-dir", str(two)])
    assert p.returncode == 0, p.stderr[-3000:]
    r1, r2 = record(one), record(two)
    assert r2["status"] == "completed" and r2["distributed"]["world_size"] == 2
    return one, two, r1, r2


def test_image_two_processes_match_one(tmp_path, shared_data):
    """fashion-mnist, 40 labelled images, global batch 8, --augment none (augmentation draws come from each
    rank's torch RNG, so with it on the ranks' views differ from the 1-process run's, like GLUE's dropout;
    vit-tiny has no dropout): the same batches, so the same losses up to float summation order (measured:
    2.4803978 / 2.2293878 both runs) and the same predictions (measured: accuracy 0.1 and test 0.0 both).
    Tolerance: 1e-4 on the loss, one image of 40 on the accuracies."""
    args = ["run", "--task", "fashion-mnist", "--model", "vit-tiny", "--method", "full", "--data-dir",
            str(shared_data / "images"), "--labelled-per-class", "4", "--max-eval-samples", "40", "--epochs", "2",
            "--batch-size", "8", "--threads", "1", "--seed", "0", "--augment", "none", "--lr", "1e-3"]
    one, two, r1, r2 = one_and_two_processes(args, tmp_path)
    assert r2["time"]["steps"] == r1["time"]["steps"] == 10
    for a, b in zip(r1["history"], r2["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4
    for k in ("accuracy", "test_accuracy"):
        assert abs(r1["metrics"][k] - r2["metrics"][k]) <= 1 / 40 + 1e-9
    assert (two / "predictions.tsv").read_text().count("\n") == 1 + 40 + 40  # every image once, rank 0 wrote it


def test_image_semi_supervised_two_processes_match_one(tmp_path, shared_data):
    """--semi-supervised under torchrun: the rounds' global batches sharded, every view drawn from the whole
    global batch on every rank (the 1-process RNG draws), the projection head's gradients and the DINO
    centre averaged over the ranks, the EMA teacher following identical students. So both runs train on
    the same views: the losses agree up to float summation order (measured: <1e-6 apart, round losses and metrics equal;
    tolerance 1e-4)
    and the accuracies to one image of 40."""
    args = ["run", "--task", "fashion-mnist", "--model", "vit-tiny", "--method", "full", "--data-dir",
            str(shared_data / "images"), "--labelled-per-class", "4", "--max-eval-samples", "40", "--epochs", "1",
            "--batch-size", "8", "--threads", "1", "--seed", "0", "--augment", "none", "--lr", "1e-3",
            "--semi-supervised", "--self-train-rounds", "2", "--unlabelled-per-round", "16"]
    one, two, r1, r2 = one_and_two_processes(args, tmp_path)
    assert r2["time"]["steps"] == r1["time"]["steps"]
    assert len(r1["history"]) == len(r2["history"]) == 3
    for a, b in zip(r1["history"], r2["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4, (a["train_loss"], b["train_loss"])
    rounds1, rounds2 = r1["semi_supervised"]["rounds"], r2["semi_supervised"]["rounds"]
    for a, b in zip(rounds1[1:], rounds2[1:]):
        for k in ("supervised", "distill", "agreement"):
            assert abs(a["losses"][k] - b["losses"][k]) < 1e-4, (k, a["losses"], b["losses"])
        assert a["pseudo_label_accuracy"] == b["pseudo_label_accuracy"]
    for k in ("accuracy", "test_accuracy"):
        assert abs(r1["metrics"][k] - r2["metrics"][k]) <= 1 / 40 + 1e-9


def _no_dropout_minilm(dst: Path) -> Path:
    """minilm with its dropout set to 0 (a test-only model folder: the weights linked, config.json edited),
    so the 1- and 2-process runs differ only by arithmetic, not by dropout masks."""
    from tunelab.models.aliases import _minilm_path

    src = Path(_minilm_path())
    dst.mkdir()
    for f in src.iterdir():
        if f.name != "config.json":
            (dst / f.name).symlink_to(f)
    cfg = json.loads((src / "config.json").read_text())
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (dst / "config.json").write_text(json.dumps(cfg))
    return dst


@pytest.mark.slow
def test_keyphrase_two_processes_match_one(tmp_path, kp_root):
    """inspec, 32 train documents (sliding windows of 128 tokens), global batch 8 windows, 2 epochs,
    dropout off. Evaluation shards whole documents and gathers their phrases in document order: the
    prediction file lists the same documents in the same order. Not bit-equal: the keyphrase loss is a
    mean over *tokens* of each rank's windows while GradSync weighs the ranks by *windows*, so a step's
    gradient weights the two shares' tokens slightly differently from the 1-process token mean (measured
    train loss 0.6483 / 0.3060 vs 0.6486 / 0.3079). On 16 documents a few phrases near the decoding
    threshold flip: measured f1@10 0.0545 vs 0.0628, f1@M 0.0689 vs 0.0724, test_f1@10 0.0773 both.
    Tolerance: 0.01 on the loss, 0.03 on the F1s (about 3x the measured gap)."""
    model = _no_dropout_minilm(tmp_path / "minilm-nodrop")
    args = ["run", "--task", "inspec", "--method", "full", "--model", str(model), "--data-dir", str(kp_root),
            "--max-train-samples", "32", "--max-eval-samples", "16", "--epochs", "2", "--lr", "3e-4",
            "--batch-size", "8", "--max-seq-length", "128", "--doc-stride", "32", "--threads", "1", "--seed", "0"]
    one, two, r1, r2 = one_and_two_processes(args, tmp_path)
    assert r2["time"]["steps"] == r1["time"]["steps"]
    for a, b in zip(r1["history"], r2["history"]):
        assert abs(a["train_loss"] - b["train_loss"]) < 0.01
    for k in ("f1@10", "f1@M", "test_f1@10", "test_f1@M"):
        assert abs(r1["metrics"][k] - r2["metrics"][k]) <= 0.03, k
    ids = [[ln.split("\t")[:2] for ln in (d / "predictions.tsv").read_text().splitlines()] for d in (one, two)]
    assert ids[0] == ids[1] and len(ids[1]) == 1 + 16 + 16


@pytest.mark.slow
def test_asr_two_processes_match_one(tmp_path, shared_data, monkeypatch):
    """speech-accents, whisper-tiny + LoRA, 8 clips = one global batch of 8 (4 per rank), 3 utterances per
    eval split, each run with its own empty base-eval cache (the base scoring in before_fit runs sharded
    and gathered; rank 0 decides the cache hit and alone writes the cache file). The base model's metrics
    are a pure function of weights and greedy generate: equal exactly (measured: equal). After the step
    the runs differ by LoRA's dropout masks (per rank) and by the token-mean loss weighed per clip
    (measured: train loss 1.1314 vs 1.1350; cer 0.6321 both, test_cer 0.1338 vs 0.1761 on 3 utterances,
    real_cer 0.0838 both). Tolerance: 0.02 on the loss, 0.1 on the CERs (3 short utterances: a few
    characters)."""
    import os

    user = os.environ.get("TUNELAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tunelab")
    args = ["run", "--task", "speech-accents", "--method", "lora", "--model", "whisper-tiny", "--data-dir",
            str(shared_data / "speech"), "--max-train-samples", "8", "--max-eval-samples", "3", "--epochs", "1",
            "--batch-size", "8", "--eval-batch-size", "12", "--threads", "1", "--seed", "0"]
    recs = []
    for name, run in (("one", lambda a: main(a) == 0), ("two", lambda a: torchrun(a).returncode == 0)):
        cache = tmp_path / f"cache-{name}"
        cache.mkdir()
        if os.path.isdir(os.path.join(user, "whisper")):
            (cache / "whisper").symlink_to(os.path.join(user, "whisper"))
        monkeypatch.setenv("TUNELAB_CACHE", str(cache))
        assert run(args + ["--output-dir", str(tmp_path / name)])
        recs.append(record(tmp_path / name))
    r1, r2 = recs
    assert r2["status"] == "completed" and r2["distributed"]["world_size"] == 2
    assert r1["asr"]["base_eval_cached"] is False and r2["asr"]["base_eval_cached"] is False
    assert r2["time"]["steps"] == r1["time"]["steps"] == 1
    assert {k: v for k, v in r1["metrics"].items() if k.startswith("base_")} == \
        {k: v for k, v in r2["metrics"].items() if k.startswith("base_")}
    assert abs(r1["history"][0]["train_loss"] - r2["history"][0]["train_loss"]) < 0.02
    for k in ("cer", "test_cer", "real_cer"):
        assert abs(r1["metrics"][k] - r2["metrics"][k]) <= 0.1, k
    assert (tmp_path / "two" / "predictions.tsv").read_text().count("\n") == 1 + 3 * 3


def test_docrep_two_processes_match_one(tmp_path, bbc_dir):
    """bbc-docrep, DeCLUTR pairs, 19 train documents, global batch 8 (batches of 8, 8, 3: the last split
    2 + 1 across the ranks, so the padded gather is exercised), dropout off (the views are two different
    chunks). The ranks all-gather their chunk vectors and every rank computes the InfoNCE over the whole
    global batch, so the negatives and the loss are the 1-process run's: measured train loss 0.43335962
    vs 0.43335940, the same metrics (macro_f1 1.0, knn 0.75, nmi 0.8889 both). Evaluation embeds the
    documents sharded and gathers the vectors in order; the classifiers run on every rank on all of them.
    Tolerance: 1e-4 on the loss and the weights, one test document (1/8) on the accuracies."""
    from safetensors.torch import load_file

    model = _no_dropout_minilm(tmp_path / "minilm-nodrop")
    args = ["run", "--task", "bbc-docrep", "--method", "full", "--model", str(model), "--data-dir", bbc_dir,
            "--docrep-max-docs", "40", "--docrep-chunk-length", "32", "--max-train-samples", "19",
            "--batch-size", "8", "--epochs", "1", "--threads", "1", "--seed", "0"]
    one, two, r1, r2 = one_and_two_processes(args, tmp_path)
    assert r2["time"]["steps"] == r1["time"]["steps"] == 3 and r2["time"]["samples_seen"] == 19
    assert abs(r1["history"][0]["train_loss"] - r2["history"][0]["train_loss"]) < 1e-4
    for k in ("accuracy", "knn_accuracy", "macro_f1"):
        assert abs(r1["metrics"][k] - r2["metrics"][k]) <= 1 / 8 + 1e-9, k
    w1, w2 = (load_file(str(d / "model.safetensors")) for d in (one, two))
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4
