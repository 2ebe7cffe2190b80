"""A method's learning rate on SST-2: one ``tunelab run`` per (lr, seed), the dev accuracy it reaches,
its CPU cost. Used to choose (and to check) per-method default learning rates.

Every cell: ``tunelab run --task sst2 --model minilm --max-train-samples N --epochs E --seed S
--threads 1 --method M [EXTRA] --lr LR`` (training seed = train-subset seed, as in bench_speed.py),
``--jobs`` runs at a time, each in its own process. Dev accuracy on the full SST-2 dev set after the
last epoch; train CPU seconds are process time of training (robust to other tenants).

    python benchmarks/bench_lr_sweep.py --data-dir ../shared/data/glue --method alf --extra "--adapter lora" \
        --lrs 3e-4,1e-3,2e-3 --seeds 0,1,2 [--write BENCHMARKS.md]

Runs land in ``--out-dir/lr<LR>-s<S>``; a completed one (run.json with the same command) is reused.
"""

import argparse
import json
import os
import shlex
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import append_section, command_line, machine_line, run_tunelab  # noqa: E402


def cell_args(a, lr: str, seed: int) -> list:
    return ["--task", "sst2", "--model", "minilm", "--data-dir", a.data_dir, "--max-train-samples", str(a.samples),
            "--epochs", str(a.epochs), "--seed", str(seed), "--threads", "1", "--method", a.method,
            *shlex.split(a.extra), "--lr", lr]


def read_json(path: str):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def run_cell(a, lr: str, seed: int) -> dict | None:
    out = os.path.join(a.out_dir, f"lr{lr}-s{seed}")
    args = cell_args(a, lr, seed)
    done = os.path.join(out, "bench-args.json")
    if os.path.exists(done) and read_json(done) == args and os.path.exists(os.path.join(out, "run.json")):
        rec = read_json(os.path.join(out, "run.json"))
    else:
        rec, _, _ = run_tunelab(args, out, f"lr {lr} seed {seed}")
        if rec is None:
            return None
        with open(done, "w", encoding="utf-8") as f:
            json.dump(args, f)
    row = {"lr": lr, "seed": seed, "accuracy": rec["metrics"]["accuracy"],
           "cpu": rec["cpu_time"]["train_cpu_seconds"], "trainable_pct": rec["params"]["trainable_pct"]}
    print(f"lr {lr:>6} seed {seed}: acc {row['accuracy']:.4f}  train CPU {row['cpu']:.1f} s", flush=True)
    return row


def table(rows: list, seeds: list) -> list:
    out = [f"| lr | dev acc seed {' / '.join(map(str, seeds))} | mean ± std | train CPU s (mean) | trainable % |",
           "|---|---|---|---|---|"]
    for lr in dict.fromkeys(r["lr"] for r in rows):
        rs = sorted((r for r in rows if r["lr"] == lr), key=lambda r: r["seed"])
        acc = [r["accuracy"] for r in rs]
        spread = f" ± {statistics.stdev(acc):.4f}" if len(acc) > 1 else ""
        out.append(f"| {lr} | {' / '.join(f'{x:.4f}' for x in acc)} | {statistics.mean(acc):.4f}{spread} | "
                   f"{statistics.mean(r['cpu'] for r in rs):.1f} | {rs[0]['trainable_pct']:.2f} |")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TUNELAB_DATA_DIR", "../shared/data/glue"))
    p.add_argument("--method", required=True)
    p.add_argument("--extra", default="", help="more tunelab run options, one string (e.g. \"--adapter lora\")")
    p.add_argument("--lrs", required=True, help="comma list, as tunelab run's --lr takes them")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--samples", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out-dir", default=os.path.join("runs", "bench-lr-sweep"))
    p.add_argument("--write", help="append the table to this markdown file")
    a = p.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    cells = [(lr, s) for lr in a.lrs.split(",") for s in seeds]
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = list(pool.map(lambda c: run_cell(a, *c), cells))
    if any(r is None for r in rows):
        raise SystemExit("some runs failed (above); no table")
    lines = table(rows, seeds)
    print("\n".join(lines))
    if a.write:
        append_section(a.write, ["", f"## lr sweep: {a.method} {a.extra}".rstrip(), "", machine_line(1), "",
                                 f"Command: `{command_line('bench_lr_sweep.py')}`", "", *lines, ""])


if __name__ == "__main__":
    main()
