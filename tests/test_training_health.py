"""Divergence: a non-finite loss stops the run as failed with a reason; a loss that climbs far above
its start is flagged in run.json, and a compare counts such a cell failed."""

import json
import math

import pytest

from tunelab.cli import main
from tunelab.train.health import LossWatch, RunDiverged


def test_loss_watch_flags_a_climbing_loss_and_stops_on_nan():
    w = LossWatch(factor=10)
    for i, loss in enumerate([0.7] * 5 + [0.6] * 5 + [2.0] * 5, start=1):
        w.step(loss, i)
    assert not w.diverged  # 2.0 < 10 x 0.7
    for i, loss in enumerate([9.0] * 5, start=16):
        w.step(loss, i)
    assert w.diverged and w.summary()["max_loss"] == 9.0 and w.summary()["start_loss"] == pytest.approx(0.7)
    with pytest.raises(RunDiverged, match="loss became nan at step 21: training diverged; try a lower --lr"):
        w.step(math.nan, 21)
    with pytest.raises(RunDiverged, match="gradient norm became inf"):
        w.check_finite(math.inf, "gradient norm", 3)


def test_huge_lr_is_never_recorded_as_a_healthy_completed_run(tmp_path, glue_data_dir, capsys):
    out = tmp_path / "div"
    rc = main(["run", "--task", "sst2", "--method", "full", "--lr", "1e3", "--data-dir", glue_data_dir,
               "--output-dir", str(out), "--max-train-samples", "160", "--max-eval-samples", "16", "--epochs", "1",
               "--batch-size", "8", "--threads", "1", "--max-grad-norm", "0"])
    err = capsys.readouterr().err
    rec = json.loads((out / "run.json").read_text())
    if rec["status"] == "failed":  # a non-finite loss: stopped at once with the reason
        assert rc == 1 and "training diverged; try a lower --lr" in rec["error"]
        assert "tunelab: run failed:" in err and "Traceback" not in err
    else:
        assert rec["training_health"]["diverged"] is True and "training diverged" in err
        assert rec["training_health"]["max_loss"] > 10 * rec["training_health"]["start_loss"]


def test_a_normal_run_is_not_flagged(tmp_path, glue_data_dir):
    out = tmp_path / "ok"
    assert main(["run", "--task", "sst2", "--method", "lora", "--data-dir", glue_data_dir, "--output-dir", str(out),
                 "--max-train-samples", "160", "--max-eval-samples", "16", "--epochs", "1", "--batch-size", "8",
                 "--threads", "1"]) == 0
    health = json.loads((out / "run.json").read_text())["training_health"]
    assert health["diverged"] is False and health["start_loss"] is not None


def test_compare_counts_a_diverged_cell_failed(tmp_path):
    from tunelab.compare.config import load_compare_config
    from tunelab.compare.execute import mark_completed
    from tunelab.compare.grid import expand

    study = tmp_path / "s.yaml"
    study.write_text("tasks: [sst2]\nmethods: [full]\n")
    (cell,) = expand(load_compare_config(str(study)), str(tmp_path / "out"))
    import os

    os.makedirs(cell.run_dir)
    rec = {"status": "completed", "config": cell.config.as_dict(), "started_at": "t",
           "training_health": {"diverged": False}}
    (tmp_path / "out" / "runs" / cell.run_id / "predictions.tsv").write_text("split\n")
    path = tmp_path / "out" / "runs" / cell.run_id / "run.json"
    path.write_text(json.dumps(rec))
    assert mark_completed(cell) is not None  # healthy: completed
    rec["training_health"]["diverged"] = True
    path.write_text(json.dumps(rec))
    assert mark_completed(cell) is None  # diverged: not completed
