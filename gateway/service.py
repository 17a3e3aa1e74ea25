"""`panic-gateway run`: ingest, forwarders and the API in one process."""
from __future__ import annotations

import logging

import uvicorn

from .api import create_app
from .config import Config
from .forward import Forwarder, mqtt_deliverer, sink_names, webhook_deliverer
from .ingest import Ingest
from .models import ACK_STAGE
from .store import open_store

log = logging.getLogger("panic.gateway")


def run(cfg: Config) -> None:
    store = open_store(cfg)
    sinks = sink_names(cfg.webhooks)
    forwarders: list[Forwarder] = []

    def wake_forwarders() -> None:
        for f in forwarders:
            f.wake.set()

    ingest = Ingest(cfg, store, sinks, on_stored=wake_forwarders)
    forwarders.append(Forwarder("mqtt", store, mqtt_deliverer(ingest.client, cfg.topic_root),
                                cfg.forward_dead_after_s))
    for name, hook in zip(sinks[1:], cfg.webhooks):
        forwarders.append(Forwarder(name, store, webhook_deliverer(hook), cfg.forward_dead_after_s))

    def health() -> dict:
        mqtt_ok = ingest.connected.is_set()
        return {"ok": mqtt_ok, "mqtt": mqtt_ok, "queue": ingest.queue.qsize(),
                "forwards": store.forward_stats()}

    ingest.start()
    for f in forwarders:
        f.start()
    def on_change(inc) -> None:
        """An operator or responder moved an incident: tell the button and the sinks."""
        device = ingest.registry(inc.dev)
        if device is not None:
            ingest.send_ack(device, inc.alert_id, ACK_STAGE[inc.state], inc.id, None)
        wake_forwarders()

    app = create_app(store, health, sinks, on_change)
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.api.host, port=cfg.api.port,
                                           log_level="warning", access_log=False))
    log.info("API on http://%s:%d", cfg.api.host, cfg.api.port)
    try:
        server.run()
    finally:
        for f in forwarders:
            f.stop()
        ingest.stop()
        store.close()
