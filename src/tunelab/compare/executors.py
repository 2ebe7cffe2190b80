"""Executors: where a compare's cells run. ``execute.run_grid`` decides what to run (it skips the
completed cells) and alone writes the store; an executor only runs the cells' ``tunelab run``
processes and reports how each one ended. Two implementations of one small interface:

- ``LocalExecutor`` (the default): ``jobs`` child processes on this machine, forked from the compare
  process or exec'd (``execute.start_fork`` / ``start_exec``); with ``--gpus-per-run N`` each slot
  owns N of the machine's GPUs (``visible_gpus``) and its child gets them as ``CUDA_VISIBLE_DEVICES``,
  #GPUs / N slots unless ``--jobs`` asks for fewer;
- ``RayExecutor`` (``--executor ray``): each cell is a Ray task that runs the same ``tunelab run``
  command (``execute.run_args``) as a subprocess on whichever node Ray picks and returns its exit
  code and CPU/wall seconds. Without ``--address`` the compare starts a local Ray instance sized
  ``jobs x --cpus-per-run`` CPUs and shuts it down at the end; with ``--address`` it connects to a
  running cluster, whose nodes must see OUTPUT_DIR (and the data) at the same path, as each run
  writes its folder there and the driver reads run.json from it.

The interface (all an executor is used through)::

    with executor:                               # set up / tear down (Ray: init / shutdown)
        executor.slots                           # runs at a time
        handle = executor.start(cell, log, slot) # start one cell's run; its output goes to ``log``
        executor.wait(timeout)                   # [(handle, Outcome)] of runs that ended
        executor.stop(signum)                    # Ctrl-C / SIGTERM / error: stop what is in flight
"""

import math
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

from ..errors import UserError
from . import execute

EXECUTORS = ("local", "ray")


@dataclass
class Outcome:
    rc: int  # the run process's exit code (-1: it never ran to an exit code, see ``error``)
    cpu: float | None  # its CPU seconds (user + system, children included)
    wall: float  # seconds from start to end
    error: str | None = None  # why it failed when the process itself could not say (a lost Ray worker)


def visible_gpus() -> list:
    """The GPUs a compare on this machine may hand out (ids as CUDA_VISIBLE_DEVICES takes them): the
    entries of CUDA_VISIBLE_DEVICES when it is set (up to the first invalid one, as CUDA reads it),
    else the GPUs ``nvidia-smi -L`` lists; [] without GPUs. The compare process never initialises
    CUDA itself (its forked children could not use it then)."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        out = []
        for d in (d.strip() for d in env.split(",")):
            if not d or d.startswith("-"):
                break
            out.append(d)
        return out
    try:
        r = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return []
    if r.returncode != 0:
        return []
    return [str(i) for i, _ in enumerate(ln for ln in r.stdout.splitlines() if ln.startswith("GPU "))]


def gpu_slots(gpus: list, per_run: int, jobs: int | None = None) -> list:
    """Each slot's CUDA_VISIBLE_DEVICES: consecutive groups of ``per_run`` GPUs, #GPUs // per_run
    of them (at most ``jobs``)."""
    fits = len(gpus) // per_run
    n = fits if jobs is None else min(fits, jobs)
    return [",".join(gpus[i * per_run:(i + 1) * per_run]) for i in range(n)]


class LocalExecutor:
    """``jobs`` runs at a time, each a child process of this one (fork or exec). ``devices``: one
    CUDA_VISIBLE_DEVICES value per slot (``--gpus-per-run``); then there are ``len(devices)`` slots
    and the run in slot k sees only ``devices[k]``."""

    name = "local"

    def __init__(self, jobs: int = 1, isolation: str | None = None, devices: list | None = None,
                 gpus_per_run: int | None = None):
        self.devices, self.gpus_per_run = list(devices) if devices else None, gpus_per_run
        self.slots = len(self.devices) if self.devices else max(1, jobs)
        self.isolation = isolation or execute.default_isolation()
        self._start = execute.STARTERS[self.isolation]
        self._t0 = {}  # pid -> start time

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def describe(self) -> dict:
        d = {"name": self.name, "isolation": self.isolation, "slots": self.slots}
        if self.devices:
            d.update(gpus_per_run=self.gpus_per_run, devices=self.devices)
        return d

    def start(self, cell, log: str, slot: int):
        env = {"CUDA_VISIBLE_DEVICES": self.devices[slot]} if self.devices else None
        pid = self._start(cell, log, slot, env)
        self._t0[pid] = time.perf_counter()
        return pid

    def wait(self, timeout: float) -> list:
        done = [(pid, r) for pid in list(self._t0) if (r := execute.poll(pid)) is not None]
        if not done:
            time.sleep(timeout)
        return [(pid, Outcome(rc, cpu, round(time.perf_counter() - self._t0.pop(pid), 2))) for pid, (rc, cpu) in done]

    def stop(self, signum: int | None = None) -> None:
        execute.stop_children(list(self._t0), signum)


def make_executor(ns, jobs: int):
    """The executor ``tunelab compare``'s options ask for (``ns``: its parsed arguments; ``jobs``:
    the resolved --jobs / config jobs), its options checked."""
    ray_only = [f for f, v in (("--address", ns.address), ("--cpus-per-run", ns.cpus_per_run)) if v is not None]
    if ns.executor == "local":
        if ray_only:
            raise UserError(f"{ray_only[0]}: applies to --executor ray only")
        if ns.gpus_per_run is None:
            return LocalExecutor(jobs, ns.isolation)
        n = ns.gpus_per_run
        if not (n >= 1 and float(n).is_integer()):
            raise UserError(f"--gpus-per-run {n:g}: the local executor gives each run whole GPUs (1, 2, ...)")
        n = int(n)
        gpus = visible_gpus()
        if not gpus:
            raise UserError(f"--gpus-per-run {n}: this machine has no GPU (nvidia-smi lists none, or "
                            "CUDA_VISIBLE_DEVICES hides them); leave it out to run on the CPU")
        if n > len(gpus):
            raise UserError(f"--gpus-per-run {n}: more than the {len(gpus)} GPU(s) here ({','.join(gpus)})")
        # one run per N GPUs: as many at a time as fit, fewer if --jobs says so (a config's jobs, sized
        # for CPU cores, does not apply)
        return LocalExecutor(isolation=ns.isolation, devices=gpu_slots(gpus, n, ns.jobs), gpus_per_run=n)
    if ns.isolation is not None:
        raise UserError("--isolation: applies to the local executor (a Ray task always starts a fresh `tunelab run`)")
    cpus = 1.0 if ns.cpus_per_run is None else ns.cpus_per_run
    gpus = 0.0 if ns.gpus_per_run is None else ns.gpus_per_run
    if not cpus > 0:
        raise UserError(f"--cpus-per-run {ns.cpus_per_run:g}: must be > 0")
    if not gpus >= 0:
        raise UserError(f"--gpus-per-run {ns.gpus_per_run:g}: must be >= 0")
    if ns.address is not None and not ns.address.strip():
        raise UserError("--address: give auto or HOST:PORT")
    return RayExecutor(ns.address, cpus, gpus, jobs, cap_jobs=ns.jobs is not None)


def ray_module():
    """``import ray``, or the one line saying how to get it."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray: Ray is not installed; install it with: pip install 'tunelab[ray]'") from None
    return ray


class RayExecutor:
    """Each cell a Ray task reserving ``cpus_per_run`` CPUs and ``gpus_per_run`` GPUs; as many in
    flight as the cluster fits (a local instance: ``jobs``; a cluster: its resources at the start,
    capped by an explicit ``--jobs``)."""

    name = "ray"

    def __init__(self, address: str | None = None, cpus_per_run: float = 1, gpus_per_run: float = 0,
                 jobs: int = 1, cap_jobs: bool = True):
        self.address = address
        self.cpus, self.gpus = cpus_per_run, gpus_per_run
        self.jobs, self.cap_jobs = max(1, jobs), cap_jobs or address is None
        self.slots = None
        self._refs = {}  # ObjectRef -> start time
        self.ray = ray_module()

    def __enter__(self):
        ray = self.ray
        kw = dict(log_to_driver=False, logging_level="WARNING")  # the runs' output is in their logs
        try:
            if self.address:
                ray.init(address=self.address, **kw)
            else:  # a private instance for this compare: jobs x cpus-per-run CPUs (GPUs: what Ray detects)
                ray.init(num_cpus=max(1, math.ceil(self.jobs * self.cpus)), include_dashboard=False, **kw)
        except (ConnectionError, RuntimeError, ValueError) as e:
            where = f"--address {self.address}" if self.address else "--executor ray"
            root = e
            while root.__cause__ is not None:  # Ray's reason (e.g. a missing auth token): the deepest cause's last line
                root = root.__cause__
            why = _first_line(e) + ("" if root is e else f" ({_last_line(root)[:400]})")
            raise UserError(f"{where}: could not start or reach Ray: {why}") from None
        try:
            res = ray.cluster_resources()
            fits = math.floor(res.get("CPU", 0) / self.cpus + 1e-9)
            if self.gpus > 0:
                fits = min(fits, math.floor(res.get("GPU", 0) / self.gpus + 1e-9))
            if fits < 1:  # its tasks would wait forever
                raise UserError(f"--cpus-per-run {self.cpus:g} --gpus-per-run {self.gpus:g}: more than the Ray cluster "
                                f"has ({res.get('CPU', 0):g} CPUs, {res.get('GPU', 0):g} GPUs)")
            self.slots = min(fits, self.jobs) if self.cap_jobs else fits
            # max_retries=0: like a local run, a cell whose worker died is recorded failed; re-running retries it
            self._task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=0)(run_cell_process)
        except BaseException:
            ray.shutdown()
            raise
        return self

    def __exit__(self, *exc):
        self.ray.shutdown()  # stops a local instance; leaves a cluster given by --address running
        return False

    def describe(self) -> dict:
        return {"name": self.name, "address": self.address or "local", "cpus_per_run": self.cpus,
                "gpus_per_run": self.gpus, "slots": self.slots}

    def start(self, cell, log: str, slot: int):
        os.makedirs(os.path.dirname(os.path.abspath(log)), exist_ok=True)
        ref = self._task.remote(execute.run_args(cell), os.path.abspath(log), os.getcwd())
        self._refs[ref] = time.perf_counter()
        return ref

    def wait(self, timeout: float) -> list:
        if not self._refs:
            time.sleep(timeout)
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=timeout)
        if ready:  # every other one that has ended too
            ready, _ = self.ray.wait(list(self._refs), num_returns=len(self._refs), timeout=0)
        out = []
        for ref in ready:
            wall = round(time.perf_counter() - self._refs.pop(ref), 2)
            try:
                r = self.ray.get(ref)
                out.append((ref, Outcome(r["rc"], r["cpu"], r["wall"])))
            except self.ray.exceptions.RayError as e:  # the worker or its node died, or the task was cancelled
                out.append((ref, Outcome(-1, None, wall, error=f"ray task failed: {_last_line(e)}")))
        return out

    def stop(self, signum: int | None = None) -> None:
        """Cancel the in-flight tasks: each SIGINTs its run (which records "interrupted") and
        SIGKILLs it after 20 s; what is still there after 30 s is force-killed."""
        refs = list(self._refs)
        for ref in refs:
            self.ray.cancel(ref)
        if refs:
            _, left = self.ray.wait(refs, num_returns=len(refs), timeout=30)
            for ref in left:
                self.ray.cancel(ref, force=True)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return s.splitlines()[0] if s else type(e).__name__


def _last_line(e: BaseException) -> str:
    """The last line of an exception's text: the cause when Ray wraps a remote traceback in it."""
    lines = [re.sub(r"\x1b\[[0-9;]*m", "", ln).strip() for ln in str(e).splitlines()]
    lines = [ln for ln in lines if ln]
    return lines[-1] if lines else type(e).__name__


def run_cell_process(args: list, log_path: str, cwd: str) -> dict:
    """The Ray task's body, on a worker: ``python -m tunelab.cli <args>`` (a ``tunelab run``) in the
    compare's working directory, its stdout and stderr in ``log_path`` (progress bars off); returns
    {rc, cpu, wall}. The run dies with the worker (PR_SET_PDEATHSIG); a cancelled task (Ctrl-C on
    the compare) SIGINTs the run so that it records "interrupted", then SIGKILLs it after 20 s."""
    import shlex

    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "PYTHONUNBUFFERED": "1",
           "TUNELAB_ERRORS_TO_STDOUT": "1", "TQDM_DISABLE": "1"}
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        log.write(("$ " + " ".join(shlex.quote(a) for a in ["tunelab", *args]) + "\n").encode())
        log.flush()
        proc = subprocess.Popen([sys.executable, "-m", "tunelab.cli", *args], stdout=log, stderr=subprocess.STDOUT,
                                env=env, cwd=cwd if os.path.isdir(cwd) else None, preexec_fn=_child_setup())
    try:
        while True:  # short sleeps, not a blocking wait: a cancel's KeyboardInterrupt lands between them
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            time.sleep(0.2)
    except KeyboardInterrupt:
        _interrupt(proc)
        raise
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keeps Popen from waiting again
    return {"rc": proc.returncode, "cpu": round(usage.ru_utime + usage.ru_stime, 2),
            "wall": round(time.perf_counter() - t0, 2)}


def _child_setup():
    """For the run process: die with the worker, and take SIGINT again (a Ray worker ignores it, and
    an ignored signal stays ignored across exec, so the run could not record "interrupted")."""
    die, libc = execute._die_with_parent_fn(), execute._libc()

    def fn():
        die()
        if libc is not None:
            libc.signal(signal.SIGINT, signal.SIG_DFL)  # via libc: signal.signal needs the main thread
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})

    return fn


def _interrupt(proc) -> None:
    for sig, wait in ((signal.SIGINT, 20), (signal.SIGKILL, 5)):
        try:
            proc.send_signal(sig)
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue
