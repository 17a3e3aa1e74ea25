"""Dispatch webhooks signed per Standard Webhooks: receivers verify them with the published
`standardwebhooks` library, which refuses a captured delivery replayed outside its tolerance
window, a re-stamped one and a changed body; a webhook without a secret is a config error."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import standardwebhooks.webhooks as swh
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from gateway import config
from gateway.config import ConfigError
from gateway.sinks import Forward, SinkContext, build
from gateway.sinks.webhook import new_secret
from tests.gateway.test_gateway_support import custom_stack, device

EVENT = json.dumps({"event": "new", "at_ms": 1764269000123, "actor": "device:x",
                    "incident": {"id": "inc-000000000001", "dev": "klj-kauman-rw05-rt03", "state": "new",
                                 "kind": "panic", "received_ms": 1764269000123, "lat6": -7982600,
                                 "lon6": 112627000, "acc": 25, "src": "fixed"}})


def hook_sink(tmp_path: Path, url: str, secret: str, extra: str = ""):
    path = tmp_path / "gateway.toml"
    path.write_text(f'[[sinks]]\ntype = "webhook"\nname = "hook"\nurl = "{url}"\nsecret = "{secret}"\n{extra}')
    cfg = config.load(path)
    return {s.name: s for s in build(cfg.sinks, SinkContext(cfg))}["hook"]


def receiver_headers(post: dict) -> dict[str, str]:
    return {k.lower(): v for k, v in post["headers"].items()}


class LaterClock(datetime):
    """The receiver's clock, some minutes after the delivery was made."""
    shift = timedelta(minutes=6)

    @classmethod
    def now(cls, tz=None):
        return datetime.now(tz) + cls.shift


def test_a_delivery_verifies_with_the_standardwebhooks_library(tmp_path, webhook):
    secret = new_secret()
    assert secret.startswith("whsec_")
    sink = hook_sink(tmp_path, webhook.url, secret)
    sink.deliver(Forward("inc-000000000001:new", EVENT))
    post = webhook.wait(1)[0]
    headers = receiver_headers(post)
    assert Webhook(secret).verify(post["raw"], headers) == json.loads(EVENT)
    assert headers["webhook-id"] == "inc-000000000001:new" == headers["idempotency-key"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 5
    # Deprecated, still sent by default for one release.
    assert headers["x-panic-signature"].startswith("sha256=")


def test_a_replay_outside_the_tolerance_window_is_refused(tmp_path, webhook, monkeypatch):
    secret = new_secret()
    hook_sink(tmp_path, webhook.url, secret).deliver(Forward("inc-000000000001:new", EVENT))
    post = webhook.wait(1)[0]
    headers = receiver_headers(post)
    receiver = Webhook(secret)
    receiver.verify(post["raw"], headers)
    # The same captured request presented again, six minutes later: too old.
    monkeypatch.setattr(swh, "datetime", LaterClock)
    with pytest.raises(WebhookVerificationError, match="too old"):
        receiver.verify(post["raw"], headers)
    # Re-stamping it with a fresh time breaks the signature, which covers the timestamp.
    restamped = headers | {"webhook-timestamp": str(int(LaterClock.now().timestamp()))}
    with pytest.raises(WebhookVerificationError, match="No matching signature"):
        receiver.verify(post["raw"], restamped)


def test_a_changed_body_or_another_secret_is_refused(tmp_path, webhook):
    secret = new_secret()
    hook_sink(tmp_path, webhook.url, secret).deliver(Forward("inc-000000000001:new", EVENT))
    post = webhook.wait(1)[0]
    headers = receiver_headers(post)
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(post["raw"].replace(b'"panic"', b'"test"'), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(new_secret()).verify(post["raw"], headers)


def test_each_attempt_is_stamped_when_sent_under_the_same_id(tmp_path, webhook):
    secret = new_secret()
    sink = hook_sink(tmp_path, webhook.url, secret)
    sink.deliver(Forward("inc-000000000001:new", EVENT, attempts=0))
    time.sleep(1.1)
    sink.deliver(Forward("inc-000000000001:new", EVENT, attempts=1))
    first, second = (receiver_headers(p) for p in webhook.wait(2))
    assert first["webhook-id"] == second["webhook-id"]
    assert int(second["webhook-timestamp"]) > int(first["webhook-timestamp"])
    for post in webhook.posts:
        Webhook(secret).verify(post["raw"], receiver_headers(post))


def test_legacy_signature_can_be_turned_off(tmp_path, webhook):
    secret = new_secret()
    hook_sink(tmp_path, webhook.url, secret, "legacy_signature = false\n").deliver(Forward("k:new", EVENT))
    headers = receiver_headers(webhook.wait(1)[0])
    assert "x-panic-signature" not in headers and headers["webhook-signature"].startswith("v1,")


def test_a_plain_secret_is_the_key_bytes(tmp_path, webhook):
    hook_sink(tmp_path, webhook.url, "plain-text-secret").deliver(Forward("k:new", EVENT))
    post = webhook.wait(1)[0]
    Webhook(b"plain-text-secret").verify(post["raw"], receiver_headers(post))


@pytest.mark.parametrize("secret_line, message", [
    ("", "secret is required"),
    ('secret = ""\n', "secret is required"),
    ('secret = "whsec_not base64!"\n', "must be base64"),
    ('secret = "whsec_c2hvcnQ="\n', "at least 16 bytes"),
])
def test_a_webhook_without_a_usable_secret_is_a_config_error(tmp_path, secret_line, message):
    path = tmp_path / "gateway.toml"
    path.write_text(f'[[webhooks]]\nurl = "http://127.0.0.1:9/x"\nname = "d"\n{secret_line}')
    with pytest.raises(ConfigError, match=message):
        config.load(path)


def test_init_generates_a_secret_a_live_receiver_verifies(tmp_path, webhook):
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url])
    raw, _ = device(s)
    try:
        secret = config.load(s.config).webhooks[0].secret
        assert secret.startswith("whsec_")
        raw.send(seq=1)
        inc = raw.ack()["inc"]
        post = webhook.wait(1)[0]
        event = Webhook(secret).verify(post["raw"], receiver_headers(post))
        assert event["incident"]["id"] == inc and event["event"] == "new"
    finally:
        raw.close()
        s.down()
