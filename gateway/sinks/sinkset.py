"""The gateway's built sinks, and which of them take each event (the store's routing)."""
from __future__ import annotations

from collections.abc import Iterable, Iterator

from .base import EVENTS, Sink, takes


class SinkSet:
    def __init__(self, sinks: Iterable[Sink]) -> None:
        self.sinks = tuple(sinks)
        names = [s.name for s in self.sinks]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"sink names must be unique: {dupes}")
        self._routes = {event: self._takers(event) for event in EVENTS}

    def _takers(self, event: str) -> tuple[str, ...]:
        return tuple(s.name for s in self.sinks if takes(s.events, event))

    def route(self, event: str) -> tuple[str, ...]:
        """Names of the sinks that take `event`, in config order."""
        found = self._routes.get(event)
        return found if found is not None else self._takers(event)

    def unconfigured(self, queued: Iterable[str]) -> list[str]:
        """Of the sink names that have queue entries, those no sink here goes by: entries
        nobody will deliver (a sink removed or renamed)."""
        return sorted(set(queued) - {s.name for s in self.sinks})

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.sinks]

    def __iter__(self) -> Iterator[Sink]:
        return iter(self.sinks)

    def __len__(self) -> int:
        return len(self.sinks)
