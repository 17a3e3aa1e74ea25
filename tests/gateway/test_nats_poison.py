"""An alert JetStream has handed out POISON_DELIVERIES times without anyone settling it
(every gateway that took it died first) is dead-lettered unprocessed when it comes again,
and the button is told `rejected`, instead of going round the gateways for ever."""
from __future__ import annotations

import asyncio
import time

import nats

from gateway import config
from gateway.ingest import POISON_DELIVERIES
from gateway.store import open_store
from tests.devices import RawDevice
from tests.gateway.test_gateway_support import KAUMAN, pg_dsn  # noqa: F401 (fixture)
from tests.gateway.test_nats_support import nats_stack


async def _take_without_settling(servers: list[str], password: str, times: int, ack_wait_s: float) -> int:
    """Pull the alert from the gateways' consumer `times` times, as a gateway that dies before its ack."""
    nc = await nats.connect(servers=servers, user="gateway", password=password)
    try:
        psub = await nc.jetstream().pull_subscribe("panic.v1.*.alert", durable="gateways", stream="PANIC_ALERTS")
        delivered = 0
        deadline = time.monotonic() + 60
        while delivered < times and time.monotonic() < deadline:
            try:
                [m] = await psub.fetch(1, timeout=ack_wait_s + 2)
            except nats.errors.TimeoutError:
                continue
            delivered = m.metadata.num_delivered
        return delivered
    finally:
        await nc.close()


def test_an_alert_delivered_too_often_is_dead_lettered(tmp_path, pg_dsn):  # noqa: F811
    s, cluster = nats_stack(tmp_path / "state", pg_dsn, ack_wait_s=1)
    dev = None
    try:
        gw = s.start_gateway()  # it makes the stream and the shared consumer
        creds = s.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman")
        gw.terminate()
        gw.wait(10)
        s.gateways.remove(gw)
        dev = RawDevice(creds, cluster.nodes[0].mqtt_port)
        dev.send(seq=1)
        got = asyncio.run(_take_without_settling(cluster.cfg.nats.servers, cluster.cfg.mqtt.password,
                                                 POISON_DELIVERIES - 1, 1.0))
        assert got == POISON_DELIVERIES - 1
        s.start_gateway()
        told = dev.ack(timeout=30)
        assert told == {**told, "id": f"{creds['id']}:1:1", "stage": "rejected", "reason": "ingest_failed"}
        assert s.incidents() == []
        store = open_store(config.load(s.config))
        try:
            [dead] = store.dead_letters()
        finally:
            store.close()
        assert dead.alert_id == f"{creds['id']}:1:1" and dead.attempts == POISON_DELIVERIES
        assert "never settled" in dead.reason
    finally:
        if dev is not None:
            dev.close()
        s.down()
        cluster.down()
