"""A task family defined only here plugs into tunelab through the Task contract and trains end to
end: its own data, encoding, collation, decoding, a lower-is-better metric and a prediction file."""

import json
import sys

import pytest

from tunelab import tasks
from tunelab.cli import main
from tunelab.metrics import METRICS
from tunelab.tasks import TASKS

PACKAGE = "fake_family"  # tests/fake_family/: the whole family, one package

@pytest.fixture()
def toy_family():
    """Add the family the way a plugin does: its package name in ``tunelab.tasks.extra_families``."""
    tasks.extra_families.append(PACKAGE)
    tasks.load_families()
    yield "toy-contains-good"
    tasks.extra_families.remove(PACKAGE)
    TASKS._items.pop("toy-contains-good")
    METRICS._items.pop("toy_error_rate")
    for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
        del sys.modules[name]  # the next load registers it again


def test_the_family_is_only_found_while_its_package_is_listed(toy_family):
    assert toy_family in tasks.task_names() and PACKAGE in tasks.family_packages()


def test_without_its_package_listed_the_family_is_unknown():
    assert PACKAGE not in tasks.family_packages() and "toy-contains-good" not in tasks.task_names()


def test_fake_family_trains_end_to_end_through_the_contract(tmp_path, toy_family, capsys):
    out = tmp_path / "toy"
    rc = main(["run", "--task", toy_family, "--method", "lora", "--model", "minilm", "--output-dir", str(out),
               "--epochs", "3", "--batch-size", "16", "--threads", "1", "--group-by-length"])
    assert rc == 0, capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    assert rec["status"] == "completed" and rec["main_metric"] == "toy_error_rate"
    errors = [h["metrics"]["toy_error_rate"] for h in rec["history"]]
    assert len(errors) == 3 and rec["metrics"]["toy_error_rate"] == errors[-1]
    assert rec["best_epoch"] == 1 + errors.index(min(errors))  # lower is better: the minimum is best
    assert rec["time"]["samples_seen"] == 3 * 64 and rec["data_sizes"] == {"train": 64, "validation": 32}
    lines = (out / "predictions.tsv").read_text().splitlines()
    assert lines[0] == "split\ttext\tlabel\tprediction" and len(lines) == 1 + 32
    labels = [int(line.split("\t")[2]) for line in lines[1:]]
    preds = [int(line.split("\t")[3]) for line in lines[1:]]
    assert sum(p != r for p, r in zip(preds, labels)) / len(labels) == pytest.approx(rec["metrics"]["toy_error_rate"])
    assert set(rec["toy"]["before_training"]) == {"toy_error_rate"}  # the before_fit / after_fit hooks
    train = TASKS.get(toy_family).load("train", None).examples
    assert rec["toy"]["positive_share"] == pytest.approx(sum(e.label for e in train) / 64)


def test_options_of_other_families_are_rejected_for_the_fake_family(tmp_path, toy_family, capsys):
    rc = main(["run", "--task", toy_family, "--max-seq-length", "64", "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--max-seq-length does not apply" in err and len(err.splitlines()) == 1
