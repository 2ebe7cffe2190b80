"""1 process vs N data-parallel processes (torchrun, gloo on CPU) on the same run: time and accuracy.

    python benchmarks/bench_distributed.py --data-dir ../shared/data/glue [--samples 1000] [--nproc 2]
        [--also-no-dropout] [--write BENCHMARKS.md]

Both runs: sst2, full FT, minilm, --batch-size 32 (the global batch in the data-parallel run), 1 epoch,
--threads 1 per process, the whole dev split. Reports wall seconds of the whole command (start-up and
model loading included), the run's train / eval seconds, CPU seconds (all processes: the command's
children from getrusage; the training epochs per rank from run.json) and dev accuracy.
``--also-no-dropout`` repeats both with every dropout at p = 0 (benchmarks/tunelab_no_dropout.py):
the same batches and gradients, so it shows how much of an accuracy gap is dropout-mask noise.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import append_section, command_line, machine_line  # noqa: E402


def run(cmd: list, out: str) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    proc = subprocess.run(cmd + ["--output-dir", out, "--overwrite"], capture_output=True, text=True)
    wall = time.time() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    rec = json.loads(Path(out, "run.json").read_text())
    ranks = (rec.get("distributed", {}).get("per_rank")
             or [{"train_cpu_seconds": rec["cpu_time"]["train_cpu_seconds"]}])
    return {"wall": wall, "cpu": (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime),
            "train": rec["time"]["train_seconds"], "eval": rec["history"][-1]["eval_seconds"],
            "train_cpu": sum(r["train_cpu_seconds"] for r in ranks), "acc": rec["metrics"]["accuracy"],
            "loss": rec["history"][-1]["train_loss"], "steps": rec["time"]["steps"]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--out", default="runs/bench-distributed")
    ap.add_argument("--also-no-dropout", action="store_true")
    ap.add_argument("--write", default=None)
    a = ap.parse_args()
    args = ["run", "--task", "sst2", "--method", "full", "--model", "minilm", "--data-dir", a.data_dir,
            "--max-train-samples", str(a.samples), "--epochs", "1", "--batch-size", "32", "--seed", "0",
            "--threads", "1"]
    torchrun = str(Path(sys.executable).parent / "torchrun")
    load = os.getloadavg()
    ddp = [torchrun, "--nproc_per_node", str(a.nproc), "--standalone"]
    rows = {"1 process": run([sys.executable, "-m", "tunelab", *args], f"{a.out}/one"),
            f"{a.nproc} processes (torchrun, gloo)": run([*ddp, "-m", "tunelab", *args], f"{a.out}/ddp")}
    if a.also_no_dropout:
        script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tunelab_no_dropout.py")
        rows["1 process, dropout off"] = run([sys.executable, script, *args], f"{a.out}/one-nodrop")
        rows[f"{a.nproc} processes, dropout off"] = run([*ddp, script, *args], f"{a.out}/ddp-nodrop")
    load_after = os.getloadavg()
    lines = [f"\n## Data-parallel runs: 1 vs {a.nproc} processes on CPU ({time.strftime('%Y-%m-%d')})", "",
             f"{machine_line(1)} per process. Load average (1 min) {load[0]:.1f} before, {load_after[0]:.1f} after: the "
             f"machine's 2 cores are shared with other jobs, so wall seconds are noisy; CPU seconds are not.",
             f"Command: `{command_line('bench_distributed.py')}`", "",
             f"sst2, full FT, minilm, {a.samples} train examples x 1 epoch, global batch 32, whole dev split (872).", "",
             "| run | steps | wall s (command) | train s | eval s | CPU s (all processes) "
             "| train CPU s (sum of ranks) | train loss | dev accuracy |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        lines.append(f"| {name} | {r['steps']} | {r['wall']:.1f} | {r['train']:.1f} | {r['eval']:.1f} | {r['cpu']:.1f} | "
                     f"{r['train_cpu']:.1f} | {r['loss']:.4f} | {r['acc']:.4f} |")
    print("\n".join(lines))
    if a.write:
        append_section(a.write, lines + [""])


if __name__ == "__main__":
    main()
