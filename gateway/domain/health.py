"""Device health from status messages: online, offline, sleeping, silent, unknown, plus the
conditions low battery and backlog.

A device publishes a retained status at connect and every heartbeat; the broker publishes
its will (`offline`) when the link dies. A device `online` or `sleeping` whose next status
is overdue by `silent_factor` heartbeats is `silent`: it may be dead, out of range or
stolen, and nothing else would tell. Records are plain dicts keyed like the store's
`device_health` columns.
"""
from __future__ import annotations

HEALTHS = ("online", "offline", "sleeping", "silent", "unknown")
CONDITIONS = ("low_battery", "backlog")
# A change of any of these is a device event for the sinks.
WATCHED = ("health", "low_battery", "backlog")
_LIVE = ("online", "sleeping")
# Link diagnostics a button reports in its status (firmware/mqtt.py ERR_*, the board's reset cause).
RESET_CAUSES = ("pwron", "hard", "wdt", "deepsleep", "soft", "other")
LINK_ERRORS = ("auth", "dns", "no_broker", "tls")
# A status's optional `cell` (docs/protocol.md): the modem's registration, +CSQ (99: unknown)
# and the last supervised cellular test; the last values are kept as the cellular path's proof.
CELL_REGS = ("home", "roaming", "searching", "denied", "none")
# What an operator should fix, in plain words (the console has its own words per language).
LINK_ERROR_WORDS = {"auth": "wrong password", "dns": "no DNS", "no_broker": "broker unreachable",
                    "tls": "TLS failed"}
_NOT_HEARD = ("offline", "silent")


def merge_status(old: dict, status: dict, now_ms: int, *, heartbeat_s: int, silent_factor: float,
                 low_battery_pct: int, backlog_min: int) -> dict:
    """The health record after one status message (`status` as health.parse_status gives it)."""
    new = dict(old)
    for k in ("state", "fw", "boot", "up", "batt", "rssi", "outbox"):
        if status.get(k) is not None:
            new[k] = status[k]
    if status.get("reset") is not None:
        new["reset_cause"] = status["reset"]
    if status.get("reconnects") is not None:
        new["reconnects"] = status["reconnects"]
    if "link_err" in status:
        # null means no link failure this boot; old firmware omits the key and keeps the last known.
        err = status["link_err"]
        if err is None:
            new["link_err_ms"] = None
        elif err != old.get("link_err") or old.get("link_err_ms") is None:
            new["link_err_ms"] = now_ms
        new["link_err"] = err
    cell = status.get("cell")
    if cell is not None:
        new["cell_reg"], new["cell_csq"], new["cell_ms"] = cell["reg"], cell["csq"], now_ms
        if cell.get("test") is not None:
            new["cell_test_ms"] = cell["test"] * 1000
    if status["state"] == "offline":
        new["outbox"] = old.get("outbox")  # the will carries no counters: keep the last known
    new["heartbeat_s"] = status.get("hb") or old.get("heartbeat_s") or heartbeat_s
    new["last_status_ms"] = now_ms
    new["silent_at_ms"] = now_ms + int(silent_factor * new["heartbeat_s"] * 1000)
    new["health"] = new["state"]
    new["low_battery"] = int(new.get("batt") is not None and new["batt"] <= low_battery_pct)
    new["backlog"] = int(new["state"] != "offline" and (new.get("outbox") or 0) >= backlog_min)
    return new


def overdue(h: dict, now_ms: int) -> bool:
    """A live device whose next status should have come by now."""
    return h.get("health") in _LIVE and h.get("silent_at_ms") is not None and h["silent_at_ms"] < now_ms


def silenced(h: dict) -> dict:
    return dict(h, health="silent")


def changed(old: dict, new: dict) -> bool:
    """Whether the difference is worth a device event (not a mere "last heard")."""
    return any(old.get(k) != new.get(k) for k in WATCHED)


def label(h: dict | None, *, suspended: bool = False) -> str:
    """One word for an operator: suspended, then silent beats offline beats sleeping beats
    low battery; a device never heard from is unknown."""
    if suspended:
        return "suspended"
    if h is None:
        return "unknown"
    health, state = (h.get("health") or "").lower(), (h.get("state") or "").lower()
    if health in ("silent", "offline", "sleeping"):
        return health
    if state in ("offline", "sleeping"):
        return state
    if h.get("low_battery"):
        return "low_battery"
    return "online" if state == "online" else "unknown"


def link_problem(h: dict | None, *, suspended: bool = False) -> str | None:
    """The last link error kind a device reported, when it is not heard from (offline or
    silent): the best hint at what to fix. A button reports the error only once it is back on
    a broker, so this is the kind of its last outage it got through, not proof of the current one."""
    if h is None or label(h, suspended=suspended) not in _NOT_HEARD:
        return None
    err = h.get("link_err")
    return err if err in LINK_ERRORS else None


def link_problem_words(h: dict | None, *, suspended: bool = False) -> str | None:
    kind = link_problem(h, suspended=suspended)
    return LINK_ERROR_WORDS[kind] if kind else None
