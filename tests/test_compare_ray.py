"""``tunelab compare --executor ray``: the quick preset shrunk to 2 cells, run (1) by the local
executor in this process, the reference; (2) on a local Ray instance that the command starts,
SIGKILLed once the first cell is stored; (3) again, on a Ray instance this test started, through
``--address``. The Ray store must hold the same cells and the same numbers as the local one, the
re-run must redo only the cell the kill interrupted, and ``tunelab report`` must read the store."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from compare_helpers import compare_cmd, completed_rows, processes_mentioning, run_json
from test_compare_study import md_table
from tunelab.cli import main

GRID = ["--preset", "quick", "tasks=sst2", "methods=full,lora", "max_train_samples=32", "max_eval_samples=32",
        "epochs=1", "max_seq_length=64"]
RUN_IDS = ["sst2--full--minilm--s0", "sst2--lora--minilm--s0"]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
# Ray 2.60: an instance started by ray.init requires a token (~/.ray/auth_token, written when the
# instance starts); a driver connecting to it through an address sends it only with RAY_AUTH_MODE=token.

# A Ray instance of our own for the --address run: a driver process that starts one and keeps it
# until its stdin closes (a Ray instance started by a driver stops with it: nothing is left behind).
RAY_HOST = """
import sys, ray
ray.init(num_cpus=1, num_gpus=0, include_dashboard=False, logging_level="WARNING")
print("ADDRESS", ray.get_runtime_context().gcs_address, flush=True)
sys.stdin.read()
ray.shutdown()
"""


def store_rows(out) -> dict:
    import sqlite3

    with sqlite3.connect(out / "results.sqlite") as con:
        con.row_factory = sqlite3.Row
        return {r["run_id"]: dict(r) for r in con.execute("SELECT * FROM runs")}


def untimed(history: list) -> list:
    return [{k: v for k, v in epoch.items() if not k.endswith("_seconds")} for epoch in history]


def started_at(out) -> dict:
    return {rid: (run_json(out, rid) or {}).get("started_at") for rid in RUN_IDS}


@pytest.fixture(scope="module")
def ray_study(tmp_path_factory, glue_data_dir):
    tmp = tmp_path_factory.mktemp("compare-ray")
    local, out = tmp / "local", tmp / "ray"
    common = [*GRID, "--data-dir", glue_data_dir, "--threads", "1", "--jobs", "1", "--no-report"]
    info = {"local": local, "dir": out, "t0": time.time()}

    # (3)'s Ray instance starts meanwhile (it only waits for its first use)
    host = subprocess.Popen([sys.executable, "-c", RAY_HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=ENV)
    try:
        # (1) the reference: the local executor, in this process
        assert main(["compare", *common, "--output-dir", str(local)]) == 0

        # (2) Ray, started by the command; SIGKILL once the first cell is stored
        with open(tmp / "first.log", "w") as log:
            proc = subprocess.Popen(compare_cmd(*common, "--output-dir", str(out), "--executor", "ray"),
                                    stdout=log, stderr=subprocess.STDOUT, env=ENV)
            deadline = time.time() + 300
            while time.time() < deadline and proc.poll() is None and not completed_rows(out / "results.sqlite"):
                time.sleep(0.2)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        info["first_log"] = (tmp / "first.log").read_text()
        info["killed_completed"] = sorted(completed_rows(out / "results.sqlite"))
        info["started_before"] = started_at(out)
        deadline = time.time() + 10  # the run dies with its Ray worker, which dies with the instance
        while (orphans := [p for p in processes_mentioning(str(out)) if p != os.getpid()]) and time.time() < deadline:
            time.sleep(0.2)
        info["orphans"] = orphans

        # (3) the same command against the test's Ray instance
        line = host.stdout.readline()
        assert line.startswith("ADDRESS "), line
        address = line.split()[1]
        info["resume"] = subprocess.run(
            compare_cmd(*common, "--output-dir", str(out), "--executor", "ray", "--address", address),
            capture_output=True, text=True, env={**ENV, "RAY_AUTH_MODE": "token"}, timeout=600)
        info["started_after"] = started_at(out)
        info["address"] = address
    finally:
        host.communicate("", timeout=60)
    info["seconds"] = round(time.time() - info["t0"], 1)
    return info


def test_ray_compare_fills_the_same_store_as_the_local_executor(ray_study):
    s = ray_study
    assert s["resume"].returncode == 0, s["resume"].stdout[-2000:] + s["resume"].stderr[-2000:]
    assert "on ray" in s["first_log"] and "on ray" in s["resume"].stdout
    ray_rows, local_rows = store_rows(s["dir"]), store_rows(s["local"])
    assert sorted(ray_rows) == sorted(local_rows) == RUN_IDS
    for rid in RUN_IDS:
        r, l = ray_rows[rid], local_rows[rid]
        assert r["status"] == l["status"] == "completed"
        assert r["config_hash"] == l["config_hash"]
        # deterministic on CPU with 1 thread: the same metrics, history and predictions
        assert json.loads(r["metrics_json"]) == json.loads(l["metrics_json"])
        assert untimed(json.loads(r["history_json"])) == untimed(json.loads(l["history_json"]))
        assert r["trainable"] == l["trainable"] and r["steps"] == l["steps"]
        assert ((s["dir"] / "runs" / rid / "predictions.tsv").read_bytes()
                == (s["local"] / "runs" / rid / "predictions.tsv").read_bytes())
        # the driver measured the run's process, like the local executor does
        assert r["process_wall_seconds"] > 0 and r["process_cpu_seconds"] > 0
    from tunelab.results.store import Store

    meta = Store(str(s["dir"] / "results.sqlite")).meta()
    assert meta["executor"]["name"] == "ray" and meta["executor"]["address"] == s["address"]
    assert "--executor" in meta["command"]


def test_killed_ray_compare_reruns_only_the_missing_cell(ray_study):
    s = ray_study
    assert len(s["killed_completed"]) == 1, s["first_log"][-2000:]
    assert s["orphans"] == [], "a run process outlived the killed compare"
    assert s["resume"].returncode == 0, s["resume"].stderr[-2000:]
    assert "runs: 1 run now, 1 already done, 0 failed" in s["resume"].stdout
    # an independent count of the runs started by the re-run: the run.json start times that changed
    restarted = [rid for rid in RUN_IDS if s["started_after"][rid] != s["started_before"][rid]]
    assert restarted == [rid for rid in RUN_IDS if rid not in s["killed_completed"]]
    for rid in RUN_IDS:
        assert run_json(s["dir"], rid)["status"] == "completed"


def test_report_reads_the_ray_store(ray_study, capsys):
    out = ray_study["dir"]
    assert main(["report", str(out)]) == 0
    md = (out / "report.md").read_text()
    runs = {r["run id"]: r for r in md_table(md, "## All runs")}
    assert sorted(runs) == RUN_IDS
    for rid, r in runs.items():
        rec = run_json(out, rid)
        assert r["status"] == "completed" and r["value"] == f"{rec['metrics'][rec['main_metric']]:.4f}"
    assert "--executor ray" in md  # the reproduction command
    assert (out / "report.html").stat().st_size > 1000


@pytest.mark.slow  # ~28 s on a loaded 2-core machine: a Ray instance and a compare process for one error line
def test_more_gpus_per_run_than_the_cluster_has_is_refused(tmp_path, glue_data_dir):
    """A run asking for a GPU the cluster lacks would wait forever: refused at once instead."""
    host = subprocess.Popen([sys.executable, "-c", RAY_HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True, env=ENV)
    try:
        address = host.stdout.readline().split()[1]
        res = subprocess.run(compare_cmd(*GRID, "--data-dir", glue_data_dir, "--output-dir", str(tmp_path / "gpu"),
                                         "--executor", "ray", "--address", address, "--gpus-per-run", "1"),
                             capture_output=True, text=True, env={**ENV, "RAY_AUTH_MODE": "token"}, timeout=300)
    finally:
        host.communicate("", timeout=60)
    assert res.returncode == 2
    assert res.stderr.strip().splitlines()[-1] == (
        "tunelab: error: --cpus-per-run 1 --gpus-per-run 1: more than the Ray cluster has (1 CPUs, 0 GPUs)")
    assert completed_rows(tmp_path / "gpu" / "results.sqlite") == []


def test_executor_ray_without_ray_installed_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    out = tmp_path / "study"
    assert main(["compare", *GRID, "--executor", "ray", "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tunelab: error: --executor ray: Ray is not installed; install it with: pip install 'tunelab[ray]'"]
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--cpus-per-run", "2"], "--cpus-per-run: applies to --executor ray only"),
    (["--address", "auto"], "--address: applies to --executor ray only"),
    (["--executor", "ray", "--isolation", "fork"], "--isolation: applies to the local executor"),
    (["--executor", "ray", "--cpus-per-run", "0"], "--cpus-per-run 0: must be > 0"),
])
def test_executor_options_are_checked_before_anything_runs(tmp_path, capsys, flags, message):
    out = tmp_path / "study"
    assert main(["compare", *GRID, *flags, "--output-dir", str(out)]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
