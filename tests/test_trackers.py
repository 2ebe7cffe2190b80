"""--report-to: TensorBoard event files read back with tensorboard's own EventAccumulator, an MLflow
file store read back with mlflow's client (one experiment per compare study, one run per cell), and
the one-line errors. The values read back are checked against run.json (written by another path)."""

import json
import os
import subprocess
import sys

import pytest

from conftest import tiny_run_args
from tunelab.cli import main

pytest.importorskip("tensorboard")


def scalars(folder, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(folder))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def test_tensorboard_logs_every_step_and_epoch(tmp_path, glue_data_dir):
    out = tmp_path / "run"
    args = tiny_run_args("sst2", "lora", glue_data_dir, str(out), "--report-to", "tensorboard")
    args[args.index("--epochs") + 1] = "2"
    assert main(args) == 0
    rec = json.loads((out / "run.json").read_text())
    steps = rec["time"]["steps"]
    loss = scalars(out / "tensorboard", "train/loss")
    assert [s for s, _ in loss] == list(range(1, steps + 1))
    # the per-step losses read back average to run.json's per-epoch train_loss (the loop's own mean)
    per_epoch = steps // 2
    for e, h in enumerate(rec["history"]):
        chunk = [v for s, v in loss if e * per_epoch < s <= (e + 1) * per_epoch]
        assert sum(chunk) / len(chunk) == pytest.approx(h["train_loss"], abs=1e-6)
    acc = scalars(out / "tensorboard", "eval/accuracy")
    assert acc == [(h["step"], pytest.approx(h["metrics"]["accuracy"])) for h in rec["history"]]
    lr = [v for _, v in scalars(out / "tensorboard", "train/learning_rate")]
    assert len(lr) == steps and lr[0] == pytest.approx(rec["config"]["lr"], rel=1e-6) and lr[-1] < lr[0]
    assert len(scalars(out / "tensorboard", "train/grad_norm")) == steps
    assert scalars(out / "tensorboard", "final/accuracy")[0][1] == pytest.approx(rec["metrics"]["accuracy"])
    assert scalars(out / "tensorboard", "params/trainable")[0][1] == rec["params"]["trainable"]


def test_tensorboard_logging_dir(tmp_path, glue_data_dir):
    out, logs = tmp_path / "run", tmp_path / "logs"
    args = tiny_run_args("sst2", "full", glue_data_dir, str(out), "--report-to", "tensorboard",
                         "--logging-dir", str(logs), "--max-train-samples", "32")
    assert main(args) == 0
    assert not (out / "tensorboard").exists()
    assert len(scalars(logs, "train/loss")) == json.loads((out / "run.json").read_text())["time"]["steps"]


STUDY = """\
name: tracked-study
tasks: [sst2]
seeds: [0]
methods: [full, lora]
max_train_samples: 32
max_eval_samples: 16
epochs: 1
batch_size: 16
"""


def test_mlflow_one_run_per_compare_cell(tmp_path, glue_data_dir):
    pytest.importorskip("mlflow")
    (tmp_path / "study.yaml").write_text(STUDY)
    store = tmp_path / "mlruns"
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"file:{store}",
           "PYTHONPATH": os.pathsep.join(p for p in (os.environ.get("PYTHONPATH"), os.path.join(os.path.dirname(
               __file__), "..", "src")) if p)}
    r = subprocess.run([sys.executable, "-m", "tunelab.cli", "compare", str(tmp_path / "study.yaml"), "--data-dir",
                        glue_data_dir, "--output-dir", str(tmp_path / "cmp"), "--report-to", "mlflow", "--no-report"],
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=f"file:{store}")
    exp = client.get_experiment_by_name("tracked-study")
    runs = client.search_runs([exp.experiment_id])
    assert sorted(r.info.run_name for r in runs) == ["sst2--full--minilm--s0", "sst2--lora--minilm--s0"]
    for run in runs:
        rec = json.loads((tmp_path / "cmp" / "runs" / run.info.run_name / "run.json").read_text())
        assert run.info.status == "FINISHED"
        assert {k: run.data.tags[k] for k in ("task", "method", "model", "seed")} == {
            "task": "sst2", "method": rec["method"], "model": "minilm", "seed": "0"}
        assert float(run.data.params["lr"]) == rec["config"]["lr"]
        assert run.data.params["batch_size"] == str(rec["config"]["batch_size"])
        assert run.data.metrics["final/accuracy"] == pytest.approx(rec["metrics"]["accuracy"])
        assert run.data.metrics["params/trainable"] == rec["params"]["trainable"]
        hist = client.get_metric_history(run.info.run_id, "train/loss")
        assert sorted(m.step for m in hist) == list(range(1, rec["time"]["steps"] + 1))
        assert "run.json" in [a.path for a in client.list_artifacts(run.info.run_id)]


@pytest.mark.parametrize("value, needle", [("tensorbored", "unknown tracker 'tensorbored'"),
                                           ("wandb", "the wandb package is not installed")])
def test_report_to_errors_one_line(tmp_path, glue_data_dir, capsys, monkeypatch, value, needle):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "wandb" else real(name, *a))
    out = tmp_path / "run"
    assert main(tiny_run_args("sst2", "full", glue_data_dir, str(out), "--report-to", value)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0] and err[0].startswith("tunelab: error: --report-to")
    assert not out.exists()
