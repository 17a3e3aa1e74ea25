"""Prometheus metrics of the gateway. Label values are bounded (reasons, stages, sinks)."""
from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

# Buckets around the 10-minute promise, in seconds.
_LATENCY = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 180, 300, 420, 600, 900, 1800)

alerts_received = Counter("panic_alerts_received", "Alert messages taken off the broker")
alerts_rejected = Counter("panic_alerts_rejected", "Alerts rejected, by reason", ["reason"])
alerts_duplicate = Counter("panic_alerts_duplicate", "Alerts whose id was already stored (acked again)")
incidents_created = Counter("panic_incidents_created", "Incidents created", ["kind"])
acks_sent = Counter("panic_acks_sent", "Signed acks published to devices", ["stage"])
forwards = Counter("panic_forwards", "Forward attempts to dispatch sinks", ["sink", "result"])
ingest_batch = Histogram("panic_ingest_batch_size", "Alerts stored per commit",
                         buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512))
latency = Histogram("panic_latency_seconds", "Incident latencies by step", ["step"], buckets=_LATENCY)
mqtt_connected = Gauge("panic_mqtt_connected", "1 while the gateway is connected to the broker")
