"""The image task family on real data: the IDX reader against an independent parse, ImageFolder
end to end with `tunelab run` on the chest X-ray sample (and the saved model predicting what
predictions.tsv says), bad folders as one error line, the labelled subset, a DINO step, every
method on the ViT, and a tiny DISTL self-training run."""

import collections
import gzip
import json
import shutil
import struct

import numpy as np
import pytest
import torch

from tunelab.cli import main
from tunelab.config import RunConfig
from tunelab.errors import UserError
from tunelab.tasks import get_task
from tunelab.tasks.image.data import read_idx, read_idx_pair


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """vit-tiny is built (about a second) into a private cache."""
    monkeypatch.setenv("TUNELAB_CACHE", str(tmp_path_factory.getbasetemp() / "tunelab-cache"))


@pytest.fixture(scope="module")
def images(shared_data):
    d = shared_data / "images"
    if not (d / "fashion-mnist").is_dir():
        pytest.fail(f"image data not found at {d}: set TUNELAB_SHARED_DATA to the shared data folder")
    return d


def _raw(path):
    with gzip.open(path, "rb") as f:
        return f.read()


def test_idx_reader_matches_an_independent_parse(images):
    fm = images / "fashion-mnist"
    raw = _raw(fm / "t10k-images-idx3-ubyte.gz")
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    assert magic == 0x803
    imgs = read_idx(str(fm / "t10k-images-idx3-ubyte.gz"))
    assert imgs.shape == (n, rows, cols) == (10000, 28, 28)
    last = raw[16 + (n - 1) * rows * cols:]
    assert imgs[-1].tobytes() == last and imgs[0].tobytes() == raw[16:16 + rows * cols]
    labels_raw = _raw(fm / "train-labels-idx1-ubyte.gz")
    assert struct.unpack(">II", labels_raw[:8]) == (0x801, 60000)
    expected = collections.Counter(labels_raw[8:])
    examples = read_idx_pair(str(fm / "t10k-images-idx3-ubyte.gz"), str(fm / "t10k-labels-idx1-ubyte.gz"), 10)
    assert collections.Counter(e.label for e in examples) == collections.Counter(_raw(fm / "t10k-labels-idx1-ubyte.gz")[8:])
    train_labels = read_idx(str(fm / "train-labels-idx1-ubyte.gz"))
    assert dict(collections.Counter(train_labels.tolist())) == dict(expected) == {c: 6000 for c in range(10)}


def test_idx_reader_rejects_a_truncated_file(tmp_path, images):
    raw = _raw(images / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    with gzip.open(bad, "wb") as f:
        f.write(raw[:-5])
    with pytest.raises(UserError, match="t10k-labels-idx1-ubyte.gz: IDX body has 9995 bytes"):
        read_idx(str(bad))


def _task(name, **options):
    cfg = RunConfig(task=name, lr=1e-3, eval_fraction=1 / 12, **options)
    return get_task(name).configure(cfg)


def test_labelled_subset_has_exactly_n_per_class_and_the_rest_is_the_pool(images):
    t = _task("fashion-mnist", labelled_per_class=7, semi_supervised=True, seed=3)
    train = t.load("train", str(images))
    val = t.load("validation", str(images))
    assert collections.Counter(e.label for e in train.examples) == {c: 7 for c in range(10)}
    assert len(val.examples) == 5000 and collections.Counter(e.label for e in val.examples) == {c: 500 for c in range(10)}
    assert len(t.unlabelled) == 60000 - 5000 - 70 == train.info["unlabelled_pool"]
    used = {e.source for e in train.examples} | {e.source for e in t.unlabelled} | {e.source for e in val.examples}
    assert len(used) == 60000  # labelled, unlabelled and validation are disjoint and cover train
    other = _task("fashion-mnist", labelled_per_class=7, seed=4).load("train", str(images))
    assert {e.source for e in other.examples} != {e.source for e in train.examples}  # the seed picks the subset
    assert val.examples[0].source == _task("fashion-mnist", seed=4).load("validation", str(images)).examples[0].source


def test_image_folder_trains_and_predicts_end_to_end(tmp_path, images, capsys):
    out = tmp_path / "run"
    rc = main(["run", "--task", "image-folder", "--model", "vit-tiny", "--data-dir", str(images / "chest-xray-sample"),
               "--output-dir", str(out), "--epochs", "1", "--batch-size", "7", "--eval-fraction", "0.25",
               "--threads", "1", "--lr", "1e-3"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["data_sizes"] == {"train": 12, "validation": 4}
    assert rec["data_notes"]["train"]["per_class"] == {"NORMAL": 8, "PNEUMONIA": 8}
    assert rec["data_notes"]["train"]["image_modes"] == ["L"] and rec["data_notes"]["train"]["sizes"]["distinct"] == 16
    lines = [line.split("\t") for line in (out / "predictions.tsv").read_text().splitlines()[1:]]
    assert len(lines) == 4 and sorted(x[5] for x in lines) == ["NORMAL", "NORMAL", "PNEUMONIA", "PNEUMONIA"]
    acc = np.mean([x[3] == x[4] for x in lines])
    assert rec["metrics"]["accuracy"] == pytest.approx(acc)
    assert sum(map(sum, rec["confusion_matrix"]["matrix"])) == 4
    # the run folder is a model folder: reloaded, it predicts what predictions.tsv says
    from PIL import Image
    from transformers import AutoImageProcessor, AutoModelForImageClassification

    model = AutoModelForImageClassification.from_pretrained(out).eval()
    proc = AutoImageProcessor.from_pretrained(out)
    pix = proc(images=[Image.open(images / "chest-xray-sample" / x[2]).convert("L") for x in lines],
               return_tensors="pt")["pixel_values"]
    with torch.no_grad():
        preds = model(pixel_values=pix).logits.argmax(-1).tolist()
    assert preds == [int(x[4]) for x in lines]
    assert model.config.id2label == {0: "NORMAL", 1: "PNEUMONIA"}


def _sample_copy(src, dst, classes=("NORMAL", "PNEUMONIA"), per_class=3):
    for c in classes:
        (dst / c).mkdir(parents=True)
        for f in sorted((src / c).iterdir())[:per_class]:
            shutil.copy(f, dst / c / f.name)
    return dst


@pytest.mark.parametrize("damage", ["corrupt", "empty", "single"])
def test_bad_image_folders_give_one_line_and_exit_2(tmp_path, images, capsys, damage):
    src = images / "chest-xray-sample"
    classes = ("NORMAL",) if damage == "single" else ("NORMAL", "PNEUMONIA")
    d = _sample_copy(src, tmp_path / "data", classes)
    if damage == "corrupt":
        victim = sorted((d / "PNEUMONIA").iterdir())[1]
        victim.write_bytes(victim.read_bytes()[:2000])  # a truncated JPEG: the header reads, decoding fails
        expect = str(victim)
    elif damage == "empty":
        (d / "VIRAL").mkdir()
        expect = f"{d / 'VIRAL'}: empty class folder"
    else:
        expect = f"{d}: only one class folder (NORMAL)"
    rc = main(["run", "--task", "image-folder", "--model", "vit-tiny", "--data-dir", str(d),
               "--output-dir", str(tmp_path / "out"), "--epochs", "1"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and expect in err, err
    assert not (tmp_path / "out").exists()  # nothing written before the data was checked


def test_a_dino_step_changes_the_student_and_the_teacher_follows_by_ema_only():
    import copy

    from transformers import AutoModel

    from tunelab.models.aliases import resolve_model
    from tunelab.tasks.image.dino import DINOHead, DINOLoss, dino_step
    from tunelab.tasks.image.augment import Augmenter
    from tunelab.train.loop import build_optimizer

    torch.manual_seed(0)
    student = AutoModel.from_pretrained(resolve_model("vit-tiny"))
    head = DINOHead(student.config.hidden_size, 64)
    teacher, t_head = copy.deepcopy(student), copy.deepcopy(head)
    for p in list(teacher.parameters()) + list(t_head.parameters()):
        p.requires_grad_(False)
    t_before = [p.clone() for p in list(teacher.parameters()) + list(t_head.parameters())]
    s_before = [p.clone() for p in list(student.parameters()) + list(head.parameters())]
    named = list(student.named_parameters()) + [("head." + n, p) for n, p in head.named_parameters()]
    opt = build_optimizer(named, 1e-3, 0.04)
    x = torch.randn(8, 1, 28, 28)
    loss = dino_step(student, head, teacher, t_head, DINOLoss(64), opt, x, Augmenter([0.5], [0.5], 28), 2, 14,
                     0.04, momentum=0.9)
    assert np.isfinite(loss)
    s_after = list(student.parameters()) + list(head.parameters())
    t_after = list(teacher.parameters()) + list(t_head.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(s_before, s_after))  # the student learned
    for tb, ta, sa in zip(t_before, t_after, s_after):  # the teacher moved by EMA, nothing else
        assert ta.grad is None
        torch.testing.assert_close(ta, 0.9 * tb + 0.1 * sa.detach())


@pytest.mark.parametrize("method", [["lora"], ["selective", "--layers", "top:1"], ["alf", "--alf-interval", "2"]])
def test_methods_train_the_vit_layers(tmp_path, images, capsys, method):
    out = tmp_path / "run"
    rc = main(["run", "--task", "fashion-mnist", "--model", "vit-tiny", "--data-dir", str(images), "--output-dir",
               str(out), "--labelled-per-class", "4", "--max-eval-samples", "40", "--epochs", "2", "--batch-size", "8",
               "--threads", "1", "--method", *method])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["data_sizes"]["train"] == 40 and set(rec["metrics"]) == {"accuracy", "macro_f1", "test_accuracy",
                                                                         "test_macro_f1"}
    assert rec["params"]["trainable_layers"] and rec["params"]["trainable"] < rec["params"]["total"]
    if method[0] == "selective":
        assert rec["params"]["trainable_layers"] == [3]


def test_prompt_tuning_is_refused_for_images(tmp_path, images, capsys):
    rc = main(["run", "--task", "fashion-mnist", "--method", "prompt", "--model", "vit-tiny", "--data-dir", str(images),
               "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--method prompt: virtual tokens need a token-embedding model" in err


def test_self_training_records_rounds_and_round_0_is_the_supervised_run(tmp_path, images, capsys):
    common = ["run", "--task", "fashion-mnist", "--model", "vit-tiny", "--data-dir", str(images), "--labelled-per-class",
              "3", "--max-eval-samples", "40", "--epochs", "2", "--batch-size", "16", "--threads", "1", "--seed", "1"]
    out = tmp_path / "run"
    rc = main(common + ["--output-dir", str(out), "--semi-supervised", "--unlabelled-per-round", "32",
                        "--self-train-rounds", "2"])
    assert rc == 0, capsys.readouterr().err
    rc = main(common + ["--output-dir", str(tmp_path / "supervised")])
    assert rc == 0, capsys.readouterr().err
    supervised = json.loads((tmp_path / "supervised" / "run.json").read_text())
    rec = json.loads((out / "run.json").read_text())
    r0 = rec["semi_supervised"]["rounds"][0]
    assert r0["test"] == {k: v for k, v in supervised["metrics"].items() if k.startswith("test_")}
    assert r0["validation"] == supervised["history"][-1]["metrics"]
    rounds = rec["semi_supervised"]["rounds"]
    assert [(r["round"], r["labelled"], r["unlabelled"]) for r in rounds] == [(0, 30, 0), (1, 30, 32), (2, 30, 64)]
    assert all(0 <= r["pseudo_label_accuracy"] <= 1 for r in rounds[1:])
    assert all(r["losses"]["distilled_share"] == 1.0 for r in rounds[1:])  # no --pseudo-threshold: every image
    assert rounds[-1]["test"]["test_accuracy"] == rec["metrics"]["test_accuracy"]  # the saved student
    assert [h.get("phase") for h in rec["history"]] == [None, None, "self-training round 1", "self-training round 2"]
    assert "teacher_test" in rounds[-1] and "teacher_test" not in rounds[1]
    assert rec["semi_supervised"]["unlabelled_pool"] == 55000 - 30


def test_pretrain_dino_writes_a_model_folder_that_run_accepts(tmp_path, images, capsys):
    data = _sample_copy(images / "chest-xray-sample", tmp_path / "data", per_class=4)
    pre = tmp_path / "dino"
    rc = main(["pretrain", "dino", "--model", "vit-tiny", "--data-dir", str(data), "--output-dir", str(pre),
               "--steps", "2", "--batch-size", "4", "--knn-points", "1", "--threads", "1"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((pre / "pretrain.json").read_text())
    assert rec["task"] == "image-folder" and rec["data"]["labels_used_for_training"] is False
    assert [h["step"] for h in rec["knn"]["history"]] == [0, 2] and rec["data"]["images"] == 8
    assert (pre / "dino_head.safetensors").is_file() and (pre / "preprocessor_config.json").is_file()
    out = tmp_path / "run"
    rc = main(["run", "--task", "image-folder", "--model", str(pre), "--data-dir", str(data), "--output-dir", str(out),
               "--epochs", "1", "--batch-size", "4", "--threads", "1", "--labelled-per-class", "2", "--semi-supervised",
               "--unlabelled-per-round", "2", "--self-train-rounds", "1"])
    assert rc == 0, capsys.readouterr().err
    run = json.loads((out / "run.json").read_text())
    assert run["model_source"] == str(pre)
    assert run["semi_supervised"]["projection_head_init"] == "dino_head.safetensors of the model folder"


def test_vision_quick_preset_expands_to_valid_runs(tmp_path, images):
    from tunelab.compare.config import parse_compare_yaml, preset_text
    from tunelab.compare.grid import expand

    cc = parse_compare_yaml(preset_text("vision-quick"), "preset vision-quick")
    cells = expand(cc, str(tmp_path), data_dir=str(images))  # check_names would build vit-tiny-dino: not here
    assert len(cells) == 8 and {c.model for c in cells} == {"vit-tiny", "vit-tiny-dino"}
    from tunelab.cli import build_parser, config_from_args
    from tunelab.compare.execute import run_args

    for c in cells:
        get_task(c.config.task).configure(c.config).validate(c.config)
        # what the child process is given: every resolved option, semi-supervised ones at their defaults too
        child = config_from_args(build_parser().parse_args(run_args(c)))
        get_task(child.task).configure(child).validate(child)
    assert sorted((c.config.labelled_per_class, c.config.semi_supervised) for c in cells) == \
        [(20, False), (20, False), (20, True), (20, True), (100, False), (100, False), (100, True), (100, True)]
