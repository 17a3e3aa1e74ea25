"""The forwarding queue: events waiting for each sink, leased to one forwarder at a time,
retried with backoff, dead-lettered after a deadline. Entries are written by the outbox
(core.py) in the transaction that made the event."""
from __future__ import annotations

import json
from typing import Any, NamedTuple

from .core import StoreCore

PRUNE_BATCH = 2000
# A claimed batch goes out at once where the sink can (forward.py): a burst's incidents in
# a few claims, not one per 50.
CLAIM_MAX = 200
# Ids bound into one UPDATE (SQLite allows 32,766 variables, PostgreSQL 65,535).
IDS_PER_STATEMENT = 500


class SinkQueue(NamedTuple):
    """One sink's entries by state."""
    sink: str
    pending: int
    delivered: int
    dead: int


class ClaimedForward(NamedTuple):
    """An entry leased to one forwarder."""
    id: int
    idem_key: str
    payload: str  # the event as queued, JSON text
    created_ms: int
    attempts: int


class DeadForward(NamedTuple):
    """An entry given up on after its deadline, with the event it carried."""
    id: int
    sink: str
    subject: str  # the incident id, or the device id of a device event
    idem_key: str
    created_ms: int
    attempts: int
    last_error: str | None
    payload: dict[str, Any]  # the event as queued


class ForwardsMixin(StoreCore):
    def has_due(self, sink: str, now_ms: int) -> bool:
        """Whether a claim could find anything: a read, so an idle sink woken by every
        stored batch does not take the write lock from ingest for nothing."""
        return bool(self._read("SELECT 1 FROM forwards WHERE sink = ? AND delivered_ms IS NULL AND dead = 0 "
                               "AND next_ms <= ? LIMIT 1", (sink, now_ms)))

    def claim_forwards(self, sink: str, owner: str, now_ms: int, lease_ms: int,
                       limit: int = CLAIM_MAX) -> list[ClaimedForward]:
        """Lease due entries to one forwarder, oldest first.

        Several gateways drain one queue: a leased entry is not handed out again until its
        lease runs out (a forwarder killed mid-delivery), SKIP LOCKED keeps two claims from
        blocking each other, and an entry is only claimed when no earlier entry of the same
        incident is still pending, so a sink sees each incident's events in order."""
        sql = ("UPDATE forwards SET lease_until = ?, lease_owner = ? WHERE id IN ("
               " SELECT f.id FROM forwards f WHERE f.sink = ? AND f.delivered_ms IS NULL AND f.dead = 0"
               " AND f.next_ms <= ? AND (f.lease_until < ? OR f.lease_owner = ?)"
               " AND NOT EXISTS (SELECT 1 FROM forwards e WHERE e.sink = f.sink"
               "  AND e.incident_id = f.incident_id AND e.id < f.id AND e.delivered_ms IS NULL AND e.dead = 0)"
               f" ORDER BY f.id LIMIT ?{self.skip_locked}) "
               "RETURNING id, idem_key, payload, created_ms, attempts")
        with self._tx() as cur:
            rows = self._exec(cur, sql, (now_ms + lease_ms, owner, sink, now_ms, now_ms, owner, limit)).fetchall()
        return sorted(ClaimedForward(*r) for r in rows)

    def release_forwards(self, fids: list[int]) -> None:
        self._update_ids("UPDATE forwards SET lease_until = 0, lease_owner = NULL", [], fids)

    def forwards_done(self, fids: list[int], now_ms: int) -> None:
        self._update_ids("UPDATE forwards SET delivered_ms = ?, attempts = attempts + 1, lease_until = 0",
                         [now_ms], fids)

    def _update_ids(self, update: str, args: list, fids: list[int]) -> None:
        """`update` on the entries `fids`, in one transaction and one statement per
        IDS_PER_STATEMENT: a claimed batch's marks cost a statement, not one each (the
        forwarder's busiest frame in a burst, docs/benchmarks.md "Fourth round")."""
        if not fids:
            return
        with self._tx() as cur:
            for i in range(0, len(fids), IDS_PER_STATEMENT):
                part = fids[i:i + IDS_PER_STATEMENT]
                self._exec(cur, f"{update} WHERE id IN ({', '.join('?' * len(part))})", [*args, *part])

    def forward_failed(self, fid: int, next_ms: int, error: str, *, dead: bool) -> None:
        with self._tx() as cur:
            self._exec(cur, "UPDATE forwards SET next_ms = ?, attempts = attempts + 1, last_error = ?, "
                            "dead = ?, lease_until = 0, lease_owner = NULL WHERE id = ?",
                       (next_ms, error[:500], int(dead), fid))

    def forward_stats(self) -> list[SinkQueue]:
        rows = self._rows("SELECT sink, SUM(CASE WHEN delivered_ms IS NULL AND dead = 0 THEN 1 ELSE 0 END), "
                          "SUM(CASE WHEN delivered_ms IS NOT NULL THEN 1 ELSE 0 END), SUM(dead) "
                          "FROM forwards GROUP BY sink ORDER BY sink")
        return [SinkQueue(s, int(p or 0), int(d or 0), int(x or 0)) for s, p, d, x in rows]

    def dead_forwards(self, sink: str | None = None, limit: int = 500) -> list[DeadForward]:
        sql = ("SELECT id, sink, incident_id, idem_key, created_ms, attempts, last_error, payload "
               "FROM forwards WHERE dead = 1")
        args: list = []
        if sink:
            sql += " AND sink = ?"
            args.append(sink)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        return [DeadForward(i, s, subj, k, c, a, e, json.loads(p)) for i, s, subj, k, c, a, e, p in self._rows(sql, args)]

    def retry_forward(self, fid: int, now_ms: int) -> bool:
        """Put a dead letter back in its queue (an operator fixed the sink)."""
        with self._tx() as cur:
            return self._exec(cur, "UPDATE forwards SET dead = 0, next_ms = ?, created_ms = ?, lease_until = 0 "
                                   "WHERE id = ? AND dead = 1", (now_ms, now_ms, fid)).rowcount > 0

    def prune_forwards(self, *, delivered_before_ms: int, dead_before_ms: int | None = None,
                       batch: int = PRUNE_BATCH) -> int:
        """Delete delivered entries older than `delivered_before_ms` and, when given, dead
        letters queued before `dead_before_ms` (else kept until retried); returns how many.

        In batches, each its own transaction, so ingest never waits long for the write lock.
        An entry still pending is never touched."""
        total = 0
        conds = [("delivered_ms IS NOT NULL AND delivered_ms < ?", delivered_before_ms)]
        if dead_before_ms is not None:
            conds.append(("dead = 1 AND delivered_ms IS NULL AND created_ms < ?", dead_before_ms))
        for cond, before in conds:
            while True:
                with self._tx() as cur:
                    n = self._exec(cur, f"DELETE FROM forwards WHERE id IN (SELECT id FROM forwards WHERE {cond} "
                                        "LIMIT ?)", (before, batch)).rowcount
                total += n
                if n < batch:
                    break
        return total
