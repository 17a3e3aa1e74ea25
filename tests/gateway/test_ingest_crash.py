"""An ack to a button means its incident is committed, whenever the gateway dies.

The gateway is killed (SIGKILL, gateway/crashpoints.py) at each point of an alert's path
where dying could break that promise: inside the transaction before COMMIT, after COMMIT
before the signed ack, after the ack before the broker's PUBACK. Each time the store is
read directly before the gateway comes back: nothing committed means no ack was sent, and
since the alert was never PUBACKed the broker hands it to the restarted gateway, which makes
exactly one incident of it and acks it, with the incident committed before."""
from __future__ import annotations

import pytest

import protocol
from gateway import config as gwconfig
from gateway.crashpoints import POINTS
from gateway.store import open_store
from tests.gateway.test_gateway_support import custom_stack, device


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
@pytest.mark.parametrize("point", POINTS)
def test_an_ack_means_the_incident_is_committed_whenever_the_gateway_dies(tmp_path, request, store, point):
    dsn = request.getfixturevalue("pg_dsn") if store == "postgres" else ""
    s = custom_stack(tmp_path / "state", store=store, dsn=dsn, start=False)
    try:
        s.start_broker()
        gw = s.start_gateway(env={"PANIC_CRASH_AT": point})
        d, _ = device(s)
        d.send(seq=1)
        assert gw.wait(timeout=30) == -9, "the gateway died at the crash point"
        s.gateways.remove(gw)
        db = open_store(gwconfig.load(s.config))
        try:
            committed = db.list_incidents()
        finally:
            db.close()
        if point == "ingest_before_commit":
            assert committed == []
        else:
            assert [i.alert_id for i in committed] == [protocol.alert_id(d.dev, 1, 1)]
        if point == "ingest_after_ack":
            first = d.ack(timeout=10)  # written before the kill: the broker delivers it
            assert first["stage"] == "received" and first["inc"] == committed[0].id
        else:
            assert d.acks.empty()  # nothing committed was acked, nothing uncommitted either
        s.start_gateway()
        ack = d.ack(timeout=20)  # the broker redelivered the alert it never had a PUBACK for
        assert ack["stage"] == "received"
        incidents = s.incidents()
        assert len(incidents) == 1 and ack["inc"] == incidents[0]["id"]
        if committed:
            assert incidents[0]["id"] == committed[0].id
    finally:
        s.down()
