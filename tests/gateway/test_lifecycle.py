"""An incident from press to resolved through the API; the button hears every stage."""
from __future__ import annotations

import httpx


def _press(fw):
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
    fw.send("trigger")
    return fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 10)["inc"]


def test_lifecycle_reaches_the_button_and_the_webhook(stack, make_device):
    fw = make_device()
    inc = _press(fw)
    for action, body, stage in [("acknowledge", {}, "acknowledged"),
                                ("dispatch", {"unit": "sabhara-2"}, "dispatched"),
                                ("on_scene", {}, "on_scene"),
                                ("resolve", {"note": "handled"}, "resolved")]:
        r = stack.post(f"/api/incidents/{inc}/{action}", **body)
        assert r.status_code == 200, r.text
        assert r.json()["state"] == stage
        ack = fw.wait_for(lambda e, stage=stage: e["ev"] == "ack" and e["stage"] == stage, 5)
        assert ack["inc"] == inc
    got = stack.get(f"/api/incidents/{inc}")
    assert got["unit"] == "sabhara-2"
    lat = got["latency_ms"]
    assert lat["received_to_acknowledged"] >= 0 and lat["received_to_dispatched"] >= lat["received_to_acknowledged"]
    assert lat["press_to_on_scene"] >= lat["press_to_received"]
    assert [e["stage"] for e in got["events"]] == ["new", "acknowledged", "dispatched", "on_scene", "resolved"]
    assert got["events"][1]["actor"].startswith("operator:")
    keys = [p["headers"]["Idempotency-Key"] for p in stack.webhook.wait(5)]
    assert keys == [f"{inc}:{s}" for s in ("new", "acknowledged", "dispatched", "on_scene", "resolved")]


def test_roles_and_invalid_transitions(stack, make_device):
    fw = make_device()
    inc = _press(fw)
    assert stack.post(f"/api/incidents/{inc}/acknowledge", role="viewer").status_code == 403
    assert stack.post(f"/api/incidents/{inc}/acknowledge", role="responder").status_code == 403
    assert stack.post(f"/api/incidents/{inc}/dispatch").status_code == 409  # no unit
    assert stack.post(f"/api/incidents/{inc}/fly").status_code == 404
    assert stack.post("/api/incidents/inc-000000000000/acknowledge").status_code == 404
    assert stack.post(f"/api/incidents/{inc}/dispatch", unit="u1").status_code == 200
    # A responder acts on its own unit's incidents only: the unit-less token may not, u1's may.
    assert stack.post(f"/api/incidents/{inc}/on_scene", role="responder").status_code == 403
    u1 = stack.cli("token", "create", "--role", "responder", "--unit", "u1").stdout.strip()
    assert httpx.post(f"{stack.api}/api/incidents/{inc}/on_scene", headers={"Authorization": f"Bearer {u1}"},
                      timeout=10).status_code == 200
    assert stack.post(f"/api/incidents/{inc}/acknowledge").status_code == 409
    assert stack.post(f"/api/incidents/{inc}/false_alarm").status_code == 200
    assert stack.post(f"/api/incidents/{inc}/resolve").status_code == 409
    assert stack.get(f"/api/incidents/{inc}")["state"] == "cancelled"


def test_cancel_from_the_button(stack, make_device):
    fw = make_device()
    inc = _press(fw)
    fw.send("cancel")
    panic_id = stack.get(f"/api/incidents/{inc}")["alert_id"]
    ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] != panic_id, 10)
    got = stack.get(f"/api/incidents/{inc}")
    # A request: answered with the incident's own stage; only the desk closes the incident
    # (tests/gateway/test_dispatch_verification.py).
    assert got["state"] == "new" and got["events"][-1]["stage"] == "cancel_requested"
    assert got["events"][-1]["actor"].startswith("device:") and ack["stage"] == "received"
    # The cancel is an alert of its own (kind cancel, ref = the panic's id), acked on its own id.
    assert ack["inc"] == inc and ack["id"] != got["alert_id"]
