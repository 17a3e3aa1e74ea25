"""The gateway's durable state, behind one interface: SQLite or PostgreSQL."""
from __future__ import annotations

from ..config import Config
from .base import Store, TransitionError


def open_store(cfg: Config) -> Store:
    if cfg.store.kind == "postgres":
        from .postgres import PostgresStore
        return PostgresStore(cfg.store.dsn)
    from .sqlite import SqliteStore
    return SqliteStore(cfg.store.path)


__all__ = ["Store", "TransitionError", "open_store"]
