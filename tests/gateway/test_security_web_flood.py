"""One stolen button signing hundreds of alerts must not push a genuine call out of the
operators' view (docs/security.md, row 5), on the real stack: the project's mosquitto, the gateway
as a process, buttons speaking the real protocol, the console over HTTP."""
from __future__ import annotations

import os
import re
import subprocess

import httpx

from simulator.stack import BIN
from tests.gateway.test_gateway_support import custom_stack, device

PASSWORD = "kata-sandi-uji-1"
FLOOD = 520
CAP = 5  # [gateway] open_incidents_per_device, set below its default here


def test_a_flooding_button_cannot_push_a_genuine_call_out_of_the_queue(tmp_path):
    s = custom_stack(tmp_path / "state", open_incidents_per_device=CAP)
    genuine, _ = device(s, "klj-kauman-rw05-rt01")
    stolen, _ = device(s, "klj-kauman-rw05-rt02")
    try:
        genuine.send(1)
        call = genuine.ack(10)
        assert call["stage"] == "received"
        for seq in range(1, FLOOD + 1):
            stolen.send(seq)
        acks = [stolen.ack(20) for _ in range(FLOOD)]
        # Never lose a call: every alert is stored and acked, none rejected.
        assert {a["id"] for a in acks} == {f"{stolen.dev}:1:{i}" for i in range(1, FLOOD + 1)}
        assert {a["stage"] for a in acks} == {"received"}
        folded = [a for a in acks if a.get("reason") == "open_cap"]
        assert len(folded) == FLOOD - CAP and len({a["inc"] for a in acks}) == CAP

        # The default API list and the operators' queue still hold the genuine call.
        listed = s.get("/api/incidents")["incidents"]
        assert call["inc"] in {i["id"] for i in listed}
        assert sum(i["dev"] == stolen.dev for i in listed) == CAP
        # ... even when a client asks for fewer than the open ones.
        assert call["inc"] in {i["id"] for i in s.get("/api/incidents", limit=3)["incidents"]}
        subprocess.run([str(BIN / "panic-gateway"), "user", "add", "op", "--role", "operator", "--password-stdin"],
                       input=PASSWORD + "\n", text=True, check=True, capture_output=True,
                       env=dict(os.environ, PANIC_CONFIG=str(s.config)))
        with httpx.Client(base_url=s.api, follow_redirects=False, timeout=10) as c:
            m = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
            assert m
            c.post("/console/login", data={"csrf": m.group(1), "username": "op", "password": PASSWORD})
            cards = c.get("/console/queue.json").json()["incidents"]
        assert cards[0]["id"] == call["inc"]  # the longest wait on top
        # The operators are warned: the button is flagged, the count is exported.
        flooded = [c for c in cards if c["dev"] == stolen.dev]
        assert flooded and all("alert flood" in c["flag"] for c in flooded)
        assert s.metrics()["panic_alerts_folded_total"] == FLOOD - CAP
        # The folded alerts are on the newest open incident's timeline.
        newest = max(flooded, key=lambda c: c["received_ms"])["id"]
        stages = [e["stage"] for e in s.get(f"/api/incidents/{newest}")["events"]]
        assert stages.count("alert_folded") == FLOOD - CAP
    finally:
        genuine.close()
        stolen.close()
        s.down()
