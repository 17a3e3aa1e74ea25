"""The shared auth of the API and the console, on the real app over a real SQLite store.

One credentials backend reads a bearer token or a session cookie; each is good for its own
edge only, and the role checks of auth.needs answer 403 (not 401) to a signed-in caller.
"""
from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway.auth import DESK, ROLE_SCOPES, new_token, token_hash
from gateway.config import Config
from gateway.console import accounts
from gateway.console.hub import Hub
from gateway.console.settings import ConsoleSettings
from gateway.models import Alert, Device, Incident
from gateway.store.sqlite import SqliteStore
from gateway.web import build_app

PASSWORD = "kata-sandi-uji-1"
ROLES = ("viewer", "responder", "operator", "admin")
DEV = "klj-kauman-rw05-rt03"


def found(pattern: str, text: str) -> str:
    m = re.search(pattern, text)
    assert m, f"{pattern!r} not in the page"
    return m.group(1)


class App:
    def __init__(self, tmp: Path) -> None:
        self.store = SqliteStore(tmp / "g.db")
        self.changed: list[Incident] = []
        self.requeued = 0
        self.app = build_app(store=self.store, cfg=Config(path=tmp / "gateway.toml"),
                             console_settings=ConsoleSettings(), hub=Hub(), health=lambda: {"ok": True},
                             on_change=self.changed.append, on_requeue=self._requeued)
        now = time.time_ns() // 1_000_000
        self.tokens: dict[str, str] = {}
        for role in ROLES:
            self.tokens[role] = new_token()
            self.store.add_token(token_hash(self.tokens[role]), role, f"script-{role}", now)
            accounts.set_user(self.store, role, role, PASSWORD, "sabhara-2" if role == "responder" else "", now)
        self.store.add_device(Device(id=DEV, secret="s" * 64, mqtt_password="p", kelurahan="Kauman", created_ms=1))

    def _requeued(self) -> None:
        self.requeued += 1

    def client(self) -> TestClient:
        return TestClient(self.app, base_url="http://testserver", follow_redirects=False)

    def bearer(self, role: str) -> TestClient:
        c = self.client()
        c.headers["Authorization"] = f"Bearer {self.tokens[role]}"
        return c

    def session(self, role: str) -> TestClient:
        c = self.client()
        page = c.get("/console/login").text
        token = found(r'name="csrf" value="([^"]+)"', page)
        r = c.post("/console/login", data={"csrf": token, "username": role, "password": PASSWORD})
        assert r.status_code == 303, r.text
        return c


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    a = App(tmp_path_factory.mktemp("web"))
    yield a
    a.store.close()


def new_incident(web: App, seq: int) -> str:
    now = time.time_ns() // 1_000_000
    a = Alert(id=f"{DEV}:1:{seq}", dev=DEV, boot=1, seq=seq, kind="panic", t=now - 50, age=50, lat6=-7982600,
              lon6=112627000, acc=25, src="fixed", batt=80, rssi=-60, ref=None, received_ms=now, body="{}")
    inc = web.store.ingest([a])[0].incident
    assert inc is not None
    return inc.id


def test_role_scopes_follow_the_hierarchy():
    assert ROLE_SCOPES["viewer"] == {"viewer", DESK}
    assert ROLE_SCOPES["responder"] == {"viewer", "responder"}  # the field: no desk screens
    assert ROLE_SCOPES["operator"] == {"viewer", "responder", "operator", DESK}
    assert ROLE_SCOPES["admin"] == {"viewer", "responder", "operator", "admin", DESK}


def test_bearer_token_works_on_the_api_and_is_no_console_session(web):
    c = web.bearer("operator")
    assert c.get("/api/incidents").status_code == 200
    assert c.get("/api/devices").status_code == 200
    # The same token on the console's pages: sent to the login page, or 401 for scripts.
    r = c.get("/console/")
    assert r.status_code == 303 and r.headers["location"].startswith("/console/login")
    assert c.get("/console/queue.json", headers={"Accept": "application/json"}).status_code == 401
    assert c.get("/console/events").status_code == 401
    assert c.post("/console/incidents/inc-000000000000/acknowledge",
                  headers={"Accept": "application/json"}).status_code == 401


def test_console_session_cannot_call_the_bearer_only_api(web):
    c = web.session("admin")
    assert c.get("/console/").status_code == 200
    assert c.get("/console/queue.json").status_code == 200
    # The cookie is scoped to /console by the browser; a script sending it anyway is still refused.
    cookie = c.cookies.get("pbh_session")
    assert cookie
    api = web.client()
    api.cookies.set("pbh_session", cookie)
    for path in ("/api/incidents", "/api/devices", "/api/report", "/api/forwards/dead"):
        r = api.get(path)
        assert r.status_code == 401 and r.json() == {"error": "bearer token required"}, path
    assert api.post("/api/incidents/inc-000000000000/acknowledge").status_code == 401
    assert api.post("/api/forwards/dead/1/retry").status_code == 401


def test_bad_and_unknown_tokens_get_401_with_the_reason(web):
    c = web.client()
    assert c.get("/api/incidents").json() == {"error": "bearer token required"}
    r = c.get("/api/incidents", headers={"Authorization": "Bearer pbt_not-a-token"})
    assert r.status_code == 401 and r.json() == {"error": "unknown token"}
    assert r.headers["www-authenticate"] == "Bearer"
    r = c.get("/api/incidents", headers={"Authorization": "Basic b3A6cGFzcw=="})
    assert r.status_code == 401 and r.json() == {"error": "bearer token required"}
    # Probes never read credentials: a stale token in a monitor's config does not fail them.
    assert c.get("/healthz", headers={"Authorization": "Bearer pbt_not-a-token"}).status_code == 200


def test_roles_through_the_decorator_give_403(web):
    for role in ("viewer", "responder"):
        assert web.bearer(role).post("/api/forwards/dead/1/retry").status_code == 403, role
    for role in ("operator", "admin"):
        assert web.bearer(role).post("/api/forwards/dead/1/retry").status_code == 404, role  # allowed: no such letter
    # An id no 64-bit column holds (schemathesis found a 500: SQLite's integer overflow).
    assert web.bearer("operator").post(f"/api/forwards/dead/{2**100}/retry").status_code == 404
    assert web.requeued == 0
    responder = web.session("responder")
    assert responder.get("/console/dashboard").status_code == 403
    assert responder.get("/console/dashboard", headers={"Accept": "application/json"}).json() == {"error": "Forbidden"}
    assert responder.get("/console/responder").status_code == 200
    assert web.session("viewer").get("/console/responder").status_code == 403
    assert web.session("viewer").get("/console/dashboard").status_code == 200


def test_both_edges_take_actions_alike_and_tell_the_button(web):
    inc = new_incident(web, 1)
    api = web.bearer("operator")
    r = api.post(f"/api/incidents/{inc}/acknowledge", json={"note": "seen"})
    assert r.status_code == 200 and r.json()["state"] == "acknowledged"
    assert api.post(f"/api/incidents/{inc}/acknowledge").status_code == 409  # already acknowledged
    assert api.post(f"/api/incidents/{inc}/dispatch").json()["error"] == "dispatch needs a unit"
    desk = web.session("operator")
    # The page offers what lifecycle allows this role in this state, in the desk's order.
    page = desk.get(f"/console/incidents/{inc}").text
    assert re.findall(r'data-action="(\w+)"', page) == ["dispatch", "on_scene", "resolve", "false_alarm"]
    csrf = found(r'"csrf": "([^"]+)"', desk.get("/console/").text)
    r = desk.post(f"/console/incidents/{inc}/dispatch", data={"csrf": csrf, "unit": "sabhara-2"})
    assert r.status_code == 303 and r.headers["location"] == f"/console/incidents/{inc}?ok=dispatch"
    r = desk.post(f"/console/incidents/{inc}/dispatch", data={"csrf": csrf, "unit": "sabhara-2"},
                  headers={"Accept": "application/json"})
    assert r.status_code == 200 and r.json()["state"] == "dispatched"
    # A responder on its phone: the field's actions only.
    phone = web.session("responder")
    csrf = found(r'name="csrf" value="([^"]+)"', phone.get("/console/responder").text)
    r = phone.post(f"/console/incidents/{inc}/on_scene", data={"csrf": csrf, "next": "/console/responder"})
    assert r.status_code == 303 and r.headers["location"] == "/console/responder?ok=on_scene"
    r = phone.post(f"/console/incidents/{inc}/acknowledge", data={"csrf": csrf, "next": "/console/responder"})
    assert r.status_code == 403
    # A step that no longer fits: back to the page with the reason, or 409 for scripts.
    r = desk.post(f"/console/incidents/{inc}/on_scene", data={"csrf": found(r'"csrf": "([^"]+)"', desk.get("/console/").text)})
    assert r.status_code == 303 and "err=already%20on_scene" in r.headers["location"]
    assert [(i.id, i.state) for i in web.changed] == [(inc, "acknowledged"), (inc, "dispatched"),
                                                       (inc, "dispatched"), (inc, "on_scene")]
    events = web.store.events(inc)
    assert [e.actor for e in events[1:]] == ["operator:script-operator", "operator:operator",
                                                "operator:operator", "responder:responder"]
    web.changed.clear()


def test_actions_refused_by_role_before_the_incident_is_read(web):
    # A viewer may never acknowledge: 403 whether or not the incident exists.
    assert web.bearer("viewer").post("/api/incidents/inc-000000000000/acknowledge").status_code == 403
    assert web.bearer("responder").post("/api/incidents/inc-000000000000/dispatch").status_code == 403
    assert web.bearer("operator").post("/api/incidents/inc-000000000000/fly").status_code == 404
    assert web.bearer("operator").post("/api/incidents/inc-000000000000/acknowledge").status_code == 404
    viewer = web.session("viewer")
    csrf = found(r'"csrf": "([^"]+)"', viewer.get("/console/").text)
    r = viewer.post("/console/incidents/inc-000000000000/acknowledge",
                    headers={"X-CSRF-Token": csrf, "Accept": "application/json"})
    assert r.status_code == 403
    assert web.changed == []


def test_security_headers_on_the_console_only(web):
    page = web.client().get("/console/login")
    assert page.headers["x-frame-options"] == "DENY"
    assert "script-src 'self';" in page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    # Also on the console's refusals, which the auth layer answers before any page runs.
    refused = web.client().get("/console/events")
    assert refused.status_code == 401 and refused.headers["x-frame-options"] == "DENY"
    api = web.bearer("viewer").get("/api/incidents")
    assert "content-security-policy" not in api.headers


def test_csrf_sent_as_a_file_is_refused_not_a_crash(web):
    c = web.session("operator")
    r = c.post("/console/logout", files={"csrf": ("csrf.txt", b"x")}, headers={"Accept": "application/json"})
    assert r.status_code == 403 and r.json() == {"error": "csrf"}
    assert c.get("/console/").status_code == 200  # still logged in


def test_non_ascii_csrf_is_refused_not_a_crash(web):
    c = web.session("operator")
    r = c.post("/console/logout", data={"csrf": "tökén"}, headers={"Accept": "application/json"})
    assert r.status_code == 403
    fresh = web.client()
    fresh.get("/console/login")
    r = fresh.post("/console/login", data={"csrf": "tökén", "username": "operator", "password": PASSWORD})
    assert r.status_code == 403 and "pbh_session" not in r.headers.get("set-cookie", "")
