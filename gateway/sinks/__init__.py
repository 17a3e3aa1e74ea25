"""Dispatch sinks: one module per sink type, all behind the `Sink` interface (base.py).

Built-in types: `mqtt_incident` (the sink named `mqtt`), `ops` (named `ops`), `webhook`
(every `[[webhooks]]` table, and `[[sinks]]` tables of that type). Any other module that
provides `from_config(entry, ctx) -> Sink` is a type too (see registry.py).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import DEVICE_EVENTS, EVENTS, INCIDENT_EVENTS, DeliveryError, Forward, Sink, SinkContext, SinkEntry
from .registry import build
from .sinkset import SinkSet

if TYPE_CHECKING:
    from ..config import Config


def routes(cfg: Config) -> dict[str, frozenset[str] | None]:
    """Sink -> the events it takes (None: every incident event), from the config alone."""
    return {e.name: e.events for e in cfg.sinks}


__all__ = ["DEVICE_EVENTS", "EVENTS", "INCIDENT_EVENTS", "DeliveryError", "Forward", "Sink", "SinkContext",
           "SinkEntry", "SinkSet", "build", "routes"]
