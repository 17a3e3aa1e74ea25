"""The gateway's durable state, behind one interface: SQLite or PostgreSQL."""
from __future__ import annotations

from ..config import Config
from ..domain.lifecycle import TransitionError
from .base import FalseAlarmPolicy, Store


def open_store(cfg: Config) -> Store:
    store: Store
    if cfg.store.kind == "postgres":
        from .postgres import PostgresStore
        store = PostgresStore(cfg.store.dsn)
    else:
        from .sqlite import SqliteStore
        store = SqliteStore(cfg.store.path)
    # Policy the store applies inside its transactions, so every process that changes
    # incidents (gateway, CLI, console) applies the same rules.
    from ..sinks import routes
    store.routes = routes(cfg)
    store.false_alarm = FalseAlarmPolicy(cfg.false_alarm_limit, cfg.false_alarm_window_s * 1000,
                                         cfg.false_alarm_action)
    return store


__all__ = ["Store", "TransitionError", "open_store"]
