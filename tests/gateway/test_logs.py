"""Structured logs: `[gateway] log_format = "json"` gives one JSON object per line with
stable keys, the fields passed with `extra=`, and never a secret."""
from __future__ import annotations

import io
import json
import logging
import threading
import time
import warnings

import pytest

from gateway import config, logs, signing
from tests.conftest import assert_no_secrets_in_logs, secrets_of
from tests.gateway.test_gateway_support import custom_stack, device

KEYS = {"ts", "level", "logger", "msg"}


def emit(fmt: str, level: int, msg: str, *args, exc: BaseException | None = None, **extra) -> str:
    """What one log call writes through the gateway's formatter."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logs.formatter(fmt))
    logger = logging.getLogger(f"test.logs.{fmt}")
    logger.propagate = False
    logger.handlers = [handler]
    logger.setLevel(logging.DEBUG)
    logger.log(level, msg, *args, exc_info=exc, extra=extra or None)
    return out.getvalue()


def test_json_line_has_the_stable_keys_and_the_extra_fields():
    text = emit("json", logging.WARNING, "rejected alert: %s", "mac", event="alert_rejected", reason="mac",
                dev="klj-kauman-rw05-rt03")
    assert text.endswith("\n") and text.count("\n") == 1
    line = json.loads(text)
    assert set(line) >= KEYS
    assert line["level"] == "WARNING" and line["logger"] == "test.logs.json"
    assert line["msg"] == "rejected alert: mac"
    assert line["event"] == "alert_rejected" and line["reason"] == "mac" and line["dev"] == "klj-kauman-rw05-rt03"
    assert line["ts"].endswith("Z") and time.strptime(line["ts"][:19], "%Y-%m-%dT%H:%M:%S")


def test_json_keeps_one_line_per_event_with_newlines_and_tracebacks():
    try:
        raise RuntimeError("store down\nsecond line")
    except RuntimeError as exc:
        text = emit("json", logging.ERROR, "batch failed:\n%s", "detail", exc=exc)
    assert text.count("\n") == 1
    line = json.loads(text)
    assert line["msg"] == "batch failed:\ndetail"
    assert "RuntimeError: store down" in line["exc"]


def test_json_redacts_fields_named_for_credentials_and_stringifies_the_rest():
    line = json.loads(emit("json", logging.INFO, "device rotated", secret="s3cr3t", mqtt_password="pw",
                           token="t0k", path=logs))
    assert line["secret"] == line["mqtt_password"] == line["token"] == logs.REDACTED
    assert "s3cr3t" not in json.dumps(line)
    assert line["path"].startswith("<module 'gateway.logs'")


def test_text_format_is_one_readable_line():
    text = emit("text", logging.INFO, "connected to broker %s", "127.0.0.1:1883")
    assert " INFO test.logs.text: connected to broker 127.0.0.1:1883" in text
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)


def test_unknown_log_format_is_refused(tmp_path):
    with pytest.raises(ValueError, match="log format must be one of text, json"):
        logs.formatter("xml")
    path = tmp_path / "gateway.toml"
    path.write_text('[gateway]\nlog_format = "xml"\n')
    with pytest.raises(config.ConfigError, match="log_format must be one of text, json"):
        config.load(path)


def test_gateway_writes_json_lines_without_secrets(tmp_path):
    """A real gateway with log_format = "json": a wrong MAC is rejected with a structured
    line, every line of the log parses, and no device secret or password appears."""
    s = custom_stack(tmp_path / "state", log_format="json")
    try:
        button, creds = device(s)
        try:
            forged = signing.sign(button.body(1), "not-the-device-secret")
            button.publish(forged)
            deadline = time.monotonic() + 10
            while s.rejected("mac") < 1 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert s.rejected("mac") == 1
            button.send(2)
            assert button.ack()["stage"] == "received"
        finally:
            button.close()
        secrets = secrets_of(s)
    finally:
        s.down()
    assert {creds["secret"], creds["mqtt_password"]} <= secrets
    text = (s.state / "gateway0.log").read_text()
    lines = [json.loads(line) for line in text.splitlines()]  # every line is one JSON object
    assert lines and all(set(line) >= KEYS for line in lines)
    rejected = [line for line in lines if line.get("event") == "alert_rejected"]
    assert len(rejected) == 1
    assert rejected[0]["reason"] == "mac" and rejected[0]["dev"] == creds["id"]
    assert rejected[0]["level"] == "WARNING" and rejected[0]["logger"] == "panic.ingest"
    assert any("incident(s)" in line["msg"] for line in lines)
    for secret in secrets:
        assert secret not in text
    assert_no_secrets_in_logs(s)


@pytest.fixture
def restore_logging():
    root = logging.getLogger()
    handlers, level, hook = list(root.handlers), root.level, threading.excepthook
    # An earlier in-process CLI call may have left logging's warning capture on while pytest
    # has since put its own showwarning back: captureWarnings(True) would then be a no-op.
    logging.captureWarnings(False)
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)
    threading.excepthook = hook
    logging.captureWarnings(False)


def test_setup_sends_warnings_and_dying_threads_through_the_json_handler(restore_logging):
    out = io.StringIO()
    logs.setup("json", stream=out)

    def boom() -> None:
        raise RuntimeError("worker failed")
    t = threading.Thread(target=boom, name="forward-test")
    t.start()
    t.join()
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # whatever filters earlier tests left, this one is shown
        warnings.warn("deprecated option", UserWarning, stacklevel=1)
    logging.getLogger("panic.test").info("still here")
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    # Threads left by earlier tests in the same process may log here too: look for ours.
    died = [line for line in lines if line.get("event") == "thread_died" and line.get("thread_name") == "forward-test"]
    assert len(died) == 1
    assert "RuntimeError: worker failed" in died[0]["exc"]
    assert any(line["logger"] == "py.warnings" and "deprecated option" in line["msg"] for line in lines)
    assert any(line["msg"] == "still here" and line["logger"] == "panic.test" for line in lines)
