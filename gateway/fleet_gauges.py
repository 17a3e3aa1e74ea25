"""Gauges read from the store when Prometheus scrapes: the fleet's health per kelurahan
and the incidents nobody acknowledged within the escalation time.

They are computed at scrape time rather than kept up to date by the workers, so the
values are those of the shared store: every gateway on one PostgreSQL store reports the
same numbers (aggregate them with `max`, not `sum`). A store that fails during a scrape
costs the scrape these families and counts `panic_store_errors_total{where="metrics"}`;
the rest of /metrics still answers.
"""
from __future__ import annotations

import logging
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import REGISTRY, Collector, CollectorRegistry

from . import metrics
from .domain.health import CONDITIONS, HEALTHS
from .store import Store

log = logging.getLogger("panic.metrics")

# Prometheus drops a label whose value is empty: a device registered without a kelurahan
# still needs a series of its own.
NO_KELURAHAN = "none"
# Incidents the store lists per scrape; far above any real backlog of unacknowledged ones.
UNACKED_LIMIT = 10_000
KINDS = ("panic", "test")


class FleetGauges(Collector):
    def __init__(self, store: Store) -> None:
        self.store = store

    def describe(self) -> Iterator[Metric]:
        # Names only: registering must not read the store.
        yield from (_by_state(), _by_flag(), _unacknowledged())

    def collect(self) -> Iterator[Metric]:
        try:
            fleet = self._fleet()
            unacked = self._unacknowledged()
        except Exception:
            metrics.store_errors.labels("metrics").inc()
            log.exception("fleet gauges not read from the store")
            return
        yield from fleet
        yield unacked

    def _fleet(self) -> list[Metric]:
        by_state, by_flag = _by_state(), _by_flag()
        for kelurahan, counts in sorted(self.store.health_by_kelurahan().items()):
            name = kelurahan or NO_KELURAHAN
            for state in HEALTHS:
                by_state.add_metric([name, state], counts.get(state, 0))
            for flag in CONDITIONS:
                by_flag.add_metric([name, flag], counts.get(flag, 0))
        return [by_state, by_flag]

    def _unacknowledged(self) -> Metric:
        family = _unacknowledged()
        counts = dict.fromkeys(KINDS, 0)
        for inc in self.store.list_incidents(state="new", limit=UNACKED_LIMIT):
            if inc.escalated:
                counts[inc.kind] = counts.get(inc.kind, 0) + 1
        for kind, n in sorted(counts.items()):
            family.add_metric([kind], n)
        return family


def _by_state() -> GaugeMetricFamily:
    return GaugeMetricFamily("panic_kelurahan_devices", "Registered devices per kelurahan by health (exclusive states)",
                             labels=["kelurahan", "health"])


def _by_flag() -> GaugeMetricFamily:
    return GaugeMetricFamily("panic_kelurahan_devices_flagged",
                             "Registered devices per kelurahan with a health flag (overlaps the states)",
                             labels=["kelurahan", "flag"])


def _unacknowledged() -> GaugeMetricFamily:
    return GaugeMetricFamily("panic_incidents_unacknowledged",
                             "Incidents still new after the escalation time (escalated, not acknowledged)",
                             labels=["kind"])


def register(store: Store, registry: CollectorRegistry = REGISTRY) -> FleetGauges:
    collector = FleetGauges(store)
    registry.register(collector)
    return collector
