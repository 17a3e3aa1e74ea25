"""Durable forwarding: a dispatch system that is down for a while, a gateway restart with
undelivered events, dead letters visible and requeued from the API, CAP webhooks."""
from __future__ import annotations

import hashlib
import hmac
from xml.etree import ElementTree as ET

from gateway import config
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import custom_stack, device


def _signed(post: dict, secret: str) -> bool:
    expected = "sha256=" + hmac.new(secret.encode(), post["raw"], hashlib.sha256).hexdigest()
    return post["headers"]["X-Panic-Signature"] == expected


def _pending(s) -> int:
    return sum(x["pending"] for x in s.get("/api/forwards")["sinks"])


def test_webhook_down_for_a_while_then_recovers(tmp_path, webhook):
    webhook.fail_next = 4
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url], forward_backoff_ms=50)
    raw, _ = device(s)
    try:
        raw.send(seq=1)
        inc = raw.ack()["inc"]  # the device is acked at once: forwarding is not on its path
        posts = webhook.wait(1)
        wait_until(lambda: _pending(s) == 0)
        assert len(webhook.posts) == 1 and webhook.fail_next == 0
        assert posts[0]["headers"]["Idempotency-Key"] == f"{inc}:new"
        assert _signed(posts[0], config.load(s.config).webhooks[0].secret)
        m = s.metrics()
        assert m['panic_forwards_total{result="retry",sink="webhook:dispatch0"}'] == 4
        assert m['panic_forwards_total{result="ok",sink="webhook:dispatch0"}'] == 1
    finally:
        raw.close()
        s.down()


def test_undelivered_forwards_survive_a_gateway_kill(tmp_path, webhook):
    webhook.fail_next = 10**6
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url], forward_backoff_ms=50,
                     forward_backoff_max_s=1)
    raw, _ = device(s)
    try:
        raw.send(seq=1)
        inc = raw.ack()["inc"]
        assert s.post(f"/api/incidents/{inc}/acknowledge").status_code == 200
        wait_until(lambda: s.metrics().get('panic_forwards_total{result="retry",sink="webhook:dispatch0"}', 0) >= 2)
        s.kill_gateway()
        webhook.fail_next = 0
        s.start_gateway()
        posts = webhook.wait(2)
        wait_until(lambda: _pending(s) == 0)
        assert [p["headers"]["Idempotency-Key"] for p in posts] == [f"{inc}:new", f"{inc}:acknowledged"]
        assert len(webhook.posts) == 2
    finally:
        raw.close()
        s.down()


def test_dead_letter_is_visible_and_can_be_requeued(tmp_path, webhook):
    webhook.fail_next = 10**6
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url], forward_backoff_ms=100, forward_dead_after_s=1)
    raw, _ = device(s)
    try:
        raw.send(seq=1)
        inc = raw.ack()["inc"]
        dead = wait_until(lambda: s.get("/api/forwards/dead")["dead"])
        assert len(dead) == 1
        letter = dead[0]
        assert letter["sink"] == "webhook:dispatch0" and letter["idem_key"] == f"{inc}:new"
        assert letter["attempts"] >= 2 and letter["last_error"] == "HTTP 503"
        assert letter["payload"]["incident"]["id"] == inc
        stats = {x["sink"]: x for x in s.get("/api/forwards")["sinks"]}
        assert stats["webhook:dispatch0"]["dead"] == 1 and stats["mqtt"]["delivered"] == 1
        assert s.post(f"/api/forwards/dead/{letter['id']}/retry", role="viewer").status_code == 403
        webhook.fail_next = 0
        assert s.post(f"/api/forwards/dead/{letter['id']}/retry").status_code == 200
        posts = webhook.wait(1)
        assert posts[0]["headers"]["Idempotency-Key"] == f"{inc}:new"
        wait_until(lambda: s.get("/api/forwards/dead")["dead"] == [])
        assert s.post(f"/api/forwards/dead/{letter['id']}/retry").status_code == 404
    finally:
        raw.close()
        s.down()


def test_cap_webhook_and_endpoint(tmp_path, extra_webhook):
    s = custom_stack(tmp_path / "state", extra_webhooks=[{"url": extra_webhook.url, "secret": "cap-secret",
                                                          "name": "cap", "format": "cap"}])
    raw, _ = device(s, holder="Pak Budi", phone="0812-555", address="Jl. Kauman 5")
    ns = {"c": "urn:oasis:names:tc:emergency:cap:1.2"}
    try:
        raw.send(seq=1)
        inc = raw.ack()["inc"]
        post = extra_webhook.wait(1)[0]
        assert post["headers"]["Content-Type"] == "application/cap+xml" and _signed(post, "cap-secret")
        hooked = ET.fromstring(post["raw"])
        assert hooked.find("c:msgType", ns).text == "Alert" and hooked.find("c:identifier", ns).text == inc

        import httpx
        r = httpx.get(f"{s.api}/api/incidents/{inc}.cap", headers={"Authorization": f"Bearer {s.token('viewer')}"})
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/cap+xml")
        root = ET.fromstring(r.content)
        assert root.tag == "{urn:oasis:names:tc:emergency:cap:1.2}alert"
        assert [c.tag.split("}")[1] for c in root][:7] == ["identifier", "sender", "sent", "status", "msgType",
                                                          "source", "scope"]
        assert root.find("c:status", ns).text == "Actual"
        assert root.find("c:sent", ns).text.endswith("+07:00")
        info = root.find("c:info", ns)
        assert [info.find(f"c:{k}", ns).text for k in ("category", "urgency", "severity", "certainty")] == \
            ["Security", "Immediate", "Severe", "Observed"]
        assert info.find("c:area/c:circle", ns).text == "-7.982600,112.627000 0.025"
        assert "Kelurahan Kauman" in info.find("c:area/c:areaDesc", ns).text
        # The holder's phone is for the desk; a viewer's copy leaves it out (docs/security.md row 12).
        assert info.find("c:contact", ns) is None
        desk = ET.fromstring(httpx.get(f"{s.api}/api/incidents/{inc}.cap",
                                       headers={"Authorization": f"Bearer {s.token('operator')}"}).content)
        assert desk.find("c:info/c:contact", ns).text == "0812-555"

        assert s.post(f"/api/incidents/{inc}/false_alarm").status_code == 200
        assert raw.ack()["stage"] == "cancelled"
        cancelled = ET.fromstring(httpx.get(f"{s.api}/api/incidents/{inc}.cap",
                                            headers={"Authorization": f"Bearer {s.token('viewer')}"}).content)
        assert cancelled.find("c:msgType", ns).text == "Cancel"
        assert cancelled.find("c:references", ns).text.split(",")[1] == inc
        raw.send(seq=2, kind="test")
        drill = raw.ack()["inc"]
        assert ET.fromstring(httpx.get(f"{s.api}/api/incidents/{drill}.cap",
                                       headers={"Authorization": f"Bearer {s.token('viewer')}"}).content
                             ).find("c:status", ns).text == "Exercise"
        assert httpx.get(f"{s.api}/api/incidents/inc-000000000000.cap",
                         headers={"Authorization": f"Bearer {s.token('viewer')}"}).status_code == 404
    finally:
        raw.close()
        s.down()
