"""Builds the shared compare study for the compare/report tests (see the ``compare_study`` fixture):
a real grid run as a separate ``tunelab compare`` process, SIGKILLed mid-grid, then run again."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

STUDY_YAML = """\
name: tiny-study
description: two LoRA variants and full fine-tuning, two seeds, 48 examples
tasks: [sst2]
seeds: [0, 1]
methods:
  - full
  - {label: lora-r4, method: lora, lora_r: 4}
  - lora-r16: {method: lora, lora_r: 16}
max_train_samples: 48
max_eval_samples: 48
epochs: 2
batch_size: 16
group_by_length: true   # as in the quick preset
fused_adamw: true
jobs: 2
"""
N_RUNS = 6
KILL_AFTER = 2  # completed runs before the SIGKILL


def compare_cmd(*args) -> list:
    return [sys.executable, "-m", "tunelab.cli", "compare", *args]


def completed_rows(db: Path) -> list:
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as con:
            return [r[0] for r in con.execute("SELECT run_id FROM runs WHERE status = 'completed'")]
    except sqlite3.OperationalError:
        return []


def processes_mentioning(text: str) -> list:
    pids = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(d.name))
            except OSError:
                pass
    return pids


def run_json(out: Path, run_id: str) -> dict | None:
    try:
        return json.loads((out / "runs" / run_id / "run.json").read_text())
    except (OSError, ValueError):
        return None


def build_study(tmp: Path, data_dir: str) -> dict:
    cfg = tmp / "study.yaml"
    cfg.write_text(STUDY_YAML)
    out = tmp / "out"
    db = out / "results.sqlite"
    args = [str(cfg), "--data-dir", data_dir, "--output-dir", str(out), "--threads", "1"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    info = {"dir": out, "config": cfg, "args": args}

    # 1) run until KILL_AFTER runs are completed and the next one is training, then SIGKILL the compare
    with open(tmp / "first.log", "w") as log:
        proc = subprocess.Popen(compare_cmd(*args), stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None:
            done = completed_rows(db)
            running = [p for p in (out / "runs").glob("*/run.json")] if (out / "runs").exists() else []
            in_flight = [p.parent.name for p in running if p.parent.name not in done
                         and json.loads(p.read_text() or "{}").get("status") == "running"]
            if len(done) >= KILL_AFTER and in_flight:
                break
            time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    info["killed_completed"] = sorted(completed_rows(db))
    info["killed_started_at"] = {r: run_json(out, r)["started_at"] for r in info["killed_completed"]}
    info["killed_in_flight"] = in_flight
    time.sleep(2.0)
    info["orphans"] = [p for p in processes_mentioning(str(out)) if p != os.getpid()]
    info["in_flight_status_after_kill"] = {r: (run_json(out, r) or {}).get("status") for r in in_flight}

    # 2) the same command again (this time each run as a fresh `python -m tunelab.cli run`)
    res = subprocess.run(compare_cmd(*args, "--isolation", "exec"), capture_output=True, text=True, env=env, timeout=900)
    info["resume"] = res
    return info
