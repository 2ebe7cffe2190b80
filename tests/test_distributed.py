"""Data-parallel runs (train/distributed.py): `torchrun --nproc_per_node 2 -m tunelab run …` on CPU (gloo)
against a 1-process run with the same global batch; ALF's layer timeline identical on both ranks."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tunelab.cli import main
from tunelab.train.batching import LengthGroupedBatches
from tunelab.train.distributed import ShardedBatches

SRC = str(Path(__file__).resolve().parents[1] / "src")
TORCHRUN = Path(sys.executable).parent / "torchrun"


def args_for(method: str, data_dir: str, out: Path, *extra: str, n_train: int = 64) -> list:
    return ["run", "--task", "sst2", "--method", method, "--model", "minilm", "--data-dir", data_dir,
            "--output-dir", str(out), "--max-train-samples", str(n_train), "--max-eval-samples", "200", "--epochs", "1",
            "--batch-size", "16", "--seed", "0", "--threads", "1", *extra]


def torchrun(args: list, timeout: int = 240) -> subprocess.CompletedProcess:
    if not TORCHRUN.exists():
        pytest.fail(f"{TORCHRUN} not found (torch's launcher, installed with torch)")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(TORCHRUN), "--nproc_per_node", "2", "--standalone", "-m", "tunelab", *args],
                          capture_output=True, text=True, env=env, timeout=timeout)


def record(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def test_sharded_batches_split_every_global_batch_once():
    """Two ranks' shards of the same seeded length-grouped batches = those batches, each example once;
    the short last batch (fewer examples than ranks) is skipped, and __len__ counts what is yielded."""
    import torch

    for n, bs in ((64, 16), (65, 16), (70, 16), (5, 4), (3, 4)):
        lengths = [(i * 7) % 23 + 1 for i in range(n)]
        batches = list(LengthGroupedBatches(lengths, bs, torch.Generator().manual_seed(0)))
        shards = [list(ShardedBatches(LengthGroupedBatches(lengths, bs, torch.Generator().manual_seed(0)), n, bs, r, 2))
                  for r in range(2)]
        kept = [b for b in batches if len(b) >= 2]
        assert len(shards[0]) == len(shards[1]) == len(kept) == len(ShardedBatches(batches, n, bs, 0, 2))
        for b, s0, s1 in zip(kept, *shards):
            assert sorted(s0 + s1) == sorted(b) and abs(len(s0) - len(s1)) <= 1
        skipped = sum(len(b) for b in batches) - sum(len(b) for b in kept)
        assert skipped == ShardedBatches(batches, n, bs, 0, 2).dropped_per_epoch


def test_full_ft_two_processes_matches_one(tmp_path, glue_data_dir):
    """2 processes (gloo): completes, rank 0 alone writes one run.json; dev accuracy = the 1-process run's
    with the same global batch (--batch-size 16) within 0.5 point; the same steps and examples."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args_for("full", glue_data_dir, one)) == 0
    p = torchrun(args_for("full", glue_data_dir, two))
    assert p.returncode == 0, p.stderr[-3000:]
    assert p.stdout.count("completed: sst2/full") == 1  # one rank prints
    assert [f.name for f in tmp_path.rglob("run.json")] == ["run.json", "run.json"]  # one per run folder
    assert sorted(f.name for f in two.iterdir()) == sorted(f.name for f in one.iterdir())
    r1, r2 = record(one), record(two)
    assert r2["status"] == "completed"
    d = r2["distributed"]
    assert d["world_size"] == 2 and d["backend"] == "gloo" and d["gradient_sync"] == "DistributedDataParallel"
    assert d["global_batch_size"] == 16 and d["per_rank_batch_size"] == 8 and len(d["per_rank"]) == 2
    assert all(r["train_seconds"] > 0 and r["peak_rss_mb"] > 100 for r in d["per_rank"])
    assert "distributed" not in r1
    assert r2["time"]["steps"] == r1["time"]["steps"] == 4
    assert r2["time"]["samples_seen"] == r1["time"]["samples_seen"] == 64
    assert len((two / "predictions.tsv").read_text().strip().splitlines()) == 1 + 200  # every dev example once
    assert abs(r2["metrics"]["accuracy"] - r1["metrics"]["accuracy"]) <= 0.005
    assert abs(r2["history"][0]["train_loss"] - r1["history"][0]["train_loss"]) < 0.05


def test_alf_two_processes_train_the_same_layers(tmp_path, glue_data_dir):
    """ALF under 2 processes: every rank's `layers` timeline (active sets, probe rho, scores, changes)
    hashes the same, and equals the one rank 0 recorded; decisions were made; accuracy as 1 process."""
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(args_for("alf", glue_data_dir, one, "--alf-interval", "2", n_train=96)) == 0
    p = torchrun(args_for("alf", glue_data_dir, two, "--alf-interval", "2", n_train=96))
    assert p.returncode == 0, p.stderr[-3000:]
    r1, r2 = record(one), record(two)
    d = r2["distributed"]
    assert d["gradient_sync"].startswith("all-reduce")
    recorded = hashlib.sha256(json.dumps({"layers": r2["layers"], "method_details": r2["method_details"]},
                                         sort_keys=True, default=str).encode()).hexdigest()
    assert [r["method_record_sha256"] for r in d["per_rank"]] == [recorded, recorded]
    assert d["method_record_identical"] is True
    assert len(r2["layers"]) == 3 and all(len(e["active"]) == 3 for e in r2["layers"])
    assert all(e["scores"] and e["decision"] for e in r2["layers"][1:])  # probe-based decisions were taken
    assert abs(r2["metrics"]["accuracy"] - r1["metrics"]["accuracy"]) <= 0.005


def test_adalora_two_processes_reallocate_the_same_ranks(tmp_path, glue_data_dir):
    """AdaLoRA under 2 processes: the loop's per-step hook (update_and_allocate) sees the all-reduced
    gradients, so both ranks prune to the same ranks (hash of the method record, which holds them);
    ranks were reallocated down to the budget, as in 1 process."""
    one, two = tmp_path / "one", tmp_path / "two"
    opts = ("--adalora-init-r", "6", "--adalora-target-r", "2", "--adalora-tinit", "0", "--adalora-tfinal", "0.2")
    assert main(args_for("adalora", glue_data_dir, one, *opts, n_train=96)) == 0
    p = torchrun(args_for("adalora", glue_data_dir, two, *opts, n_train=96))
    assert p.returncode == 0, p.stderr[-3000:]
    r1, r2 = record(one), record(two)
    d = r2["distributed"]
    assert d["method_record_identical"] is True and d["gradient_sync"] == "DistributedDataParallel"
    recorded = hashlib.sha256(json.dumps({"method_details": r2["method_details"]}, sort_keys=True,
                                         default=str).encode()).hexdigest()
    assert [r["method_record_sha256"] for r in d["per_rank"]] == [recorded, recorded]
    ranks = r2["method_details"]["ranks"]
    assert ranks and min(ranks.values()) < 6 and sum(ranks.values()) < 6 * len(ranks)
    assert r2["method_details"]["total_step"] == r1["method_details"]["total_step"] == 6
    # both runs end at the budget (target rank x targets); which target keeps how much may differ between 1 and 2
    # processes, since each rank draws its own dropout masks (so do the losses, slightly)
    assert sum(r1["method_details"]["ranks"].values()) == sum(ranks.values()) == 2 * len(ranks)
    assert abs(r2["history"][0]["train_loss"] - r1["history"][0]["train_loss"]) < 0.05


def test_trl_task_refused_with_one_line(tmp_path):
    p = torchrun(["run", "--task", "dpo", "--method", "lora", "--output-dir", str(tmp_path / "dpo")], timeout=120)
    assert p.returncode != 0
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("tunelab: error:")]
    assert len(lines) == 1 and "--task dpo: data-parallel runs" in lines[0] and "TRL" in lines[0]
    assert not (tmp_path / "dpo").exists()


def accelerate(args: list, *launch: str, timeout: int = 240) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).parent / "accelerate"
    if not exe.exists():
        pytest.fail(f"{exe} not found (accelerate is a dependency)")
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    return subprocess.run([str(exe), "launch", *launch, "--num_machines", "1", "--mixed_precision", "no",
                           "--dynamo_backend", "no", "-m", "tunelab", *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def test_accelerate_one_process_launch_is_refused(tmp_path, glue_data_dir):
    """Without a GPU, `accelerate launch --num_processes 2` (no --multi_gpu) starts ONE process: refused
    with one line instead of a silent 1-process run."""
    import torch
    from accelerate.commands.config import default_config_file

    if torch.cuda.is_available() or os.path.isfile(default_config_file):
        pytest.skip("accelerate would start several processes here (a GPU, or an accelerate config file)")
    p = accelerate(args_for("full", glue_data_dir, tmp_path / "out"), "--num_processes", "2", timeout=120)
    assert p.returncode != 0, p.stderr[-2000:]
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("tunelab: error:")]
    assert len(lines) == 1 and "accelerate launch started one process" in lines[0] and "--multi_gpu" in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_accelerate_multi_gpu_launcher_runs_two_processes_on_cpu(tmp_path, glue_data_dir):
    out = tmp_path / "acc"
    p = accelerate(args_for("full", glue_data_dir, out), "--multi_gpu", "--num_processes", "2")
    assert p.returncode == 0, p.stderr[-3000:]
    rec = record(out)
    assert rec["status"] == "completed" and rec["distributed"]["world_size"] == 2
    assert rec["distributed"]["backend"] == ("nccl" if rec["config"]["device"].startswith("cuda") else "gloo")


@pytest.mark.slow
def test_killed_two_process_run_resumes_to_the_uninterrupted_result(tmp_path, glue_data_dir):
    """--save-every under torchrun (rank 0 writes, every rank's RNG in the checkpoint), SIGKILL of the
    launcher and its workers after step 4 of 8, then `torchrun … run --resume`: the same losses and
    accuracy as the uninterrupted 2-process run."""
    import signal
    import time

    ref, out = tmp_path / "ref", tmp_path / "killed"
    small = ["--max-train-samples", "64", "--max-eval-samples", "32", "--epochs", "2", "--seed", "3"]
    assert torchrun(args_for("full", glue_data_dir, ref) + small).returncode == 0
    env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1"}
    p = subprocess.Popen([str(TORCHRUN), "--nproc_per_node", "2", "--standalone", "-m", "tunelab",
                          *args_for("full", glue_data_dir, out), *small, "--save-every", "2"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    meta, deadline = out / "checkpoint" / "checkpoint.json", time.time() + 200
    while p.poll() is None and time.time() < deadline:
        try:
            if json.loads(meta.read_text())["step"] >= 4:  # kill the workers too: they outlive their launcher
                kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
                for k in kids:
                    os.kill(int(k), signal.SIGKILL)
                p.kill()
                break
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    p.wait()
    assert p.returncode == -signal.SIGKILL and record(out)["status"] == "running"
    r = torchrun(["run", "--resume", str(out), "--threads", "1"])
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = record(ref), record(out)
    assert b["status"] == "completed" and b["checkpoints"]["resumed_from"]
    assert [h["train_loss"] for h in b["history"]] == [h["train_loss"] for h in a["history"]]
    assert b["metrics"] == a["metrics"]
