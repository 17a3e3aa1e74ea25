"""The units registry, positions, the unit following its incident, and the ladder's steps on
both stores (SQLite and PostgreSQL)."""
from __future__ import annotations

import pytest

from gateway.domain.ladder import Step
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)
from tests.gateway.test_store import alert, prepare


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s = prepare(SqliteStore(tmp_path / "g.db")) if request.param == "sqlite" else \
        prepare(PostgresStore(request.getfixturevalue("pg_dsn")))
    yield s
    s.close()


def test_registry_positions_and_following(store):
    assert store.add_unit("KLJ-1", kind="car", post="Polsek Klojen", sector="Klojen", post_lat6=-7979000,
                          post_lon6=112633000, now_ms=1)
    assert not store.add_unit("KLJ-1", kind="car", post="", sector="klojen", post_lat6=1, post_lon6=1, now_ms=2)
    assert store.add_unit("BLM-1", kind="foot", post="", sector="blimbing", post_lat6=1, post_lon6=1, now_ms=1)
    assert [u.call_sign for u in store.list_units(sectors=("klojen",))] == ["KLJ-1"]
    assert store.list_units(sectors=()) == []
    assert store.report_position("NOPE", lat6=1, lon6=1, acc=1, at_ms=5) is None
    u = store.report_position("KLJ-1", lat6=-7980000, lon6=112630000, acc=9, at_ms=10)
    assert u is not None and (u.lat6, u.fix_ms, u.status) == (-7980000, 10, "available")
    # An older fix joins the track but does not move the unit back.
    u = store.report_position("KLJ-1", lat6=-7990000, lon6=112630000, acc=9, at_ms=8)
    assert u is not None and (u.lat6, u.fix_ms) == (-7980000, 10)

    inc = store.ingest([alert(1)])[0].incident
    t = inc.received_ms
    store.transition(inc.id, "dispatch", "operator:a", t + 1, role="operator", unit="KLJ-1")
    u = store.unit("KLJ-1")
    assert u is not None and (u.status, u.incident_id) == ("dispatched", inc.id)
    store.report_position("KLJ-1", lat6=-7981000, lon6=112629000, acc=5, at_ms=t + 2)
    store.transition(inc.id, "en_route", "responder:x", t + 3, role="responder")
    assert store.unit("KLJ-1").status == "en_route"
    # Re-dispatched to another unit: the first is free again.
    store.transition(inc.id, "dispatch", "operator:a", t + 4, role="operator", unit="BLM-1")
    assert store.unit("KLJ-1").status == "available" and store.unit("BLM-1").status == "dispatched"
    store.transition(inc.id, "on_scene", "responder:y", t + 5, role="responder")
    store.transition(inc.id, "resolve", "responder:y", t + 6, role="responder")
    b = store.unit("BLM-1")
    assert b is not None and (b.status, b.incident_id) == ("available", None)
    assert [p.lat6 for p in store.incident_track(inc.id)] == [-7981000]
    assert len(store.unit_track("KLJ-1", 0)) == 3
    assert store.set_unit_status("KLJ-1", "off_duty", t + 7).status == "off_duty"
    assert store.set_unit_status("NOPE", "off_duty", t + 7) is None
    assert store.remove_unit("KLJ-1") and not store.remove_unit("KLJ-1")


def test_ladder_steps_once_each_in_order(store):
    inc = store.ingest([alert(1)])[0].incident
    t = inc.received_ms
    first, top = Step("polresta", 60), Step("ngalam112", 180)
    assert store.escalate_step(t + 59_000, 0, first) == []
    assert store.escalate_step(t + 200_000, 1, top) == []  # the first step comes first
    assert [i.id for i in store.escalate_step(t + 60_000, 0, first)] == [inc.id]
    assert store.escalate_step(t + 61_000, 0, first) == []  # once
    up = store.escalate_step(t + 180_000, 1, top)
    assert [i.escalated for i in up] == [2]
    assert [e.stage for e in store.events(inc.id)] == ["new", "escalated", "escalated_112"]
