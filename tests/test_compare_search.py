"""compare's ``search:``: grids, the selection split carved from train, and the choice that the
reported dev split never decides (compare/search.py)."""

import json
import random
import sqlite3
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.compare.config import load_compare_config, parse_compare_yaml
from tunelab.compare.grid import expand
from tunelab.compare.search import AUTO_LR_FACTORS, choose, expand_search
from tunelab.config import RunConfig
from tunelab.errors import UserError
from tunelab.resolve import build_config
from tunelab.tasks.splits import selection_split


def test_auto_grid_is_three_lr_points_around_each_methods_resolved_lr(tmp_path):
    cc = load_compare_config(preset="quick", overrides=["search=auto", "tasks=sst2", "methods=full,lora,prompt"])
    groups = expand_search(cc, str(tmp_path))
    assert [g.label for g in groups] == ["full", "lora", "prompt"]
    for g in groups:
        (base,) = [c for c in expand(cc, str(tmp_path)) if c.label == g.label]
        assert g.default == {"lr": base.config.lr}  # full: the preset's 1e-4; the others: their own default
        assert [p["lr"] for p in g.points] == [float(f"{base.config.lr * f:.3g}") for f in AUTO_LR_FACTORS]
        for c in g.cells:  # every point evaluates on the selection split, seeded like the study's first seed
            assert c.config.selection_split == 0.1 and c.seed == 0 and c.run_id.startswith("search--")
            assert c.config.max_train_samples == 500 and c.config.epochs == 2
    # the point at the default is the untuned configuration plus the selection split
    full = groups[0]
    mid = full.cells[1].config.as_dict()
    (untuned,) = [c for c in expand(cc, str(tmp_path)) if c.label == "full"]
    assert {k: v for k, v in mid.items() if k not in ("selection_split", "output_dir")} == \
        {k: v for k, v in untuned.config.as_dict().items() if k not in ("selection_split", "output_dir")}


def test_without_search_nothing_changes(tmp_path):
    plain = load_compare_config(preset="quick")
    off = load_compare_config(preset="quick", overrides=["search=off"])
    assert expand_search(plain, str(tmp_path)) == [] and expand_search(off, str(tmp_path)) == []
    a, b = expand(plain, str(tmp_path)), expand(off, str(tmp_path))
    assert [(c.run_id, c.config_hash, c.config.as_dict()) for c in a] == \
        [(c.run_id, c.config_hash, c.config.as_dict()) for c in b]
    assert all(c.config.selection_split is None for c in a)
    assert "search" not in plain.as_dict()
    # a search that chose the default point gives the untuned cell itself (same key: reused)
    cc = load_compare_config(preset="quick", overrides=["search=auto"])
    chosen = {(c.task, c.label, c.model): {"lr": c.config.lr} for c in a}
    again = expand(cc, str(tmp_path), chosen=chosen)
    assert [c.config_hash for c in again] == [c.config_hash for c in a]


def test_method_entry_grids_and_study_grids():
    text = ("tasks: [sst2]\nmethods:\n  - full\n  - lora: {lora_r: 4, search: {lr: [1.0e-4, 1.0e-3], lora_r: [4, 8]}}\n"
            "  - prompt: {search: off}\nsearch: auto\nsearch_fraction: 0.2\n")
    cc = parse_compare_yaml(text, "s.yaml")
    groups = expand_search(cc, "/tmp/x")
    assert [g.label for g in groups] == ["full", "lora"]  # prompt: search off
    lora = groups[1]
    assert lora.points == [{"lr": 1e-4, "lora_r": 4}, {"lr": 1e-4, "lora_r": 8},
                           {"lr": 1e-3, "lora_r": 4}, {"lr": 1e-3, "lora_r": 8}]
    assert {c.config.lora_r for c in lora.cells} == {4, 8} and lora.cells[0].config.selection_split == 0.2
    # a study-level option grid leaves out the methods that do not read the option
    cc = parse_compare_yaml("tasks: [sst2]\nmethods: [full, lora]\nsearch: {lora_r: [4, 8]}\n", "s.yaml")
    assert [g.label for g in expand_search(cc, "/tmp/x")] == ["lora"]


@pytest.mark.parametrize("text, match", [
    ("tasks: [sst2]\nmethods: [full]\nsearch: maybe\n", r"s.yaml:3: search: expected 'auto'"),
    ("tasks: [sst2]\nmethods: [full]\nsearch: {lr: []}\n", r"s.yaml:3: search: 'lr' needs a non-empty list"),
    ("tasks: [sst2]\nmethods: [full]\nsearch: {lr: [0.1, -1]}\n", r"s.yaml:3: search: lr -1.0: must be > 0"),
    ("tasks: [sst2]\nmethods: [full]\nsearch: {lora_rr: [4]}\n", r"unknown option 'lora_rr' \(did you mean 'lora_r'"),
    ("tasks: [sst2]\nmethods: [full]\nsearch: {lora_r: auto}\n", r"only lr has an automatic grid"),
    ("tasks: [sst2]\nmethods: [full]\nsearch: auto\nsearch_fraction: 1.5\n", r"s.yaml:4: search_fraction"),
    ("tasks: [sst2]\nmethods: [full]\nsearch: {seed: [1, 2]}\n", r"'seed' cannot be searched"),
])
def test_bad_search_settings_name_the_line(text, match):
    with pytest.raises(UserError, match=match):
        parse_compare_yaml(text, "s.yaml")


def test_bad_search_grids_and_unsupported_families_are_refused(tmp_path, capsys):
    cc = parse_compare_yaml("tasks: [sst2]\nmethods:\n  - full: {search: {lora_r: [4, 8]}}\n", "s.yaml")
    with pytest.raises(UserError, match=r"s.yaml:3: search: lora_r does not apply to --method full"):
        expand_search(cc, str(tmp_path))
    study = tmp_path / "img.yaml"
    study.write_text("tasks: [mnist]\nmethods: [full]\nsearch: auto\n")
    assert main(["compare", str(study), "--dry-run", "--output-dir", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "img.yaml:2" in err and "cannot hold out a selection split" in err
    assert not (tmp_path / "o").exists()
    assert main(["run", "--task", "mnist", "--selection-split", "0.1", "--output-dir", str(tmp_path / "r")]) == 2
    assert "--selection-split does not apply" in capsys.readouterr().err


def test_selection_split_is_carved_from_train_stratified_and_the_same_for_every_seed(glue_data_dir):
    from tunelab.tasks import get_task

    train = get_task("mrpc").load("train", glue_data_dir).examples
    rest, held, rec = selection_split(train, 0.1, stratify=True)
    rest2, held2, _ = selection_split(train, 0.1, stratify=True)
    assert [e.line for e in held] == [e.line for e in held2] and len(rest) + len(held) == len(train)
    assert not {e.line for e in held} & {e.line for e in rest}
    for c in (0, 1):  # per class round(0.1 * size)
        n = sum(e.label == c for e in train)
        assert sum(e.label == c for e in held) == round(0.1 * n)
    assert rec["stratified"] and rec["sizes"] == {"selection": len(held), "train": len(rest)}


def _shuffled_dev_copy(src: str, dst: Path) -> Path:
    """A GLUE folder whose SST-2 train is the real one and whose dev labels are permuted."""
    d = dst / "SST-2"
    d.mkdir(parents=True)
    (d / "train.tsv").symlink_to(Path(src, "SST-2", "train.tsv").resolve())  # absolute: CI passes a relative data dir
    lines = Path(src, "SST-2", "dev.tsv").read_text(encoding="utf-8").splitlines()
    head, rows = lines[0], [ln.split("\t") for ln in lines[1:]]
    labels = [r[-1] for r in rows]
    random.Random(1).shuffle(labels)
    (d / "dev.tsv").write_text("\n".join([head] + ["\t".join(r[:-1] + [lab]) for r, lab in zip(rows, labels)]) + "\n",
                               encoding="utf-8")
    return dst


STUDY = """\
name: dev-never-decides
tasks: [sst2]
methods:
  - lora: {search: {lr: [2.0e-5, 5.0e-3]}}
max_train_samples: 32
max_eval_samples: 32
epochs: 1
batch_size: 16
eval_batch_size: 64
threads: 1
"""


def test_the_choice_is_unchanged_when_the_dev_labels_are_shuffled(tmp_path, glue_data_dir, capsys):
    study = tmp_path / "s.yaml"
    study.write_text(STUDY)
    shuffled = _shuffled_dev_copy(glue_data_dir, tmp_path / "glue-shuffled")
    outs = {}
    for name, data in (("real", glue_data_dir), ("shuffled", str(shuffled))):
        out = tmp_path / name
        assert main(["compare", str(study), "--data-dir", data, "--output-dir", str(out), "--no-report"]) == 0, \
            capsys.readouterr().err
        outs[name] = out
    real, shuf = (json.loads((outs[n] / "search.json").read_text())["outcomes"] for n in ("real", "shuffled"))
    (r,), (s,) = real, shuf
    assert r["choice"] is not None and r["choice"] == s["choice"]
    assert [p["score"] for p in r["points"]] == [p["score"] for p in s["points"]]  # dev never read by the search
    assert len({p["score"] for p in r["points"]}) == 2  # the two points differ: the choice was a real decision
    # ...while the reported dev numbers do see the shuffle (the final run used the chosen lr)
    metrics = {}
    for n, out in outs.items():
        rec = json.loads((out / "runs" / "sst2--lora--minilm--s0" / "run.json").read_text())
        assert rec["config"]["lr"] == r["choice"]["lr"] and rec["config"]["selection_split"] is None
        metrics[n] = rec["metrics"]["accuracy"]
        cell = json.loads((out / "runs" / "sst2--lora--minilm--s0" / "compare-cell.json").read_text())
        assert cell["search"]["choice"] == r["choice"]
    assert metrics["real"] != metrics["shuffled"]
    # the store records the search runs and the outcome; the grid (the report's rows) is the final cell alone
    with sqlite3.connect(outs["real"] / "results.sqlite") as db:
        meta = {k: json.loads(v) for k, v in db.execute("SELECT key, value FROM meta")}
        done = {row[0] for row in db.execute("SELECT run_id FROM runs WHERE status = 'completed'")}
    assert meta["grid"] == ["sst2--lora--minilm--s0"] and meta["search"][0]["choice"] == r["choice"]
    assert set(meta["search_grid"]) | {"sst2--lora--minilm--s0"} == done
    # a second compare reuses every cell: nothing runs again
    capsys.readouterr()
    assert main(["compare", str(study), "--data-dir", glue_data_dir, "--output-dir", str(outs["real"])]) == 0
    out = capsys.readouterr().out
    assert "runs: 0 run now, 1 already done" in out
    report = (outs["real"] / "report.md").read_text()
    assert "## Tuning (search)" in report and f"lr={r['choice']['lr']:.3g}" in report


def test_search_metric_is_a_registered_metric_and_reaches_the_groups(tmp_path):
    cc = parse_compare_yaml("tasks: [mrpc]\nmethods: [full]\nsearch: auto\nsearch_metric: accuracy\n", "s.yaml")
    (g,) = expand_search(cc, str(tmp_path))
    assert g.metric == "accuracy" and cc.as_dict()["search_metric"] == "accuracy"
    with pytest.raises(UserError, match=r"s.yaml:4: search_metric: 'acc' is not a registered metric"):
        parse_compare_yaml("tasks: [mrpc]\nmethods: [full]\nsearch: auto\nsearch_metric: acc\n", "s.yaml")
    cc = load_compare_config(preset="quick", overrides=["search=auto", "search_metric=mcc"])
    assert cc.search_metric == "mcc"
