"""One ``tunelab compare`` per output folder (tunelab/compare/lock.py): a live holder makes a second
compare refuse with one line naming its pid and start time; a holder that is gone (killed, zombie,
pid reused) is taken over; the lock goes away on normal exit, on error and on Ctrl-C; racing
processes never hold it at the same time; ``tunelab report`` ignores it. Holders are real processes."""

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from spawn_helpers import BARRIER_TIMEOUT_S, join_or_kill, start_daemons
from tunelab.cli import main
from tunelab.compare import execute
from tunelab.compare.lock import LOCK_NAME, CompareLock, proc_stat
from tunelab.results.store import Store
from tunelab.errors import UserError

HOLD = ("import sys\nfrom tunelab.compare.lock import CompareLock\n"
        "with CompareLock(sys.argv[1]):\n    print('locked', flush=True)\n    sys.stdin.read()\n")

STUDY = ("name: lock-test\ntasks: [sst2]\nmethods: [full]\nmodels: [minilm]\nseeds: [0]\n"
         "max_train_samples: 8\nepochs: 1\n")


def holder(out: Path) -> subprocess.Popen:
    """A separate process that takes the lock on ``out`` and keeps it until its stdin closes."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         text=True)
    assert p.stdout.readline().strip() == "locked"
    return p


def lock_content(out: Path) -> dict:
    return json.loads((out / LOCK_NAME).read_text())


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    return err.strip()


def test_second_compare_refuses_while_a_live_compare_holds_the_folder(tmp_path, glue_data_dir, capsys):
    out = tmp_path / "study"
    (tmp_path / "study.yaml").write_text(STUDY)
    h = holder(out)
    try:
        info = lock_content(out)
        assert info["pid"] == h.pid and info["start_ticks"] == proc_stat(h.pid)[1]
        rc = main(["compare", str(tmp_path / "study.yaml"), "--output-dir", str(out), "--data-dir", glue_data_dir])
        assert rc == 2
        assert one_error_line(capsys) == (
            f"tunelab: error: {out}: another tunelab compare is running on this folder "
            f"(pid {h.pid}, started {info['started_at']}); wait for it to finish or stop it")
        assert not (out / "results.sqlite").exists()  # refused before touching the store
        assert lock_content(out) == info
    finally:
        h.communicate("")
    assert h.returncode == 0 and not (out / LOCK_NAME).exists()  # the holder released it on exit


@pytest.mark.parametrize("reap", [True, False], ids=["dead", "zombie"])
def test_lock_of_a_killed_compare_is_taken_over(tmp_path, reap):
    out = tmp_path / "study"
    h = holder(out)
    stale = lock_content(out)
    h.kill()  # SIGKILL: no chance to release
    if reap:
        h.wait()
    else:
        while proc_stat(h.pid)[0] != "Z":
            time.sleep(0.01)
    with CompareLock(str(out)) as lock:
        assert lock.took_over == stale
        assert lock_content(out)["pid"] == os.getpid()
    assert not (out / LOCK_NAME).exists()
    h.wait()


def test_pid_reuse_is_not_mistaken_for_the_holder(tmp_path):
    """The recorded pid is alive but started at another time: it is some other process now."""
    out = tmp_path / "study"
    h = holder(out)
    try:
        info = lock_content(out)
        with pytest.raises(UserError, match=f"pid {h.pid}, started"):
            CompareLock(str(out)).acquire()
        (out / LOCK_NAME).write_text(json.dumps({**info, "start_ticks": info["start_ticks"] - 1}))
        with CompareLock(str(out)) as lock:
            assert lock.took_over["pid"] == h.pid
    finally:
        h.communicate("")


def test_lock_released_on_error_and_on_ctrl_c(tmp_path, monkeypatch, capsys):
    out = tmp_path / "study"
    (tmp_path / "study.yaml").write_text(STUDY)
    (tmp_path / "empty").mkdir()
    seen = []

    def interrupted(cells, store, output_dir, executor, **kw):
        seen.append(lock_content(out)["pid"])
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "run_grid", interrupted)
    assert main(["compare", str(tmp_path / "study.yaml"), "--output-dir", str(out), "--no-report"]) == 130
    assert seen == [os.getpid()] and not (out / LOCK_NAME).exists()
    monkeypatch.undo()
    # a real grid whose one run fails (no SST-2 in the data dir): exit 1, lock gone
    rc = main(["compare", str(tmp_path / "study.yaml"), "--output-dir", str(out), "--data-dir", str(tmp_path / "empty"),
               "--no-report"])
    assert rc == 1 and not (out / LOCK_NAME).exists()
    assert "1 failed" in capsys.readouterr().out
    with CompareLock(str(out)) as lock:  # free for the next compare, nothing to take over
        assert lock.took_over is None


def _race(out: str, barrier, results) -> None:
    barrier.wait(timeout=BARRIER_TIMEOUT_S)
    try:
        with CompareLock(out):
            t0 = time.time()
            time.sleep(0.3)
            results.put(("held", os.getpid(), t0, time.time()))
    except UserError as e:
        results.put(("refused", os.getpid(), str(e), None))


def test_racing_compares_never_hold_the_lock_together(tmp_path):
    """Six processes start at once on a folder whose lock is stale: at most one holds it at a time,
    and every refusal names a process that really held it."""
    out = tmp_path / "study"
    h = holder(out)
    h.send_signal(signal.SIGKILL)
    h.wait()
    ctx = mp.get_context("spawn")
    n = 6
    barrier, results = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(out), barrier, results)) for _ in range(n)]
    start_daemons(procs)
    try:
        got = [results.get(timeout=60) for _ in range(n)]
    finally:
        codes = join_or_kill(procs, 30)
    assert codes == [0] * n
    held = sorted((t0, t1, pid) for kind, pid, t0, t1 in got if kind == "held")
    refused = [msg for kind, _, msg, _ in got if kind == "refused"]
    assert held and len(held) + len(refused) == n
    for (_, end, _), (start, _, _) in zip(held, held[1:]):
        assert end <= start, "two processes held the lock at the same time"
    holders = {pid for _, _, pid in held}
    for msg in refused:
        assert any(f"(pid {pid}, started" in msg for pid in holders), msg
    assert not (out / LOCK_NAME).exists()


def test_report_does_not_need_the_lock(tmp_path, capsys):
    out = tmp_path / "study"
    store = Store(str(out / "results.sqlite"))
    store.set_meta(name="lock-test", grid=[])
    store.close()
    h = holder(out)
    try:
        before = lock_content(out)
        assert main(["report", str(out)]) == 0
        assert (out / "report.md").exists() and lock_content(out) == before
    finally:
        h.communicate("")
