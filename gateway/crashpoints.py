"""Named points where a test makes the gateway die as a SIGKILL would (`PANIC_CRASH_AT=point`):
what an ack promises can only be proved by dying at exactly the wrong moment.

Read once at import; unset (every deployment) it costs a set lookup per batch.
"""
from __future__ import annotations

import os
import signal

POINTS = ("ingest_before_commit", "ingest_after_commit", "ingest_after_ack")
_AT = frozenset(p for p in os.environ.get("PANIC_CRASH_AT", "").split(",") if p in POINTS)


def reach(point: str) -> None:
    if point in _AT:
        os.kill(os.getpid(), signal.SIGKILL)
