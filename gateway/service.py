"""`panic-gateway run`: ingest, forwarders and the API in one process."""
from __future__ import annotations

import logging

import uvicorn

from . import broker, fleet_gauges, metrics, natsconf
from .config import Config
from .console.hub import Hub
from .console.settings import load as console_settings
from .escalation import Escalator
from .fleet import FleetWorker
from .forward import Forwarder
from .health import HealthMonitor
from .ingest import Ingest
from .models import ACK_STAGE
from .retention import ForwardRetention
from .sinks import SinkContext
from .sinks import build as build_sinks
from .store import open_store
from .web import build_app

log = logging.getLogger("panic.gateway")


def run(cfg: Config) -> None:
    store = open_store(cfg)
    # Every sink, built from its config entry; the store queues each event for those that take it.
    sink_ctx = SinkContext(cfg, store=store)
    sinkset = build_sinks(cfg.sinks, sink_ctx)
    store.route = sinkset.route
    orphaned = sinkset.unconfigured(row.sink for row in store.forward_stats() if row.pending)
    if orphaned:
        log.warning("pending forwards for sinks not in the config, left undelivered: %s "
                    "(a sink removed or renamed; restore its entry to deliver them)", ", ".join(orphaned))
    forwarders: list[Forwarder] = []
    hub = Hub()  # the console's live streams hear every stored change through it

    def wake_forwarders() -> None:
        for f in forwarders:
            f.wake.set()
        hub.poke()

    store.on_transition = metrics.observe_transition
    health_monitor: HealthMonitor | None = None
    ingest = Ingest(cfg, store, on_stored=wake_forwarders,
                    on_status=lambda msgs: health_monitor.submit(msgs) if health_monitor else None)
    health_monitor = HealthMonitor(cfg, store, ingest.registry, done=ingest.status_done,
                                   on_event=wake_forwarders)
    escalator = Escalator(store, cfg.escalate_after_s, steps=cfg.escalation, on_escalated=wake_forwarders)
    sink_ctx.mqtt = ingest.transport
    # The MQTT client id names this gateway: its own leases are its to take back after a restart.
    forwarders.extend(Forwarder(sink, store, dead_after_s=cfg.forward_dead_after_s, owner=cfg.mqtt.client_id,
                                backoff_ms=cfg.forward_backoff_ms, backoff_max_s=cfg.forward_backoff_max_s,
                                lease_s=cfg.forward_lease_s)
                      for sink in sinkset)

    retention = ForwardRetention(store, cfg)
    # Commands, results, OTA chunks and the rollout: a connection and a thread of their own,
    # so no chunk ever queues ahead of an alert (gateway/fleet.py).
    fleet: FleetWorker | None = None
    if cfg.fleet.workers and cfg.mqtt.engine == "mosquitto":
        fleet = FleetWorker(cfg, store, ingest.registry)
        fleet.on_change = hub.poke
    elif cfg.fleet.workers:
        log.warning("no fleet worker on a NATS cluster yet: releases and commands need a mosquitto gateway")

    def health() -> dict:
        """From memory only: /healthz is unauthenticated, so it must not cost a query."""
        mqtt_ok = ingest.connected.is_set()  # with a backup broker: either of them
        progress = ingest.progress()
        queue = retention.snapshot()
        out = {"ok": mqtt_ok and progress["ok"], "mqtt": mqtt_ok, "ingest": progress, "queue": progress["queue"],
               "forwards": queue["sinks"], "forwards_at_ms": queue["at_ms"]}
        links = getattr(ingest.transport, "links", None)
        if links is not None:
            out["brokers"] = links()
        return out

    metrics.ingest_queue.set_function(ingest.queue.qsize)
    fleet_gauges.register(store)
    health_monitor.start()
    ingest.start()
    escalator.start()
    retention.start()
    if fleet is not None:
        fleet.start()
    for f in forwarders:
        f.start()

    def on_change(inc) -> None:
        """An operator or responder moved an incident: tell the button and the sinks."""
        device = ingest.registry(inc.dev)
        if device is not None:
            ingest.send_ack(device, inc.alert_id, ACK_STAGE[inc.state], inc.id, None)
            if inc.false_alarm and device.status == "active":
                current = store.get_device(inc.dev)
                if current is not None and current.status != "active":
                    # The false-alarm policy suspended it: revoke its broker login now.
                    if cfg.mqtt.engine == "nats":
                        natsconf.sync(cfg, store.list_devices())
                    else:
                        for r in broker.sync_all(cfg, store.list_devices()):
                            if r.error:
                                log.error("%s broker not told of the suspension of %s: %s", r.broker, inc.dev,
                                          r.error)
                    log.warning("device %s suspended by the false-alarm policy", inc.dev)
        wake_forwarders()

    app = build_app(store=store, cfg=cfg, console_settings=console_settings(cfg), hub=hub, health=health,
                    on_change=on_change, on_requeue=wake_forwarders)
    app.state.sms_ingest = ingest.ingest_external  # the SMS relay's way in (gateway/api_sms.py)
    app.state.fleet = fleet  # the fleet API's way to send a command now (gateway/api_fleet.py)
    # log_config=None: uvicorn's loggers go through the gateway's handler (text or JSON lines)
    # instead of handlers of its own.
    # Proxy headers only from the configured proxies: uvicorn otherwise believes any client on
    # 127.0.0.1, and a spoofed X-Forwarded-For would choose the login limiter's key.
    server = uvicorn.Server(uvicorn.Config(app, host=cfg.api.host, port=cfg.api.port,
                                           log_level="warning", access_log=False, log_config=None,
                                           proxy_headers=bool(cfg.api.trusted_proxies),
                                           forwarded_allow_ips=list(cfg.api.trusted_proxies)))
    hub.stopping = lambda: server.should_exit  # live streams end so shutdown need not wait
    log.info("API on http://%s:%d", cfg.api.host, cfg.api.port)
    try:
        server.run()
    finally:
        escalator.stop()
        retention.stop()
        if fleet is not None:
            fleet.stop()
        for f in forwarders:
            f.stop()
        ingest.stop()
        health_monitor.stop()
        store.close()
