"""A button's link diagnostics (reset cause, reconnects, last link error) from its status to
the store, /api/devices and the console's devices page, on the real broker, gateway and the
firmware under micropython; bad values are rejected and counted, old firmware still works."""
from __future__ import annotations

import json
import os
import re
import subprocess
from typing import Any

import httpx
import pytest

from gateway.domain.health import link_problem, link_problem_words, merge_status
from gateway.health import StatusError, parse_status
from gateway.models import Device
from gateway.store import Store
from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from simulator.stack import BIN, Stack
from tests.conftest import wait_until
from tests.gateway.test_gateway_support import device, pg_dsn  # noqa: F401 (fixture)

DEV = "klj-kauman-rw05-rt03"
TOPIC = f"panic/v1/{DEV}/status"
PASSWORD = "kata-sandi-uji-1"
RULES: dict[str, Any] = {"heartbeat_s": 60, "silent_factor": 2.5, "low_battery_pct": 20, "backlog_min": 5}


def status(**extra) -> bytes:
    return json.dumps({"v": 1, "dev": DEV, "state": "online", "fw": "1.0.0", "boot": 3, "up": 10,
                       "batt": 87, "rssi": -61, "outbox": 0, **extra}).encode()


@pytest.mark.parametrize("bad", [
    {"reset": "banana"}, {"reset": 3}, {"reset": ["wdt"]},
    {"reconnects": -1}, {"reconnects": "2"}, {"reconnects": 1.5}, {"reconnects": True},
    {"link_err": "nope"}, {"link_err": 0}, {"link_err": {"kind": "dns"}},
])
def test_bad_diagnostics_are_a_schema_error(bad):
    with pytest.raises(StatusError) as err:
        parse_status(TOPIC, status(**bad), "panic/v1")
    assert err.value.reason == "schema"
    assert next(iter(bad)) in str(err.value)


def test_diagnostics_are_kept_and_old_status_lacks_them():
    _, got = parse_status(TOPIC, status(reset="wdt", reconnects=4, link_err="dns"), "panic/v1")
    assert (got["reset"], got["reconnects"], got["link_err"]) == ("wdt", 4, "dns")
    _, got = parse_status(TOPIC, status(reset="pwron", reconnects=0, link_err=None), "panic/v1")
    assert "link_err" in got and got["link_err"] is None
    _, old = parse_status(TOPIC, status(), "panic/v1")
    assert not {"reset", "reconnects", "link_err"} & old.keys()


def test_merge_keeps_first_report_time_and_old_firmware_keeps_last_known():
    h = merge_status({}, {"state": "online", "reset": "wdt", "reconnects": 1, "link_err": "tls"}, 1000, **RULES)
    assert (h["reset_cause"], h["reconnects"], h["link_err"], h["link_err_ms"]) == ("wdt", 1, "tls", 1000)
    again = merge_status(h, {"state": "online", "reconnects": 1, "link_err": "tls"}, 2000, **RULES)
    assert again["link_err_ms"] == 1000  # the same error reported again: still since the first report
    other = merge_status(again, {"state": "online", "link_err": "auth"}, 3000, **RULES)
    assert (other["link_err"], other["link_err_ms"]) == ("auth", 3000)
    will = merge_status(other, {"state": "offline"}, 4000, **RULES)
    assert (will["link_err"], will["reset_cause"]) == ("auth", "wdt")  # the will carries none
    cleared = merge_status(will, {"state": "online", "link_err": None}, 5000, **RULES)
    assert cleared["link_err"] is None and cleared["link_err_ms"] is None


def test_link_problem_only_explains_a_device_not_heard_from():
    h = {"health": "online", "state": "online", "link_err": "auth"}
    assert link_problem(h) is None  # heard from: the error is history, not why it is missing
    assert link_problem_words(dict(h, health="silent")) == "wrong password"
    assert link_problem_words(dict(h, health="offline", state="offline", link_err="dns")) == "no DNS"
    assert link_problem_words(dict(h, health="offline", link_err="no_broker")) == "broker unreachable"
    assert link_problem_words(dict(h, health="offline", link_err="tls")) == "TLS failed"
    assert link_problem(dict(h, health="offline", link_err=None)) is None
    assert link_problem(dict(h, health="offline"), suspended=True) is None


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    s: Store = SqliteStore(tmp_path / "g.db") if request.param == "sqlite" else \
        PostgresStore(request.getfixturevalue("pg_dsn"))
    s.add_device(Device(id=DEV, secret="s" * 64, mqtt_password="p", kelurahan="Kauman", created_ms=1))
    yield s
    s.close()


def test_store_keeps_diagnostics_across_the_will(store):
    kw: dict[str, Any] = dict(retained=False, **RULES)
    store.record_status(DEV, {"state": "online", "reset": "wdt", "reconnects": 2, "link_err": "tls"}, 1000, **kw)
    store.record_status(DEV, {"state": "offline"}, 2000, **kw)
    h = store.device_health(DEV)[DEV]
    assert (h.health, h.reset_cause, h.reconnects, h.link_err, h.link_err_ms) == ("offline", "wdt", 2, "tls", 1000)
    assert link_problem_words(h._asdict()) == "TLS failed"


def _health(stack: Stack, dev: str = DEV) -> dict:
    return next(d for d in stack.get("/api/devices")["devices"] if d["id"] == dev)["health"]


def _rejected(stack: Stack, reason: str) -> float:
    return stack.metrics().get(f'panic_status_rejected_total{{reason="{reason}"}}', 0.0)


def _console_page(stack: Stack, path: str) -> str:
    env = dict(os.environ, PANIC_CONFIG=str(stack.config))
    subprocess.run([str(BIN / "panic-gateway"), "user", "add", "ops", "--role", "operator", "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True, env=env)
    with httpx.Client(base_url=stack.api, follow_redirects=True, timeout=10, cookies={"pbh_lang": "en"}) as c:
        m = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
        assert m, "no login form"
        c.post("/console/login", data={"csrf": m.group(1), "username": "ops", "password": PASSWORD})
        r = c.get(path)
        r.raise_for_status()
        assert "/console/login" not in str(r.url)
        return r.text


def _row(html: str, dev: str) -> str:
    m = re.search(r"<tr class=\"dev-row[^>]*>\s*<td class=\"mono\">" + re.escape(dev) + r"</td>(.*?)</tr>", html, re.S)
    assert m, f"no row for {dev} on the page"
    return m.group(1)


def test_firmware_diagnostics_reach_the_store_api_and_console(stack, make_device):
    fw = make_device(heartbeat_s=1, reconnect_min_ms=200, reconnect_max_ms=1000)
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
    first = wait_until(lambda: (h := _health(stack)).get("reset_cause") and h, what="diagnostics stored")
    assert (first["reset_cause"], first["reconnects"], first["link_err"]) == ("pwron", 0, None)

    # The broker goes away: the button's reconnects fail (no_broker) until it is back, and
    # the first status after the reconnect reports both.
    stack.stop_broker()
    fw.wait_for(lambda e: e["ev"] == "log" and "connect" in e.get("msg", ""), 15)
    stack.start_broker()
    back = wait_until(lambda: (h := _health(stack)).get("link_err") and h, timeout=30, what="link error stored")
    assert (back["link_err"], back["reconnects"], back["health"]) == ("no_broker", 1, "online")
    assert back["link_err_ms"] and back["link_problem"] is None  # online: nothing to explain

    fw.power_cut()  # the broker publishes the will: offline, and the last link error says why
    gone = wait_until(lambda: (h := _health(stack))["health"] == "offline" and h, timeout=15, what="offline")
    assert (gone["link_err"], gone["link_problem"], gone["reset_cause"]) == ("no_broker", "broker unreachable", "pwron")
    assert stack.get(f"/api/devices/{DEV}")["health"]["link_problem"] == "broker unreachable"

    row = _row(_console_page(stack, "/console/devices"), DEV)
    assert "link-problem" in row and "broker unreachable" in row
    assert "Reset: power-on" in row and "Reconnects: 1" in row


def test_bad_diagnostics_over_mqtt_are_counted_and_old_status_still_works(stack):
    button, _ = device(stack)
    try:
        before = _rejected(stack, "schema")
        button.publish(status(), TOPIC)  # firmware without diagnostics
        old = wait_until(lambda: (h := _health(stack))["health"] == "online" and h, what="old status")
        assert old["batt"] == 87 and old["reset_cause"] is None and old["link_err"] is None

        button.publish(status(batt=50, reset="wdt", reconnects=2, link_err="gremlins"), TOPIC)
        wait_until(lambda: _rejected(stack, "schema") == before + 1, what="schema rejection counted")
        assert _health(stack)["batt"] == 87  # nothing of the rejected status was kept

        button.publish(status(batt=50, reset="wdt", reconnects=2, link_err="tls"), TOPIC)
        h = wait_until(lambda: (h := _health(stack))["batt"] == 50 and h, what="good status")
        assert (h["reset_cause"], h["reconnects"], h["link_err"]) == ("wdt", 2, "tls")
        button.publish(status(batt=40), TOPIC)  # old firmware again
        h = wait_until(lambda: (h := _health(stack))["batt"] == 40 and h, what="second old status")
        assert (h["reset_cause"], h["link_err"]) == ("wdt", "tls")
    finally:
        button.close()


def test_wrong_password_leaves_the_gateway_blind_and_the_broker_log_tells(stack, make_device):
    # The gateway hears only what reaches the broker: a button refused at login can report
    # nothing. What shows is a device never heard from (or silent) and the broker's log line.
    fw = make_device(mqtt_password="not-the-password", reconnect_min_ms=200, reconnect_max_ms=1000)
    fw.wait_for(lambda e: e["ev"] == "log" and "connack rc=5" in e.get("msg", ""), 15)
    h = _health(stack)
    assert h["health"] == "unknown" and h["link_err"] is None and h["link_problem"] is None
    log = (stack.state / "mosquitto.log").read_text(errors="replace")
    # mosquitto names a login it refuses only by its source address ("Client <unknown>").
    assert "disconnected, not authorised" in log, log[-2000:]
