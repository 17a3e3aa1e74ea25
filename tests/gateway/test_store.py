"""The Store interface on both databases (real SQLite, real PostgreSQL), and what only
matters when several gateways share PostgreSQL: racing inserts and forward claims."""
from __future__ import annotations

import threading
import time

import pytest

from gateway.ids import incident_id
from gateway.models import Alert, Device
from gateway.store import FalseAlarmPolicy, Forbidden, Store, TransitionError
from gateway.store.postgres import PostgresStore
from gateway.store.schema import MIGRATIONS
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)

DEV = "klj-kauman-rw05-rt03"


def alert(seq: int, kind: str = "panic", ref: str | None = None, boot: int = 1, now: int | None = None) -> Alert:
    now = now or time.time_ns() // 1_000_000
    return Alert(id=f"{DEV}:{boot}:{seq}", dev=DEV, boot=boot, seq=seq, kind=kind, t=now - 50, age=50,
                 lat6=-7982600, lon6=112627000, acc=25, src="fixed", batt=80, rssi=-60, ref=ref,
                 received_ms=now, body="{}")


ROUTES = {"mqtt": None, "ops": frozenset({"health", "policy"}), "webhook:esc": frozenset({"escalated"})}
DEVICE_EVENTS = ("health", "policy")


def route(event: str) -> tuple[str, ...]:
    """As a service sets it: a sink without a list takes every incident event."""
    return tuple(s for s, evs in ROUTES.items() if (event in evs if evs is not None else event not in DEVICE_EVENTS))


def prepare(store: Store) -> Store:
    store.route = route
    store.add_device(Device(id=DEV, secret="s" * 64, mqtt_password="p", kelurahan="Kauman", created_ms=1))
    return store


def test_migrations_are_versioned_and_idempotent(store):
    assert store.migrate() == len(MIGRATIONS)
    assert store.schema_version() == len(MIGRATIONS)
    assert store.registry_version() == 1  # one add_device


def test_ingest_duplicates_and_cancel(store):
    out = store.ingest([alert(1), alert(1)])
    assert [o.created for o in out] == [True, False] and out[1].duplicate
    assert out[0].incident.id == incident_id(f"{DEV}:1:1")
    cancel = store.ingest([alert(2, kind="cancel", ref=f"{DEV}:1:1")])[0]
    # A request the desk confirms (test_dispatch_verification.py): acked with the incident's stage.
    assert cancel.stage == "received" and cancel.incident.state == "new" and cancel.incident.cancel_requested_ms
    assert store.ingest([alert(2, kind="cancel", ref=f"{DEV}:1:1")])[0].duplicate
    unknown = store.ingest([alert(3, kind="cancel", ref=f"{DEV}:9:9")])[0]
    assert unknown.stage == "rejected" and unknown.reason == "unknown ref"
    # Only incident events reach incident sinks; the escalation sink wants escalations only.
    assert {s.sink: s.pending for s in store.forward_stats()} == {"mqtt": 2}


def test_forward_claims_keep_each_incidents_order(store):
    inc = store.ingest([alert(1)])[0].incident
    store.transition(inc.id, "acknowledge", "operator:a", inc.received_ms + 10, role="operator")
    other = store.ingest([alert(2)])[0].incident
    now = time.time_ns() // 1_000_000 + 1000
    first = store.claim_forwards("mqtt", "gw-a", now, 60_000)
    # One entry per incident at a time: the acknowledgement waits for the incident's "new".
    assert [r.idem_key for r in first] == [f"{inc.id}:new", f"{other.id}:new"]
    assert store.claim_forwards("mqtt", "gw-b", now, 60_000) == []  # leased to gw-a
    store.forwards_done([first[0].id], now)
    nxt = store.claim_forwards("mqtt", "gw-b", now, 60_000)
    assert [r.idem_key for r in nxt] == [f"{inc.id}:acknowledged"]
    # gw-a died holding other's entry: once the lease runs out another gateway takes it.
    assert store.claim_forwards("mqtt", "gw-c", now + 1000, 60_000) == []
    later = store.claim_forwards("mqtt", "gw-c", now + 61_000, 60_000)
    assert f"{other.id}:new" in [r.idem_key for r in later]


def test_marks_past_one_statements_worth_of_ids_reach_every_entry(store):
    from gateway.store.forwards import IDS_PER_STATEMENT
    n = IDS_PER_STATEMENT * 2 + 7
    store.ingest([alert(seq) for seq in range(1, n + 1)])
    now = time.time_ns() // 1_000_000 + 1000
    fids = [r.id for r in store.claim_forwards("mqtt", "gw-a", now, 60_000, limit=n)]
    assert len(fids) == n
    store.release_forwards(fids[1:])
    # Every entry but the first is free again; the first is still gw-a's.
    assert [r.id for r in store.claim_forwards("mqtt", "gw-b", now, 60_000, limit=n)] == fids[1:]
    store.forwards_done(fids[:-1], now)
    (stats,) = [s for s in store.forward_stats() if s.sink == "mqtt"]
    assert (stats.pending, stats.delivered) == (1, n - 1)


def test_escalation_and_false_alarm_policy(store):
    store.false_alarm = FalseAlarmPolicy(limit=2, window_ms=86_400_000, action="suspend")
    now = time.time_ns() // 1_000_000
    a, b = (o.incident for o in store.ingest([alert(1, now=now - 5000), alert(2, now=now)]))
    escalated = store.escalate_due(now, 2000)
    assert [i.id for i in escalated] == [a.id]
    assert store.escalate_due(now + 1, 2000) == []  # once
    assert {s.sink: s.pending for s in store.forward_stats()}["webhook:esc"] == 1
    for inc in (a, b):
        store.transition(inc.id, "false_alarm", "operator:a", now, role="operator")
    d = store.get_device(DEV)
    assert d.status == "suspended" and d.flag.startswith("suspended: 2 false alarms")
    assert store.false_alarms(DEV, now - 1000) == 2
    assert store.device_events(DEV)[0].event == "policy"


def test_health_record_and_sweep(store):
    now = time.time_ns() // 1_000_000
    kw = dict(retained=False, heartbeat_s=60, silent_factor=2.5, low_battery_pct=20, backlog_min=1)
    change = store.record_status(DEV, {"state": "online", "batt": 15, "outbox": 0}, now, **kw)
    assert change.health == "online" and change.now.low_battery and change.was == "unknown"
    assert store.record_status(DEV, {"state": "online", "batt": 14, "outbox": 0}, now + 1, **kw) is None
    assert store.sweep_silent(now + 149_000) == []
    assert [c.health for c in store.sweep_silent(now + 151_000)] == ["silent"]
    assert store.health_counts()["silent"] == 1
    off = store.record_status(DEV, {"state": "offline"}, now + 152_000, **kw)
    assert off.health == "offline" and off.now.batt == 14  # the will keeps the last battery reading
    assert [e.device["health"] for e in store.device_events(DEV)] == ["offline", "silent", "online"]


def _race(n: int, fn) -> list:
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i):
        barrier.wait()
        results[i] = fn(i)
    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_gateways_racing_on_postgres(pg_dsn):  # noqa: F811
    a, b = PostgresStore(pg_dsn), PostgresStore(pg_dsn)  # two processes' worth of connections
    try:
        prepare(a)
        b.route = a.route
        alerts = [alert(i) for i in range(1, 41)]
        # Both "gateways" get every alert at once (a retransmission that went to the other one);
        # each batch in the one order Ingest sorts them in, so the two cannot deadlock.
        outs = _race(2, lambda i: (a, b)[i].ingest(alerts))
        created = sum(o.created for out in outs for o in out)
        assert created == 40 and len(a.list_incidents(limit=100)) == 40
        # Two forwarders claiming at once never get the same entry.
        now = time.time_ns() // 1_000_000 + 1000
        claims = _race(2, lambda i: (a, b)[i].claim_forwards("mqtt", f"gw-{i}", now, 60_000, limit=30))
        ids = [r.id for c in claims for r in c]
        assert len(ids) == len(set(ids)) == 40
        # Two escalation sweeps at once: each incident escalated once.
        escalated = _race(2, lambda i: (a, b)[i].escalate_due(now + 5000, 1000))
        assert sorted(i.id for e in escalated for i in e) == sorted(i.id for i in a.list_incidents(limit=100))
    finally:
        a.close()
        b.close()


def test_transition_applies_the_lifecycle_with_the_role(store):
    inc = store.ingest([alert(1)])[0].incident
    with pytest.raises(Forbidden):
        store.transition(inc.id, "false_alarm", "responder:u1", inc.received_ms + 5, role="responder")
    with pytest.raises(TransitionError, match="needs a unit"):
        store.transition(inc.id, "dispatch", "operator:a", inc.received_ms + 5, role="operator")
    got = store.transition(inc.id, "dispatch", "operator:a", inc.received_ms + 10, role="operator", unit="u1")
    assert got.state == "dispatched" and got.acknowledged_ms == inc.received_ms + 10 and got.unit == "u1"
    same = store.transition(inc.id, "en_route", "responder:u1", inc.received_ms + 20, role="responder")
    assert same.state == "dispatched" and [e.stage for e in store.events(inc.id)][-1] == "en_route"
    assert store.open_for_unit("u1")[0].id == inc.id
    store.transition(inc.id, "resolve", "responder:u1", inc.received_ms + 30, role="responder")
    with pytest.raises(TransitionError, match="incident is resolved"):
        store.transition(inc.id, "on_scene", "responder:u1", inc.received_ms + 40, role="responder")
    with pytest.raises(LookupError):
        store.transition("inc-nope", "resolve", "admin:x", 1, role="admin")


def test_without_a_route_nothing_is_queued(store):
    store.route = lambda event: ()
    inc = store.ingest([alert(1)])[0].incident
    store.transition(inc.id, "acknowledge", "operator:a", inc.received_ms + 10, role="operator")
    assert store.forward_stats() == []
    assert [e.stage for e in store.events(inc.id)] == ["new", "acknowledged"]


def test_console_reads(store):
    now = time.time_ns() // 1_000_000
    cursor = store.event_cursor()
    a, b = (o.incident for o in store.ingest([alert(1, now=now - 10), alert(2, now=now)]))
    nxt, ids = store.changed_after(cursor)
    assert nxt > cursor and sorted(ids) == sorted([a.id, b.id]) and store.changed_after(nxt) == (nxt, [])
    store.transition(a.id, "false_alarm", "operator:a", now, role="operator")
    assert [i.id for i in store.open_and_recent(now)] == [b.id, a.id]  # open first, then recently closed
    assert [i.id for i in store.incidents_by_id([a.id, b.id])] == [b.id, a.id]
    assert store.false_alarm_counts([DEV, "other-dev"], now - 1000) == {DEV: 1}
    assert store.last_alerts() == {DEV: now}
    assert list(store.devices_by_id([DEV, DEV, "nobody"])) == [DEV]
    assert store.mark_escalated(b.id, now) and store.get_incident(b.id).escalated == 1
    rows = store.report_incidents(now - 1000, now + 1, ("panic",))
    assert [(r.incident.id, r.kelurahan) for r in rows] == [(a.id, "Kauman"), (b.id, "Kauman")]


def test_accounts_and_sessions(store):
    assert store.save_user("andi", "operator", "hash1", "", 1) is True
    assert store.save_user("budi", "responder", "hash2", "sabhara-1", 1) is True
    store.open_session("sid-1", "andi", "csrf-1", 100, 1000)
    user, csrf = store.session("sid-1", 500)
    assert (user.name, user.role, csrf) == ("andi", "operator", "csrf-1")
    assert store.session("sid-1", 1101) is None  # expired
    assert store.save_user("andi", "admin", "hash3", "", 2) is False  # updated ...
    assert store.session("sid-1", 500) is None  # ... and the old password's sessions end
    assert store.password_hash("andi") == "hash3" and store.password_hash("nobody") is None
    assert [u.name for u in store.users()] == ["andi", "budi"] and store.user("budi").unit == "sabhara-1"
    assert store.units() == ["sabhara-1"]
    assert store.delete_user("budi") and store.user("budi") is None and not store.delete_user("budi")
    store.add_token("h" * 64, "viewer", "city-ops", 1)
    assert store.token("h" * 64) == ("viewer", "city-ops", "") and store.token("x") is None


def test_console_false_alarm_marks_follow_the_policy(store):
    """The queue's repeat-offender mark counts what the policy counts, in the policy's window."""
    from gateway.console import queries

    store.false_alarm = FalseAlarmPolicy(limit=3, window_ms=86_400_000, action="flag")
    now = time.time_ns() // 1_000_000
    old = store.ingest([alert(1, now=now - 3 * 86_400_000)])[0].incident
    store.transition(old.id, "false_alarm", "operator:a", now - 3 * 86_400_000, role="operator")  # outside
    recent = [o.incident for o in store.ingest([alert(2, now=now - 60_000), alert(3, now=now - 30_000)])]
    store.ingest([alert(4, kind="cancel", ref=recent[1].alert_id, now=now - 20_000)])  # the holder's: not counted
    store.transition(recent[0].id, "false_alarm", "operator:a", now - 50_000, role="operator")
    assert queries.false_alarms(store, [DEV], now) == {DEV: 1}
    fresh = store.ingest([alert(5, now=now)])[0].incident
    assert queries.cards(store, [fresh], now)[0]["repeat_false"] is False
    store.transition(fresh.id, "false_alarm", "operator:a", now, role="operator")
    card = queries.cards(store, [fresh], now)[0]
    assert card["false_alarms"] == 2 and card["repeat_false"] is True and "secret" not in card["device"]
