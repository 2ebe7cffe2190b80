"""Preemption: a run told to stop (SIGTERM from a cluster scheduler, SIGINT / Ctrl-C) stops cleanly.

``handle_signals()`` (``tunelab run`` installs it around the run, main thread only) replaces the
SIGTERM and SIGINT handlers:

- inside the training loop's batches (``deferring()``), the first signal only sets a flag: the loop
  stops at the next optimizer-step boundary (``Stopper.check``), writes a checkpoint when
  ``--save-every`` is on, and raises ``Preempted``. A grace timer (``GRACE_S``, SIGALRM) and a
  second signal both stop at once (``Preempted`` raised from the handler);
- anywhere else (loading data and the model, evaluation, writing the results), the signal raises
  ``Preempted`` at once.

``Preempted`` is a ``KeyboardInterrupt``: the runner records run.json status "interrupted" (with the
signal, the step and whether a checkpoint was written) and the CLI exits ``128 + signal`` (143 for
SIGTERM, 130 for SIGINT). ``tunelab run --resume OUTPUT_DIR`` continues from the checkpoint.

Data-parallel runs: every rank checks the flag together (``all_reduce`` of the flags, max) at the
loop's host-sync boundaries (every step on CPU, every ``CUDA_SYNC_EVERY`` steps on CUDA), so all
ranks stop after the same step and write one checkpoint; a launcher (torchrun) forwards SIGTERM to
every rank. A rank whose grace timer expires first stops at once, and the launcher ends the others.
"""

import contextlib
import os
import signal
import threading
import time

GRACE_S = 30.0  # seconds a step may take to end after the first signal, then stop at once

NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "SIGINT"}


class Preempted(KeyboardInterrupt):
    """The run was told to stop. ``signum``: the signal; ``step``: optimizer steps done when it
    stopped (None: outside the training loop); ``checkpoint``: whether a checkpoint was written at
    the stop; ``at_boundary``: stopped at a step boundary (else at once)."""

    def __init__(self, signum: int, step: int | None = None, checkpoint: bool = False, at_boundary: bool = False):
        super().__init__(NAMES.get(signum, f"signal {signum}"))
        self.signum, self.step, self.checkpoint, self.at_boundary = signum, step, checkpoint, at_boundary

    @property
    def exit_code(self) -> int:
        return 128 + int(self.signum)

    @property
    def signal_name(self) -> str:
        return NAMES.get(self.signum, f"signal {self.signum}")


class _State:
    installed = False  # by this process (a forked compare child installs its own)
    pid = None
    defer = False  # inside the loop's batches: a first signal waits for the step boundary
    requested: int | None = None  # the signal received and not yet acted on
    grace_s = GRACE_S


_state = _State()


def requested() -> int | None:
    return _state.requested


def _raise_now(signum: int):
    _state.defer = False
    signal.setitimer(signal.ITIMER_REAL, 0)
    raise Preempted(signum)


def _on_signal(signum, _frame):
    if _state.requested is not None or not _state.defer:  # a second signal, or outside the loop: now
        _raise_now(_state.requested or signum)
    _state.requested = signum
    signal.setitimer(signal.ITIMER_REAL, max(0.001, _state.grace_s))  # the step must end within the grace


def _on_alarm(_signum, _frame):
    if _state.requested is not None:
        _raise_now(_state.requested)


@contextlib.contextmanager
def handle_signals(grace_s: float = GRACE_S):
    """SIGTERM / SIGINT stop the run as described above, for the duration of the block (main thread
    only; elsewhere, e.g. a run inside a thread, nothing changes)."""
    if threading.current_thread() is not threading.main_thread() or (_state.installed and _state.pid == os.getpid()):
        yield
        return
    sigs = (signal.SIGTERM, signal.SIGINT, signal.SIGALRM)
    old = {s: signal.getsignal(s) for s in sigs}
    _state.installed, _state.pid, _state.defer, _state.requested, _state.grace_s = (
        True, os.getpid(), False, None, grace_s)
    try:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        signal.signal(signal.SIGALRM, _on_alarm)
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        for s, h in old.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
        _state.installed, _state.defer, _state.requested = False, False, None


@contextlib.contextmanager
def deferring():
    """The loop's batches: a first signal waits for the next step boundary. On leaving (the epoch's
    batches are done: evaluation follows), a signal raises at once again."""
    if not _state.installed:
        yield
        return
    _state.defer = True
    try:
        yield
    finally:
        _state.defer = False


class Stopper:
    """The loop's side: ``check(step)`` after every optimizer step; True when the run must stop
    there (every rank agrees in a data-parallel run, checked every ``every`` steps)."""

    def __init__(self, every: int = 1):
        from . import distributed

        self.distributed = distributed.is_distributed()
        self.every = max(1, every) if self.distributed else 1
        self.t_signal = None

    def check(self, step: int, force: bool = False) -> bool:
        if not _state.installed:
            return False
        if self.distributed:
            if not force and step % self.every:
                return False
            from .distributed import all_reduce_sum

            told = all_reduce_sum(1 if _state.requested is not None else 0)  # ranks told to stop
            if told and _state.requested is None:
                _state.requested = signal.SIGTERM  # another rank was told: stop with it
            return told > 0
        return _state.requested is not None

    def stop(self, step: int, checkpoint: bool) -> Preempted:
        """The exception to raise after the step-boundary stop (the grace timer is cancelled)."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        signum = _state.requested or signal.SIGTERM
        _state.defer, _state.requested = False, None  # acted on: a later signal stops at once
        return Preempted(signum, step=step, checkpoint=checkpoint, at_boundary=True)


def describe(e: Preempted) -> dict:
    """run.json ``interrupted``."""
    return {"signal": e.signal_name, "step": e.step, "at_step_boundary": e.at_boundary,
            "checkpoint_written": e.checkpoint, "at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
