"""Fixtures shared by the gateway's tests: a store on each database, a broker of its own."""
from __future__ import annotations

import pytest

from gateway.store.postgres import PostgresStore
from gateway.store.sqlite import SqliteStore
from simulator.stack import Stack
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)
from tests.gateway.test_store import prepare


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path):
    """A store on each database, with the sink routes a service sets and one Kauman button."""
    if request.param == "sqlite":
        s = prepare(SqliteStore(tmp_path / "g.db"))
    else:
        s = prepare(PostgresStore(request.getfixturevalue("pg_dsn")))
    yield s
    s.close()


@pytest.fixture
def broker(tmp_path):
    """The project's mosquitto, from its generated config, on a free port; no gateway."""
    s = Stack(tmp_path / "state")
    s.init()
    s.start_broker()
    yield s
    s.down()
