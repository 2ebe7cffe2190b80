"""results.sqlite under concurrent writers: several processes upserting through ``Store`` at once
(distinct rows, one row they all fight over, meta) while another process reads, as two compares and
a report would. Every row must be there with the values its writer wrote, and the file must pass
SQLite's own integrity check."""

import multiprocessing as mp
import sqlite3
import time
from types import SimpleNamespace

from spawn_helpers import BARRIER_TIMEOUT_S, join_or_kill, start_daemons
from tunelab.results.store import Store

WRITERS, UPSERTS = 4, 50


def cell(run_id: str, seed: int) -> SimpleNamespace:
    return SimpleNamespace(run_id=run_id, task="sst2", label="lora", method="lora", model="minilm", seed=seed,
                           config_hash=f"h{seed}", run_dir=f"runs/{run_id}")


def record(w: int, i: int) -> dict:
    """A run.json-shaped record whose numbers identify writer and upsert."""
    return {"main_metric": "accuracy", "metrics": {"accuracy": w + i / 1000}, "history": [],
            "params": {"trainable": 1000 * w + i, "total": 10 ** 6}, "time": {"train_seconds": float(i)},
            "memory": {}, "config": {"lr": 1e-3}, "started_at": f"w{w}-{i}"}


def writer(path: str, w: int, barrier) -> None:
    store = Store(path)
    barrier.wait(timeout=BARRIER_TIMEOUT_S)
    for i in range(UPSERTS):
        rid = f"w{w}-r{i}"
        store.mark(cell(rid, i), "running")
        store.record_completed(cell(rid, i), record(w, i), process={"wall_seconds": 1.0, "cpu_seconds": 0.5})
        store.mark(cell("shared", 0), "running", error=f"w{w}-{i}")  # the same row from every writer
        store.set_meta(**{f"writer{w}": i})
    store.close()


def reader(path: str, barrier, stop) -> None:
    store = Store(path)
    barrier.wait(timeout=BARRIER_TIMEOUT_S)
    while not stop.is_set():
        store.rows()
        store.meta()
    store.close()


def opener(path: str, barrier) -> None:
    barrier.wait(timeout=BARRIER_TIMEOUT_S)
    Store(path).close()


def test_processes_opening_a_fresh_file_at_once_all_succeed(tmp_path):
    """The first opens race to switch the file to WAL, which SQLite refuses at once (no busy wait)
    while another process holds the lock: before Store retried it, ~5 % of such opens failed here."""
    ctx = mp.get_context("spawn")
    for trial in range(10):
        path = str(tmp_path / f"fresh{trial}.sqlite")
        barrier = ctx.Barrier(8)
        procs = [ctx.Process(target=opener, args=(path, barrier)) for _ in range(8)]
        start_daemons(procs)
        assert join_or_kill(procs, 120) == [0] * 8
        with sqlite3.connect(path) as con:
            assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_concurrent_writers_lose_nothing_and_keep_the_file_sound(tmp_path):
    path = str(tmp_path / "results.sqlite")
    ctx = mp.get_context("spawn")  # fresh interpreters: no state shared with this process
    barrier, stop = ctx.Barrier(WRITERS + 1), ctx.Event()
    procs = [ctx.Process(target=writer, args=(path, w, barrier)) for w in range(WRITERS)]
    rd = ctx.Process(target=reader, args=(path, barrier, stop))
    t0 = time.time()
    start_daemons([*procs, rd])
    codes = join_or_kill(procs, 180)
    stop.set()
    codes += join_or_kill([rd], 30)
    print(f"{WRITERS} writers x {UPSERTS} x 4 writes + a reader: {time.time() - t0:.1f}s")
    assert codes == [0] * (WRITERS + 1)

    with sqlite3.connect(path) as con:
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = {r[0]: r[1:] for r in con.execute(
            "SELECT run_id, status, main_value, trainable, process_wall_seconds, started_at, error FROM runs")}
        meta = dict(con.execute("SELECT key, value FROM meta"))
    assert len(rows) == WRITERS * UPSERTS + 1
    for w in range(WRITERS):
        for i in range(UPSERTS):
            assert rows[f"w{w}-r{i}"] == ("completed", w + i / 1000, 1000 * w + i, 1.0, f"w{w}-{i}", None)
        assert meta[f"writer{w}"] == str(UPSERTS - 1)
    assert rows["shared"][0] == "running" and rows["shared"][-1] in {f"w{w}-{UPSERTS - 1}" for w in range(WRITERS)}
