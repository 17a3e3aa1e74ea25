"""A claim takes the oldest due entries by walking the sink's pending ones in id order and
stops at its limit: it must not read and sort every pending entry first (a city-wide burst's
backlog made each claim cost in proportion to it, and the claims quadratic)."""
from __future__ import annotations

from gateway.store.sqlite import SqliteStore
from tests.gateway.test_store import prepare


def test_a_claim_walks_pending_entries_in_order_instead_of_sorting_them(tmp_path):
    store = prepare(SqliteStore(tmp_path / "g.db"))
    claims: list[str] = []
    store.conn.set_trace_callback(lambda sql: claims.append(sql) if sql.startswith("UPDATE forwards SET lease") else None)
    store.claim_forwards("mqtt", "gateway-1", now_ms=1_000, lease_ms=60_000)
    store.conn.set_trace_callback(None)
    (claim,) = claims
    plan = " | ".join(row[3] for row in store.conn.execute("EXPLAIN QUERY PLAN " + claim))
    assert "forwards_pending" in plan and "TEMP B-TREE" not in plan, plan
    store.close()
