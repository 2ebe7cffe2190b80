"""What the benchmark scripts share: the command line that made a table, the machine line, and
appending a section to BENCHMARKS.md."""

import os
import platform
import shlex
import sys
import time


def command_line(script: str, argv=None) -> str:
    args = argv if argv is not None else sys.argv[1:]
    return f"python benchmarks/{script} " + " ".join(shlex.quote(a) for a in args)


def machine_line(threads) -> str:
    import torch

    return (f"Date {time.strftime('%Y-%m-%d %H:%M')}, {platform.platform()}, {os.cpu_count()} CPUs, "
            f"torch {torch.__version__}, {threads or 'default'} threads")


def parse_plan(text: str) -> list:
    """``task:train_samples:epochs,...`` -> [(task, n, epochs as given, a string for the command line)]."""
    plan = []
    for part in text.split(","):
        bits = part.split(":")
        if len(bits) != 3:
            raise SystemExit(f"--plan {part!r}: expected task:train_samples:epochs")
        plan.append((bits[0], int(bits[1]), bits[2]))
    return plan


def append_section(path: str, lines: list) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"appended to {path}")


def run_tunelab(args: list, out_dir: str, what: str):
    """``python -m tunelab.cli run ARGS --output-dir OUT_DIR --overwrite`` in its own process.
    -> (run.json dict or None, wall seconds, the last error line or None)."""
    import json
    import subprocess

    cmd = [sys.executable, "-m", "tunelab.cli", "run", *args, "--output-dir", out_dir, "--overwrite"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        err = ((proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"])[0]
        print(f"  FAILED {what}: {err}", file=sys.stderr)
        return None, wall, err
    with open(os.path.join(out_dir, "run.json"), encoding="utf-8") as f:
        return json.load(f), wall, None
