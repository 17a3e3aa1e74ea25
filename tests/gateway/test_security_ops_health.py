"""/healthz without a query, reads without the write lock, and a forwarding queue that is
pruned (docs/security.md, row 9), on the real stack: the project's mosquitto, the gateway as a
process, SQLite (and the store on PostgreSQL)."""
from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator

import httpx
import pytest

from gateway import config
from gateway.models import Alert, Device
from gateway.retention import DAY_MS, ForwardRetention
from gateway.store import Store, open_store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from gateway.timeutil import now_ms
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import (
    custom_stack,
    device,
    pg_dsn,  # noqa: F401 (fixture)
)

DEV = "klj-kauman-rw05-rt03"


def test_healthz_and_api_reads_answer_while_the_write_lock_is_held(tmp_path):
    """Another writer holds SQLite's write lock (a long commit, a CLI import, a backup tool):
    the probe answers from memory and the API's reads from WAL snapshots, without waiting."""
    s = custom_stack(tmp_path / "state")
    holder = sqlite3.connect(s.state / "gateway.db", isolation_level=None)
    try:
        raw, _ = device(s, DEV)
        raw.send(seq=1)
        inc = raw.ack(timeout=20)["inc"]
        raw.close()
        auth = {"Authorization": f"Bearer {s.token('viewer')}"}
        assert httpx.get(f"{s.api}/api/incidents", headers=auth, timeout=10).status_code == 200  # use recorded
        holder.execute("BEGIN IMMEDIATE")
        got: dict[str, object] = {}

        def fetch(path: str, headers: dict) -> None:
            try:
                got[path] = httpx.get(f"{s.api}{path}", headers=headers, timeout=10).status_code
            except httpx.HTTPError as exc:
                got[path] = f"no answer: {exc!r}"

        paths = [("/healthz", {}), ("/api/incidents", auth), (f"/api/incidents/{inc}", auth),
                 (f"/api/devices/{DEV}", auth), ("/api/devices", auth)]
        threads = [threading.Thread(target=fetch, args=p) for p in paths]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert got == {p: 200 for p, _ in paths}
    finally:
        holder.close()
        s.down()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path) -> Iterator[Store]:
    if request.param == "sqlite":
        st: Store = SqliteStore(tmp_path / "gateway.db")
    else:
        st = PostgresStore(request.getfixturevalue("pg_dsn"))
    st.route = lambda event: ("hook",)
    st.add_device(Device(id=DEV, secret="s" * 64, mqtt_password="p", created_ms=1))
    yield st
    st.close()


def queue_events(store: Store, seqs: range, at_ms: int) -> list[int]:
    """Ingest alerts received at `at_ms` and claim their queued forwards: their ids."""
    store.ingest([Alert(id=f"{DEV}:1:{n}", dev=DEV, boot=1, seq=n, kind="panic", t=at_ms, age=0, lat6=0, lon6=0,
                        acc=25, src="fixed", batt=None, rssi=None, ref=None, received_ms=at_ms, body="{}")
                  for n in seqs])
    return [r.id for r in store.claim_forwards("hook", "gw", at_ms + 1, 60_000, limit=1000)]


def remaining(store: Store) -> dict[str, int]:
    [row] = store.forward_stats()
    return {"pending": row.pending, "delivered": row.delivered, "dead": row.dead}


def test_prune_deletes_delivered_forwards_past_retention_and_keeps_the_rest(store):
    now = now_ms()
    old = queue_events(store, range(1, 6), now - 40 * DAY_MS)
    store.forwards_done(old[:3], now - 31 * DAY_MS)      # delivered long ago: pruned
    store.forwards_done(old[3:4], now - 1 * DAY_MS)      # delivered yesterday: kept
    store.forward_failed(old[4], now, "sink gone", dead=True)  # dead: kept until retried
    queue_events(store, range(6, 8), now - 45 * DAY_MS)  # never delivered: pending, kept however old
    assert store.prune_forwards(delivered_before_ms=now - 30 * DAY_MS, batch=2) == 3
    assert remaining(store) == {"pending": 2, "delivered": 1, "dead": 1}
    # With a dead-letter retention, old dead letters go too; pending entries never do.
    assert store.prune_forwards(delivered_before_ms=now - 30 * DAY_MS, dead_before_ms=now - 30 * DAY_MS) == 1
    assert remaining(store) == {"pending": 2, "delivered": 1, "dead": 0}


def test_the_gateway_prunes_delivered_forwards_and_reports_the_queue_from_memory(tmp_path, webhook):
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url], forward_retention_days=30)
    try:
        raw, _ = device(s, DEV)
        raw.send(seq=1)
        raw.ack(timeout=20)
        raw.close()
        def delivered() -> bool:
            with sqlite3.connect(s.state / "gateway.db") as db:
                return db.execute("SELECT COUNT(*) FROM forwards WHERE delivered_ms IS NULL").fetchone()[0] == 0
        wait_until(lambda: webhook.posts and delivered(), timeout=20, what="the webhook delivery marked")
        s.kill_gateway()
        # A month and a day later, as far as the queue can tell.
        with sqlite3.connect(s.state / "gateway.db") as db:
            db.execute("UPDATE forwards SET delivered_ms = delivered_ms - ?", (31 * DAY_MS,))
        s.start_gateway()

        def pruned() -> bool:
            with sqlite3.connect(s.state / "gateway.db") as db:
                return db.execute("SELECT COUNT(*) FROM forwards").fetchone()[0] == 0
        wait_until(pruned, timeout=20, what="the delivered forward pruned")
        health = httpx.get(f"{s.api}/healthz", timeout=10).json()
        assert health["ok"] and health["forwards_at_ms"] is not None
        assert [{k: f[k] for k in ("pending", "delivered", "dead")} for f in health["forwards"]] in ([], [
            {"pending": 0, "delivered": 0, "dead": 0}])
    finally:
        s.down()


def test_retention_job_counts_what_it_prunes(tmp_path):
    cfg = config.Config(path=tmp_path / "gateway.toml", forward_retention_days=7)
    cfg.store.path = tmp_path / "gateway.db"
    st = open_store(cfg)
    try:
        st.route = lambda event: ("hook",)
        st.add_device(Device(id=DEV, secret="s" * 64, mqtt_password="p", created_ms=1))
        now = now_ms()
        fids = queue_events(st, range(1, 4), now - 10 * DAY_MS)
        st.forwards_done(fids, now - 8 * DAY_MS)
        job = ForwardRetention(st, cfg)
        assert job.snapshot()["at_ms"] is None
        assert job.run_once() == 3
        assert job.snapshot()["pruned"] == 3 and job.snapshot()["sinks"] == []
    finally:
        st.close()
