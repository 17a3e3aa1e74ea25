"""Prometheus metrics of the gateway. Label values are bounded (reasons, stages, sinks)."""
from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

# Buckets around the 10-minute promise, in seconds.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180, 300, 420, 600, 900, 1800)

alerts_received = Counter("panic_alerts_received", "Alert messages taken off the broker")
alerts_rejected = Counter("panic_alerts_rejected", "Alerts rejected, by reason", ["reason"])
alerts_duplicate = Counter("panic_alerts_duplicate", "Alerts whose id was already stored (acked again)")
alerts_folded = Counter("panic_alerts_folded", "Alerts stored and acked but attached to their button's newest open "
                        "incident: the button had [gateway] open_incidents_per_device open")
incidents_created = Counter("panic_incidents_created", "Incidents created", ["kind"])
acks_sent = Counter("panic_acks_sent", "Signed acks published to devices", ["stage"])
forwards = Counter("panic_forwards", "Forward attempts to dispatch sinks; result: ok, retry, dead (failed too long), "
                   "refused (the sink refused the entry for good: dead at once)", ["sink", "result"])
sia_replies = Counter("panic_sia_replies", "Replies of alarm-receiving centres to SIA DC-09 messages: ack, nak, "
                      "duh, rsp, none (no reply), bad (not a DC-09 reply)", ["sink", "reply"])
ingest_batch = Histogram("panic_ingest_batch_size", "Alerts stored per commit",
                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
latency = Histogram("panic_latency_seconds", "Incident latencies by step", ["step"], buckets=_LATENCY)
mqtt_connected = Gauge("panic_mqtt_connected", "1 while the gateway is connected to the broker")
ingest_queue = Gauge("panic_ingest_queue", "Alert messages taken off the broker, not yet stored and acked")

STEPS = ("press_to_received", "received_to_acknowledged", "received_to_dispatched", "press_to_on_scene")
HEALTH = ("online", "offline", "sleeping", "silent", "unknown", "low_battery", "backlog")

escalations = Counter("panic_escalations", "Incidents escalated: not acknowledged in time", ["kind"])
devices_by_health = Gauge("panic_devices_by_health",
                          "Registered devices by health; low_battery and backlog overlap the others",
                          ["health"])
device_events = Counter("panic_device_events", "Device health changes and policy actions", ["event", "value"])
status_rejected = Counter("panic_status_rejected", "Status messages ignored, by reason", ["reason"])
forwards_backlog = Gauge("panic_forwards_backlog", "Forward queue entries by sink and state", ["sink", "state"])
store_errors = Counter("panic_store_errors", "Store transactions that failed and were retried", ["where"])
ingest_dead_letters = Counter("panic_ingest_dead_letters", "Alert messages ingest gave up on after repeated "
                              "store failures (acked, kept in the store, device told)")
status_limited = Counter("panic_status_limited", "Status messages acked without being recorded: superseded by "
                         "a newer one of the same device while it waited for its turn (one at a time, about "
                         "one a second per device), or one topic too many", ["reason"])
publishes_dropped = Counter("panic_publishes_dropped", "Publishes (acks, incident states) the broker had not "
                            "confirmed, given up after the gateway held too many while it was unreachable; "
                            "their owners (button, forwarder) send them again")
alerts_shed = Counter("panic_alerts_shed", "QoS 0 alert messages dropped because the ingest queue was full "
                      "(buttons send at QoS 1, which the broker holds until acked)")

# Every step and reason shows from the first scrape, so dashboards and alerts need no data first.
for _step in STEPS:
    latency.labels(_step)
for _h in HEALTH:
    devices_by_health.labels(_h)


def observe_transition(before: str, inc) -> None:
    """Latency histograms for an operator's or responder's step (called once per change)."""
    lat = inc.latencies()
    if before == "new" and inc.acknowledged_ms is not None and lat["received_to_acknowledged"] is not None:
        latency.labels("received_to_acknowledged").observe(max(0, lat["received_to_acknowledged"]) / 1000)
    if inc.state == "dispatched" and lat["received_to_dispatched"] is not None:
        latency.labels("received_to_dispatched").observe(max(0, lat["received_to_dispatched"]) / 1000)
    if inc.state == "on_scene" and lat["press_to_on_scene"] is not None:
        latency.labels("press_to_on_scene").observe(max(0, lat["press_to_on_scene"]) / 1000)
unit_reports_rejected = Counter("panic_unit_reports_rejected", "Unit positions and statuses refused, by reason "
                                "(malformed, bad_position, bad_status, unknown_unit, forbidden)", ["reason"])
sms_received = Counter("panic_sms_received", "SMS handed to the gateway by the SMS daemon's hook (gateway/sms/)")
sms_rejected = Counter("panic_sms_rejected", "SMS refused, by reason (docs/protocol.md \"SMS\"); none is answered",
                       ["reason"])
sms_replies = Counter("panic_sms_replies", "Signed SMS acks the gateway gave the hook to send, by stage", ["stage"])
broker_connected = Gauge("panic_broker_connected", "1 while the gateway's alert consumer is connected to this "
                         "broker (primary, backup)", ["broker"])
deliveries = Counter("panic_deliveries", "Alerts delivered over a path they had not come by before (one per "
                     "alert and path: wifi, backup_broker, cellular, sms)", ["path"])
delivery_latency = Histogram("panic_delivery_latency_seconds", "Press to received of each alert's first arrival "
                             "over each path", ["path"], buckets=_LATENCY)
for _path in ("wifi", "backup_broker", "cellular", "sms"):
    deliveries.labels(_path)
    delivery_latency.labels(_path)
fleet_results = Counter("panic_fleet_results", "Signed command results taken from devices, by op", ["op"])
fleet_rejected = Counter("panic_fleet_rejected", "Messages on devices' result topics refused, by reason (mac: not "
                         "signed with the device's secret)", ["reason"])
fleet_commands = Counter("panic_fleet_commands", "Signed commands sent to devices, by op", ["op"])
fleet_chunks = Counter("panic_fleet_chunks", "OTA chunk requests: sent, or dropped by a rate limit (device, total)",
                       ["result"])
fleet_halts = Counter("panic_fleet_halts", "Rollouts halted by the failure rule")


class Labelled(dict):
    """A metric's children by label value, each bound once: `.labels()` per message (a lock,
    a tuple, a dict lookup) was a measurable share of an alert's CPU."""

    def __init__(self, metric: Any) -> None:
        super().__init__()
        self.metric = metric

    def __missing__(self, label: str) -> Any:
        child = self[label] = self.metric.labels(label)
        return child


class Tally(dict):
    """Counter increments gathered over one batch and applied once each: every `inc` takes
    the metric's lock, several times per alert in a burst."""

    def add(self, counter: Any, n: int = 1) -> None:
        self[counter] = self.get(counter, 0) + n

    def apply(self) -> None:
        for counter, n in self.items():
            counter.inc(n)
        self.clear()
