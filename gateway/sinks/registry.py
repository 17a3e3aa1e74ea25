"""Sink config entries: from TOML tables to checked `SinkEntry`s, and from entries to sinks.

An entry's `type` names its module: a plain word is a module of this package
(`webhook` -> `gateway.sinks.webhook`), a dotted path is any importable module
(`tests.gateway.sample_sink`). The module provides `from_config(entry, ctx) -> Sink` and,
when it takes settings besides `type`, `name` and `events`, an `Options` dataclass whose
fields are those settings (a field without a default is required; `__post_init__` may raise
ValueError for a bad value), and `DEFAULT_EVENTS` when an entry without `events` should take
something other than every incident event. So adding a sink needs no edit here.
"""
from __future__ import annotations

import dataclasses
import importlib
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType
from typing import Any

from ..config import ConfigError
from .base import EVENTS, SinkContext, SinkEntry
from .sinkset import SinkSet

# Present in every gateway, in this order; their names key existing queue rows.
BUILTIN = (("mqtt", "mqtt_incident"), ("ops", "ops"))
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}")
TYPE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
COMMON_KEYS = ("type", "name", "events")


def module_name(sink_type: str) -> str:
    return sink_type if "." in sink_type else f"{__package__}.{sink_type}"


def load_module(sink_type: str, where: str) -> ModuleType:
    if not isinstance(sink_type, str) or not TYPE_RE.fullmatch(sink_type):
        raise ConfigError(f"{where}: type must be a sink module name, not {sink_type!r}")
    name = module_name(sink_type)
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
            raise ConfigError(f"{where}: unknown sink type {sink_type!r} (no module {name})") from None
        raise ConfigError(f"{where}: sink type {sink_type!r} needs the module {exc.name!r}, "
                          "which is not installed") from None
    except Exception as exc:
        raise ConfigError(f"{where}: sink type {sink_type!r} failed to load: {exc!r}") from None
    if not callable(getattr(module, "from_config", None)):
        raise ConfigError(f"{where}: {name} is not a sink module (it has no from_config)")
    return module


def parse_events(value: Any, where: str, *, empty_means_all: bool) -> frozenset[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(e, str) for e in value):
        raise ConfigError(f"{where}: events must be a list of event names, not {value!r}")
    if not value:
        if empty_means_all:
            return None
        raise ConfigError(f"{where}: events is empty; leave it out to take every incident event")
    bad = sorted(set(value) - set(EVENTS))
    if bad:
        raise ConfigError(f"{where}: unknown events {bad}; known: {', '.join(EVENTS)}")
    return frozenset(value)


def _check_value(hint: Any, key: str, value: Any, base: Path, where: str) -> Any:
    def wrong(expected: str) -> ConfigError:
        return ConfigError(f"{where} {key}: expected {expected}, got {value!r}")

    if hint is Path:
        if not isinstance(value, str):
            raise wrong("a path")
        path = Path(value)
        return path if path.is_absolute() else base / path
    if hint is bool:
        if type(value) is not bool:
            raise wrong("true or false")
    elif hint is int:
        if type(value) is not int:
            raise wrong("an integer")
    elif hint is float:
        if type(value) not in (int, float):
            raise wrong("a number")
        return float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise wrong("a string")
    elif typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint) or (Any,)
        if not isinstance(value, list) or (item is str and not all(isinstance(v, str) for v in value)):
            raise wrong("a list" if item is not str else "a list of strings")
    return value


def parse_options(module: ModuleType, data: dict[str, Any], base: Path, where: str) -> Any:
    cls = getattr(module, "Options", None)
    if cls is None:
        if data:
            raise ConfigError(f"{where}: unknown keys {sorted(data)}; this sink takes only type, name and events")
        return None
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(data) - set(fields)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {sorted(unknown)}; "
                          f"it takes {', '.join([*COMMON_KEYS, *fields])}")
    missing = sorted(n for n, f in fields.items() if n not in data
                     and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    if missing:
        raise ConfigError(f"{where}: missing {missing}")
    hints = typing.get_type_hints(cls)
    values = {key: _check_value(hints.get(key), key, value, base, where) for key, value in data.items()}
    try:
        return cls(**values)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _tables(raw: Any, section: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(t, dict) for t in raw):
        raise ConfigError(f"[[{section}]] must be an array of tables")
    return raw


def _entry(table: dict[str, Any], where: str, base: Path, *, empty_means_all: bool = False) -> SinkEntry:
    data = dict(table)
    sink_type, name = data.pop("type", None), data.pop("name", None)
    if sink_type is None:
        raise ConfigError(f"{where}: missing type")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ConfigError(f"{where}: name must be 1-64 letters, digits or _.:- , not {name!r}")
    events = parse_events(data.pop("events", None), where, empty_means_all=empty_means_all)
    module = load_module(sink_type, where)
    if events is None:
        events = getattr(module, "DEFAULT_EVENTS", None)
    return SinkEntry(type=sink_type, module=module.__name__, name=name, events=events,
                     options=parse_options(module, data, base, where))


def parse(sinks: Any, webhooks: Any, base: Path) -> list[SinkEntry]:
    """The gateway's sinks: the built-in ones, then `[[webhooks]]`, then `[[sinks]]`."""
    entries = [_entry({"type": sink_type, "name": name}, f"built-in sink {name}", base)
               for name, sink_type in BUILTIN]
    for i, hook in enumerate(_tables(webhooks, "webhooks")):
        # The short form of a webhook sink: named webhook:<name or index>, which keys its queue
        # rows, and an empty events list there means every incident event.
        table = dict(hook)
        label = table.pop("name", "") or str(i)
        if "type" in table:
            raise ConfigError(f"[[webhooks]] {label}: unknown keys ['type'] (use [[sinks]] for other types)")
        entries.append(_entry({**table, "type": "webhook", "name": f"webhook:{label}"},
                              f"[[webhooks]] {label}", base, empty_means_all=True))
    for i, table in enumerate(_tables(sinks, "sinks")):
        entries.append(_entry(table, f"[[sinks]] {table.get('name') or i}", base))
    seen: set[str] = set()
    for entry in entries:
        if entry.name in seen:
            raise ConfigError(f"[[sinks]] {entry.name}: the name is taken (built-in sinks: "
                              f"{', '.join(n for n, _ in BUILTIN)}; webhooks: webhook:<name>)")
        seen.add(entry.name)
    return entries


def build(entries: Iterable[SinkEntry], ctx: SinkContext) -> SinkSet:
    """Each entry's sink, made by its module."""
    sinks = []
    for entry in entries:
        sink = importlib.import_module(entry.module).from_config(entry, ctx)
        # The entry is what routing and the queue rows go by: the sink must agree with it.
        if sink.name != entry.name or sink.events != entry.events:
            raise ConfigError(f"[[sinks]] {entry.name}: {entry.module}.from_config made a sink with another "
                              f"name or events ({sink.name!r}, {sink.events!r})")
        sinks.append(sink)
    return SinkSet(sinks)
