"""The built-in sinks on their own: what each sends, and which failures are for good
(dead-lettered at once) rather than worth a retry."""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from gateway import config
from gateway.sinks import DeliveryError, Forward, SinkContext, build


class ScriptedReceiver:
    """An HTTP endpoint that answers its POSTs with the statuses given, in turn, then 204."""

    def __init__(self, *statuses: int) -> None:
        self.statuses = list(statuses)
        self.posts: list[tuple[int, str]] = []  # (status answered, Idempotency-Key)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                status = receiver.statuses.pop(0) if receiver.statuses else 204
                receiver.posts.append((status, self.headers["Idempotency-Key"]))
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/dispatch"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@pytest.fixture
def scripted():
    receivers: list[ScriptedReceiver] = []

    def make(*statuses: int) -> ScriptedReceiver:
        receivers.append(ScriptedReceiver(*statuses))
        return receivers[-1]
    yield make
    for r in receivers:
        r.close()


def sinks_of(tmp_path: Path, url: str, **extra: str) -> dict:
    lines = "".join(f'{k} = "{v}"\n' for k, v in extra.items())
    path = tmp_path / "gateway.toml"
    path.write_text(f'[[sinks]]\ntype = "webhook"\nname = "hook"\nurl = "{url}"\nsecret = "hook-secret"\n{lines}')
    cfg = config.load(path)
    return {s.name: s for s in build(cfg.sinks, SinkContext(cfg))}


INCIDENT = {"id": "inc-000000000001", "dev": "klj-kauman-rw05-rt03", "state": "new", "kind": "panic",
            "received_ms": 1764269000123, "press_ms": 1764269000000, "lat6": -7982600, "lon6": 112627000,
            "acc": 25, "src": "fixed"}
NEW = json.dumps({"event": "new", "at_ms": 1764269000123, "actor": "device:x", "incident": INCIDENT})


def test_webhook_posts_the_exact_bytes_signed_with_the_key(tmp_path, webhook):
    sink = sinks_of(tmp_path, webhook.url)["hook"]
    sink.deliver(Forward("inc-000000000001:new", NEW))
    post = webhook.posts[0]
    assert post["raw"] == NEW.encode() and post["headers"]["Idempotency-Key"] == "inc-000000000001:new"
    mac = hmac.new(b"hook-secret", NEW.encode(), hashlib.sha256).hexdigest()
    assert post["headers"]["X-Panic-Signature"] == f"sha256={mac}"
    assert post["headers"]["Content-Type"] == "application/json"


def test_cap_webhook_sends_device_events_as_json(tmp_path, webhook):
    sink = sinks_of(tmp_path, webhook.url, format="cap")["hook"]
    sink.deliver(Forward("inc-000000000001:new", NEW))
    health = json.dumps({"event": "health", "at_ms": 1, "actor": "gateway", "device": {"id": "klj-a"}})
    sink.deliver(Forward("klj-a:health:1", health))
    cap, dev = webhook.posts
    assert cap["headers"]["Content-Type"] == "application/cap+xml" and b"<identifier>inc-000000000001<" in cap["raw"]
    assert dev["headers"]["Content-Type"] == "application/json" and dev["raw"] == health.encode()


@pytest.mark.parametrize("status, permanent", [(400, True), (413, True), (415, True), (422, True),
                                                (401, False), (404, False), (429, False), (500, False),
                                                (503, False), (302, False)])
def test_webhook_refusal_is_permanent_an_outage_is_not(tmp_path, scripted, status, permanent):
    receiver = scripted(status)
    sink = sinks_of(tmp_path, receiver.url)["hook"]
    with pytest.raises(DeliveryError) as exc:
        sink.deliver(Forward("k", NEW))
    assert str(exc.value) == f"HTTP {status}" and exc.value.permanent is permanent
    sink.deliver(Forward("k", NEW))  # the next answer is 204
    assert receiver.posts == [(status, "k"), (204, "k")]


def test_webhook_unreachable_is_transient_and_does_not_name_the_url(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    sink = sinks_of(tmp_path, f"http://127.0.0.1:{port}/hook?token=tok-secret")["hook"]
    with pytest.raises(DeliveryError) as exc:
        sink.deliver(Forward("k", NEW))
    assert not exc.value.permanent and "tok-secret" not in str(exc.value) and "ConnectError" in str(exc.value)


@pytest.mark.parametrize("name, payload", [
    ("mqtt", "not json"), ("mqtt", "[1, 2]"), ("mqtt", json.dumps({"event": "new"})),
    ("ops", json.dumps({"event": "new", "incident": INCIDENT})), ("ops", json.dumps({"event": "health"})),
])
def test_mqtt_sinks_refuse_events_they_cannot_place(tmp_path, webhook, name, payload):
    sink = sinks_of(tmp_path, webhook.url)[name]
    with pytest.raises(DeliveryError) as exc:
        sink.deliver(Forward("k", payload))
    assert exc.value.permanent
