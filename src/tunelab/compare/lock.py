"""One ``tunelab compare`` per output folder: ``OUTPUT_DIR/compare.lock``.

The lock file is JSON naming its holder: pid, the process's start time in clock ticks since boot
(``/proc/<pid>/stat`` field 22) and the boot id, host, and a readable ``started_at``. It is created
atomically and only whole: the content is written to a private temp file that is then hard-linked to
``compare.lock``; ``link`` fails if the name exists, exactly like ``open(O_CREAT | O_EXCL)``, but a
reader can never see a half-written lock.

A second compare finds the lock and refuses with one line naming the holder. A lock whose holder is
gone is stale and is taken over: the holder is gone when its pid does not exist (or is a zombie), or
when the pid exists but belongs to another process (its start time or the boot id differ: pid reuse).
Breaking a stale lock happens under an ``flock`` on ``.compare.lock.break`` and re-checks the lock
there, so two compares that both found the same stale lock cannot both take it. A lock from another
host is never judged stale (its pids mean nothing here): the message says to delete it by hand.

The lock is released (only by the process that took it) on normal exit, on an error and on Ctrl-C;
after SIGKILL it stays behind and the next compare takes it over. ``tunelab report`` never takes it:
it only reads results.sqlite.
"""

import json
import os
import socket
import time

from ..errors import UserError

LOCK_NAME = "compare.lock"


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except OSError:
        return None


def boot_id() -> str | None:
    s = _read("/proc/sys/kernel/random/boot_id")
    return s.strip() if s else None


def proc_stat(pid: int) -> tuple | None:
    """(state, start_ticks) of a process from ``/proc/<pid>/stat``, or None where unavailable."""
    s = _read(f"/proc/{pid}/stat")
    if not s:
        return None
    fields = s[s.rindex(")") + 2:].split()  # the command name (field 2) may hold spaces and ')'
    return fields[0], int(fields[19])  # fields 3 and 22 of the full line


def holder_info() -> dict:
    pid = os.getpid()
    st = proc_stat(pid)
    return {"pid": pid, "start_ticks": st[1] if st else None, "boot_id": boot_id(), "host": socket.gethostname(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def holder_alive(h: dict) -> bool:
    """Is the process that wrote lock content ``h`` still running (on this host)?"""
    if h.get("host") != socket.gethostname():
        return True  # cannot tell: never break another machine's lock
    pid = h.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    if h.get("boot_id") and boot_id() and h["boot_id"] != boot_id():
        return False  # written before a reboot: every pid since is someone else
    st = proc_stat(pid)
    if st is None:
        return True  # no /proc: the pid exists, assume it is the holder
    state, ticks = st
    if state == "Z":
        return False  # exited, not yet reaped
    return h.get("start_ticks") is None or h["start_ticks"] == ticks


def describe(h: dict) -> str:
    where = "" if h.get("host") == socket.gethostname() else f" on host {h.get('host')}"
    return f"pid {h.get('pid')}{where}, started {h.get('started_at')}"


class CompareLock:
    """``with CompareLock(out_dir):`` -- held for the block; UserError if a live compare holds it."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir
        self.path = os.path.join(out_dir, LOCK_NAME)
        self.info = None
        self.took_over = None  # the stale holder's content, when this lock replaced one

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()
        return False

    def acquire(self) -> None:
        os.makedirs(self.out_dir, exist_ok=True)
        info = holder_info()
        tmp = os.path.join(self.out_dir, f".compare.lock.{info['pid']}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(info, f)
            f.flush()
            os.fsync(f.fileno())
        try:
            for _ in range(5):  # each retry follows the removal of a stale lock
                try:
                    os.link(tmp, self.path)  # atomic; EEXIST when a lock is there
                    self.info = info
                    return
                except FileExistsError:
                    pass
                self._refuse_or_break()
            raise UserError(f"{self.path}: could not take the compare lock (it keeps changing hands); try again")
        finally:
            os.unlink(tmp)

    def _holder(self) -> dict | None:
        """The lock file's content; None when it vanished meanwhile (retry the link)."""
        text = _read(self.path)
        if text is None:
            return None
        try:
            h = json.loads(text)
        except ValueError:
            h = None
        if not isinstance(h, dict):
            raise UserError(f"{self.path}: not a tunelab compare lock (unreadable content); "
                            f"delete it if no compare is running on {self.out_dir}")
        return h

    def _refuse_or_break(self) -> None:
        h = self._holder()
        if h is None:
            return
        if holder_alive(h):
            self._refuse(h)
        with _flock(os.path.join(self.out_dir, ".compare.lock.break")):
            h = self._holder()  # re-check under the break lock: another compare may have taken it over
            if h is None:
                return
            if holder_alive(h):
                self._refuse(h)
            os.unlink(self.path)  # only a break-lock holder removes a stale lock, so this is still the one read
            self.took_over = h

    def _refuse(self, h: dict):
        hint = "" if h.get("host") == socket.gethostname() else f"; if that process is gone, delete {self.path}"
        raise UserError(f"{self.out_dir}: another tunelab compare is running on this folder ({describe(h)}); "
                        f"wait for it to finish or stop it{hint}")

    def release(self) -> None:
        """Remove the lock if this process holds it (a forked child never releases its parent's lock)."""
        if self.info is None or os.getpid() != self.info["pid"]:
            return
        text = _read(self.path)
        try:
            mine = text is not None and json.loads(text) == self.info
        except ValueError:
            mine = False
        if mine:
            os.unlink(self.path)
        self.info = None


class _flock:
    """An exclusive ``flock`` on a small file that is never removed (released by the kernel even if
    this process dies). A no-op where ``fcntl`` does not exist."""

    def __init__(self, path: str):
        self.path = path

    def __enter__(self):
        try:
            import fcntl
        except ImportError:
            self.fd = None
            return self
        self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing drops the flock
        return False
