"""Preemption (train/preempt.py): SIGTERM / SIGINT stop a run at the next optimizer-step boundary,
with a checkpoint under --save-every, run.json status "interrupted", exit 128 + signal; `--resume`
then ends exactly like the uninterrupted run. The signal handling itself (deferral inside the loop,
at once outside it, grace timer, second signal) is unit-tested in this process."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.train import preempt
from tunelab.train.checkpoint import find_checkpoint, read_meta

REPO = Path(__file__).resolve().parents[1]
# 32 examples, batches of 8: 4 optimizer steps per epoch
SMALL = ["--max-train-samples", "32", "--max-eval-samples", "16", "--max-seq-length", "64", "--batch-size", "8",
         "--threads", "1", "--seed", "3"]
DEADLINE_S = 120  # never hang CI: the child is killed after this


def run_cmd(data_dir, out, *extra) -> list:
    return ["run", "--task", "sst2", "--method", "full", "--model", "minilm", "--data-dir", data_dir,
            "--output-dir", str(out), *SMALL, *extra]


def env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "src"), "TOKENIZERS_PARALLELISM": "false"}


def run_and_signal(args: list, out: Path, sig=signal.SIGTERM) -> tuple:
    """Start ``tunelab run``; send ``sig`` once its first checkpoint exists; (exit code, stderr)."""
    proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env())
    meta = out / "checkpoint" / "checkpoint.json"
    deadline = time.time() + DEADLINE_S
    sent = False
    try:
        while proc.poll() is None and time.time() < deadline:
            if meta.is_file():
                proc.send_signal(sig)
                sent = True
                break
            time.sleep(0.02)
        _, err = proc.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    assert sent, f"the run ended (rc {proc.returncode}) before its first checkpoint: {err[-1500:]}"
    return proc.returncode, err


def load(out) -> dict:
    return json.loads(Path(out, "run.json").read_text())


def test_sigterm_stops_at_a_step_boundary_as_interrupted(glue_data_dir, tmp_path):
    out = tmp_path / "run"
    rc, err = run_and_signal(run_cmd(glue_data_dir, out, "--epochs", "4", "--save-every", "2"), out)
    assert rc == 128 + signal.SIGTERM == 143, err[-1500:]
    assert "interrupted (SIGTERM) at step" in err and "--resume" in err
    rec = load(out)
    assert rec["status"] == "interrupted"
    info = rec["interrupted"]
    assert info["signal"] == "SIGTERM" and info["at_step_boundary"] and info["checkpoint_written"]
    assert 2 <= info["step"] < 16
    path = find_checkpoint(str(out))
    assert path is not None and read_meta(path)["step"] == info["step"] == info["resumable_from_step"]
    assert not [p for p in os.listdir(out) if p.startswith("checkpoint.tmp")]


@pytest.mark.slow
def test_sigterm_then_resume_ends_like_the_uninterrupted_run(glue_data_dir, tmp_path):
    ref_out, out = tmp_path / "ref", tmp_path / "run"
    assert main(run_cmd(glue_data_dir, ref_out, "--epochs", "2")) == 0
    ref = load(ref_out)
    rc, err = run_and_signal(run_cmd(glue_data_dir, out, "--epochs", "2", "--save-every", "2"), out)
    assert rc == 143, err[-1500:]
    stopped = load(out)
    assert stopped["status"] == "interrupted" and stopped["interrupted"]["step"] < 8
    r = subprocess.run([sys.executable, "-m", "tunelab.cli", "run", "--resume", str(out), "--threads", "1"],
                       capture_output=True, text=True, env=env(), timeout=DEADLINE_S)
    assert r.returncode == 0, r.stderr[-2000:]
    rec = load(out)
    assert rec["status"] == "completed" and "interrupted" not in rec
    assert rec["resumed"][0]["from_step"] == stopped["interrupted"]["step"]
    assert [h["train_loss"] for h in rec["history"]] == [h["train_loss"] for h in ref["history"]]
    assert [h["metrics"] for h in rec["history"]] == [h["metrics"] for h in ref["history"]]
    assert rec["metrics"] == ref["metrics"] and rec["time"]["steps"] == ref["time"]["steps"] == 8
    assert not [p for p in os.listdir(out) if p.startswith("checkpoint")]


# ------------------------------------------------------------------ the handler, in this process


def _kill_self(sig=signal.SIGTERM):
    os.kill(os.getpid(), sig)
    time.sleep(0.05)  # the handler runs between bytecodes of the main thread


def test_outside_the_loop_a_signal_stops_at_once():
    with preempt.handle_signals():
        with pytest.raises(preempt.Preempted) as e:
            _kill_self()
            time.sleep(2)
    assert e.value.signum == signal.SIGTERM and e.value.exit_code == 143 and e.value.step is None
    assert isinstance(e.value, KeyboardInterrupt)


def test_inside_the_loop_a_signal_waits_for_the_step_boundary_then_a_second_one_stops_at_once():
    stopper = preempt.Stopper()
    with preempt.handle_signals():
        with preempt.deferring():
            assert not stopper.check(1)
            _kill_self(signal.SIGINT)  # deferred: only a flag
            assert stopper.check(2)
            exc = stopper.stop(2, checkpoint=True)
            assert exc.exit_code == 130 and exc.step == 2 and exc.checkpoint
        with preempt.deferring():
            _kill_self()
            with pytest.raises(preempt.Preempted):
                _kill_self()  # a second signal: at once
                time.sleep(2)


def test_a_step_that_outlasts_the_grace_period_is_stopped_at_once():
    t0 = time.time()
    with preempt.handle_signals(grace_s=0.3):
        with preempt.deferring():
            with pytest.raises(preempt.Preempted) as e:
                _kill_self()
                time.sleep(5)  # "a step" that does not end
    assert 0.2 < time.time() - t0 < 3 and not e.value.at_boundary
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the handlers are restored
