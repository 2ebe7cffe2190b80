"""Report statistics and tables without training: vectorised metrics equal scikit-learn's, the
paired bootstrap and t-test behave, mean ± std and best-per-column marking, resume bookkeeping."""

import json

import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

from tunelab.report.stats import metric_on_resamples, paired_bootstrap, paired_ttest
from tunelab.report.tables import summarize, task_table


@pytest.mark.parametrize("k", [2, 3])
def test_vectorised_metrics_match_sklearn(k):
    rng = np.random.default_rng(1)
    y = rng.integers(0, k, size=(20, 50))
    p = np.where(rng.random((20, 50)) < 0.7, y, rng.integers(0, k, size=(20, 50)))
    acc = metric_on_resamples("accuracy", y, p)
    mcc = metric_on_resamples("mcc", y, p)
    for i in range(20):
        assert acc[i] == pytest.approx(accuracy_score(y[i], p[i]))
        assert mcc[i] == pytest.approx(matthews_corrcoef(y[i], p[i]))
    if k == 2:
        f1 = metric_on_resamples("f1", y, p)
        assert all(f1[i] == pytest.approx(f1_score(y[i], p[i])) for i in range(20))
    const = metric_on_resamples("mcc", y[:1], np.ones_like(y[:1]))
    assert const[0] == 0.0  # sklearn's convention for a constant prediction


def test_paired_bootstrap():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 400)
    good = np.where(rng.random(400) < 0.9, y, 1 - y)
    bad = np.where(rng.random(400) < 0.6, y, 1 - y)
    d, p = paired_bootstrap([(y, good, bad)], "accuracy")
    assert d > 0.2 and p < 0.001
    d, p = paired_bootstrap([(y, good, good)], "accuracy")
    assert d == 0 and p == 1.0
    slightly = good.copy()
    slightly[:3] = 1 - slightly[:3]
    _, p_small = paired_bootstrap([(y, good, slightly)], "accuracy")
    assert 0.05 < p_small <= 1.0
    assert paired_bootstrap([(y, good, bad)], "mcc") == paired_bootstrap([(y, good, bad)], "mcc")  # seeded


def test_paired_ttest():
    assert paired_ttest([0.9, 0.91, 0.92], [0.8, 0.8, 0.83]) < 0.05
    assert paired_ttest([0.9, 0.8, 0.85], [0.85, 0.86, 0.84]) > 0.05
    assert paired_ttest([0.5, 0.5, 0.5], [0.5, 0.5, 0.5]) == 1.0


def _row(tmp_path, label, method, seed, acc, trainable, secs, preds=None):
    d = tmp_path / f"{label}-{seed}"
    d.mkdir()
    labels = [0, 1] * 50
    preds = preds if preds is not None else labels
    (d / "predictions.tsv").write_text("split\tindex\tline\tlabel\tprediction\n" + "".join(
        f"validation\t{i}\t{i + 2}\t{y}\t{p}\n" for i, (y, p) in enumerate(zip(labels, preds))))
    return {"run_id": f"{label}-{seed}", "model": "m", "task": "sst2", "label": label, "method": method, "seed": seed,
            "status": "completed", "metrics": {"accuracy": acc}, "main_metric": "accuracy", "run_dir": str(d),
            "trainable": trainable, "total": 1000, "trainable_pct": 100.0 * trainable / 1000,
            "trainable_without_head": trainable - 10, "train_seconds": secs, "samples_per_second": 100 / secs,
            "peak_rss_mb": 500.0, "peak_cuda_mb": None, "history": [], "params": {}}


def test_summary_table_mean_std_best_marks_and_ttest_with_three_seeds(tmp_path):
    rows = []
    for s, (a_full, a_lora) in enumerate([(0.90, 0.80), (0.92, 0.81), (0.91, 0.79)]):
        rows.append(_row(tmp_path, "full", "full", s, a_full, 1000, 10.0 + s))
        rows.append(_row(tmp_path, "lora", "lora", s, a_lora, 50, 5.0))
    (ts,) = summarize(rows)
    t = task_table(ts)
    full, lora = t.rows[0], t.rows[1]
    assert full[2] == "0.9100 ± 0.0100" and lora[2] == "0.8000 ± 0.0100"
    assert lora[4].endswith("(t-test, n=3)")
    col = t.header.index("trainable params")
    assert (1, col) in t.best and (0, col) not in t.best  # fewer params is better
    assert (0, 2) in t.best  # higher accuracy is better
    assert t.rows[-1][0].startswith("majority class") and t.rows[-1][2] == "0.5000"
    assert ts.get("lora").significance.delta == pytest.approx(-0.11)


def test_a_cell_counts_as_done_only_when_completed_marked_and_same_config(tmp_path):
    from tunelab.compare.config import parse_compare_yaml
    from tunelab.compare.execute import completed_record, mark_completed
    from tunelab.compare.grid import expand
    from tunelab.methods import get_method

    cc = parse_compare_yaml("tasks: [sst2]\nmethods: [lora]\nlora_r: 4\n", "x.yaml")
    (cell,) = expand(cc, str(tmp_path))
    d = tmp_path / "runs" / cell.run_id
    d.mkdir(parents=True)
    rec = {"status": "completed", "started_at": "t0",
           "config": {**cell.config.as_dict(), "lr": get_method("lora").default_lr, "device": "cpu"}}
    (d / "run.json").write_text(json.dumps(rec))
    assert mark_completed(cell) is None  # no predictions.tsv: not a finished run
    (d / "predictions.tsv").write_text("split\tindex\tline\tlabel\tprediction\n")
    assert completed_record(cell) is None  # finished, but compare has not checked it yet
    assert mark_completed(cell) is not None
    assert completed_record(cell) is not None
    (d / "run.json").write_text(json.dumps({**rec, "started_at": "t1"}))  # a different run in that folder
    assert completed_record(cell) is None
    (d / "run.json").write_text(json.dumps({**rec, "status": "running"}))
    assert completed_record(cell) is None and mark_completed(cell) is None
    (d / "run.json").write_text(json.dumps({**rec, "config": {**rec["config"], "lora_r": 16}}))
    assert mark_completed(cell) is None  # the run did not use the cell's options
    (d / "run.json").write_text('{"status": "compl')  # torn write
    assert completed_record(cell) is None
    (cell2,) = expand(parse_compare_yaml("tasks: [sst2]\nmethods: [lora]\nlora_r: 8\n", "x.yaml"), str(tmp_path))
    (d / "run.json").write_text(json.dumps(rec))
    assert completed_record(cell) is not None and completed_record(cell2) is None  # config changed: redo
    # a field default that changed since the run (the hash leaves defaults out): the cell is stale
    (d / "run.json").write_text(json.dumps({**rec, "config": {**rec["config"], "warmup_ratio": 0.1}}))
    assert cell.config.warmup_ratio != 0.1 and completed_record(cell) is None


def test_a_method_revision_changes_the_cell_hash(tmp_path, monkeypatch):
    """A method whose results change at unchanged options raises its revision: old cells re-run."""
    from tunelab.compare.config import parse_compare_yaml
    from tunelab.compare.grid import expand
    from tunelab.methods import get_method

    cc = parse_compare_yaml("tasks: [sst2]\nmethods: [lora]\n", "x.yaml")
    (before,) = expand(cc, str(tmp_path))
    monkeypatch.setattr(get_method("lora"), "revision", 2)
    (after,) = expand(cc, str(tmp_path))
    assert before.config.as_dict() == after.config.as_dict() and before.config_hash != after.config_hash


def test_lower_is_better_metrics_are_marked_and_described_as_such(tmp_path):
    from tunelab.report.findings import task_findings

    rows = []
    for label, method, ppl in (("full", "full", 3.0), ("lora", "lora", 2.5)):
        r = _row(tmp_path, label, method, 0, 0.0, 100, 1.0)
        r["metrics"] = {"chosen_logppl": ppl}
        r["main_metric"] = "chosen_logppl"
        rows.append(r)
    (ts,) = summarize(rows)
    t = task_table(ts)
    assert t.header[2] == "chosen_logppl (lower is better)"
    assert (1, 2) in t.best and (0, 2) not in t.best
    assert "the lowest (best) mean was lora with 2.5000" in task_findings(ts)
