"""Dispatch sinks: one module per sink type, all behind the `Sink` interface (base.py).

Built-in types: `mqtt_incident` (the sink named `mqtt`), `ops` (named `ops`), `webhook`
(every `[[webhooks]]` table, and `[[sinks]]` tables of that type). Any other module that
provides `from_config(entry, ctx) -> Sink` is a type too (see registry.py).
"""
from __future__ import annotations

from .base import DEVICE_EVENTS, EVENTS, INCIDENT_EVENTS, DeliveryError, Forward, Sink, SinkContext, SinkEntry
from .registry import build
from .sinkset import SinkSet

__all__ = ["DEVICE_EVENTS", "EVENTS", "INCIDENT_EVENTS", "DeliveryError", "Forward", "Sink", "SinkContext",
           "SinkEntry", "SinkSet", "build"]
