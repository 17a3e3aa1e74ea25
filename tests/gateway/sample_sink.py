"""A sink type that lives outside the gateway package: it appends every event it takes to a
file, one JSON line each. A config entry `type = "tests.gateway.sample_sink"` is all it takes
to plug it in (the recipe in docs/gateway.md)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from gateway.sinks import Forward, SinkContext, SinkEntry


@dataclass
class Options:
    path: Path  # relative paths are relative to the config's folder


class FileSink:
    def __init__(self, name: str, events: frozenset[str] | None, path: Path) -> None:
        self.name = name
        self.events = events
        self.path = path

    def deliver(self, item: Forward) -> None:
        line = json.dumps({"idem_key": item.idem_key, **item.event()})
        with self.path.open("a") as f:
            f.write(line + "\n")


def from_config(entry: SinkEntry, ctx: SinkContext) -> FileSink:
    return FileSink(entry.name, entry.events, entry.options.path)
