"""PEFT methods on SST-2 side by side: for each method a few learning rates, one ``tunelab run`` per
(method, lr, seed); dev accuracy, trainable parameters without / with the head, train time, peak
memory. Used to choose each PEFT method's default lr (methods/<method>.py, ``default_lr``).

Every cell: ``tunelab run --task sst2 --model minilm --max-train-samples N --epochs E --seed S
--threads 1 --method M --lr LR [--max-eval-samples D]``, ``--jobs`` at a time, each in its own process.

    python benchmarks/bench_peft_sweep.py --data-dir ../shared/data/glue --samples 1000 --epochs 2 \
        --seeds 0 --out-dir /tmp/peft-sweep [--methods ia3,dora] [--write BENCHMARKS.md]

``--grid`` gives each method's lrs (the default: a decade around the method's expected optimum).
Runs land in ``--out-dir/<method>/lr<LR>-s<S>``; a completed one with the same command is reused.
"""

import argparse
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_common import append_section, command_line, machine_line, run_or_reuse  # noqa: E402

# method -> learning rates tried (adapters ~1e-3; vector / spectral / norm methods need more per weight)
GRID = {
    "lora": "1e-3,2e-3,5e-3", "dora": "1e-3,2e-3,5e-3", "adalora": "2e-3,5e-3,1e-2", "loha": "1e-3,2e-3,5e-3",
    "lokr": "2e-3,5e-3,1e-2", "vera": "5e-3,1e-2,2e-2", "oft": "1e-3,2e-3,5e-3", "boft": "1e-3,3e-3,1e-2",
    "fourierft": "5e-3,1e-2,3e-2", "hra": "1e-3,2e-3,5e-3", "ia3": "5e-3,1e-2,3e-2", "ln-tuning": "3e-3,1e-2,3e-2",
    "p-tuning": "1e-3,3e-3,1e-2", "bitfit": "3e-4,1e-3,3e-3", "full": "1e-4",
}


def run_cell(a, method: str, lr: str, seed: int) -> dict | None:
    out = os.path.join(a.out_dir, method, f"lr{lr}-s{seed}")
    args = ["--task", "sst2", "--model", "minilm", "--data-dir", a.data_dir, "--max-train-samples", str(a.samples),
            "--epochs", str(a.epochs), "--seed", str(seed), "--threads", "1", "--method", method, "--lr", lr]
    if a.eval_samples:
        args += ["--max-eval-samples", str(a.eval_samples)]
    rec = run_or_reuse(args, out, f"{method} lr {lr} seed {seed}")
    if rec is None:
        return None
    row = {"method": method, "lr": lr, "seed": seed, "accuracy": rec["metrics"]["accuracy"],
           "params": rec["params"]["trainable_without_head"], "params_head": rec["params"]["trainable"],
           "train_s": rec["time"]["train_seconds"], "cpu": rec["cpu_time"]["train_cpu_seconds"],
           "rss": rec["memory"]["peak_rss_mb"]}
    print(f"{method:>10} lr {lr:>6} seed {seed}: acc {row['accuracy']:.4f}  train {row['train_s']:.1f} s "
          f"(CPU {row['cpu']:.1f} s)  peak RSS {row['rss']:.0f} MB", flush=True)
    return row


def table(rows: list, majority: float | None) -> list:
    out = ["| method | lr | trainable excl. head | incl. head | dev acc (seeds) | mean ± std | train s | "
           "train CPU s | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|"]
    for m in dict.fromkeys(r["method"] for r in rows):
        for lr in dict.fromkeys(r["lr"] for r in rows if r["method"] == m):
            rs = sorted((r for r in rows if r["method"] == m and r["lr"] == lr), key=lambda r: r["seed"])
            acc = [r["accuracy"] for r in rs]
            std = f" ± {statistics.stdev(acc):.4f}" if len(acc) > 1 else ""
            flag = " (majority)" if majority is not None and statistics.mean(acc) <= majority + 1e-9 else ""
            out.append(f"| {m} | {lr} | {rs[0]['params']:,} | {rs[0]['params_head']:,} | "
                       f"{' / '.join(f'{x:.4f}' for x in acc)} | {statistics.mean(acc):.4f}{std}{flag} | "
                       f"{statistics.mean(r['train_s'] for r in rs):.1f} | {statistics.mean(r['cpu'] for r in rs):.1f} | "
                       f"{max(r['rss'] for r in rs):.0f} |")
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-dir", default=os.environ.get("TUNELAB_DATA_DIR", "../shared/data/glue"))
    p.add_argument("--methods", default=",".join(GRID))
    p.add_argument("--grid", default="", help="method=lr;lr,... overrides, separated by spaces")
    p.add_argument("--seeds", default="0")
    p.add_argument("--samples", type=int, default=1000)
    p.add_argument("--epochs", type=float, default=2)
    p.add_argument("--eval-samples", type=int, default=None, help="seeded dev subset (default: all 872)")
    p.add_argument("--majority", type=float, default=None, help="the dev set's majority-class accuracy, to flag")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--out-dir", default=os.path.join("runs", "bench-peft-sweep"))
    p.add_argument("--write", help="append the table to this markdown file")
    a = p.parse_args()
    grid = dict(GRID)
    for item in a.grid.split():
        m, lrs = item.split("=")
        grid[m] = lrs.replace(";", ",")
    seeds = [int(s) for s in a.seeds.split(",")]
    cells = [(m, lr, s) for m in a.methods.split(",") for lr in grid[m].split(",") for s in seeds]
    with ThreadPoolExecutor(a.jobs) as pool:
        rows = [r for r in pool.map(lambda c: run_cell(a, *c), cells) if r is not None]
    lines = table(rows, a.majority)
    print("\n".join(lines))
    if a.write:
        append_section(a.write, ["", "## PEFT methods sweep", "", machine_line(1), "",
                                 f"Command: `{command_line('bench_peft_sweep.py')}`", "", *lines, ""])


if __name__ == "__main__":
    main()
