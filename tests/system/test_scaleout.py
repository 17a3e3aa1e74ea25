"""Two gateway processes on one shared subscription and one PostgreSQL store: every alert
acked, one incident per alert, each incident forwarded once, also across a kill -9."""
from __future__ import annotations

import time
from collections import Counter

import httpx

from simulator.stack import wait_port
from tests.conftest import wait_until
from tests.devices import RawDevice
from tests.gateway.test_gateway_support import custom_stack, pg_dsn  # noqa: F401 (fixture)

DEVICES = 4
PER_DEVICE = 25


def _created(api: str) -> float:
    text = httpx.get(f"{api}/metrics", timeout=5).text
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith("panic_incidents_created_total{"))


def _collect(devices: list[RawDevice], expected: dict[str, set[str]], timeout: float = 30) -> None:
    """Read acks until every expected alert id has been acked `received`."""
    deadline = time.monotonic() + timeout
    for d in devices:
        want = set(expected[d.dev])
        while want:
            ack = d.ack(timeout=max(0.1, deadline - time.monotonic()))
            assert ack["stage"] == "received", ack
            want.discard(ack["id"])


def test_two_gateways_share_the_load(tmp_path, webhook, pg_dsn):  # noqa: F811
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url], store="postgres", dsn=pg_dsn,
                     forward_lease_s=5, open_incidents_per_device=0)  # 25 alerts a button, one incident each
    config2, api2 = s.gateway_config("gateway-2")
    gw2 = s.start_gateway(config2, wait=False)
    wait_port(api2)
    wait_until(lambda: httpx.get(f"http://127.0.0.1:{api2}/healthz").status_code == 200)
    devices = []
    try:
        for n in range(DEVICES):
            creds = s.add_device(f"klj-kasin-rw01-rt{n + 1:02d}", -7985000 - n, 112625000 + n, kelurahan="Kasin")
            devices.append(RawDevice(creds, s.broker_port))
        expected = {d.dev: set() for d in devices}

        t0 = time.monotonic()
        for seq in range(1, PER_DEVICE + 1):
            for d in devices:
                d.send(seq=seq)
                expected[d.dev].add(f"{d.dev}:1:{seq}")
        for d in devices:  # retransmissions: must not make incidents
            for seq in range(1, 6):
                d.resend(seq)
        _collect(devices, expected)
        took = time.monotonic() - t0
        # Both gateways took a share of the stream.
        assert _created(s.api) > 0 and _created(f"http://127.0.0.1:{api2}") > 0
        assert _created(s.api) + _created(f"http://127.0.0.1:{api2}") == DEVICES * PER_DEVICE

        # Kill one gateway while alerts flow; what it had not acked waits in its session.
        s.kill_gateway(gw2)
        for seq in range(PER_DEVICE + 1, PER_DEVICE + 11):
            for d in devices:
                d.send(seq=seq)
                expected[d.dev].add(f"{d.dev}:1:{seq}")
        s.start_gateway(config2, wait=False)
        _collect(devices, {d.dev: {f"{d.dev}:1:{q}" for q in range(PER_DEVICE + 1, PER_DEVICE + 11)}
                           for d in devices})

        total = sum(len(v) for v in expected.values())
        incidents = s.incidents()
        assert len(incidents) == total
        assert {i["alert_id"] for i in incidents} == set().union(*expected.values())
        posts = webhook.wait(total, timeout=30)
        wait_until(lambda: all(x["pending"] == 0 for x in s.get("/api/forwards")["sinks"]), timeout=30)
        keys = Counter(p["headers"]["Idempotency-Key"] for p in webhook.posts)
        assert len(posts) == total and set(keys.values()) == {1}
        assert set(keys) == {f"{i['id']}:new" for i in incidents}
        print(f"\n{DEVICES * PER_DEVICE} alerts (+{DEVICES * 5} retransmissions) through two gateways, "
              f"all acked in {took:.2f} s")
    finally:
        for d in devices:
            d.close()
        s.down()
