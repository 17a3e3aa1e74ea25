"""Dead letters: alert messages ingest gave up on after repeated store failures.

Each one is kept with its reason so operators can see, and replay by hand, what a poison
message was; ingest acks it to the broker so it no longer holds up every other alert."""
from __future__ import annotations

from typing import NamedTuple

from .core import StoreCore


class DeadLetter(NamedTuple):
    id: int
    topic: str
    dev: str
    alert_id: str
    reason: str
    attempts: int
    payload: str
    at_ms: int


_COLS = "id, topic, dev, alert_id, reason, attempts, payload, at_ms"


class DeadLettersMixin(StoreCore):
    def record_dead_letter(self, *, topic: str, dev: str, alert_id: str, reason: str, attempts: int,
                           payload: str, at_ms: int) -> int:
        """Keep one message ingest gave up on; returns its row id."""
        with self._tx() as cur:
            row = self._exec(cur, "INSERT INTO dead_letters (topic, dev, alert_id, reason, attempts, payload, at_ms) "
                                  "VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id",
                             (topic, dev, alert_id, reason, attempts, payload, at_ms)).fetchone()
        return int(row[0])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """Newest first."""
        rows = self._read(f"SELECT {_COLS} FROM dead_letters ORDER BY id DESC LIMIT ?", (limit,))
        return [DeadLetter(*r) for r in rows]
