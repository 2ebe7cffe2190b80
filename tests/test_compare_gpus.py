"""`tunelab compare --gpus-per-run N` with the local executor (compare/executors.py): one run per N
GPUs at a time, each child with its own CUDA_VISIBLE_DEVICES. Tested without GPUs: the GPU list is
monkeypatched and the cells' processes are short stand-ins that log their environment and times."""

import os
import subprocess
import sys

import pytest

from tunelab.cli import main
from tunelab.compare import execute, executors
from tunelab.compare.executors import gpu_slots, visible_gpus

GRID = ["--preset", "quick", "tasks=sst2", "methods=full,lora", "seeds=0,1,2", "max_train_samples=32",
        "max_eval_samples=32", "epochs=1", "max_seq_length=64"]

CHILD = """
import os, sys, time
log = sys.argv[1]
def note(what):
    with open(log, "a") as f:
        f.write(f"{what} {time.monotonic():.6f} {os.environ.get('CUDA_VISIBLE_DEVICES', '<unset>')} {os.getpid()}\\n")
note("start")
time.sleep(0.5)
note("end")
"""


def test_slots_take_consecutive_groups_of_gpus():
    assert gpu_slots(["0", "1", "2", "3"], 1) == ["0", "1", "2", "3"]
    assert gpu_slots(["0", "1", "2", "3"], 2) == ["0,1", "2,3"]
    assert gpu_slots(["0", "1", "2", "3"], 3) == ["0,1,2"]
    assert gpu_slots(["0", "1", "2", "3"], 1, jobs=2) == ["0", "1"]
    assert gpu_slots(["4", "6", "7"], 2) == ["4,6"]  # the ids the compare itself was given


def test_visible_gpus_follows_cuda_visible_devices(monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5,-1,7")  # CUDA stops at the first invalid entry
    assert visible_gpus() == ["2", "5"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    assert visible_gpus() == []


@pytest.mark.parametrize("gpus, flag, message", [
    ([], "1", "tunelab: error: --gpus-per-run 1: this machine has no GPU"),
    (["0", "1"], "0.5", "tunelab: error: --gpus-per-run 0.5: the local executor gives each run whole GPUs"),
    (["0", "1"], "3", "tunelab: error: --gpus-per-run 3: more than the 2 GPU(s) here (0,1)"),
])
def test_gpus_per_run_that_cannot_be_met_is_one_line(tmp_path, monkeypatch, capsys, gpus, flag, message):
    monkeypatch.setattr(executors, "visible_gpus", lambda: list(gpus))
    out = tmp_path / "study"
    assert main(["compare", *GRID, "--gpus-per-run", flag, "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(message), err
    assert not out.exists()


def test_each_run_gets_its_own_gpus_and_at_most_gpus_over_n_run_at_once(tmp_path, monkeypatch, capsys,
                                                                          glue_data_dir):
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0", "1", "2", "3"])
    events = tmp_path / "events.log"
    envs = []

    def fake_start(cell, log_path, slot=0, env=None):  # the exec starter's contract, a 0.5 s stand-in process
        envs.append(dict(env or {}))
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(events)], env={**(env or {}), "PATH": ""})
        proc.returncode = 0  # reaped by the executor (os.wait4)
        os.makedirs(os.path.dirname(log_path), exist_ok=True)
        open(log_path, "a").close()
        return proc.pid

    monkeypatch.setitem(execute.STARTERS, "exec", fake_start)
    out = tmp_path / "study"
    main(["compare", *GRID, "--gpus-per-run", "2", "--isolation", "exec", "--data-dir", glue_data_dir,
          "--output-dir", str(out), "--no-report"])  # the stand-ins write no run.json: every cell "fails"
    cap = capsys.readouterr()
    assert "6 runs" in cap.out, cap.err[-2000:]
    assert events.is_file(), cap.out + cap.err
    lines = [ln.split() for ln in events.read_text().splitlines()]
    assert len(lines) == 12 and sorted(e["CUDA_VISIBLE_DEVICES"] for e in envs) == ["0,1"] * 3 + ["2,3"] * 3
    running, most = {}, 0
    for what, _t, devices, pid in sorted(lines, key=lambda ln: float(ln[1])):
        if what == "start":
            assert devices in ("0,1", "2,3") and devices not in running.values(), (devices, running)
            running[pid] = devices
            most = max(most, len(running))
        else:
            running.pop(pid)
    assert most == 2  # 4 GPUs / 2 per run: two at a time, never more


def test_jobs_cap_the_gpu_slots(monkeypatch):
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0", "1", "2", "3"])

    class NS:
        executor, address, cpus_per_run, isolation = "local", None, None, "exec"
        gpus_per_run, jobs = 1.0, None

    ex = executors.make_executor(NS, 2)  # a config's jobs (sized for CPU cores) does not apply
    assert ex.slots == 4 and ex.describe()["devices"] == ["0", "1", "2", "3"]
    NS.jobs = 3
    assert executors.make_executor(NS, 3).slots == 3
    NS.gpus_per_run = None
    assert executors.make_executor(NS, 3).devices is None
