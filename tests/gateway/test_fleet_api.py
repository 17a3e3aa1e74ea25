"""The fleet API (gateway/api_fleet.py) on the real gateway: operators read, admins command,
widen and halt; a command is audited under the caller's token."""
from __future__ import annotations

import hashlib

import httpx

from gateway import config
from gateway.store import open_store
from tests.conftest import wait_until
from tests.gateway.test_fleet_worker import BUNDLE, buttons, manifest
from tests.gateway.test_gateway_support import custom_stack


def test_roles_commands_and_the_rollout(tmp_path):
    stack = custom_stack(tmp_path / "state")
    [b] = buttons(stack, 1)
    store = open_store(config.load(stack.config))
    try:
        dev = b.dev
        # Operators read; only admins act. A viewer reads neither the fleet nor the audit log.
        assert stack.post(f"/api/devices/{dev}/commands", role="operator", op="locate").status_code == 403
        for path in ("/api/fleet", f"/api/devices/{dev}/commands"):
            r = httpx.get(stack.api + path, headers={"Authorization": f"Bearer {stack.token('viewer')}"}, timeout=5)
            assert r.status_code == 403
        r = stack.post(f"/api/devices/{dev}/commands", role="admin", op="locate")
        assert r.status_code == 202, r.text
        n = r.json()["n"]
        wait_until(lambda: store.command(dev, n)["ok"] is True, 10, what="locate answered")
        log = stack.get(f"/api/devices/{dev}/commands", role="operator")["commands"]
        assert log[0]["n"] == n and log[0]["by"].startswith("admin:") and log[0]["result"]["op"] == "locate"
        for bad in ({"op": "set", "args": {"mqtt_password": "x"}}, {"op": "ota", "args": {}}, {"op": 3},
                    {"op": "reboot", "args": {"now": 1}}):
            assert stack.post(f"/api/devices/{dev}/commands", role="admin", **bad).status_code == 400, bad
        assert stack.post("/api/devices/klj-nobody/commands", role="admin", op="locate").status_code == 404
        assert b.commands[-1]["op"] == "locate" and len(b.commands) == 1  # nothing refused was sent

        assert stack.post("/api/fleet/rollout", role="admin", to="100%").status_code == 409  # no release yet
        store.add_release(seq=13, fw="1.13.0", manifest=manifest(13), signature=b"s", bundle=BUNDLE,
                          sha256=hashlib.sha256(BUNDLE).hexdigest(), by="rm", at_ms=1)
        store.start_rollout(13, 5, by="rm", at_ms=2)
        assert stack.post("/api/fleet/halt", role="operator").status_code == 403
        r = stack.post("/api/fleet/halt", role="admin", why="field report")
        assert r.status_code == 200 and r.json()["why"].endswith(": field report")
        assert stack.post("/api/fleet/rollout", role="admin", to="100%").status_code == 409  # halted
        assert stack.post("/api/fleet/rollout", role="admin", to="1000%").status_code == 400
        r = stack.post("/api/fleet/rollout", role="admin", to="100%", resume=True)
        assert r.json() == {"seq": 13, "pct": 100.0, "state": "active"}
        wait_until(lambda: stack.get("/api/fleet", role="operator")["rollout"]["state"] == "done", 20,
                   interval=0.2, what="rollout done")
        st = stack.get("/api/fleet", role="operator")
        assert st["devices"][0]["fw"] == "1.13.0" and st["devices"][0]["rollout"] == "ok"
    finally:
        store.close()
        b.close()
        stack.down()
