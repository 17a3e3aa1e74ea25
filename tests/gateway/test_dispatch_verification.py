"""The holder's cancel is a request; the desk calls back (`verify`, with outcome, timed) and only
then closes the incident (`confirm_cancel`). On both stores, and end to end with the real firmware
under micropython: the button's own cancel is answered at once, the incident stays open."""
from __future__ import annotations

import pytest

from gateway.domain import verification
from gateway.store import TransitionError
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)
from tests.gateway.test_store import DEV, alert, prepare


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s = prepare(SqliteStore(tmp_path / "g.db")) if request.param == "sqlite" else \
        prepare(PostgresStore(request.getfixturevalue("pg_dsn")))
    yield s
    s.close()


def test_outcomes_are_named_first_in_the_note():
    assert verification.outcome_of("safe: Pak Budi pressed it by mistake") == "safe"
    assert verification.outcome_of("  No_Answer, rang twice") == "no_answer"
    for bad in (None, "", "ok", "holder is safe"):
        with pytest.raises(TransitionError, match="outcome"):
            verification.outcome_of(bad)


def test_a_button_cancel_is_a_request_the_desk_confirms_after_calling_back(store):
    inc = store.ingest([alert(1)])[0].incident
    out = store.ingest([alert(2, kind="cancel", ref=f"{DEV}:1:1")])[0]
    # Answered with the incident's own stage: the button ends its alarm, the incident stays open.
    assert out.stage == "received" and out.incident.state == "new" and out.incident.cancel_requested_ms
    again = store.ingest([alert(2, kind="cancel", ref=f"{DEV}:1:1")])[0]
    assert again.duplicate and again.stage == "received"
    assert [e.stage for e in store.events(inc.id)] == ["new", "cancel_requested"]
    t = inc.received_ms
    # Not before a call-back found the holder safe; a viewer or responder never.
    with pytest.raises(TransitionError, match="call the holder back"):
        store.transition(inc.id, "confirm_cancel", "operator:a", t + 1000, role="operator")
    with pytest.raises(TransitionError, match="outcome"):
        store.transition(inc.id, "verify", "operator:a", t + 2000, role="operator", note="rang")
    assert store.get_incident(inc.id).verified_ms is None  # the refused step left nothing behind
    got = store.transition(inc.id, "verify", "operator:a", t + 3000, role="operator", note="no_answer")
    assert got.verify_outcome == "no_answer" and got.state == "new"
    with pytest.raises(TransitionError, match="safe"):
        store.transition(inc.id, "confirm_cancel", "operator:a", t + 4000, role="operator")
    store.transition(inc.id, "verify", "operator:a", t + 9000, role="operator", note="safe: pressed by a child")
    got = store.get_incident(inc.id)
    assert (got.verified_ms, got.verify_outcome) == (t + 9000, "safe")
    closed = store.transition(inc.id, "confirm_cancel", "operator:a", t + 10_000, role="operator")
    assert closed.state == "cancelled" and closed.cancelled_ms == t + 10_000 and not closed.false_alarm
    assert [e.stage for e in store.events(inc.id)] == ["new", "cancel_requested", "verify", "verify",
                                                           "cancelled"]
    # A cancel after the close is answered with the close.
    late = store.ingest([alert(3, kind="cancel", ref=f"{DEV}:1:1")])[0]
    assert late.stage == "cancelled"


def test_confirm_cancel_needs_a_request(store):
    inc = store.ingest([alert(1)])[0].incident
    store.transition(inc.id, "verify", "operator:a", inc.received_ms + 1, role="operator", note="safe")
    with pytest.raises(TransitionError, match="no cancel was requested"):
        store.transition(inc.id, "confirm_cancel", "operator:a", inc.received_ms + 2, role="operator")


def test_the_real_button_cancel_then_the_desk_closes(stack, make_device):
    fw = make_device()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
    fw.send("trigger")
    inc = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 10)["inc"]
    fw.send("cancel")
    got = stack.get(f"/api/incidents/{inc}")
    cancel_ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] != got["alert_id"], 10)
    assert cancel_ack["inc"] == inc and cancel_ack["stage"] == "received"
    got = stack.get(f"/api/incidents/{inc}")
    assert got["state"] == "new" and got["cancel_requested_ms"] is not None
    assert got["events"][-1]["stage"] == "cancel_requested" and got["events"][-1]["actor"].startswith("device:")
    assert stack.post(f"/api/incidents/{inc}/confirm_cancel").status_code == 409
    assert stack.post(f"/api/incidents/{inc}/verify", role="viewer", note="safe").status_code == 403
    assert stack.post(f"/api/incidents/{inc}/verify", note="safe: the holder's grandson pressed it").status_code == 200
    r = stack.post(f"/api/incidents/{inc}/confirm_cancel")
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    # The panic's own id hears the close.
    fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == got["alert_id"] and e["stage"] == "cancelled", 10)
