"""Sinks on a live gateway (real mosquitto, real gateway process): a sink module from outside
the gateway plugged in by a config entry alone, routing by `events`, and a refused event
dead-lettered at once instead of stalling its sink's queue."""
from __future__ import annotations

import json
import os
import socket
import tomllib
from pathlib import Path

from gateway.config import write
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import custom_stack, device
from tests.gateway.test_sinks_delivery import ScriptedReceiver, scripted  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[2]


def _pending(s) -> int:
    return sum(x["pending"] for x in s.get("/api/forwards")["sinks"])


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_sink_module_plugged_in_by_config_gets_only_its_events(tmp_path, monkeypatch):
    # The gateway finds the module as a deployment finds its own: on the process's Python path.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p))
    s = custom_stack(tmp_path / "state", escalate_after_s=1, start=False)
    data = tomllib.loads(s.config.read_text())
    data["sinks"] = [
        {"type": "tests.gateway.sample_sink", "name": "journal", "path": "journal.jsonl"},
        {"type": "tests.gateway.sample_sink", "name": "escalations", "path": "escalations.jsonl",
         "events": ["escalated"]},
    ]
    write(data, s.config)
    journal, escalations = s.state / "journal.jsonl", s.state / "escalations.jsonl"
    s.start_broker()
    s.start_gateway()
    raw, _ = device(s)
    try:
        raw.send(seq=1)
        inc = raw.ack()["inc"]
        wait_until(lambda: _lines(escalations))  # nobody acknowledged it within escalate_after_s
        assert s.post(f"/api/incidents/{inc}/acknowledge").status_code == 200
        wait_until(lambda: _pending(s) == 0 and len(_lines(journal)) == 3)

        assert [e["idem_key"] for e in _lines(escalations)] == [f"{inc}:escalated"]
        assert [e["idem_key"] for e in _lines(journal)] == [f"{inc}:new", f"{inc}:escalated", f"{inc}:acknowledged"]
        last = _lines(journal)[-1]
        assert last["event"] == "acknowledged" and last["incident"]["id"] == inc
        assert last["incident"]["escalated"] == 1
        stats = {x["sink"]: x for x in s.get("/api/forwards")["sinks"]}
        assert stats["journal"]["delivered"] == 3 and stats["escalations"]["delivered"] == 1
        assert s.metrics()['panic_forwards_total{result="ok",sink="escalations"}'] == 1
    finally:
        raw.close()
        s.down()


def test_refused_event_is_dead_at_once_and_does_not_hold_up_the_rest(tmp_path, scripted):  # noqa: F811
    receiver: ScriptedReceiver = scripted(422)
    # A retry would come only after a minute: every later event would wait behind it.
    s = custom_stack(tmp_path / "state", webhooks=[receiver.url], forward_backoff_ms=60_000)
    raw, _ = device(s)
    try:
        raw.send(seq=1)
        inc = raw.ack()["inc"]
        dead = wait_until(lambda: s.get("/api/forwards/dead")["dead"])
        assert [(d["idem_key"], d["attempts"], d["last_error"]) for d in dead] == [(f"{inc}:new", 1, "HTTP 422")]
        assert s.post(f"/api/incidents/{inc}/acknowledge").status_code == 200
        wait_until(lambda: len(receiver.posts) == 2)
        assert receiver.posts == [(422, f"{inc}:new"), (204, f"{inc}:acknowledged")]
        m = s.metrics()
        assert m['panic_forwards_total{result="refused",sink="webhook:dispatch0"}'] == 1
        assert m.get('panic_forwards_total{result="retry",sink="webhook:dispatch0"}', 0) == 0
    finally:
        raw.close()
        s.down()


def test_pending_forwards_of_a_removed_sink_are_reported_at_start(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{sock.getsockname()[1]}/gone"  # nothing listens there afterwards
    s = custom_stack(tmp_path / "state", webhooks=[closed], forward_backoff_ms=60_000)
    raw, _ = device(s)
    try:
        raw.send(seq=1)
        raw.ack()
        wait_until(lambda: {x["sink"]: x["pending"] for x in s.get("/api/forwards")["sinks"]}
                   .get("webhook:dispatch0") == 1)
        s.down()
        log = s.state / "gateway0.log"  # each start appends to it
        assert "pending forwards" not in log.read_text()
        data = tomllib.loads(s.config.read_text())
        del data["webhooks"]
        write(data, s.config)
        s.start_broker()
        s.start_gateway()
        assert "pending forwards for sinks not in the config, left undelivered: webhook:dispatch0 " in log.read_text()
    finally:
        raw.close()
        s.down()
