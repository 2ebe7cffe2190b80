"""What ``--save-every`` costs: the same run with and without checkpoints, per method (full, LoRA,
ALF): checkpoint size, seconds per checkpoint, and that the results are identical (checkpointing
must not change a run). Each run is its own process (bench_common.run_tunelab).

    python benchmarks/bench_checkpoint.py --data-dir ../shared/data/glue --threads 1 [--append BENCHMARKS.md]
"""

import argparse
import os
import tempfile

from bench_common import append_section, command_line, machine_line, run_tunelab


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", required=True)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=256)
    ap.add_argument("--save-every", type=int, default=4)
    ap.add_argument("--methods", default="full,lora,alf")
    ap.add_argument("--append")
    a = ap.parse_args()
    base = ["--task", "sst2", "--model", "minilm", "--data-dir", a.data_dir, "--max-train-samples", str(a.samples),
            "--max-eval-samples", "200", "--max-seq-length", "64", "--batch-size", "16", "--epochs", "1",
            "--threads", str(a.threads), "--seed", "0"]
    rows = ["| method | checkpoints | MB each | s per checkpoint | train s without / with | train CPU s without / "
            "with | process wall s without / with | same losses and accuracy |", "|---|---|---|---|---|---|---|---|"]
    tmp = tempfile.mkdtemp(prefix="bench-ckpt-")
    for m in a.methods.split(","):
        extra = ["--alf-interval", "4"] if m == "alf" else []
        plain, w0, _ = run_tunelab([*base, "--method", m, *extra], os.path.join(tmp, m + "-plain"), m)
        ck, w1, _ = run_tunelab([*base, "--method", m, *extra, "--save-every", str(a.save_every)],
                                os.path.join(tmp, m + "-ckpt"), m + " --save-every")
        if plain is None or ck is None:
            continue
        c = ck["checkpoints"]
        same = ([h["train_loss"] for h in plain["history"]] == [h["train_loss"] for h in ck["history"]]
                and plain["metrics"] == ck["metrics"])
        rows.append(f"| {m} | {c['saved']} | {c['mb']} | {c['seconds'] / max(1, c['saved']):.2f} | "
                    f"{plain['time']['train_seconds']:.1f} / {ck['time']['train_seconds']:.1f} | "
                    f"{plain['cpu_time']['train_cpu_seconds']:.1f} / {ck['cpu_time']['train_cpu_seconds']:.1f} | "
                    f"{w0:.1f} / {w1:.1f} | {'yes' if same else 'NO'} |")
        print(rows[-1], flush=True)
    load = os.getloadavg()
    lines = ["", "## Checkpoint cost (benchmarks/bench_checkpoint.py)", "",
             f"Command: `{command_line('bench_checkpoint.py')}`  ",
             f"{machine_line(a.threads)}; load average at the end {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} "
             "(machine shared with other work: wall times are inflated).  ",
             f"SST-2, {a.samples} training examples, 1 epoch, batch 16, max length 64, --save-every "
             f"{a.save_every}. Train seconds exclude checkpoint writing (the loop subtracts it); the process wall "
             "time includes it.", "", *rows, ""]
    print("\n".join(lines))
    if a.append:
        append_section(a.append, lines)


if __name__ == "__main__":
    main()
