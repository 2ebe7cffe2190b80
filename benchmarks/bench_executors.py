"""What the compare executors cost: the same small grid run by ``tunelab compare`` with the local
executor (forked runs, exec'd runs) and with ``--executor ray`` (a local Ray instance started by the
command), each from an empty output folder. Prints one table: the compare's wall seconds, the CPU
seconds of the processes it reaped (the compare and, for the local executor, its runs; a lower
bound for Ray, whose workers and the runs under them are not the compare's children), the runs'
summed CPU / wall seconds as the store recorded them (measured alike by every executor: wait4 on
the run process), and whether every cell's metrics equal the first executor's. Also times a bare
Ray instance start + stop.

    python benchmarks/bench_executors.py --data-dir ../shared/data/glue --append BENCHMARKS.md
"""

import argparse
import json
import os
import resource
import shutil
import sqlite3
import subprocess
import sys
import time

from bench_common import append_section, command_line, machine_line

EXECUTORS = {"local (fork)": ["--isolation", "fork"], "local (exec)": ["--isolation", "exec"],
             "ray (local instance)": ["--executor", "ray"]}

RAY_START = """
import time, ray
t = time.perf_counter(); ray.init(num_cpus={jobs}, include_dashboard=False, logging_level="ERROR")
t1 = time.perf_counter(); ray.shutdown(); t2 = time.perf_counter()
print(round(t1 - t, 2), round(t2 - t1, 2))
"""


def children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_compare(name: str, flags: list, args) -> dict:
    out = os.path.join(args.out_dir, name.split()[0] + ("-" + flags[-1] if flags[0] == "--isolation" else ""))
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, "-m", "tunelab.cli", "compare", "--preset", "quick", "tasks=sst2", f"methods={args.methods}",
           f"max_train_samples={args.max_train_samples}", f"max_eval_samples={args.max_eval_samples}", "epochs=1",
           "--data-dir", args.data_dir, "--output-dir", out, "--threads", "1", "--jobs", str(args.jobs), "--no-report",
           *flags]
    cpu0, t0 = children_cpu(), time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, children_cpu() - cpu0
    if proc.returncode != 0:
        print(f"  FAILED {name}: {(proc.stderr.strip().splitlines() or ['?'])[-1]}", file=sys.stderr)
    with sqlite3.connect(os.path.join(out, "results.sqlite")) as con:
        rows = con.execute("SELECT run_id, status, metrics_json, process_cpu_seconds, process_wall_seconds "
                           "FROM runs").fetchall()
    return {"name": name, "wall": wall, "cpu": cpu, "rc": proc.returncode,
            "metrics": {r[0]: json.loads(r[2] or "{}") for r in rows},
            "completed": sum(r[1] == "completed" for r in rows),
            "runs_cpu": sum(r[3] or 0 for r in rows), "runs_wall": sum(r[4] or 0 for r in rows)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-dir", required=True)
    p.add_argument("--out-dir", default="/tmp/bench-executors")
    p.add_argument("--methods", default="full,lora")
    p.add_argument("--max-train-samples", type=int, default=200)
    p.add_argument("--max-eval-samples", type=int, default=100)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--append", metavar="BENCHMARKS.md")
    args = p.parse_args()
    os.makedirs(args.out_dir, exist_ok=True)

    load_before = os.getloadavg()
    start = subprocess.run([sys.executable, "-c", RAY_START.format(jobs=args.jobs)], capture_output=True, text=True)
    ray_init, ray_stop = (start.stdout.split() + ["?", "?"])[:2]
    results = [run_compare(name, flags, args) for name, flags in EXECUTORS.items()]
    load_after = os.getloadavg()

    ref = results[0]["metrics"]
    lines = [f"| executor | cells completed | compare wall s | reaped CPU s | runs' CPU s (sum) "
             f"| runs' wall s (sum) | metrics = {results[0]['name']} |", "|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(f"| {r['name']} | {r['completed']}/{len(ref)} | {r['wall']:.1f} | {r['cpu']:.1f} | "
                     f"{r['runs_cpu']:.1f} | {r['runs_wall']:.1f} | {'yes' if r['metrics'] == ref else 'NO'} |")
    print("\n".join(lines))
    print(f"bare Ray instance ({args.jobs} CPUs): ray.init {ray_init} s, ray.shutdown {ray_stop} s")
    if args.append:
        append_section(args.append, [
            "", f"## Compare executors: local processes vs Ray tasks ({time.strftime('%Y-%m-%d')})", "",
            f"`{command_line('bench_executors.py')}`", "",
            machine_line(1) + f"; {args.jobs} runs at a time; grid: quick preset, sst2, methods {args.methods}, "
            f"{args.max_train_samples} train / {args.max_eval_samples} dev examples, 1 epoch; load average "
            f"{load_before[0]:.1f} before, {load_after[0]:.1f} after (the 2 cores are shared with other jobs).", "",
            *lines, "",
            f"A bare local Ray instance ({args.jobs} CPUs): `ray.init` {ray_init} s, `ray.shutdown` {ray_stop} s. "
            "Reaped CPU: what the compare process and the children it waited for used (for Ray a lower bound: "
            "Ray's workers and the runs under them are not its children); runs' CPU: each run process, "
            "measured alike (wait4) by every executor.", ""])


if __name__ == "__main__":
    main()
