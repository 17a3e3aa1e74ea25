"""A tiny publish/subscribe hub: "the incidents changed", from any thread to the SSE streams.

Ingest and the API run in threads; the live streams wait in the event loop. A poke only
says *something* changed: each stream then reads what changed from the store, so a missed
or doubled poke can never show stale or duplicate data.
"""
from __future__ import annotations

import asyncio
import threading


class Hub:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()
        self.closed = False
        # Set by whoever runs the server (service.py: uvicorn's should_exit): uvicorn waits
        # for open responses at shutdown, so endless streams must notice and end.
        self.stopping = lambda: False

    def poke(self) -> None:
        """Thread-safe; cheap when nobody listens."""
        with self._lock:
            waiters = list(self._waiters)
        for loop, event in waiters:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop is closed: its stream is gone
                pass

    def subscribe(self) -> asyncio.Event:
        event = asyncio.Event()
        with self._lock:
            self._waiters.add((asyncio.get_running_loop(), event))
        return event

    def unsubscribe(self, event: asyncio.Event) -> None:
        with self._lock:
            self._waiters = {w for w in self._waiters if w[1] is not event}

    def close(self) -> None:
        self.closed = True
        self.poke()

    @property
    def done(self) -> bool:
        return self.closed or bool(self.stopping())
