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
    return signal_at_checkpoint([sys.executable, "-m", "tunelab.cli", *args], out, sig)


def signal_at_checkpoint(cmd: list, run_dir: Path, sig=signal.SIGTERM) -> tuple:
    """Start ``cmd``; send ``sig`` once ``run_dir`` holds its first checkpoint (a deadline, never a hang);
    (exit code, stderr)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env())
    meta = run_dir / "checkpoint" / "checkpoint.json"
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
    assert sent, f"the process ended (rc {proc.returncode}) before the first checkpoint: {err[-1500:]}"
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


@pytest.mark.slow
def test_data_parallel_ranks_stop_at_the_same_step_when_one_is_told(glue_data_dir, tmp_path):
    """torchrun, 2 processes on CPU (gloo): SIGTERM to rank 1 alone (it does not write the output):
    the ranks agree at the step boundary (all-reduced flag), rank 0 writes the checkpoint and
    run.json "interrupted"; `torchrun … run --resume` completes it."""
    torchrun = Path(sys.executable).parent / "torchrun"
    if not torchrun.exists():
        pytest.fail(f"{torchrun} not found (torch's launcher, installed with torch)")
    out = tmp_path / "ddp"
    e = {**env(), "OMP_NUM_THREADS": "1"}
    launch = [str(torchrun), "--nproc_per_node", "2", "--standalone", "-m", "tunelab"]
    args = ["run", "--task", "sst2", "--method", "full", "--model", "minilm", "--data-dir", glue_data_dir,
            "--output-dir", str(out), "--max-train-samples", "64", "--max-eval-samples", "32", "--batch-size", "16",
            "--epochs", "3", "--seed", "3", "--threads", "1", "--save-every", "2"]
    p = subprocess.Popen([*launch, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=e)
    meta, deadline, told = out / "checkpoint" / "checkpoint.json", time.time() + 200, None
    try:
        while p.poll() is None and time.time() < deadline and told is None:
            if meta.is_file():
                for k in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
                    environ = Path(f"/proc/{k}/environ").read_bytes().split(b"\0")
                    if b"RANK=1" in environ:
                        os.kill(int(k), signal.SIGTERM)
                        told = k
            time.sleep(0.02)
        _, err = p.communicate(timeout=max(1.0, deadline - time.time()))
    except subprocess.TimeoutExpired:
        for k in subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split():
            os.kill(int(k), signal.SIGKILL)
        p.kill()
        _, err = p.communicate()
    assert told, f"the run ended (rc {p.returncode}) before its first checkpoint: {err[-1500:]}"
    assert p.returncode != 0
    rec = load(out)
    assert rec["status"] == "interrupted", err[-3000:]
    info = rec["interrupted"]
    assert info["at_step_boundary"] and info["checkpoint_written"] and info["step"] < 12
    assert read_meta(find_checkpoint(str(out)))["step"] == info["step"]
    r = subprocess.run([*launch, "run", "--resume", str(out), "--threads", "1"], capture_output=True, text=True,
                       env=e, timeout=200)
    assert r.returncode == 0, r.stderr[-3000:]
    done = load(out)
    assert done["status"] == "completed" and done["time"]["steps"] == 12
    assert done["resumed"][0]["from_step"] == info["step"]


STUDY = """\
name: preempt-study
tasks: [sst2]
methods: [full]
seeds: [3]
max_train_samples: 32
max_eval_samples: 16
max_seq_length: 64
batch_size: 8
epochs: 3
save_every: 2
"""


@pytest.mark.slow
def test_sigterm_to_a_compare_interrupts_its_run_and_the_next_compare_resumes_it(glue_data_dir, tmp_path):
    """A scheduler SIGTERMs the compare alone: the compare passes it on to its run (which stops at a
    step boundary with a checkpoint, "interrupted") and exits 143; the same command again resumes the cell."""
    study, out = tmp_path / "study.yaml", tmp_path / "cmp"
    study.write_text(STUDY)
    cmd = [sys.executable, "-m", "tunelab.cli", "compare", str(study), "--output-dir", str(out), "--data-dir",
           glue_data_dir, "--threads", "1", "--no-report"]
    cell = out / "runs" / "sst2--full--minilm--s3"
    rc, err = signal_at_checkpoint(cmd, cell)
    assert rc == 143, err[-2000:]
    rec = load(cell)
    assert rec["status"] == "interrupted" and rec["interrupted"]["checkpoint_written"], err[-2000:]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env(), timeout=DEADLINE_S)
    assert r.returncode == 0, r.stderr[-2000:]
    first = (out / "logs" / "sst2--full--minilm--s3.log").read_text().splitlines()[0]
    assert first.startswith("$ tunelab run") and "--resume" in first
    done = load(cell)
    assert done["status"] == "completed" and done["resumed"][0]["from_step"] == rec["interrupted"]["step"]
