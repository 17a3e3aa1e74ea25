"""Device health as stored: one row per device heard from, and its device events.

What a status means (merging it, silence, the conditions) is decided in domain/health.py;
this part locks the row, stores the result and queues the event when something changed.
"""
from __future__ import annotations

import json

from ..domain import health as rules
from .core import StoreCore

HEALTH_COLS = ["dev", "state", "health", "low_battery", "backlog", "fw", "boot", "up", "batt", "rssi",
               "outbox", "heartbeat_s", "last_status_ms", "silent_at_ms", "changed_ms", "reset_cause", "reconnects",
               "link_err", "link_err_ms", "cell_reg", "cell_csq", "cell_test_ms", "cell_ms"]


class HealthMixin(StoreCore):
    def _health_row(self, cur, dev: str, now_ms: int) -> dict:
        # Make sure the row exists, then lock it: two gateways both see every status.
        self._exec(cur, "INSERT INTO device_health (dev, state, health, changed_ms) VALUES (?, 'unknown', "
                        "'unknown', ?) ON CONFLICT (dev) DO NOTHING", (dev, now_ms))
        row = self._exec(cur, f"SELECT {', '.join(HEALTH_COLS)} FROM device_health WHERE dev = ?{self.for_update}",
                         (dev,)).fetchone()
        return dict(zip(HEALTH_COLS, row, strict=True))

    def _health_change(self, cur, old: dict, new: dict, now_ms: int) -> dict | None:
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
        return {"id": new["dev"], **detail}

    def record_status(self, dev: str, status: dict, now_ms: int, *, retained: bool, heartbeat_s: int,
                      silent_factor: float, low_battery_pct: int, backlog_min: int) -> dict | None:
        """Merge one status message into the device's health; return the health event when
        its health, low-battery or backlog condition changed, else None."""
        with self._tx() as cur:
            old = self._health_row(cur, dev, now_ms)
            if retained and old["last_status_ms"] is not None:
                # A retained status replayed at our (re)subscribe says nothing new about liveness.
                return None
            new = rules.merge_status(old, status, now_ms, heartbeat_s=heartbeat_s, silent_factor=silent_factor,
                                     low_battery_pct=low_battery_pct, backlog_min=backlog_min)
            return self._health_change(cur, old, new, now_ms)

    def sweep_silent(self, now_ms: int) -> list[dict]:
        """Mark online or sleeping devices whose next status is overdue as silent."""
        out = []
        with self._tx() as cur:
            devs = [r[0] for r in self._exec(cur, "SELECT dev FROM device_health WHERE health IN ('online', "
                                                  "'sleeping') AND silent_at_ms < ? LIMIT 1000", (now_ms,))]
            for dev in devs:
                old = self._health_row(cur, dev, now_ms)
                if not rules.overdue(old, now_ms):
                    continue  # another gateway got there first
                change = self._health_change(cur, old, rules.silenced(old), now_ms)
                if change:
                    out.append(change)
        return out

    def device_health(self, dev: str | None = None) -> dict[str, dict]:
        """Health per registered device id; devices never heard from are `unknown`."""
        sql = (f"SELECT d.id, {', '.join('h.' + c for c in HEALTH_COLS[1:])} FROM devices d "
               "LEFT JOIN device_health h ON h.dev = d.id")
        args: tuple = ()
        if dev is not None:
            sql += " WHERE d.id = ?"
            args = (dev,)
        out = {}
        for row in self._rows(sql, args):
            h = dict(zip(HEALTH_COLS, row, strict=True))
            h["health"] = h["health"] or "unknown"
            h["state"] = h["state"] or "unknown"
            h["low_battery"], h["backlog"] = bool(h["low_battery"]), bool(h["backlog"])
            out[h.pop("dev")] = h
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

    def device_events(self, dev: str, limit: int = 50) -> list[dict]:
        rows = self._rows("SELECT body FROM device_events WHERE dev = ? ORDER BY id DESC LIMIT ?", (dev, limit))
        return [json.loads(r[0]) for r in rows]
