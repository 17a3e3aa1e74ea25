"""Escalation of unacknowledged incidents, and the false-alarm policy."""
from __future__ import annotations

import json

import pytest

from gateway.escalation import check_interval
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import custom_stack, device


@pytest.fixture
def fast_stack(tmp_path, webhook, extra_webhook):
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url], escalate_after_s=1,
                     extra_webhooks=[{"url": extra_webhook.url, "secret": "esc-secret", "name": "escalation",
                                      "events": ["escalated"]}])
    s.webhook = webhook
    yield s
    s.down()


def test_check_interval_is_short_for_short_deadlines():
    assert check_interval(1) == 0.25 and check_interval(60) == 5


def test_unacknowledged_incident_escalates_once(fast_stack, extra_webhook):
    s = fast_stack
    raw, _ = device(s)
    # Made first: creating it runs the CLI, which on a busy machine takes longer than the
    # 1 s deadline the second incident must be acknowledged within.
    s.token()
    try:
        raw.send(seq=1)
        inc = raw.ack()["inc"]
        raw.send(seq=2)
        acked = raw.ack()["inc"]
        assert s.post(f"/api/incidents/{acked}/acknowledge").status_code == 200
        posts = extra_webhook.wait(1)
        assert [p["json"]["event"] for p in posts] == ["escalated"]
        post = posts[0]
        assert post["json"]["incident"]["id"] == inc and post["json"]["incident"]["escalated"] == 1
        assert post["headers"]["Idempotency-Key"] == f"{inc}:escalated"
        got = s.get(f"/api/incidents/{inc}")
        assert got["escalated"] == 1 and got["escalated_ms"] - got["received_ms"] >= 1000
        assert got["events"][-1]["stage"] == "escalated" and got["events"][-1]["actor"] == "gateway"
        assert s.get(f"/api/incidents/{acked}")["escalated"] == 0
        assert s.metrics()['panic_escalations_total{kind="panic"}'] == 1
        # The dispatch webhook (every incident event) hears it too, after the incident's "new".
        keys = [p["headers"]["Idempotency-Key"] for p in s.webhook.wait(4)]
        assert keys.index(f"{inc}:escalated") > keys.index(f"{inc}:new")
        # Acknowledging later still works; no second escalation.
        assert s.post(f"/api/incidents/{inc}/acknowledge").status_code == 200
        wait_until(lambda: s.get("/api/forwards")["sinks"] and
                   all(x["pending"] == 0 for x in s.get("/api/forwards")["sinks"]))
        assert len(extra_webhook.posts) == 1
    finally:
        raw.close()


@pytest.mark.parametrize("action", ["flag", "suspend"])
def test_false_alarm_policy(tmp_path, webhook, action):
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url], false_alarm_limit=2,
                     false_alarm_action=action)
    raw, _ = device(s)
    try:
        for seq in (1, 2):
            raw.send(seq=seq)
            inc = raw.ack()["inc"]
            r = s.post(f"/api/incidents/{inc}/false_alarm", note="kids playing")
            assert r.status_code == 200 and r.json()["false_alarm"] == 1
            assert raw.ack()["stage"] == "cancelled"
        got = s.get(f"/api/devices/{raw.dev}")
        assert got["false_alarms"] == 2
        assert got["flag"].startswith("review: 2 false alarms" if action == "flag" else "suspended: 2 false alarms")
        assert got["status"] == ("active" if action == "flag" else "suspended")
        policy = [e for e in got["events"] if e["event"] == "policy"]
        assert len(policy) == 1 and policy[0]["device"]["action"] == action
        if action == "suspend":
            wait_until(lambda: not raw.client.is_connected())  # its broker login is revoked
        else:
            raw.send(seq=3)
            assert raw.ack()["stage"] == "received"  # flagged, still in service
        shown = json.loads(s.cli("device", "show", raw.dev).stdout)
        assert shown["flag"] == got["flag"]
    finally:
        raw.close()
        s.down()
