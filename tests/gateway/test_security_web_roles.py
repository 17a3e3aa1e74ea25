"""Attacks on the web edges by a holder of a responder's or viewer's credentials (docs/security.md,
rows 3, 8 and 12), on the real stack: the project's mosquitto, the gateway as a process with
its SQLite store, a button speaking the real protocol, the gateway's own CLI for accounts."""
from __future__ import annotations

import os
import queue
import re
import subprocess
import threading

import httpx
import pytest

from simulator.stack import BIN, Stack
from tests.conftest import wait_until
from tests.devices import RawDevice
from tests.gateway.test_gateway_support import custom_stack, device

PASSWORD = "kata-sandi-uji-1"
HOLDER, PHONE, ADDRESS = "Ibu Wahyuni", "0812-3456-7890", "Jl. Kauman Gg. III No. 12"


def add_user(stack: Stack, name: str, role: str, unit: str = "") -> None:
    args = ["user", "add", name, "--role", role, "--password-stdin"] + (["--unit", unit] if unit else [])
    subprocess.run([str(BIN / "panic-gateway"), *args], input=PASSWORD + "\n", text=True, check=True,
                   capture_output=True, env=dict(os.environ, PANIC_CONFIG=str(stack.config)))


def token(stack: Stack, role: str, unit: str = "") -> str:
    return stack.cli("token", "create", "--role", role, *(["--unit", unit] if unit else [])).stdout.strip()


def console_login(stack: Stack, name: str) -> tuple[httpx.Client, str]:
    """A signed-in console client and its session's CSRF token."""
    c = httpx.Client(base_url=stack.api, follow_redirects=False, timeout=10)
    login_csrf = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
    assert login_csrf
    r = c.post("/console/login", data={"csrf": login_csrf.group(1), "username": name, "password": PASSWORD})
    assert r.status_code == 303, r.text[:300]
    page = c.get("/console/responder" if "responder" in r.headers["location"] else "/console/").text
    csrf = re.search(r'name="csrf" value="([^"]+)"', page) or re.search(r'"csrf": "([^"]+)"', page)
    assert csrf
    return c, csrf.group(1)


class Web:
    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.tokens = {"operator": token(stack, "operator"), "viewer": token(stack, "viewer"),
                       "unit1": token(stack, "responder", "sabhara-1"),
                       "unit2": token(stack, "responder", "sabhara-2")}
        for name, role, unit in (("op", "operator", ""), ("viewer", "viewer", ""),
                                 ("resp1", "responder", "sabhara-1"), ("resp2", "responder", "sabhara-2"),
                                 ("nounit", "responder", "")):
            add_user(stack, name, role, unit)
        self.buttons: list[RawDevice] = []

    def api(self, who: str) -> httpx.Client:
        return httpx.Client(base_url=self.stack.api, timeout=10,
                            headers={"Authorization": f"Bearer {self.tokens[who]}"})

    def button(self, dev: str) -> RawDevice:
        d, _ = device(self.stack, dev, holder=HOLDER, phone=PHONE, address=ADDRESS)
        self.buttons.append(d)
        return d

    def press(self, d: RawDevice, seq: int) -> str:
        d.send(seq)
        ack = d.ack(10)
        assert ack["stage"] == "received"
        return ack["inc"]

    def dispatch(self, inc: str, unit: str) -> None:
        r = self.api("operator").post(f"/api/incidents/{inc}/dispatch", json={"unit": unit})
        assert r.status_code == 200, r.text


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    stack = custom_stack(tmp_path_factory.mktemp("web-roles") / "state", escalate_after_s=2)
    w = Web(stack)
    yield w
    for d in w.buttons:
        d.close()
    stack.down()


# --- row 3: a responder closes only what was dispatched to its own unit ------------------------
def test_a_responder_token_cannot_close_a_call_never_dispatched_to_it(web):
    d = web.button("klj-kauman-rw05-rt01")
    inc = web.press(d, 1)
    for action in ("resolve", "on_scene", "en_route"):
        r = web.api("unit1").post(f"/api/incidents/{inc}/{action}", json={"note": "done"})
        assert r.status_code == 403 and "own unit" in r.json()["error"], (action, r.text)
    # The call stays open and escalates as it should; the button was never told "resolved".
    got = wait_until(lambda: (i := web.api("operator").get(f"/api/incidents/{inc}").json())["escalated"] and i,
                     10, what="escalated")
    assert got["state"] == "new"
    with pytest.raises(queue.Empty):
        d.ack(0.5)


def test_a_responder_acts_only_on_its_own_units_dispatch_and_the_button_hears_it(web):
    d = web.button("klj-kauman-rw05-rt02")
    inc = web.press(d, 1)
    web.dispatch(inc, "sabhara-2")
    assert d.ack(5)["stage"] == "dispatched"
    # Another unit's token and console session: refused, whatever the state allows.
    assert web.api("unit1").post(f"/api/incidents/{inc}/resolve").status_code == 403
    phone, csrf = console_login(web.stack, "resp1")
    r = phone.post(f"/console/incidents/{inc}/resolve", data={"csrf": csrf},
                   headers={"Accept": "application/json"})
    assert r.status_code == 403
    # A responder without a unit can do nothing at all.
    nounit, csrf0 = console_login(web.stack, "nounit")
    r = nounit.post(f"/console/incidents/{inc}/on_scene", data={"csrf": csrf0}, headers={"Accept": "application/json"})
    assert r.status_code == 403
    assert web.api("operator").get(f"/api/incidents/{inc}").json()["state"] == "dispatched"
    # The unit it was dispatched to: its token and its console user both act.
    r = web.api("unit2").post(f"/api/incidents/{inc}/on_scene")
    assert r.status_code == 200 and r.json()["state"] == "on_scene"
    assert d.ack(5)["stage"] == "on_scene"
    own, csrf2 = console_login(web.stack, "resp2")
    r = own.post(f"/console/incidents/{inc}/resolve", data={"csrf": csrf2}, headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.json()["state"] == "resolved"
    assert d.ack(5)["stage"] == "resolved"


def test_a_responder_token_without_a_unit_can_do_nothing(web):
    r = web.stack.cli("token", "create", "--role", "responder")
    assert "without --unit" in r.stderr
    bare = httpx.Client(base_url=web.stack.api, timeout=10, headers={"Authorization": f"Bearer {r.stdout.strip()}"})
    d = web.button("klj-kauman-rw05-rt06")
    inc = web.press(d, 1)
    web.dispatch(inc, "sabhara-1")
    assert bare.post(f"/api/incidents/{inc}/on_scene").status_code == 403
    assert bare.get(f"/api/incidents/{inc}").status_code == 404
    assert bare.get("/api/incidents").json() == {"incidents": []}


# --- row 12: what each role reads ------------------------------------------------------------
def test_responders_read_only_their_units_incidents_and_viewers_no_holder_data(web):
    d = web.button("klj-kauman-rw05-rt03")
    mine, other, undispatched = web.press(d, 1), web.press(d, 2), web.press(d, 3)
    web.dispatch(mine, "sabhara-1")
    web.dispatch(other, "sabhara-2")

    listed = web.api("unit1").get("/api/incidents").json()["incidents"]
    assert {i["unit"] for i in listed} == {"sabhara-1"} and mine in {i["id"] for i in listed}
    got = web.api("unit1").get(f"/api/incidents/{mine}").json()
    assert got["device"]["holder"] == HOLDER and got["device"]["phone"] == PHONE  # it is on its way there
    for hidden in (other, undispatched):
        assert web.api("unit1").get(f"/api/incidents/{hidden}").status_code == 404
        assert web.api("unit1").get(f"/api/incidents/{hidden}.cap").status_code == 404
    for who in ("unit1", "viewer"):
        devices = web.api(who).get("/api/devices").json()["devices"]
        assert devices and all(dv["holder"] == dv["phone"] == dv["address"] == "" for dv in devices), who
        one = web.api(who).get(f"/api/devices/{d.dev}").json()
        assert one["holder"] == one["phone"] == one["address"] == "", who

    # A viewer reads every incident, but no holder's name, phone or address.
    seen = web.api("viewer").get(f"/api/incidents/{other}").json()
    assert seen["id"] == other and seen["device"]["holder"] == seen["device"]["phone"] == ""
    listed = web.api("viewer").get("/api/incidents").json()["incidents"]
    assert {mine, other, undispatched} <= {i["id"] for i in listed}
    assert all(i["device"]["phone"] == "" for i in listed if i.get("device"))
    viewer, _ = console_login(web.stack, "viewer")
    for path in ("/console/", "/console/queue.json", f"/console/incidents/{other}", "/console/devices"):
        text = viewer.get(path).text
        assert PHONE not in text and HOLDER not in text and ADDRESS not in text, path
    # The desk reads everything.
    desk = web.api("operator").get(f"/api/incidents/{other}").json()
    assert desk["device"]["phone"] == PHONE
    op, _ = console_login(web.stack, "op")
    assert PHONE in op.get(f"/console/incidents/{other}").text

    # A responder's console: its own unit's calls only, in the page, the queue data and the stream.
    phone, _ = console_login(web.stack, "resp1")
    assert phone.get(f"/console/incidents/{other}").status_code == 404
    assert HOLDER in phone.get(f"/console/incidents/{mine}").text
    cards = phone.get("/console/queue.json").json()["incidents"]
    assert mine in {c["id"] for c in cards} and all(c["unit"] == "sabhara-1" for c in cards)
    assert PHONE not in phone.get("/console/devices").text


# --- row 8: a live stream ends with its session ---------------------------------------------------
def _read_stream(client: httpx.Client, lines: list[str], ended: threading.Event) -> None:
    try:
        with client.stream("GET", "/console/events", timeout=httpx.Timeout(10, read=60)) as r:
            lines.append(f"status {r.status_code}")
            for line in r.iter_lines():
                lines.append(line)
    except httpx.HTTPError as exc:
        lines.append(f"error {exc!r}")
    finally:
        ended.set()


def test_the_live_stream_stops_when_its_session_is_logged_out(web):
    d = web.button("klj-kauman-rw05-rt04")
    desk, csrf = console_login(web.stack, "op")
    lines: list[str] = []
    ended = threading.Event()
    threading.Thread(target=_read_stream, args=(desk, lines, ended), daemon=True).start()
    wait_until(lambda: "status 200" in lines, 10, what="stream open")
    first = web.press(d, 1)
    wait_until(lambda: any(first in line for line in lines), 10, what="first incident streamed")
    # The same session is logged out (from another tab or by the user): its stream must end.
    other = httpx.Client(base_url=web.stack.api, follow_redirects=False, timeout=10, cookies=desk.cookies)
    assert other.post("/console/logout", data={"csrf": csrf}).status_code == 303
    after = len(lines)
    second = web.press(d, 2)
    assert ended.wait(15), "the stream kept running after logout"
    assert not any(second in line or HOLDER in line for line in lines[after:]), "data streamed after logout"
    desk.close()


def test_the_live_stream_stops_when_the_account_loses_its_role(web):
    add_user(web.stack, "demoted", "operator")
    desk, _ = console_login(web.stack, "demoted")
    lines: list[str] = []
    ended = threading.Event()
    threading.Thread(target=_read_stream, args=(desk, lines, ended), daemon=True).start()
    wait_until(lambda: "status 200" in lines, 10, what="stream open")
    add_user(web.stack, "demoted", "viewer")  # the same account, now a viewer
    d = web.button("klj-kauman-rw05-rt05")
    inc = web.press(d, 1)
    assert ended.wait(15), "the stream kept running for a demoted account"
    assert not any(inc in line for line in lines)
    desk.close()
