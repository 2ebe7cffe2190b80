"""The results store: ``OUTPUT_DIR/results.sqlite``, table ``runs`` (one row per grid cell, keyed by
run id, so a re-run replaces a row and never duplicates it) and table ``meta`` (the latest compare's
grid, command and config).

A row says ``completed`` only after the run's ``run.json`` said so and its config hash matched;
every write is one SQLite transaction, so a killed compare leaves either the old row or the new one.

Several processes may write at once (two compares sharing a results file, ``tunelab report`` reading
while a compare writes): the database is in WAL mode (readers never block the writer), every write
transaction starts with ``BEGIN IMMEDIATE`` (it takes the write lock up front, so the busy timeout
applies instead of failing with "database is locked" mid-transaction), and a writer waits up to
``BUSY_TIMEOUT_S`` for the lock. Opening is the one step SQLite's busy timeout does not cover: switching
a fresh file to WAL needs an exclusive lock that SQLite refuses at once ("database is locked") while
another process is opening it too, so ``_open`` retries it, with jitter, for up to ``BUSY_TIMEOUT_S``.
"""

import json
import os
import random
import sqlite3
import time
from contextlib import contextmanager

BUSY_TIMEOUT_S = 60

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    task TEXT NOT NULL, label TEXT NOT NULL, method TEXT NOT NULL, model TEXT NOT NULL, seed INTEGER NOT NULL,
    status TEXT NOT NULL,              -- pending | running | completed | failed
    config_hash TEXT NOT NULL,
    run_dir TEXT NOT NULL,
    main_metric TEXT, main_value REAL,
    metrics_json TEXT,                 -- run.json "metrics"
    history_json TEXT,                 -- run.json "history" (dev metrics per epoch)
    trainable INTEGER, total INTEGER, trainable_pct REAL, trainable_without_head INTEGER, head INTEGER,
    train_seconds REAL, samples_per_second REAL, steps INTEGER,
    peak_rss_mb REAL, peak_cuda_mb REAL,
    best_epoch INTEGER, lr REAL,
    process_wall_seconds REAL, process_cpu_seconds REAL,  -- the whole run process, measured by compare
    params_json TEXT,                  -- run.json "params" (incl. dynamic methods' extras)
    data_json TEXT, versions_json TEXT, method_details_json TEXT,
    error TEXT,
    started_at TEXT, finished_at TEXT, updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

COLUMNS = ("run_id", "task", "label", "method", "model", "seed", "status", "config_hash", "run_dir",
           "main_metric", "main_value", "metrics_json", "history_json", "trainable", "total", "trainable_pct",
           "trainable_without_head", "head", "train_seconds", "samples_per_second", "steps", "peak_rss_mb",
           "peak_cuda_mb", "best_epoch", "lr", "process_wall_seconds",
           "process_cpu_seconds", "params_json", "data_json", "versions_json", "method_details_json", "error",
           "started_at", "finished_at", "updated_at")


class Store:
    def __init__(self, path: str):
        self.path = path
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        # isolation_level=None: no implicit transactions; writes go through _write() below
        self.db = sqlite3.connect(path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_S * 1000}")
        self.journal_mode = self._open()  # 'wal' (else the file system refused it)

    def _open(self) -> str:
        """WAL mode and the schema, retried while another process holds the lock SQLite wants for them."""
        deadline = time.monotonic() + BUSY_TIMEOUT_S
        while True:
            try:
                mode = self.db.execute("PRAGMA journal_mode").fetchone()[0]
                if mode != "wal":
                    mode = self.db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                self.db.executescript(SCHEMA)  # each CREATE ... IF NOT EXISTS its own transaction
                return mode
            except sqlite3.OperationalError as e:
                if ("locked" not in str(e) and "busy" not in str(e)) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02 + 0.08 * random.random())

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def _write(self):
        """One write transaction holding the write lock from its start; rolled back on any error."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- writes (each one transaction)
    def _insert(self, row: dict) -> None:
        row = {c: row.get(c) for c in COLUMNS}
        row["updated_at"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        cols = ", ".join(COLUMNS)
        marks = ", ".join("?" for _ in COLUMNS)
        self.db.execute(f"INSERT OR REPLACE INTO runs ({cols}) VALUES ({marks})", [row[c] for c in COLUMNS])

    def _upsert(self, row: dict) -> None:
        with self._write():
            self._insert(row)

    def mark(self, cell, status: str, error: str | None = None) -> None:
        """A row for a cell that has no completed result (pending / running / failed)."""
        self._upsert({**_cell_cols(cell), "status": status, "error": error})

    def record_completed(self, cell, record: dict, process: dict | None = None) -> None:
        """``process``: wall/CPU seconds of the run's process when this compare ran it (None when the
        run was found finished: the row keeps what an earlier compare measured)."""
        row = {**_cell_cols(cell), **row_from_record(record), "status": "completed"}
        with self._write():  # the read of the old row and the write are one transaction
            if process:
                row.update(process_wall_seconds=process["wall_seconds"], process_cpu_seconds=process["cpu_seconds"])
            else:
                old = self.db.execute("SELECT process_wall_seconds, process_cpu_seconds, started_at FROM runs "
                                      "WHERE run_id = ?", (cell.run_id,)).fetchone()
                if old is not None and old["started_at"] == record.get("started_at"):
                    row.update(process_wall_seconds=old[0], process_cpu_seconds=old[1])
            self._insert(row)

    def set_meta(self, **items) -> None:
        with self._write():
            for k, v in items.items():
                self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (k, json.dumps(v)))

    # -- reads
    def meta(self) -> dict:
        return {r["key"]: json.loads(r["value"]) for r in self.db.execute("SELECT key, value FROM meta")}

    def rows(self, run_ids=None) -> list:
        rows = [dict(r) for r in self.db.execute("SELECT * FROM runs")]
        if run_ids is not None:
            order = {rid: i for i, rid in enumerate(run_ids)}
            rows = sorted((r for r in rows if r["run_id"] in order), key=lambda r: order[r["run_id"]])
        for r in rows:
            for k in [c for c in r if c.endswith("_json")]:
                r[k[:-5]] = json.loads(r[k]) if r[k] else None
        return rows

    def error(self, run_id: str) -> str | None:
        row = self.db.execute("SELECT error FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        return row[0] if row else None

    def count(self, status: str | None = None) -> int:
        if status is None:
            return self.db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
        return self.db.execute("SELECT COUNT(*) FROM runs WHERE status = ?", (status,)).fetchone()[0]


def _cell_cols(cell) -> dict:
    return {"run_id": cell.run_id, "task": cell.task, "label": cell.label, "method": cell.method,
            "model": cell.model, "seed": cell.seed, "config_hash": cell.config_hash, "run_dir": cell.run_dir}


def row_from_record(rec: dict) -> dict:
    """The headline numbers of a run.json, exactly as recorded there."""
    p, t, m = rec.get("params") or {}, rec.get("time") or {}, rec.get("memory") or {}
    main = rec.get("main_metric")
    metrics = rec.get("metrics") or {}
    return {
        "main_metric": main, "main_value": metrics.get(main),
        "metrics_json": json.dumps(metrics), "history_json": json.dumps(rec.get("history") or []),
        "trainable": p.get("trainable"), "total": p.get("total"), "trainable_pct": p.get("trainable_pct"),
        "trainable_without_head": p.get("trainable_without_head"), "head": p.get("head"),
        "train_seconds": t.get("train_seconds"), "samples_per_second": t.get("train_samples_per_second"),
        "steps": t.get("steps"), "peak_rss_mb": m.get("peak_rss_mb"), "peak_cuda_mb": m.get("peak_cuda_mb"),
        "best_epoch": rec.get("best_epoch"), "lr": (rec.get("config") or {}).get("lr"),
        "params_json": json.dumps(p),
        "data_json": json.dumps(rec.get("data") or {}), "versions_json": json.dumps(rec.get("versions") or {}),
        "method_details_json": json.dumps(rec.get("method_details") or {}, default=str),
        "started_at": rec.get("started_at"), "finished_at": rec.get("finished_at"),
    }
