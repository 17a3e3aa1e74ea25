"""The store: persistence for every part of the gateway, SQLite or PostgreSQL.

Each part lives with its concept (devices, incidents, units, sectors, forwards, health, track, fleet,
accounts) over the shared plumbing in core.py; the database subclasses supply connections and transactions.
Every write the gateway acks for happens inside one committed transaction first.
Statements that several gateways may race on (two copies of one alert, a forward claimed by
two forwarders, an escalation seen by two sweeps) are written so that the database decides
who wins: INSERT ... ON CONFLICT DO NOTHING, conditional UPDATEs, row locks on PostgreSQL.
"""
from __future__ import annotations

from .accounts import AccountsMixin
from .dead_letters import DeadLettersMixin
from .fleet import FleetMixin
from .forwards import ForwardsMixin
from .sectors import SectorsMixin
from .track import TrackMixin


class Store(SectorsMixin, TrackMixin, ForwardsMixin, AccountsMixin, DeadLettersMixin, FleetMixin):
    """All parts over one database; SqliteStore and PostgresStore supply the connection."""
