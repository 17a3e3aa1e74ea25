"""The status's optional `cell` report (docs/protocol.md "Status body"): checked strictly, kept as
the cellular path's last proof in the store (both databases), absent in older firmware."""
from __future__ import annotations

import json
from typing import Any

import pytest

from gateway.health import StatusError, parse_status
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)

DEV = "klj-kauman-rw05-rt03"
TOPIC = f"panic/v1/{DEV}/status"
RULES: dict[str, Any] = {"heartbeat_s": 60, "silent_factor": 2.5, "low_battery_pct": 20, "backlog_min": 5}


def status(**extra) -> bytes:
    return json.dumps({"v": 1, "dev": DEV, "state": "online", "boot": 3, "up": 10, **extra}).encode()


@pytest.mark.parametrize("cell", [
    {"reg": "home", "csq": 32, "test": None}, {"reg": "home", "csq": -1, "test": None},
    {"reg": "home", "csq": "18", "test": None}, {"reg": "flying", "csq": 10, "test": None},
    {"reg": "home", "csq": 10, "test": "yesterday"}, {"reg": "home", "csq": 10, "test": -5},
    {"reg": "home", "csq": 10, "test": None, "imsi": "510..."}, ["home", 10], "home", {"csq": 10},
    {"reg": "home", "csq": True, "test": None},
])
def test_bad_cell_is_a_schema_error(cell):
    with pytest.raises(StatusError) as exc:
        parse_status(TOPIC, status(cell=cell), "panic/v1")
    assert exc.value.reason == "schema"


def test_cell_is_optional_and_normalised():
    assert "cell" not in parse_status(TOPIC, status(), "panic/v1")[1]
    assert "cell" not in parse_status(TOPIC, status(cell=None), "panic/v1")[1]
    _, got = parse_status(TOPIC, status(cell={"reg": "searching", "csq": 99}), "panic/v1")
    assert got["cell"] == {"reg": "searching", "csq": 99, "test": None}


def test_store_keeps_the_last_cell_report(store):
    kw: dict[str, Any] = dict(retained=False, **RULES)
    store.record_status(DEV, {"state": "online", "cell": {"reg": "home", "csq": 21, "test": 1764269000}}, 1000, **kw)
    store.record_status(DEV, {"state": "online"}, 2000, **kw)  # older firmware, or no modem news
    store.record_status(DEV, {"state": "online", "cell": {"reg": "denied", "csq": 99, "test": None}}, 3000, **kw)
    h = store.device_health(DEV)[DEV]
    # A report without a new test keeps the last test's time: the proof stays until replaced.
    assert (h.cell_reg, h.cell_csq, h.cell_test_ms, h.cell_ms) == ("denied", 99, 1764269000_000, 3000)
    store.record_status(DEV, {"state": "offline"}, 4000, **kw)  # the will keeps it too
    assert store.device_health(DEV)[DEV].cell_reg == "denied"
