"""The gateway's durable state, behind one interface: SQLite or PostgreSQL."""
from __future__ import annotations

from .. import dynsec, secretbox
from ..config import Config, secret_key_file
from ..domain.lifecycle import Forbidden, TransitionError
from ..domain.policy import FalseAlarmPolicy
from .accounts import ConsoleUser, Token
from .base import Store
from .incidents import ReportRow


def open_store(cfg: Config) -> Store:
    store: Store
    if cfg.store.kind == "postgres":
        from .postgres import PostgresStore
        store = PostgresStore(cfg.store.dsn)
    else:
        from .sqlite import SqliteStore
        store = SqliteStore(cfg.store.path)
    # The policy is applied inside the store's transactions, so every process that changes
    # incidents (gateway, CLI, console) applies the same rule. Sink routing (store.route) is
    # the service's to set: a process without sinks queues nothing.
    store.false_alarm = FalseAlarmPolicy(limit=cfg.false_alarm_limit, window_ms=cfg.false_alarm_window_s * 1000,
                                         action=cfg.false_alarm_action)
    store.open_per_device = cfg.open_incidents_per_device
    # Device secrets are sealed with a key outside the database; a missing key is made only
    # while no secret has been sealed yet (a second gateway must be given the first one's).
    try:
        store.secret_box = secretbox.load(secret_key_file(cfg), create=not store.has_sealed_secrets())
        store.seal_device_secrets()
        # The broker needs only a hash of a device's MQTT password (its own PBKDF2 form).
        store.hash_plain_mqtt_passwords(dynsec.stored_hash, dynsec.STORED_SCHEME + "$%")
    except BaseException:
        store.close()
        raise
    return store


__all__ = ["ConsoleUser", "FalseAlarmPolicy", "Forbidden", "ReportRow", "Store", "Token", "TransitionError",
           "open_store"]
