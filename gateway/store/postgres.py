"""PostgreSQL store (psycopg 3): the store several gateways share.

Same SQL as SQLite (see base.py); what differs is concurrency. Each transaction takes a
connection from a small pool, so the ingest worker, the forwarders and the API do not
queue behind one another; row locks (FOR UPDATE, SKIP LOCKED) replace SQLite's single
writer where two gateways can race.
"""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg

from .base import Store

log = logging.getLogger("panic.store")

POOL_MAX = 8
MIGRATION_LOCK = 0x70616E6963  # "panic": one advisory lock id for schema migrations


class PostgresStore(Store):
    placeholder = "%s"
    serial = "BIGSERIAL PRIMARY KEY"
    for_update = " FOR UPDATE"
    skip_locked = " FOR UPDATE SKIP LOCKED"

    def __init__(self, dsn: str, pool_max: int = POOL_MAX) -> None:
        super().__init__()
        if not dsn:
            raise ValueError("[store] kind = postgres needs a dsn")
        self.dsn = dsn
        self._idle: queue.LifoQueue[psycopg.Connection] = queue.LifoQueue()
        self._opened = 0
        self._pool_max = pool_max
        self._pool_lock = threading.Lock()
        self._all: list[psycopg.Connection] = []
        self.migrate()

    def _connect(self) -> psycopg.Connection:
        # autocommit: every transaction is an explicit conn.transaction() block.
        conn = psycopg.connect(self.dsn, autocommit=True, connect_timeout=10)
        self._all.append(conn)
        return conn

    def _acquire(self) -> psycopg.Connection:
        try:
            return self._idle.get_nowait()
        except queue.Empty:
            pass
        with self._pool_lock:
            if self._opened < self._pool_max:
                self._opened += 1
                try:
                    return self._connect()
                except BaseException:
                    self._opened -= 1
                    raise
        return self._idle.get(timeout=60)

    def _release(self, conn: psycopg.Connection) -> None:
        if conn.closed or conn.broken:
            # The server went away: forget this one; the next caller opens a fresh connection.
            with self._pool_lock:
                self._opened -= 1
            return
        self._idle.put(conn)

    @contextmanager
    def _tx(self) -> Iterator[psycopg.Cursor]:
        conn = self._acquire()
        try:
            with conn.transaction(), conn.cursor() as cur:
                yield cur
        finally:
            self._release(conn)

    def _migration_lock(self, cur) -> None:
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK,))

    def close(self) -> None:
        for conn in self._all:
            try:
                conn.close()
            except Exception:  # closing is best effort at shutdown
                pass
