"""The fleet in the store (docs/protocol.md "Fleet"): signed releases and their bundles, one
rollout per release, each button's firmware as it last reported it, and the command log.

The command log is the audit: a row per command the gateway sent (who asked, what, when) that
the device's signed result completes. Command numbers are allocated here, one counter per
device, by an upsert the database serialises, so two gateways (or the CLI beside a gateway)
never hand one device the same number: the device refuses any number it has seen.
"""
from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import Any

from .core import StoreCore

FW_COLS = ("dev", "fw", "seq", "slot", "rel", "stage", "err", "ota_n", "last_op", "last_ok", "last_err",
           "updated_ms")
CMD_COLS = ("dev", "n", "op", "args", "by_name", "sent_ms", "result", "ok", "err", "result_ms")


@dataclass(frozen=True)
class Release:
    seq: int
    fw: str
    manifest: str  # the JSON bytes exactly as signed, as text
    signature: bytes
    size: int
    sha256: str
    added_by: str
    added_ms: int


@dataclass(frozen=True)
class Rollout:
    seq: int
    pct: float
    state: str  # domain/rollout.py STATES
    why: str
    by: str
    started_ms: int
    updated_ms: int


class FleetMixin(StoreCore):
    # --- releases ----------------------------------------------------------------
    def add_release(self, *, seq: int, fw: str, manifest: bytes, signature: bytes, bundle: bytes, sha256: str,
                    by: str, at_ms: int) -> bool:
        """Keep a verified release; False when one with this seq is already stored."""
        with self._tx() as cur:
            return self._exec(
                cur, "INSERT INTO fleet_releases (seq, fw, manifest, signature, bundle, size, sha256, added_by, "
                     "added_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (seq) DO NOTHING",
                (seq, fw, manifest.decode(), base64.b64encode(signature).decode(), base64.b64encode(bundle).decode(),
                 len(bundle), sha256, by, at_ms)).rowcount == 1

    def _release_row(self, row: tuple) -> Release:
        seq, fw, manifest, sig, size, sha, by, at = row
        return Release(int(seq), fw, manifest, base64.b64decode(sig), int(size), sha, by, int(at))

    def get_release(self, seq: int) -> Release | None:
        rows = self._read("SELECT seq, fw, manifest, signature, size, sha256, added_by, added_ms "
                          "FROM fleet_releases WHERE seq = ?", (seq,))
        return self._release_row(rows[0]) if rows else None

    def releases(self) -> list[Release]:
        """Newest first, without their bundles."""
        rows = self._read("SELECT seq, fw, manifest, signature, size, sha256, added_by, added_ms "
                          "FROM fleet_releases ORDER BY seq DESC")
        return [self._release_row(r) for r in rows]

    def release_bundle(self, seq: int) -> bytes | None:
        rows = self._read("SELECT bundle FROM fleet_releases WHERE seq = ?", (seq,))
        return base64.b64decode(rows[0][0]) if rows else None

    # --- rollouts ----------------------------------------------------------------
    def _rollout_row(self, row: tuple) -> Rollout:
        seq, pct, state, why, by, started, updated = row
        return Rollout(int(seq), float(pct), state, why, by, int(started), int(updated))

    def start_rollout(self, seq: int, pct: float, *, by: str, at_ms: int) -> Rollout:
        """Roll release `seq` out to `pct` %: a new rollout, or the same release's widened
        (a halted one goes on: the operator looked at the reason). Any other active rollout
        ends, superseded: one release is rolled out at a time."""
        with self._tx() as cur:
            self._exec(cur, "UPDATE fleet_rollouts SET state = 'done', why = ?, updated_ms = ? "
                            "WHERE seq <> ? AND state IN ('active', 'halted')",
                       (f"superseded by release {seq}", at_ms, seq))
            self._exec(cur, "INSERT INTO fleet_rollouts (seq, pct, state, why, by_name, started_ms, updated_ms) "
                            "VALUES (?, ?, 'active', '', ?, ?, ?) ON CONFLICT (seq) DO UPDATE SET pct = ?, "
                            "state = 'active', why = '', by_name = ?, updated_ms = ?",
                       (seq, pct, by, at_ms, at_ms, pct, by, at_ms))
            row = self._exec(cur, "SELECT seq, pct, state, why, by_name, started_ms, updated_ms FROM fleet_rollouts "
                                  "WHERE seq = ?", (seq,)).fetchone()
        return self._rollout_row(row)

    def current_rollout(self) -> Rollout | None:
        """The rollout last started or widened."""
        rows = self._read("SELECT seq, pct, state, why, by_name, started_ms, updated_ms FROM fleet_rollouts "
                          "ORDER BY started_ms DESC, seq DESC LIMIT 1")
        return self._rollout_row(rows[0]) if rows else None

    def rollout(self, seq: int) -> Rollout | None:
        rows = self._read("SELECT seq, pct, state, why, by_name, started_ms, updated_ms FROM fleet_rollouts "
                          "WHERE seq = ?", (seq,))
        return self._rollout_row(rows[0]) if rows else None

    def set_rollout_state(self, seq: int, state: str, why: str, *, at_ms: int, only_from: str = "active") -> bool:
        """Halt or finish; only from `only_from`, so two gateways halting at once record one reason."""
        with self._tx() as cur:
            return self._exec(cur, "UPDATE fleet_rollouts SET state = ?, why = ?, updated_ms = ? "
                                   "WHERE seq = ? AND state = ?", (state, why, at_ms, seq, only_from)).rowcount == 1

    def claim_ota(self, dev: str, seq: int, seen_updated_ms: int | None, at_ms: int) -> bool:
        """Take the device for sending it release `seq`, only if its firmware record is still
        the one the caller judged (compare and set on `updated_ms`): of several gateways
        stepping one rollout at once, one sends each device its command."""
        with self._tx() as cur:
            if seen_updated_ms is None:
                return self._exec(cur, "INSERT INTO device_firmware (dev, rel, stage, updated_ms) VALUES (?, ?, 'sent', ?) "
                                       "ON CONFLICT (dev) DO NOTHING", (dev, seq, at_ms)).rowcount == 1
            return self._exec(cur, "UPDATE device_firmware SET rel = ?, stage = 'sent', err = NULL, updated_ms = ? "
                                   "WHERE dev = ? AND updated_ms = ?", (seq, at_ms, dev, seen_updated_ms)).rowcount == 1

    # --- commands: the audit log ----------------------------------------------------
    def add_command(self, dev: str, op: str, args: dict, *, by: str, at_ms: int) -> int:
        """Allocate the device's next command number and log the command; returns the number."""
        with self._tx() as cur:
            n = int(self._exec(cur, "INSERT INTO fleet_cmdseq (dev, n) VALUES (?, 1) ON CONFLICT (dev) "
                                    "DO UPDATE SET n = fleet_cmdseq.n + 1 RETURNING n", (dev,)).fetchone()[0])
            self._exec(cur, "INSERT INTO fleet_commands (dev, n, op, args, by_name, sent_ms) VALUES (?, ?, ?, ?, ?, ?)",
                       (dev, n, op, json.dumps(args, separators=(",", ":")), by, at_ms))
            if op == "ota":
                m = args["m"]
                seq = json.loads(m)["seq"] if isinstance(m, str) else m["seq"]
                self._upsert_fw(cur, dev, {"rel": int(seq), "stage": "sent", "err": None, "ota_n": n},
                                at_ms)
        return n

    def record_result(self, dev: str, result: dict, at_ms: int) -> bool:
        """A device's verified result: completes its command's row and updates its firmware
        record. False when no such command was sent (a stray number)."""
        n, op = int(result["n"]), str(result.get("op"))
        ok, err = bool(result.get("ok")), result.get("err")
        # A command delivered twice (its PUBACK lost) is run once and then refused as a
        # replay: that answer must not overwrite the result of the run.
        replay = int(not ok and err == "replay")
        with self._tx() as cur:
            found = self._exec(cur, "UPDATE fleet_commands SET result = ?, ok = ?, err = ?, result_ms = ? "
                                    "WHERE dev = ? AND n = ? AND (result IS NULL OR ? = 0)",
                               (json.dumps(result, separators=(",", ":")), int(ok), err, at_ms, dev, n,
                                replay)).rowcount == 1
            if replay:
                return found or self._exec(cur, "SELECT 1 FROM fleet_commands WHERE dev = ? AND n = ?",
                                           (dev, n)).fetchone() is not None
            fw: dict[str, Any] = {"last_op": op, "last_ok": int(ok), "last_err": err}
            for k in ("fw", "slot"):
                if isinstance(result.get(k), str):
                    fw[k] = result[k]
            stage = result.get("stage")
            if op == "ota" and isinstance(stage, str):
                rel = result.get("rel")
                fw.update(stage=stage, err=err, ota_n=n)
                if isinstance(rel, int):
                    fw["rel"] = rel
                    if stage in ("trial", "kept"):
                        fw["seq"] = rel  # it runs the release now (on trial, or for good)
                    elif stage == "rolled_back":
                        fw["seq"] = None  # back on the one before, whose seq the result does not say
            self._upsert_fw(cur, dev, fw, at_ms)
        return found

    def _upsert_fw(self, cur, dev: str, values: dict, at_ms: int) -> None:
        cols = [*values, "updated_ms"]
        args = [*values.values(), at_ms]
        sets = ", ".join(f"{c} = ?" for c in cols)
        self._exec(cur, f"INSERT INTO device_firmware (dev, {', '.join(cols)}) VALUES (?, {', '.join('?' * len(cols))}) "
                        f"ON CONFLICT (dev) DO UPDATE SET {sets}", (dev, *args, *args))

    @staticmethod
    def _command_row(row: tuple) -> dict:
        c = dict(zip(CMD_COLS, row, strict=True))
        c["args"] = json.loads(c["args"])
        c["result"] = json.loads(c["result"]) if c["result"] else None
        c["ok"] = None if c["ok"] is None else bool(c["ok"])
        c["by"] = c.pop("by_name")
        return c

    def commands(self, dev: str, limit: int = 50) -> list[dict]:
        """The device's commands, newest first, each with its result."""
        rows = self._read(f"SELECT {', '.join(CMD_COLS)} FROM fleet_commands WHERE dev = ? ORDER BY n DESC LIMIT ?",
                          (dev, limit))
        return [self._command_row(r) for r in rows]

    def command(self, dev: str, n: int) -> dict | None:
        rows = self._read(f"SELECT {', '.join(CMD_COLS)} FROM fleet_commands WHERE dev = ? AND n = ?", (dev, n))
        return self._command_row(rows[0]) if rows else None

    # --- firmware per device ---------------------------------------------------------
    def firmware(self) -> dict[str, dict]:
        """Every registered device's firmware record (None values for one never heard),
        with its registry status and health, in one query."""
        rows = self._read(f"SELECT d.id, d.status, COALESCE(h.health, 'unknown'), h.fw, "
                          f"{', '.join('f.' + c for c in FW_COLS[1:])} FROM devices d "
                          "LEFT JOIN device_firmware f ON f.dev = d.id LEFT JOIN device_health h ON h.dev = d.id "
                          "ORDER BY d.id")
        out = {}
        for r in rows:
            rec = dict(zip(FW_COLS, (r[0], *r[4:]), strict=True))
            rec["status"], rec["health"] = r[1], r[2]
            rec["fw"] = rec["fw"] or r[3]  # before any result: the version its statuses report
            rec["known"] = rec["updated_ms"] is not None
            out[r[0]] = rec
        return out
