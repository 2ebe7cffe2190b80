"""``tunelab compare CONFIG.yaml | --preset NAME [key=value ...]`` and ``tunelab report OUTPUT_DIR``."""

import os
import time

from ..errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="run a tasks x methods x models x seeds grid and write the report",
                       description="Run every cell of a comparison grid (each as its own `tunelab run` process), "
                                   "store the results in OUTPUT_DIR/results.sqlite and write report.md / report.html. "
                                   "Re-running skips completed runs and redoes unfinished ones.")
    p.add_argument("args", nargs="*", metavar="[CONFIG.yaml] [key=value ...]",
                   help="a compare YAML and/or overrides: tasks=sst2,mrpc methods=full,lora seeds=0,1 epochs=1 ...; "
                        "search=auto tunes each method's lr (x 1/3, 1, 3) on a selection split carved from the "
                        "training data before the grid (search='{lr: [1e-4, 3e-4]}' for a grid of your own)")
    p.add_argument("--preset", help="a shipped config: " + ", ".join(_preset_names()))
    p.add_argument("--data-dir", help="local data folder (default: $TUNELAB_DATA_DIR, else the Hugging Face hub)")
    p.add_argument("--output-dir", help="study folder (default: runs/compare-<name>)")
    p.add_argument("--threads", type=int, help="torch CPU threads per run")
    p.add_argument("--jobs", type=int, help="runs at a time, each its own process (default: the config's jobs, else 1)")
    p.add_argument("--isolation", choices=("fork", "exec"), default=None,
                   help="how each run gets its own process: fork this one (default on Linux: no repeated "
                        "torch import) or exec a fresh `python -m tunelab.cli run`")
    p.add_argument("--executor", choices=("local", "ray"), default="local",
                   help="where the runs go: local processes (default) or Ray tasks (pip install 'tunelab[ray]')")
    p.add_argument("--address", help="with --executor ray: a running Ray cluster (auto or HOST:PORT); "
                                     "default: start a local Ray instance for this compare")
    p.add_argument("--cpus-per-run", type=float, help="with --executor ray: CPUs each run reserves (default 1)")
    p.add_argument("--gpus-per-run", type=float, help="GPUs each run gets. --executor ray: GPUs each run reserves "
                                                      "(default 0: runs see no GPU); local: whole GPUs, one run per N "
                                                      "GPUs at a time, each with its own CUDA_VISIBLE_DEVICES")
    p.add_argument("--report-to", metavar="TRACKERS", help="tensorboard,mlflow,wandb: every run reports to them, one "
                   "experiment per study (its name), one run per cell (train/reporting.py)")
    p.add_argument("--logging-dir", metavar="DIR", help="with --report-to tensorboard: DIR/<run id>/ per cell "
                   "(default: each run's folder /tensorboard)")
    p.add_argument("--dry-run", action="store_true", help="list the grid and what is done, run nothing")
    p.add_argument("--no-report", action="store_true", help="skip writing the report at the end")
    p.set_defaults(func=cmd_compare)

    r = sub.add_parser("report", help="write report.md and report.html for a compare OUTPUT_DIR",
                       description="Build OUTPUT_DIR/report.md and the self-contained OUTPUT_DIR/report.html "
                                   "from OUTPUT_DIR/results.sqlite.")
    r.add_argument("output_dir", metavar="OUTPUT_DIR")
    r.set_defaults(func=cmd_report)


def _preset_names() -> list:
    from .config import preset_names

    return preset_names()


def _command(ns, path, overrides) -> list:
    cmd = ["tunelab", "compare"]
    cmd += [path] if path else ["--preset", ns.preset]
    cmd += list(overrides)
    for flag, v in (("--data-dir", ns.data_dir), ("--output-dir", ns.output_dir), ("--threads", ns.threads),
                    ("--jobs", ns.jobs), ("--isolation", ns.isolation),
                    ("--executor", None if ns.executor == "local" else ns.executor), ("--address", ns.address),
                    ("--cpus-per-run", ns.cpus_per_run), ("--gpus-per-run", ns.gpus_per_run),
                    ("--report-to", ns.report_to), ("--logging-dir", ns.logging_dir)):
        if v is not None:
            cmd += [flag, str(v)]
    return cmd


def cmd_compare(ns) -> int:
    from .config import load_compare_config

    positional = list(ns.args)
    path = positional.pop(0) if positional and "=" not in positional[0] else None
    if path is not None and ns.preset:
        raise UserError("compare: give either CONFIG.yaml or --preset, not both")
    if ns.data_dir is not None and not os.path.isdir(ns.data_dir):
        raise UserError(f"--data-dir {ns.data_dir}: no such folder")
    if ns.threads is not None and ns.threads < 1:
        raise UserError(f"--threads {ns.threads}: must be >= 1")
    if ns.jobs is not None and ns.jobs < 1:
        raise UserError(f"--jobs {ns.jobs}: must be >= 1")
    cc = load_compare_config(path, ns.preset, positional)
    jobs = ns.jobs or cc.jobs
    from .executors import make_executor

    executor = make_executor(ns, jobs)  # checks its options (and that Ray is installed) before anything runs
    out = ns.output_dir or os.path.join("runs", f"compare-{cc.name}")
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f"--output-dir {out}: exists and is not a folder")

    from .execute import completed_record, run_grid
    from .grid import expand

    if ns.report_to is not None:
        from ..train.reporting import check

        check(ns.report_to)  # known trackers, installed: one line now rather than in every run's log
    elif ns.logging_dir is not None:
        raise UserError("--logging-dir: only with --report-to")
    cells = expand(cc, out, ns.data_dir, ns.threads, ns.report_to, ns.logging_dir)
    from .search import expand_search

    groups = expand_search(cc, out, ns.data_dir, ns.threads)  # [] without search:
    scells = [c for g in groups for c in g.cells]
    if ns.dry_run:
        done = 0
        for c in scells:
            print(f"{'done' if completed_record(c) is not None else 'todo'}  {c.run_id}  {c.config_hash}")
        if scells:
            print(f"{len(scells)} search runs (the grid's runs below are those of the default points until the "
                  f"search has chosen)")
        for c in cells:
            ok = completed_record(c) is not None
            done += ok
            print(f"{'done' if ok else 'todo'}  {c.run_id}  {c.config_hash}")
        print(f"{len(cells)} runs ({done} done) -> {out}")
        return 0

    from .lock import CompareLock
    from ..results.store import Store

    from ..train.preempt import handle_signals

    # One compare per folder: a second one refuses before touching the store (its meta would replace
    # this one's grid). Released on return, error and Ctrl-C; a killed holder's lock is taken over.
    # SIGTERM (a scheduler) ends the compare like Ctrl-C, exit 143, passing the SIGTERM on to its runs.
    with handle_signals(), CompareLock(out) as lock:
        if lock.took_over:
            print(f"compare: took over the lock of a compare that is gone (pid {lock.took_over.get('pid')}, "
                  f"started {lock.took_over.get('started_at')})", flush=True)
        store = Store(os.path.join(out, "results.sqlite"))
        try:
            store.set_meta(name=cc.name, description=cc.description, source=cc.source, config_text=cc.text,
                           overrides=positional, config=cc.as_dict(), command=_command(ns, path, positional),
                           cwd=os.getcwd(), grid=[c.run_id for c in cells],
                           started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
            threads = {c.config.threads for c in cells}
            with executor:
                store.set_meta(jobs=executor.slots, threads=sorted(threads, key=str), executor=executor.describe())
                print(f"compare {cc.name}: {len(cells)} runs ({len(cc.tasks)} tasks x {len(cc.methods)} methods x "
                      f"{len(cc.models)} models x {len(cc.seeds)} seeds), {executor.slots} at a time"
                      f"{'' if executor.name == 'local' else ' on ' + executor.name} -> {out}", flush=True)
                if not scells and store.meta().get("search"):  # an earlier compare here searched; this one does not
                    store.set_meta(search=None, search_grid=[])
                if scells:
                    cells = _search(cc, groups, scells, cells, store, out, ns, executor)
                res = run_grid(cells, store, out, executor)
            store.set_meta(finished_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        finally:
            store.close()
        print(f"runs: {res['completed']} run now, {res['skipped']} already done, {len(res['failed'])} failed; "
              f"{out}/results.sqlite", flush=True)
        if not ns.no_report:
            from ..report import write_report

            md, html = write_report(out)
            print(f"report: {md} {html}")
    if res["failed"]:
        print(f"tunelab: {len(res['failed'])} run(s) failed: {', '.join(res['failed'])} (logs in {out}/logs/); "
              f"re-run the same command to retry them", flush=True)
        return 1
    return 0


def _search(cc, groups, scells, cells, store, out, ns, executor) -> list:
    """Run the search cells, choose per (model, task, method), record it; -> the grid's cells with
    the chosen configurations."""
    from ..results.record import write_json_atomic
    from .execute import run_grid
    from .grid import expand
    from .search import choose, chosen

    print(f"search: {len(scells)} runs ({len(groups)} method x task x model, on a selection split of "
          f"{cc.search_fraction:g} of each task's training data), then the grid", flush=True)
    store.set_meta(search_grid=[c.run_id for c in scells])
    sres = run_grid(scells, store, out, executor)
    outcomes = [choose(g, store) for g in groups]
    by_key = {(o["task"], o["label"], o["model"]): o for o in outcomes}
    new = expand(cc, out, ns.data_dir, ns.threads, ns.report_to, ns.logging_dir, chosen=chosen(outcomes))
    for c in new:
        c.search = by_key.get((c.task, c.label, c.model))
    store.set_meta(search=outcomes, search_fraction=cc.search_fraction)
    write_json_atomic(os.path.join(out, "search.json"), {"search_fraction": cc.search_fraction, "outcomes": outcomes})
    for o in outcomes:
        pts = "  ".join(f"{_pt(p['values'])}: {'failed' if p['score'] is None else format(p['score'], '.4f')}"
                        for p in o["points"])
        print(f"search {o['task']}/{o['label']}: {pts} -> "
              f"{_pt(o['choice']) if o['choice'] else 'no point completed: the default'}", flush=True)
    if sres["failed"]:
        print(f"search: {len(sres['failed'])} point(s) failed (e.g. diverged; in the report); the choice is among "
              f"the others", flush=True)
    return new


def _pt(point: dict) -> str:
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def cmd_report(ns) -> int:
    from ..report import write_report

    if not os.path.isdir(ns.output_dir):
        raise UserError(f"report: {ns.output_dir}: no such folder")
    md, html = write_report(ns.output_dir)
    print(f"report: {md} {html}")
    return 0
