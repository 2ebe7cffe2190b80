"""The docrep comparison table from `tunelab run`s: every cell of a compare preset (default
``docrep-quick``: contrastive fine-tuning of minilm with full FT and LoRA vs TF-IDF, Doc2Vec and the
untouched encoder), each run as its own ``tunelab run`` process with exactly the options ``tunelab
compare`` would pass (``compare.execute.run_args``), ``--jobs`` at a time; then one Markdown table from the
run.json files: macro-F1 (main), accuracy, 5-NN accuracy, NMI, trainable parameters, train and evaluation
seconds, peak RSS, and a paired bootstrap p-value of macro-F1 vs the first ``full`` row over the test
documents (``report.stats.paired_bootstrap``, the report's own test). Machine load (``uptime``) is
printed before and after: other processes may share the cores.

    python benchmarks/bench_docrep_task.py --data-dir ../shared/data/news/bbc --out runs/bench-docrep
    python benchmarks/bench_docrep_task.py --table-only --out runs/bench-docrep   # re-print the table
    python benchmarks/bench_docrep_task.py --config more.yaml --only simcse --out runs/bench-docrep  # add a row
"""

import argparse
import json
import os
import subprocess
import sys
import time

from bench_common import command_line, machine_line


def parse_args(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", default="docrep-quick")
    p.add_argument("--config", default=None, help="a compare YAML instead of the preset (e.g. the preset plus rows)")
    p.add_argument("--data-dir", default=os.path.join(here, "..", "..", "shared", "data", "news", "bbc"))
    p.add_argument("--out", default="runs/bench-docrep")
    p.add_argument("--jobs", type=int, default=None, help="runs at a time (default: the preset's)")
    p.add_argument("--only", default="", help="comma-separated method labels to run (default: all)")
    p.add_argument("--table-only", action="store_true", help="do not run; print the table of finished runs")
    p.add_argument("--report", action="store_true",
                   help="also store the finished runs in OUT/results.sqlite and write OUT/report.md / report.html "
                        "(tunelab report's own code)")
    p.add_argument("overrides", nargs="*", help="key=value run options for every cell (as tunelab compare)")
    return p.parse_args(argv)


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return "uptime unavailable"


def run_cells(cells, jobs: int, out: str):
    """Start each cell's `tunelab run` (logs in OUT/logs), ``jobs`` at a time; wait for all."""
    from tunelab.compare.execute import run_args

    os.makedirs(os.path.join(out, "logs"), exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")}
    pending, running = list(cells), []
    while pending or running:
        while pending and len(running) < jobs:
            c = pending.pop(0)
            log = open(os.path.join(out, "logs", c.run_id + ".log"), "w")
            proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli", *run_args(c)], stdout=log,
                                    stderr=subprocess.STDOUT, env=env)
            running.append((c, proc, log, time.time()))
            print(f"started {c.run_id}", file=sys.stderr, flush=True)
        time.sleep(2)
        for item in list(running):
            c, proc, log, t0 = item
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)  # the child's own CPU time (load-independent-ish)
            if pid == 0:
                continue
            log.close()
            running.remove(item)
            rc = os.waitstatus_to_exitcode(status)
            cost = {"rc": rc, "wall_seconds": round(time.time() - t0, 1),
                    "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1)}
            with open(os.path.join(out, "logs", c.run_id + ".process.json"), "w") as f:
                json.dump(cost, f)
            print(f"finished {c.run_id}: {cost}", file=sys.stderr, flush=True)


def table(cells) -> list:
    from tunelab.report.stats import paired_bootstrap, read_predictions

    recs = {}
    for c in cells:
        path = os.path.join(c.run_dir, "run.json")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as f:
                recs[c.label] = json.load(f)
    ref = next((c.label for c in cells if c.method == "full" and not c.config.docrep_baseline
                and recs.get(c.label, {}).get("status") == "completed"), None)
    lines = ["| representation | trainable params | macro-F1 | accuracy | 5-NN acc | NMI | train s | eval s "
             "| process wall / CPU s | peak RSS MB | p vs " + (ref or "—") + " (macro-F1) |", "|---" * 11 + "|"]
    for c in cells:
        r = recs.get(c.label)
        if not r or r.get("status") != "completed":
            lines.append(f"| {c.label} | " + (r or {}).get("status", "not run") + " |" + " |" * 9)
            continue
        m = r["metrics"]
        p = "(reference)" if c.label == ref else "—"
        if ref and c.label != ref:
            a = read_predictions(os.path.join(c.run_dir, "predictions.tsv"))
            b = read_predictions(os.path.join(next(x.run_dir for x in cells if x.label == ref), "predictions.tsv"))
            keys = sorted(set(a) & set(b))
            delta, pv = paired_bootstrap([([a[k][0] for k in keys], [a[k][1] for k in keys], [b[k][1] for k in keys])],
                                         "macro_f1")
            p = f"{pv:.3f} (Δ {delta:+.4f})"
        eval_s = sum(h.get("eval_seconds") or 0 for h in r["history"])
        cost = os.path.join(os.path.dirname(os.path.dirname(c.run_dir)), "logs", c.run_id + ".process.json")
        proc = "—"
        if os.path.isfile(cost):
            with open(cost) as f:
                pc = json.load(f)
            proc = f"{pc['wall_seconds']:.0f} / {pc['cpu_seconds']:.0f}"
        lines.append(f"| {c.label} | {r['params']['trainable']:,} | {m['macro_f1']:.4f} | {m['accuracy']:.4f} "
                     f"| {m['knn_accuracy']:.4f} | {m['nmi']:.4f} | {r['time']['train_seconds']:.0f} | {eval_s:.0f} "
                     f"| {proc} | {r['memory']['peak_rss_mb']:.0f} | {p} |")
    return lines


def write_store_and_report(cc, cells, out: str, jobs: int, argv) -> None:
    """What `tunelab compare` leaves behind for `tunelab report`: the store with the grid and every
    completed run.json, then the report."""
    from tunelab.report import write_report
    from tunelab.results.store import Store

    store = Store(os.path.join(out, "results.sqlite"))
    try:
        store.set_meta(name=cc.name, description=cc.description, source=cc.source, config_text=cc.text,
                       overrides=list(cc.overrides), config=cc.as_dict(),
                       command=["python", "benchmarks/bench_docrep_task.py", *(sys.argv[1:] if argv is None else argv)],
                       cwd=os.getcwd(), grid=[c.run_id for c in cells], jobs=jobs,
                       threads=sorted({c.config.threads for c in cells}, key=str))
        for c in cells:
            path = os.path.join(c.run_dir, "run.json")
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as f:
                    rec = json.load(f)
                if rec.get("status") == "completed":
                    store.record_completed(c, rec)
                else:
                    store.mark(c, rec.get("status", "failed"), rec.get("error"))
    finally:
        store.close()
    md, html = write_report(out)
    print(f"report: {md} {html}", file=sys.stderr)


def main(argv=None):
    args = parse_args(argv)
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))
    from tunelab.compare.config import load_compare_config
    from tunelab.compare.grid import expand

    cc = load_compare_config(path=args.config, preset=None if args.config else args.preset, overrides=args.overrides)
    cells = expand(cc, os.path.abspath(args.out), os.path.abspath(args.data_dir))
    if args.only:
        keep = set(args.only.split(","))
        cells = [c for c in cells if c.label in keep or c.label == "full"]
    before = uptime()
    t0 = time.time()
    if not args.table_only:
        run_cells([c for c in cells if not args.only or c.label in set(args.only.split(","))],
                  args.jobs or cc.jobs, args.out)
    wall = time.time() - t0
    print(f"`{command_line('bench_docrep_task.py', argv)}`  ")
    print(f"{machine_line(cc.shared.get('threads'))}; {args.jobs or cc.jobs} runs at a time; "
          f"wall {wall / 60:.1f} min  ")
    print(f"load before: `{before}`; after: `{uptime()}`\n")
    print("\n".join(table(cells)))
    if args.report:
        write_store_and_report(cc, cells, args.out, args.jobs or cc.jobs, argv)


if __name__ == "__main__":
    main()
