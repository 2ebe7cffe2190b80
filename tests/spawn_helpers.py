"""Processes for the concurrency tests that can never hang the suite: daemon (the interpreter's exit
does not wait for them), joined against one deadline, and killed if still alive after it. A peer that
dies before a ``Barrier`` would otherwise leave the others waiting forever (CI once timed out so)."""

import time

BARRIER_TIMEOUT_S = 60  # pass to Barrier.wait: a broken barrier raises instead of blocking


def start_daemons(procs) -> None:
    for p in procs:
        p.daemon = True
        p.start()


def join_or_kill(procs, timeout: float) -> list:
    """Join every process within ``timeout`` seconds in all; their exit codes (None: killed here)."""
    deadline = time.time() + timeout
    for p in procs:
        p.join(max(0.0, deadline - time.time()))
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
            p.join()
    return codes
