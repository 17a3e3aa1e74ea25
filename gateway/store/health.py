"""Device health as stored: one row per device heard from, and its device events.

What a status means (merging it, silence, the conditions) is decided in domain/health.py;
this part locks the row, stores the result and queues the event when something changed.
"""
from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from operator import itemgetter
from typing import Any, NamedTuple

from ..domain import health as rules
from .core import StoreCore

HEALTH_COLS = ["dev", "state", "health", "low_battery", "backlog", "fw", "boot", "up", "batt", "rssi",
               "outbox", "heartbeat_s", "last_status_ms", "silent_at_ms", "changed_ms", "reset_cause", "reconnects",
               "link_err", "link_err_ms", "cell_reg", "cell_csq", "cell_test_ms", "cell_ms"]
_COL_INDEX = {k: i for i, k in enumerate(HEALTH_COLS)}
_row_of = itemgetter(*HEALTH_COLS)  # a health dict -> its row tuple


class DeviceHealth(NamedTuple):
    """A device's health as stored (HEALTH_COLS but the id); never heard from: `unknown`."""
    state: str
    health: str
    low_battery: bool
    backlog: bool
    fw: str | None
    boot: int | None
    up: int | None
    batt: int | None
    rssi: int | None
    outbox: int | None
    heartbeat_s: int | None
    last_status_ms: int | None
    silent_at_ms: int | None
    changed_ms: int | None
    reset_cause: str | None
    reconnects: int | None
    link_err: str | None
    link_err_ms: int | None
    cell_reg: str | None
    cell_csq: int | None
    cell_test_ms: int | None
    cell_ms: int | None

    @classmethod
    def of(cls, h: dict) -> DeviceHealth:
        """From a health record (domain/health.py's dicts); the conditions as booleans."""
        row = {k: h[k] for k in cls._fields}
        row["low_battery"], row["backlog"] = bool(h["low_battery"]), bool(h["backlog"])
        return cls(**row)

    def conditions(self) -> list[str]:
        """The conditions (domain/health.py CONDITIONS) the device is in."""
        return [k for k in rules.CONDITIONS if getattr(self, k)]


class HealthChange(NamedTuple):
    """A device whose health or a condition changed: its health before, and the record now."""
    dev: str
    was: str
    now: DeviceHealth

    @property
    def health(self) -> str:
        return self.now.health


class DeviceEvent(NamedTuple):
    """A device event as queued for the sinks (core.py's _device_event)."""
    event: str
    at_ms: int
    actor: str
    device: dict[str, Any]  # the device id and what happened to it


@lru_cache(maxsize=256)
def _update_if_unchanged(cols: tuple[str, ...]) -> str:
    """A heartbeat's write of the columns it changed, only while the row is still as this store
    last committed it: any other writer (another gateway, the sweep, a removed device) changes
    one of the guard columns, and the status then takes the full path (lock, read, merge)."""
    sets = ", ".join(f"{k} = ?" for k in cols)
    return f"UPDATE device_health SET {sets} WHERE dev = ? AND health = ? AND last_status_ms = ? AND changed_ms = ?"


class HealthMixin(StoreCore):
    # dev -> its row (values in HEALTH_COLS order) as this store last committed it: a heartbeat
    # that changes no health is then written without reading the row first. A tuple, not a
    # dict: a 100,000-device fleet keeps one per device.
    _health_seen: dict[str, tuple] | None = None
    # dev -> (row, guard (health, last_status_ms, changed_ms) of the committed row, status,
    # received ms): heartbeats held for the next flush_heartbeats.
    _heartbeats: dict[str, tuple] | None = None
    _late: list[HealthChange] = []  # noqa: RUF012  # replaced, never mutated, on the class (see late_health_changes)

    @contextmanager
    def _relaxed(self) -> Iterator[None]:
        """Writes whose loss in a power cut costs only a "last heard" (SQLite: no fsync)."""
        yield

    def _durable(self) -> None:
        """Make every earlier commit durable (SQLite: an fsync; others commit durably anyway)."""

    def _health_row(self, cur, dev: str, now_ms: int) -> dict:
        # Make sure the row exists, then lock it: two gateways both see every status.
        self._exec(cur, "INSERT INTO device_health (dev, state, health, changed_ms) VALUES (?, 'unknown', "
                        "'unknown', ?) ON CONFLICT (dev) DO NOTHING", (dev, now_ms))
        row = self._exec(cur, f"SELECT {', '.join(HEALTH_COLS)} FROM device_health WHERE dev = ?{self.for_update}",
                         (dev,)).fetchone()
        return dict(zip(HEALTH_COLS, row, strict=True))

    def _health_change(self, cur, old: dict, new: dict, now_ms: int) -> HealthChange | None:
        changed = rules.changed(old, new)
        if changed:
            new["changed_ms"] = now_ms
        sets = ", ".join(f"{k} = ?" for k in HEALTH_COLS[1:])
        self._exec(cur, f"UPDATE device_health SET {sets} WHERE dev = ?",
                   [new[k] for k in HEALTH_COLS[1:]] + [new["dev"]])
        if not changed:
            return None
        detail = {k: new[k] for k in HEALTH_COLS[1:] if k != "changed_ms"}
        detail["low_battery"], detail["backlog"] = bool(new["low_battery"]), bool(new["backlog"])
        detail["was"] = old["health"]
        self._device_event(cur, new["dev"], "health", now_ms, detail)
        return HealthChange(new["dev"], old["health"], DeviceHealth.of(new))

    def record_status(self, dev: str, status: dict, now_ms: int, *, retained: bool, heartbeat_s: int,
                      silent_factor: float, low_battery_pct: int, backlog_min: int) -> HealthChange | None:
        """Merge one status message into the device's health; return the health event when
        its health, low-battery or backlog condition changed, else None."""
        return self.record_statuses([(dev, status, retained)], now_ms, heartbeat_s=heartbeat_s,
                                    silent_factor=silent_factor, low_battery_pct=low_battery_pct,
                                    backlog_min=backlog_min)[0]

    def record_statuses(self, items: Sequence[tuple[str, dict, bool]], now_ms: int, *, heartbeat_s: int,
                        silent_factor: float, low_battery_pct: int, backlog_min: int,
                        defer: bool = False) -> list[HealthChange | None]:
        """record_status for several (dev, status, retained) in one transaction, in order; one
        health event (or None) per item. Any status that changes a device's health is committed
        (durably) before this returns.

        `defer`: a status that changes nothing but "last heard" (and the counters with it) is
        kept in memory until flush_heartbeats (the health worker calls it before each silence
        sweep), which writes them all in one `executemany`: a commit per few thousand
        heartbeats instead of one per status. Until then the API shows the previous "last heard";
        a crash loses at most those, and the next heartbeat brings them back."""
        kw = {"heartbeat_s": heartbeat_s, "silent_factor": silent_factor, "low_battery_pct": low_battery_pct,
              "backlog_min": backlog_min}
        out: list[HealthChange | None] = [None] * len(items)
        written: dict[str, tuple] = {}
        # The store's lock (re-entrant) also guards the held rows; uncontended it costs little.
        with self._lock:
            seen = self._health_seen if self._health_seen is not None else {}
            beats = self._heartbeats if self._heartbeats is not None else {}
            try:
                self._record_statuses(items, now_ms, kw, seen, beats, out, written, defer)
            except BaseException:
                self._health_seen = None  # rolled back: the next status reads its row afresh
                raise
            # Only once committed: a rolled-back batch leaves the next status to read the row again.
            seen.update(written)
            self._health_seen, self._heartbeats = seen, beats
        return out

    def _record_statuses(self, items, now_ms: int, kw: dict, seen: dict, beats: dict, out: list,
                         written: dict, defer: bool) -> None:
        # The transaction is opened at the first status that needs it: a batch of held
        # heartbeats costs no BEGIN, COMMIT or store lock at all.
        with ExitStack() as tx:
            cur = None
            for i, (dev, status, retained) in enumerate(items):
                last = written.get(dev) or seen.get(dev)
                if last is not None:
                    if retained:
                        continue  # a replay of what this store already holds
                    old = dict(zip(HEALTH_COLS, last, strict=True))
                    new = rules.merge_status(old, status, now_ms, **kw)
                    if not rules.changed(old, new):
                        row = _row_of(new)
                        waiting = beats.get(dev)
                        # The row as committed is what the UPDATE checks, however many beats wait.
                        beats[dev] = (row, waiting[1] if waiting else last, status, now_ms, kw)
                        written[dev] = row
                        continue
                if cur is None:
                    tx.enter_context(self._relaxed())
                    cur = tx.enter_context(self._tx())
                if dev in beats:
                    self._write_heartbeats(cur, beats)
                out[i], written[dev] = self._merge_locked(cur, dev, status, retained, now_ms, kw)
            if not defer and beats:
                if cur is None:
                    tx.enter_context(self._relaxed())
                    cur = tx.enter_context(self._tx())
                self._write_heartbeats(cur, beats)
            if cur is not None:
                tx.close()  # commit, then make it durable when it changed a device's health
                if any(out) or self._late:
                    self._durable()

    def flush_heartbeats(self) -> int:
        """Write the heartbeats record_statuses(defer=True) holds; how many."""
        beats = self._heartbeats
        if not beats:
            return 0
        n = len(beats)
        try:
            with self._relaxed():
                with self._tx() as cur:
                    self._write_heartbeats(cur, beats)
                if self._late:
                    self._durable()
        except BaseException:
            self._health_seen = None  # the rows are unknown again: read them afresh
            raise
        return n

    def _merge_locked(self, cur, dev: str, status: dict, retained: bool, now_ms: int,
                      kw: dict, held: bool = False) -> tuple[HealthChange | None, tuple]:
        """The full path: lock and read the row, merge, write; (event or None, row as written).
        `held`: a heartbeat written late, which a status stored since supersedes."""
        old = self._health_row(cur, dev, now_ms)
        last = old["last_status_ms"]
        if last is not None and (retained or (held and last > now_ms)):
            # A retained status replayed at our (re)subscribe says nothing new about liveness.
            return None, tuple(old[k] for k in HEALTH_COLS)
        new = rules.merge_status(old, status, now_ms, **kw)
        change = self._health_change(cur, old, new, now_ms)
        return change, tuple(new[k] for k in HEALTH_COLS)

    def _write_heartbeats(self, cur, beats: dict) -> None:
        """One `executemany` for every waiting heartbeat; when a row changed under one (another
        gateway, a removed device) each takes the full path: merging the same status at the same
        time again gives the same row, so the ones already written are unchanged by it."""
        if not beats:
            return
        waiting = list(beats.items())
        beats.clear()
        # Grouped by the columns they change (mostly up, rssi and the two times): binding every
        # column of every row cost more than the write itself.
        groups: dict[tuple[int, ...], list[list]] = {}
        written = 0
        h, ls, ch = _COL_INDEX["health"], _COL_INDEX["last_status_ms"], _COL_INDEX["changed_ms"]
        for dev, (row, base, *_) in waiting:
            idx = tuple(i for i in range(1, len(HEALTH_COLS)) if row[i] != base[i])
            if not idx:
                written += 1  # nothing to write (the same status again within the millisecond)
                continue
            groups.setdefault(idx, []).append([*(row[i] for i in idx), dev, base[h], base[ls], base[ch]])
        for idx, args in groups.items():
            cur.executemany(self._sql(_update_if_unchanged(tuple(HEALTH_COLS[i] for i in idx))), args)
            written += cur.rowcount
        if written != len(waiting):
            seen = self._health_seen if self._health_seen is not None else {}
            for dev, (_, _, status, at_ms, kw) in waiting:
                change, seen[dev] = self._merge_locked(cur, dev, status, False, at_ms, kw, held=True)
                if change:
                    # Another writer changed this row (e.g. the sweep of another gateway said
                    # silent): the heartbeat is news after all.
                    self._late = [*self._late, change]

    def late_health_changes(self) -> list[HealthChange]:
        """Health events found while writing held heartbeats (another writer had changed the
        row), not yet returned by record_statuses or flush_heartbeats; cleared."""
        late, self._late = self._late, []
        return late

    def sweep_silent(self, now_ms: int) -> list[HealthChange]:
        """Mark online or sleeping devices whose next status is overdue as silent."""
        out = []
        with self._tx() as cur:
            if self._heartbeats:
                # Held heartbeats first: a device whose heartbeat waits here is not silent.
                self._write_heartbeats(cur, self._heartbeats)
            devs = [r[0] for r in self._exec(cur, "SELECT dev FROM device_health WHERE health IN ('online', "
                                                  "'sleeping') AND silent_at_ms < ? LIMIT 1000", (now_ms,))]
            for dev in devs:
                old = self._health_row(cur, dev, now_ms)
                if not rules.overdue(old, now_ms):
                    continue  # another gateway got there first
                change = self._health_change(cur, old, rules.silenced(old), now_ms)
                if self._health_seen is not None:
                    self._health_seen.pop(dev, None)  # its next status takes the full path: news
                if change:
                    out.append(change)
        return out

    def device_health(self, dev: str | None = None) -> dict[str, DeviceHealth]:
        """Health per registered device id; devices never heard from are `unknown`."""
        sql = (f"SELECT d.id, {', '.join('h.' + c for c in HEALTH_COLS[1:])} FROM devices d "
               "LEFT JOIN device_health h ON h.dev = d.id")
        args: tuple = ()
        if dev is not None:
            sql += " WHERE d.id = ?"
            args = (dev,)
        out = {}
        for d, state, health, low_battery, backlog, *rest in self._rows(sql, args):
            out[d] = DeviceHealth(state or "unknown", health or "unknown", bool(low_battery), bool(backlog), *rest)
        return out

    def health_counts(self) -> dict[str, int]:
        rows = self._rows("SELECT COALESCE(h.health, 'unknown'), COUNT(*), SUM(COALESCE(h.low_battery, 0)), "
                          "SUM(COALESCE(h.backlog, 0)) FROM devices d LEFT JOIN device_health h ON h.dev = d.id "
                          "GROUP BY COALESCE(h.health, 'unknown')")
        counts = {k: 0 for k in (*rules.HEALTHS, *rules.CONDITIONS)}
        for health, n, low, backlog in rows:
            counts[health] = counts.get(health, 0) + int(n)
            counts["low_battery"] += int(low or 0)
            counts["backlog"] += int(backlog or 0)
        return counts

    def health_by_kelurahan(self) -> dict[str, dict[str, int]]:
        """health_counts per kelurahan (its name as registered; '' when none), in one query."""
        rows = self._rows("SELECT d.kelurahan, COALESCE(h.health, 'unknown'), COUNT(*), "
                          "SUM(COALESCE(h.low_battery, 0)), SUM(COALESCE(h.backlog, 0)) FROM devices d "
                          "LEFT JOIN device_health h ON h.dev = d.id GROUP BY d.kelurahan, COALESCE(h.health, 'unknown')")
        out: dict[str, dict[str, int]] = {}
        for kelurahan, health, n, low, backlog in rows:
            counts = out.setdefault(kelurahan or "", {k: 0 for k in (*rules.HEALTHS, *rules.CONDITIONS)})
            counts[health] = counts.get(health, 0) + int(n)
            counts["low_battery"] += int(low or 0)
            counts["backlog"] += int(backlog or 0)
        return out

    def device_events(self, dev: str, limit: int = 50) -> list[DeviceEvent]:
        """Newest first."""
        rows = self._rows("SELECT body FROM device_events WHERE dev = ? ORDER BY id DESC LIMIT ?", (dev, limit))
        return [DeviceEvent(b["event"], b["at_ms"], b["actor"], b["device"]) for b in (json.loads(r[0]) for r in rows)]
