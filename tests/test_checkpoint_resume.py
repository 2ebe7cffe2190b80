"""Checkpoints and resume (train/checkpoint.py, resume.py): a run SIGKILLed mid-epoch and resumed
with ``tunelab run --resume`` ends exactly like the uninterrupted run (real minilm, real SST-2
rows); a resume with changed options, of a completed run or without a checkpoint is refused with
one line; checkpoint writing is atomic."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tunelab.cli import main
from tunelab.train.batching import LengthGroupedBatches, set_epoch
from tunelab.train.checkpoint import find_checkpoint, read_meta, write_checkpoint

REPO = Path(__file__).resolve().parents[1]
# 32 examples, batches of 8: 4 optimizer steps per epoch, 8 in all
SMALL = ["--max-train-samples", "32", "--max-eval-samples", "16", "--max-seq-length", "64", "--batch-size", "8",
         "--epochs", "2", "--threads", "1", "--seed", "3"]
# alf (default score change, probe window of 3 steps): top 3 from step 0, decisions after steps 3 and 7; the kill at
# step 6 falls inside the second probe window, so the resumed run needs the shadow optimizer's state
# adalora (8 steps: pruning from step 0, ranks fixed at the last): the kill falls while ranks are being reallocated,
# so the resumed run needs the rank allocator's importance averages
CASES = {"full": [], "alf": ["--alf-interval", "7"], "adalora": []}
KILL_AT = 6  # checkpoint step after which the run is killed: batch 2 of 4 in the second epoch


def run_cmd(data_dir, out, method, *extra) -> list:
    return ["run", "--task", "sst2", "--method", method, "--model", "minilm", "--data-dir", data_dir,
            "--output-dir", str(out), *SMALL, *CASES[method], *extra]


def cli(*args, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TOKENIZERS_PARALLELISM": "false"}
    return subprocess.run([sys.executable, "-m", "tunelab.cli", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def run_and_kill(args: list, out: Path, at_step: int) -> dict:
    """Start ``tunelab run`` as a process, SIGKILL it once a checkpoint of ``at_step`` exists."""
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env=env)
    meta = out / "checkpoint" / "checkpoint.json"
    deadline = time.time() + 150
    try:
        while proc.poll() is None and time.time() < deadline:
            try:
                if json.loads(meta.read_text())["step"] >= at_step:
                    proc.send_signal(signal.SIGKILL)
                    break
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
    finally:
        if proc.poll() is None and time.time() >= deadline:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, f"the run ended by itself (rc {proc.returncode}) before step {at_step}"
    return json.loads((out / "run.json").read_text())


def load(out) -> dict:
    return json.loads(Path(out, "run.json").read_text())


@pytest.fixture(scope="module")
def killed(glue_data_dir, tmp_path_factory):
    """method -> (uninterrupted run.json, folder of the same run SIGKILLed after its step-6 checkpoint)."""
    made = {}

    def make(method):
        if method not in made:
            base = tmp_path_factory.mktemp(f"resume-{method}")
            assert main(run_cmd(glue_data_dir, base / "ref", method)) == 0
            rec = run_and_kill(run_cmd(glue_data_dir, base / "killed", method, "--save-every", "2"),
                               base / "killed", KILL_AT)
            assert rec["status"] == "running" and len(rec["history"]) == 1  # killed in epoch 2
            made[method] = (load(base / "ref"), base / "killed")
        return made[method]

    return make


@pytest.mark.slow
@pytest.mark.parametrize("method", ["full", "alf", "adalora"])
def test_sigkilled_run_resumes_to_the_uninterrupted_result(killed, method, tmp_path):
    ref, folder = killed(method)
    out = tmp_path / "run"
    shutil.copytree(folder, out)
    meta = read_meta(find_checkpoint(out))
    assert meta["step"] == KILL_AT and meta["epoch"] == 1 and meta["batches_done_in_epoch"] == 2
    # a save killed while writing its temp folder leaves garbage behind: never read, removed later
    (out / "checkpoint.tmp-4242").mkdir()
    (out / "checkpoint.tmp-4242" / "training.pt").write_bytes(b"half a file")
    r = cli("run", "--resume", str(out), "--threads", "1")
    assert r.returncode == 0, r.stderr[-2000:]
    rec = load(out)
    assert rec["status"] == "completed"
    assert [h["epoch"] for h in rec["history"]] == [1, 2]
    assert [h["train_loss"] for h in rec["history"]] == [h["train_loss"] for h in ref["history"]]
    assert [h["metrics"] for h in rec["history"]] == [h["metrics"] for h in ref["history"]]
    assert rec["metrics"] == ref["metrics"] and rec["best_epoch"] == ref["best_epoch"]
    assert rec["training_health"] == ref["training_health"]
    assert rec["time"]["steps"] == ref["time"]["steps"] == 8
    assert rec["time"]["samples_seen"] == ref["time"]["samples_seen"] == 64
    assert rec["resumed"][0]["from_step"] == KILL_AT and rec["started_at"] == load(folder)["started_at"]
    if method == "alf":  # the dynamic method's decisions, probe statistics and measured changes
        assert rec["layers"] == ref["layers"] and [e["step"] for e in rec["layers"]] == [0, 3, 7]
        assert rec["layers"][2]["probe_steps"] == 3
        assert rec["params"] == ref["params"]
    if method == "adalora":  # the same ranks kept per target
        assert rec["method_details"]["ranks"] == ref["method_details"]["ranks"]
    # the checkpoint (and the stale temp folder) are gone once the run completed
    assert not [p for p in os.listdir(out) if p.startswith("checkpoint")]
    preds = (out / "predictions.tsv").read_text()
    assert preds.count("\n") == 1 + 16


@pytest.mark.slow
def test_resume_refuses_changed_options_completed_runs_and_missing_checkpoints(killed, tmp_path, capsys):
    _, folder = killed("full")
    out = tmp_path / "run"
    shutil.copytree(folder, out)
    capsys.readouterr()  # the fixture's runs

    def refused(*args) -> str:
        assert main(["run", "--resume", str(out), *args]) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        return err

    err = refused("--lr", "0.001", "--epochs", "3", "--threads", "1")
    assert "--lr 0.001" in err and "--epochs 3" in err and "recorded" in err and "--threads" not in err
    # the recorded values may be repeated (a compare gives them all); --overwrite makes no sense here
    err = refused("--batch-size", "8", "--method", "full", "--task", "sst2", "--device", "cpu", "--epochs", "2.0",
                  "--overwrite")
    assert "--overwrite" in err and "--batch-size" not in err and "--epochs" not in err
    assert load(out)["status"] == "running"  # refusals touch nothing

    for name in ("checkpoint", "checkpoint.old"):
        shutil.rmtree(out / name, ignore_errors=True)
    assert "no checkpoint" in refused()

    rec = load(folder)
    rec["status"] = "completed"
    (out / "run.json").write_text(json.dumps(rec))
    assert "already completed" in refused()


def test_save_every_does_not_apply_to_alignment_tasks(tmp_path, capsys):
    """Alignment tasks train through TRL, which tunelab does not checkpoint: refused up front."""
    rc = main(["run", "--task", "dpo", "--method", "full", "--save-every", "5", "--output-dir", str(tmp_path / "x")])
    err = capsys.readouterr().err
    assert rc == 2 and "--save-every does not apply" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x").exists()


def test_checkpoint_write_is_atomic_and_keeps_one(tmp_path):
    out = tmp_path
    (out / "checkpoint.tmp-999").mkdir()  # left by a save that was killed
    first = write_checkpoint(str(out), {"w": torch.ones(3)}, {"n": 1}, {"step": 1})
    second = write_checkpoint(str(out), {"w": torch.full((3,), 2.0)}, {"n": 2}, {"step": 2})
    assert first == second == str(out / "checkpoint")
    assert sorted(os.listdir(out)) == ["checkpoint"]
    assert sorted(os.listdir(out / "checkpoint")) == ["checkpoint.json", "model.pt", "training.pt"]
    assert read_meta(find_checkpoint(str(out)))["step"] == 2
    # killed between the two renames: only checkpoint.old/ is there, and it is complete
    os.rename(out / "checkpoint", out / "checkpoint.old")
    assert find_checkpoint(str(out)) == str(out / "checkpoint.old")
    assert torch.load(out / "checkpoint.old" / "model.pt", weights_only=True)["w"].tolist() == [2.0] * 3
    third = write_checkpoint(str(out), {"w": torch.zeros(3)}, {"n": 3}, {"step": 3})
    assert sorted(os.listdir(out)) == ["checkpoint"] and read_meta(third)["step"] == 3
    (out / "checkpoint" / "checkpoint.json").unlink()  # an incomplete folder is not a checkpoint
    assert find_checkpoint(str(out)) is None


def test_batch_order_is_a_function_of_seed_and_epoch():
    lengths = [5, 9, 3, 7, 7, 2, 8, 4, 6, 1, 9, 3] * 4
    gen = torch.Generator()
    sampler = LengthGroupedBatches(lengths, 4, gen, chunk_batches=2)
    loader = torch.utils.data.DataLoader(list(range(len(lengths))), batch_sampler=sampler)
    orders = {}
    for epoch in range(3):
        set_epoch(loader, 7, epoch)
        orders[epoch] = [b.tolist() for b in loader]
    fresh = torch.utils.data.DataLoader(list(range(len(lengths))),
                                        batch_sampler=LengthGroupedBatches(lengths, 4, torch.Generator(), 2))
    set_epoch(fresh, 7, 2)  # epoch 2 without iterating epochs 0 and 1 first
    assert [b.tolist() for b in fresh] == orders[2]
    assert orders[0] != orders[1] != orders[2]
    assert sorted(i for b in orders[1] for i in b) == list(range(len(lengths)))
    shuffled = torch.utils.data.DataLoader(list(range(20)), batch_size=4, shuffle=True, generator=torch.Generator())
    set_epoch(shuffled, 7, 1)
    a = [b.tolist() for b in shuffled]
    set_epoch(shuffled, 7, 1)
    assert [b.tolist() for b in shuffled] == a


STUDY = """\
name: resume-study
tasks: [sst2]
methods: [full]
seeds: [3]
max_train_samples: 32
max_eval_samples: 16
max_seq_length: 64
batch_size: 8
epochs: 2
save_every: 2
"""


@pytest.mark.slow
def test_compare_resumes_a_killed_cell_from_its_checkpoint(killed, glue_data_dir, tmp_path):
    """A compare SIGKILLed mid-run, run again: the cell continues with --resume (its log's command
    says so) and ends with the uninterrupted run's result."""
    ref, _ = killed("full")
    study, out = tmp_path / "study.yaml", tmp_path / "cmp"
    study.write_text(STUDY)
    cmd = [sys.executable, "-m", "tunelab.cli", "compare", str(study), "--output-dir", str(out), "--data-dir",
           glue_data_dir, "--threads", "1", "--no-report"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "src"), "TOKENIZERS_PARALLELISM": "false"}
    cell = out / "runs" / "sst2--full--minilm--s3"
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.time() + 150
    while proc.poll() is None and time.time() < deadline:
        try:
            if json.loads((cell / "checkpoint" / "checkpoint.json").read_text())["step"] >= KILL_AT:
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    for _ in range(100):  # the child dies with the compare (PR_SET_PDEATHSIG)
        if json.loads((cell / "run.json").read_text())["status"] != "completed":
            break
        time.sleep(0.05)
    assert load(cell)["status"] == "running"
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=200)
    assert r.returncode == 0, r.stderr[-2000:]
    log = (out / "logs" / "sst2--full--minilm--s3.log").read_text()
    assert log.splitlines()[0].startswith("$ tunelab run") and "--resume" in log.splitlines()[0]
    rec = load(cell)
    assert rec["status"] == "completed" and rec["resumed"][0]["from_step"] >= KILL_AT
    assert [h["train_loss"] for h in rec["history"]] == [h["train_loss"] for h in ref["history"]]
    assert rec["metrics"] == ref["metrics"]
