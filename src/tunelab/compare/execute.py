"""Run a grid: each cell is its own ``tunelab run`` process writing ``OUTPUT_DIR/runs/<run-id>/``
(so time and peak memory are that run's alone), ``jobs`` at a time. By default (Linux) the process
is forked from the compare process, which has imported torch/transformers/peft once; with
``--isolation exec`` it is a fresh ``python -m tunelab.cli run ...``. The child's stdout (epoch
lines) goes to ``OUTPUT_DIR/logs/<run-id>.log``, its progress bar to the terminal below the grid's
bar (one line per concurrent run).

Crash safety: a cell counts as done only when its run.json says "completed", agrees with every
resolved option of the cell (defaults included), and the ``compare-cell.json`` written beside it
afterwards carries the cell's config hash; only then is its store row written as completed. A cell
whose run was killed ("running" or "interrupted") and holds a checkpoint of this very config
(``save_every=N`` given to the compare) continues from it (``tunelab run --resume``); anything else
is re-run from scratch (``--overwrite`` wipes the half-written folder). Children get SIGKILL when the compare
process dies (Linux ``PR_SET_PDEATHSIG``), so a killed compare leaves no orphan writing a run folder.
"""

import json
import os
import shlex
import signal
import subprocess
import sys
import time

from ..resolve import applies
from ..results.record import read_record, write_json_atomic
from .grid import Cell, config_matches
from ..results.store import Store

CELL_FILE = "compare-cell.json"  # beside run.json: which cell (config hash) this finished run is


def completed_record(cell: Cell) -> dict | None:
    """The cell's run.json if it is a finished run of exactly this cell's config, else None."""
    try:
        rec = read_record(cell.run_dir)
        with open(os.path.join(cell.run_dir, CELL_FILE), encoding="utf-8") as f:
            mark = json.load(f)
    except (OSError, ValueError):
        return None
    if rec.get("status") != "completed" or not os.path.isfile(os.path.join(cell.run_dir, "predictions.tsv")):
        return None
    if mark.get("config_hash") != cell.config_hash or mark.get("started_at") != rec.get("started_at"):
        return None
    # every resolved value, defaults included: a default that changed since the run (the hash leaves
    # options at their field default out) makes the cell stale
    if not isinstance(rec.get("config"), dict) or not config_matches(cell.config.as_dict(), rec["config"]):
        return None
    return rec


def mark_completed(cell: Cell) -> dict | None:
    """After a child exits: if its run.json is completed and agrees with the cell's config, write the
    cell file (atomically) and return the record; else None."""
    try:
        rec = read_record(cell.run_dir)
    except (OSError, ValueError):
        return None
    if (rec.get("status") != "completed" or not isinstance(rec.get("config"), dict)
            or (rec.get("training_health") or {}).get("diverged")
            or not config_matches(cell.config.as_dict(), rec["config"])
            or not os.path.isfile(os.path.join(cell.run_dir, "predictions.tsv"))):
        return None
    write_json_atomic(os.path.join(cell.run_dir, CELL_FILE), {
        "run_id": cell.run_id, "config_hash": cell.config_hash, "label": cell.label, "task": cell.task,
        "model": cell.model, "seed": cell.seed, "started_at": rec.get("started_at"), "code": cell.code,
        **({"search": cell.search} if cell.search else {})})
    return rec


def resumable(cell: Cell) -> bool:
    """The cell's folder holds a killed run of exactly this cell's config with a checkpoint."""
    from ..train.checkpoint import find_checkpoint, read_meta

    try:
        rec = read_record(cell.run_dir)
        path = find_checkpoint(cell.run_dir)
        return (rec.get("status") in ("running", "interrupted") and path is not None
                and isinstance(rec.get("config"), dict) and config_matches(cell.config.as_dict(), rec["config"])
                and read_meta(path).get("started_at") == rec.get("started_at"))
    except (OSError, ValueError):
        return False


def run_args(cell: Cell) -> list:
    """``tunelab run`` arguments reproducing this cell exactly: every resolved option that the
    cell's method and task read (``null`` for an option left open), so no default of any level can
    change what the child runs. A resumable cell (see ``resumable``) continues with ``--resume``."""
    from ..tasks import get_task

    cfg = cell.config.as_dict()
    task = get_task(cfg["task"])
    args = ["run", "--task", cfg["task"], "--method", cfg["method"], "--model", cfg["model"],
            "--seed", str(cfg["seed"]), "--output-dir", cfg["output_dir"], "--overwrite"]
    if resumable(cell):
        args[-1:] = ["--resume", cfg["output_dir"]]
    for k, v in cfg.items():
        if k in ("task", "method", "model", "seed", "output_dir", "overwrite") or not applies(k, task, cfg["method"]):
            continue
        args.append(f"{k}={_yaml_scalar(v)}")
    return args


def _yaml_scalar(v) -> str:
    """The value as `tunelab run` reads it back (YAML scalar): plain when unambiguous, else JSON."""
    import yaml

    if isinstance(v, str):
        try:
            if yaml.safe_load(v) == v:
                return v
        except yaml.YAMLError:
            pass
    return json.dumps(v)


def _libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6", use_errno=True)
    except OSError:
        return None


def _die_with_parent_fn():
    """A function for the child: SIGKILL me when the compare process dies (Linux)."""
    libc, parent = _libc(), os.getpid()

    def fn():
        if libc is not None:
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # parent died before prctl took effect
            os._exit(1)

    return fn


def _log_header(cell: Cell, log_path: str) -> int:
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.write(fd, ("$ " + " ".join(shlex.quote(a) for a in ["tunelab", *run_args(cell)]) + "\n").encode())
    return fd


def start_exec(cell: Cell, log_path: str, slot: int = 0, env: dict | None = None) -> int:
    """``python -m tunelab.cli run ...`` in a fresh interpreter (pays the torch/transformers import).
    ``env``: variables for the child (its GPUs: ``CUDA_VISIBLE_DEVICES``)."""
    cmd = [sys.executable, "-m", "tunelab.cli", *run_args(cell)]
    env = {**os.environ, "TQDM_POSITION": str(1 + slot), "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "TUNELAB_ERRORS_TO_STDOUT": "1", **(env or {})}
    fd = _log_header(cell, log_path)
    try:
        proc = subprocess.Popen(cmd, stdout=fd, stderr=None, env=env, preexec_fn=_die_with_parent_fn())
    finally:
        os.close(fd)
    proc.returncode = 0  # we reap it ourselves (os.wait4); keep Popen from trying again
    return proc.pid


def start_fork(cell: Cell, log_path: str, slot: int = 0, env: dict | None = None) -> int:
    """The same ``tunelab run`` in a forked child of this process, which has already imported torch,
    transformers and peft (saves ~10 s a run on a small CPU; the child's time and peak memory are
    its own: the parent holds nothing but those imports; it never initialises CUDA, so the child's
    ``CUDA_VISIBLE_DEVICES`` from ``env`` takes effect)."""
    fd = _log_header(cell, log_path)
    die = _die_with_parent_fn()
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # child: never returns
        code = 1
        try:
            die()
            os.environ["TUNELAB_ERRORS_TO_STDOUT"] = "1"  # the error line also goes to the log
            os.environ.update(env or {})
            os.dup2(fd, 1)
            os.close(fd)
            _child_progress_bar_at(1 + slot)
            from ..cli import main

            code = main(run_args(cell))
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:  # noqa: BLE001
            import traceback

            traceback.print_exc()
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    os.close(fd)
    return pid


def _child_progress_bar_at(position: int) -> None:
    """In a forked child: forget the parent's bar and draw new bars ``position`` lines below it."""
    import functools

    from tqdm import std

    std.tqdm._instances.clear()
    std.tqdm.__init__ = functools.partialmethod(std.tqdm.__init__, position=position)


def poll(pid: int) -> tuple | None:
    """None while the child runs, else (exit code, its CPU seconds)."""
    done, status, usage = os.wait4(pid, os.WNOHANG)
    if not done:
        return None
    return os.waitstatus_to_exitcode(status), round(usage.ru_utime + usage.ru_stime, 2)


def stop_children(pids, signum: int | None = None) -> None:
    """After Ctrl-C (which the children got too): give them time to record "interrupted", then
    SIGINT, then SIGKILL. After a SIGTERM to the compare (a scheduler stopping it: the children
    may not have got it) each child gets the SIGTERM first: it stops at its next step boundary,
    checkpointed under save_every (train/preempt.py), and the next compare resumes it."""
    alive = set(pids)
    first = signal.SIGTERM if signum == signal.SIGTERM else None
    for sig, wait in ((first, 10), (signal.SIGINT, 20), (signal.SIGKILL, 5)):
        for pid in list(alive):
            if sig is not None:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    alive.discard(pid)
        deadline = time.time() + wait
        while alive and time.time() < deadline:
            for pid in list(alive):
                try:
                    if os.waitpid(pid, os.WNOHANG)[0]:
                        alive.discard(pid)
                except ChildProcessError:
                    alive.discard(pid)
            time.sleep(0.2)
        if not alive:
            return


STARTERS = {"fork": start_fork, "exec": start_exec}


def default_isolation() -> str:
    return "fork" if hasattr(os, "fork") and sys.platform.startswith("linux") else "exec"


def run_grid(cells: list, store: Store, output_dir: str, executor, progress: bool = True) -> dict:
    """Run every cell not yet completed, ``executor.slots`` at a time (compare/executors.py: local
    processes or Ray tasks); returns {completed, skipped, failed}."""
    from tqdm.auto import tqdm

    jobs = executor.slots
    tqdm.monitor_interval = 0  # no monitor thread: forking while it holds tqdm's lock would deadlock the child

    todo, skipped = [], 0
    for cell in cells:
        rec = completed_record(cell)
        if rec is not None:
            store.record_completed(cell, rec)  # also repairs a row lost to a kill after the run finished
            skipped += 1
        else:
            store.mark(cell, "pending")
            todo.append(cell)
    bar = tqdm(total=len(cells), initial=skipped, desc="compare", unit="run", position=0, dynamic_ncols=True,
               disable=not progress, smoothing=0)
    failed, running, pending = [], {}, list(todo)  # running: handle -> (cell, slot, log)
    refresh = _every(2.0, bar.refresh)
    try:
        while pending or running:
            while pending and len(running) < max(1, jobs):
                cell = pending.pop(0)
                slot = min(set(range(jobs)) - {v[1] for v in running.values()})
                store.mark(cell, "running")
                log = os.path.join(output_dir, "logs", cell.run_id + ".log")
                handle = executor.start(cell, log, slot)
                running[handle] = (cell, slot, log)
                bar.set_postfix_str(", ".join(v[0].run_id for v in running.values()), refresh=True)
            finished = executor.wait(0.25)
            if not finished:
                refresh()
                continue
            for handle, out in finished:
                cell, _slot, log = running.pop(handle)
                if not _finish(cell, out.rc, out.cpu, out.wall, log, store, out.error):
                    failed.append(cell.run_id)
                    bar.write(f"FAILED {cell.run_id}: {store.error(cell.run_id)} (log: {log})", file=sys.stderr)
                bar.update(1)
    except BaseException as e:  # Ctrl-C, SIGTERM (train/preempt.Preempted), an error
        executor.stop(getattr(e, "signum", None))
        raise
    finally:
        bar.close()
    return {"completed": len(todo) - len(failed), "skipped": skipped, "failed": failed}


def _finish(cell: Cell, rc: int, cpu: float, wall: float, log: str, store: Store, error: str | None = None) -> bool:
    """Record a finished child: completed only if run.json says so for this very config. ``error``:
    the executor's word when the process could not speak for itself (a lost Ray worker)."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"# exit code {rc}; process wall {wall} s, CPU {cpu} s\n")
    rec = mark_completed(cell) if rc == 0 else None
    if rec is not None:
        store.record_completed(cell, rec, process={"wall_seconds": wall, "cpu_seconds": cpu})
        return True
    err = _last_error_line(log) or error  # this attempt's own error line, before any stale run.json
    try:
        rec = read_record(cell.run_dir)
        err = err or rec.get("error")
        stop = rec.get("interrupted") if rec.get("status") == "interrupted" else None
        if err is None and isinstance(stop, dict):  # SIGTERM / Ctrl-C: not done; the next compare resumes it
            err = (f"interrupted ({stop.get('signal')})" + (f" at step {stop['step']}" if stop.get("step") else "")
                   + ("; re-run the compare to resume it" if resumable(cell) else "; re-run the compare to redo it"))
        health = rec.get("training_health") or {}
        if health.get("diverged"):
            err = (f"training diverged: 5-step mean loss rose to {health['max_loss']} at step "
                   f"{health['max_loss_step']} from {health['start_loss']} (> {health['factor']}x); try a lower lr")
    except (OSError, ValueError):
        pass
    if err is None and rc == 0:
        err = "run.json is not a completed run of this cell's config"
    store.mark(cell, "failed", error=err or f"exit code {rc} after {wall:.0f} s")
    return False


def _last_error_line(log: str) -> str | None:
    """The child's one error line (cli._error_line) from its log, when it failed before run.json."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            lines = [ln.strip() for ln in f if ln.startswith(("tunelab: error:", "tunelab: run failed:"))]
    except OSError:
        return None
    return lines[-1].split(": ", 1)[1] if lines else None


def _every(seconds: float, fn):
    last = [time.monotonic()]

    def tick():
        if time.monotonic() - last[0] >= seconds:
            last[0] = time.monotonic()
            fn()

    return tick
