"""SQLite store: WAL and synchronous=FULL, so a committed incident survives a power cut."""
from __future__ import annotations

import os
import sqlite3
import threading
from contextlib import contextmanager
from pathlib import Path

from .base import Store


class SqliteStore(Store):
    placeholder = "?"
    serial = "INTEGER PRIMARY KEY"

    def __init__(self, path: Path) -> None:
        super().__init__()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            # Device secrets live here: owner only.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")
        self.conn.execute("PRAGMA busy_timeout=30000")
        # A batch of alerts dirties pages across five tables and their indexes, more than
        # SQLite's defaults hold: with a 2 MB page cache the writer re-read its own pages, and
        # with a checkpoint every 1,000 WAL pages nearly every commit copied the WAL back,
        # both system calls on the ingest thread (strace: 14 pwrite and 9 pread per alert).
        # 16 MB of cache and a checkpoint every 10,000 pages (40 MB of WAL, cut back to
        # 64 MB when it grew past that) keep them to the commits (docs/benchmarks.md).
        self.conn.execute("PRAGMA cache_size=-16384")
        self.conn.execute("PRAGMA wal_autocheckpoint=10000")
        self.conn.execute("PRAGMA journal_size_limit=67108864")
        self._path = path
        self._reader_local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self.migrate()

    @contextmanager
    def _tx(self):
        with self._lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    # --- reads: one connection per thread, outside the writers' lock ---------------------
    # In WAL mode a reader sees the last commit and neither waits for the writer nor holds
    # it up; reading through the writer's connection (BEGIN IMMEDIATE, under self._lock)
    # made every API request, /healthz and the registry queue behind ingest's fsync.
    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._reader_local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False, timeout=30)
            conn.execute("PRAGMA query_only=ON")
            self._reader_local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    def _rows(self, sql, args=()):
        # Autocommit: each SELECT is its own read transaction, ended by fetchall.
        return self._reader().execute(sql, args).fetchall()

    def _read(self, sql, args=()):
        return self._rows(sql, args)

    @contextmanager
    def _reading(self):
        # One read transaction: the statements see one snapshot.
        conn = self._reader()
        cur = conn.cursor()
        cur.execute("BEGIN")
        try:
            yield cur
        finally:
            cur.execute("COMMIT")

    def close(self) -> None:
        with self._readers_lock:
            for conn in self._readers:
                conn.close()
            self._readers.clear()
        self.conn.close()

    # --- forward bookkeeping without an fsync each -------------------------------------
    # A claim, a lease handed back or a "delivered" mark lost in a power cut only makes a
    # sink see one delivery again, which it deduplicates by Idempotency-Key (delivery is at
    # least once by design). In WAL mode a commit under synchronous=NORMAL is ordered
    # before every later commit, so the next synchronous=FULL commit (the next batch of
    # alerts) makes these durable as well. Without this each delivered forward paid an
    # fsync while holding the store's lock, and the ingest worker waited behind it with a
    # batch of alerts to commit (py-spy under the city-wide burst, docs/benchmarks.md).
    # Incidents, events and queued forwards are still committed with synchronous=FULL.
    @contextmanager
    def _relaxed(self):
        with self._lock:
            self.conn.execute("PRAGMA synchronous=NORMAL")
            try:
                yield
            finally:
                self.conn.execute("PRAGMA synchronous=FULL")

    def claim_forwards(self, *args, **kwargs):
        with self._relaxed():
            return super().claim_forwards(*args, **kwargs)

    def release_forwards(self, fids):
        with self._relaxed():
            return super().release_forwards(fids)

    def forwards_done(self, fids, now_ms):
        with self._relaxed():
            return super().forwards_done(fids, now_ms)

    def _durable(self) -> None:
        """A write under synchronous=FULL: its fsync of the WAL also makes every earlier
        commit of this database durable (WAL commits are ordered)."""
        with self._lock:
            self.conn.execute("PRAGMA synchronous=FULL")
            with self._tx() as cur:
                # It must change a byte: SQLite writes nothing for an identical row.
                cur.execute("INSERT INTO meta (key, value) VALUES ('durable_barrier', 1) "
                            "ON CONFLICT (key) DO UPDATE SET value = meta.value + 1")
