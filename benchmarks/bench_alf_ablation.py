"""ALF's layer-importance score, ablated at one budget: change | calibrated | grad-norm | random | static.

On SST-2, MRPC and CoLA subsets with ``minilm``, every ``--alf-score`` variant runs at the same
``--alf-budget`` and ``--alf-interval`` for each seed, each as its own ``tunelab run`` subprocess
(``--threads 1``, ``--jobs`` at a time). A ``full`` fine-tuning row (lr 1e-4, as in the quick
preset) is the reference. Prints one table (metric mean ± std over seeds, achieved time-averaged
trainable share, train wall and CPU seconds, set changes) and, per task, each variant's paired
difference from ``static`` (same seed = same data subset, order and head init); ``--append
BENCHMARKS.md`` adds it with the command and the machine line.

    python benchmarks/bench_alf_ablation.py --data-dir ../shared/data/glue --append BENCHMARKS.md
    python benchmarks/bench_alf_ablation.py --plan cola:64:1 --seeds 0 --max-eval-samples 64   # smoke test
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from bench_common import append_section, command_line, machine_line, parse_plan

VARIANTS = ("change", "calibrated", "grad-norm", "random", "static")
DEFAULT_PLAN = "sst2:500:2,mrpc:500:2,cola:600:2"
METRICS = {"sst2": ("accuracy",), "mrpc": ("f1", "accuracy"), "cola": ("mcc", "accuracy")}



def run_one(job: dict, args) -> dict:
    """One ``tunelab run`` subprocess; reuses a completed run.json with the same config (--reuse)."""
    out = job["out"]
    rec_path = os.path.join(out, "run.json")
    if (args.reuse or args.report_only) and os.path.exists(rec_path):
        with open(rec_path, encoding="utf-8") as f:
            rec = json.load(f)
        if rec.get("status") == "completed" and rec.get("bench_args") == job["args"]:
            return {**job, "rec": rec, "wall": rec.get("bench_wall")}
    if args.report_only:
        return {**job, "rec": None, "wall": None}
    cmd = [sys.executable, "-m", "tunelab.cli", "run", *job["args"], "--output-dir", out, "--overwrite"]
    t0 = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - t0
    if proc.returncode != 0:
        err = ((proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["?"])[0]
        print(f"  FAILED {job['name']}: {err}", file=sys.stderr)
        return {**job, "rec": None, "wall": wall}
    with open(rec_path, encoding="utf-8") as f:
        rec = json.load(f)
    rec["bench_args"], rec["bench_wall"] = job["args"], wall  # for --reuse
    with open(rec_path, "w", encoding="utf-8") as f:
        json.dump(rec, f, indent=1)
    print(f"  done {job['name']}: {wall:.0f} s wall, {rec['metrics']}", flush=True)
    return {**job, "rec": rec, "wall": wall}


def mean_std(xs: list) -> tuple:
    xs = [x for x in xs if x is not None]
    if not xs:
        return float("nan"), float("nan")
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def paired_t(diffs: list):
    """Two-sided paired t-test p-value of the mean difference (None with < 2 pairs)."""
    if len(diffs) < 2:
        return None
    m, s = statistics.mean(diffs), statistics.stdev(diffs)
    if s == 0:
        return 0.0 if m != 0 else 1.0
    from scipy import stats

    return float(2 * stats.t.sf(abs(m / (s / math.sqrt(len(diffs)))), len(diffs) - 1))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--plan", default=DEFAULT_PLAN, help=f"task:train_samples:epochs,... (default {DEFAULT_PLAN})")
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument("--full", action=argparse.BooleanOptionalAction, default=True, help="add the full FT reference row")
    ap.add_argument("--model", default="minilm")
    ap.add_argument("--budget", type=float, default=0.25)
    ap.add_argument("--interval", type=int, default=10)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--max-eval-samples", type=int, default=300)
    ap.add_argument("--max-seq-length", default="sst2:64,mrpc:128,cola:64",
                    help="task:length,... (SST-2 and CoLA sentences are short; MRPC pairs need 128)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--jobs", type=int, default=2, help="runs at a time")
    ap.add_argument("--order", choices=("seed", "task"), default="seed",
                    help="after the first seed of every task: the next seeds seed by seed, or task by task")
    ap.add_argument("--data-dir", default=os.environ.get("TUNELAB_DATA_DIR"))
    ap.add_argument("--out-dir", default="runs/bench_alf_ablation")
    ap.add_argument("--reuse", action="store_true", help="keep completed runs of the same arguments")
    ap.add_argument("--report-only", action="store_true",
                    help="run nothing: the table from the completed runs of the same arguments in --out-dir")
    ap.add_argument("--append", default=None, help="append the table to this markdown file")
    args = ap.parse_args(argv)
    plan = parse_plan(args.plan)
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    rows = variants + (["full"] if args.full else [])
    lengths = dict(x.split(":") for x in args.max_seq_length.split(","))

    def seq_len(task):
        return lengths.get(task, "128")

    # order: the first seed of every task, then (--order seed) seed by seed or (--order task) the
    # other seeds task by task in plan order, so that a cut-short benchmark has whole rows; full last
    first = [(seeds[0], t, v) for t, _, _ in plan for v in variants]
    rest = ([(s, t, v) for s in seeds[1:] for t, _, _ in plan for v in variants] if args.order == "seed"
            else [(s, t, v) for t, _, _ in plan for s in seeds[1:] for v in variants])
    jobs = []
    for seed, task, v in first + rest + ([(s, t, "full") for s in seeds for t, _, _ in plan] if args.full else []):
        n, epochs = next((n, e) for t, n, e in plan if t == task)
        a = ["--task", task, "--model", args.model, "--max-train-samples", str(n), "--epochs", epochs,
             "--max-eval-samples", str(args.max_eval_samples), "--max-seq-length", str(seq_len(task)),
             "--batch-size", str(args.batch_size), "--eval-batch-size", "64", "--seed", str(seed),
             "--threads", "1"]
        if args.data_dir:
            a += ["--data-dir", args.data_dir]
        if v == "full":
            a += ["--method", "full", "--lr", "1e-4"]
        else:
            a += ["--method", "alf", "--alf-score", v, "--alf-budget", str(args.budget),
                  "--alf-interval", str(args.interval)]
        jobs.append({"task": task, "variant": v, "seed": seed, "name": f"{task}/{v}/s{seed}", "args": a,
                     "out": os.path.join(args.out_dir, f"{task}-{v}-s{seed}")})
    print(f"{len(jobs)} runs, {args.jobs} at a time", flush=True)
    t0 = time.time()
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(lambda j: run_one(j, args), jobs))
    total = time.time() - t0
    done = [r["rec"] for r in results if r["rec"]]
    if done:  # from the first run's start to the last one's end (also across --reuse restarts)
        from datetime import datetime

        stamp = "%Y-%m-%dT%H:%M:%S%z"
        total = max(total, (max(datetime.strptime(r["finished_at"], stamp) for r in done)
                            - min(datetime.strptime(r["started_at"], stamp) for r in done)).total_seconds())

    by = {}
    for r in results:
        by.setdefault((r["task"], r["variant"]), []).append(r)
    lines = ["| task | variant | metric (mean ± std over seeds) | trainable share (time-avg) | train wall s | "
             "train CPU s | set changes | layers ever trained |", "|---|---|---|---|---|---|---|---|"]
    paired = []
    for task, n, epochs in plan:
        names = METRICS.get(task, ("accuracy",))
        for v in rows:
            rs = [r for r in by.get((task, v), []) if r["rec"]]
            if not rs:
                lines.append(f"| {task} | {v} | failed | | | | | |")
                continue
            mets = []
            for name in names:
                m, s = mean_std([r["rec"]["metrics"].get(name) for r in rs])
                mets.append(f"{name} {m:.4f} ± {s:.4f}")
            share = mean_std([r["rec"]["params"].get("trainable_fraction_mean", 1.0) for r in rs])[0]
            wall = mean_std([r["rec"]["time"]["train_seconds"] for r in rs])[0]
            cpu = mean_std([r["rec"].get("cpu_time", {}).get("train_cpu_seconds") for r in rs])[0]
            tls = [r["rec"].get("layers") or [] for r in rs]
            changes = mean_std([sum(a["active"] != b["active"] for a, b in zip(tl, tl[1:])) for tl in tls])[0]
            ever = sorted({i for tl in tls for e in tl for i in e["active"]})
            lines.append(f"| {task} | {v} | {', '.join(mets)} (n={len(rs)}) | {share:.3f} | {wall:.1f} | {cpu:.1f} | "
                         f"{'' if v == 'full' else f'{changes:.1f}'} | {'' if v == 'full' else ever} |")
        base = {r["seed"]: r["rec"]["metrics"][names[0]] for r in by.get((task, "static"), []) if r["rec"]}
        for v in rows:
            if v == "static":
                continue
            d = [r["rec"]["metrics"][names[0]] - base[r["seed"]] for r in by.get((task, v), [])
                 if r["rec"] and r["seed"] in base]
            if d:
                p = paired_t(d)
                paired.append(f"- {task} {names[0]}: {v} - static = {statistics.mean(d):+.4f} "
                              f"(per seed {', '.join(f'{x:+.4f}' for x in d)}; paired t p = "
                              f"{'n/a' if p is None else f'{p:.2f}'})")
    table = "\n".join(lines)
    print(table)
    print("\n".join(paired))
    print(f"total wall time {total / 60:.1f} min")
    if args.append:
        head = [f"\n## ALF importance scores at an equal budget (benchmarks/bench_alf_ablation.py)\n",
                f"Command: `{command_line('bench_alf_ablation.py', argv)}`  ",
                f"{machine_line(1)}; plan {args.plan}; max_seq_length {args.max_seq_length}; dev subsets of "
                f"{args.max_eval_samples}; batch {args.batch_size}; seeds {args.seeds}; budget {args.budget}, interval "
                f"{args.interval}; {args.jobs} runs at a time; total wall time {total / 60:.1f} min.\n", table, "",
                "Paired differences from `static` (same seed):", "", *paired, ""]
        append_section(args.append, head)
    return 0


if __name__ == "__main__":
    sys.exit(main())
