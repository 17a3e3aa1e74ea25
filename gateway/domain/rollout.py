"""Staged rollout of a firmware release (docs/protocol.md "Fleet"): which buttons take it in
which wave, which may be sent it now, what counts as a failed trial, and when the rollout
halts by itself. Rules only: the store keeps the records, the fleet worker acts on them.

The order is a hash of (device, release seq): deterministic, so every gateway and every
restart picks the same canary group, and a different one per release, so the same few
buttons do not carry every first risk. A wave is the first `pct` % of that order, so
widening a rollout keeps every device already in it.
"""
from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

STATES = ("active", "halted", "done")
# Result stages of an `ota` command (the device's words).
STAGES = ("accepted", "refused", "downloaded", "trial", "kept", "rolled_back")
# Stages after which the device is still working on the release: not yet an outcome.
IN_FLIGHT = ("sent", "accepted", "downloaded", "trial")
# A refusal that says the release or its transfer is bad (counts against the rollout);
# the others say the device cannot take it now ("busy_alert", "battery": asked again later)
# or never ("old", "size", "key": left out).
BAD_REFUSALS = ("sig", "hash")
LATER_REFUSALS = ("busy_alert", "battery")
# How a failure reads in the halt reason.
FAILURE_WORDS = {"rolled_back": "rolled back", "sig": "refused the signature", "hash": "refused the bundle hash",
                 "offline": "offline during trial"}
_PCT = re.compile(r"^\s*(\d{1,3}(?:\.\d+)?)\s*%?\s*$")


class RolloutError(ValueError):
    pass


@dataclass(frozen=True)
class Rules:
    """`[fleet]` in the gateway config."""
    halt_pct: float = 10.0  # failures of the trial group above this share halt the rollout
    halt_min: int = 3  # ... judged only once this many devices have an outcome
    trial_s: int = 600  # a device silent this long after `downloaded`/`trial` failed its trial
    retry_s: int = 600  # a device that could not take it now (alert pending, battery) is asked again after this
    parallel: int = 20  # devices downloading at once


@dataclass
class Outcome:
    dev: str
    state: str  # waiting | sent | ok | failed | later | skipped
    why: str = ""


@dataclass
class Tally:
    """Where each device of the current wave stands."""
    wave: int = 0
    by_state: dict[str, int] = field(default_factory=dict)
    failures: list[Outcome] = field(default_factory=list)

    @property
    def decided(self) -> int:
        return self.by_state.get("ok", 0) + self.by_state.get("failed", 0)


def parse_pct(text: str | int | float) -> float:
    """'5%', '5' or 5 -> 5.0; refuses 0 and anything above 100."""
    m = _PCT.match(str(text))
    if not m:
        raise RolloutError(f"not a percentage: {text!r} (say 5% or 100%)")
    pct = float(m.group(1))
    if not 0 < pct <= 100:
        raise RolloutError(f"a rollout covers more than 0 % and at most 100 %, not {pct:g} %")
    return pct


def rank(dev: str, seq: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{dev}\n{seq}".encode()).digest()[:8], "big")


def order(devs: list[str], seq: int) -> list[str]:
    return sorted(devs, key=lambda d: (rank(d, seq), d))


def wave_size(total: int, pct: float) -> int:
    """At least one device of a non-empty fleet: 5 % of 10 buttons is one canary, not none."""
    return min(total, max(1, math.ceil(total * pct / 100))) if total else 0


def wave(devs: list[str], seq: int, pct: float) -> list[str]:
    """The devices a rollout at `pct` % covers, first in the order first."""
    ranked = order(devs, seq)
    return ranked[:wave_size(len(ranked), pct)]


def outcome(fw: dict | None, seq: int, health: str, now_ms: int, rules: Rules) -> Outcome:
    """Where one device stands with release `seq`. `fw` is its firmware record (store
    `device_firmware` columns) or None when nothing was ever sent or heard; `health` its
    health (domain/health.py)."""
    dev = fw["dev"] if fw else ""
    if fw is None:
        return Outcome(dev, "waiting")
    if fw.get("rel") != seq:
        if (fw.get("seq") or 0) >= seq:
            return Outcome(dev, "ok", "runs it" if fw.get("seq") == seq else "runs a newer release")
        return Outcome(dev, "waiting")
    stage, err = fw.get("stage"), fw.get("err")
    if stage == "kept":
        return Outcome(dev, "ok", "kept")
    if stage == "rolled_back":
        return Outcome(dev, "failed", f"rolled_back:{err}" if err else "rolled_back")
    if stage == "refused":
        if err in BAD_REFUSALS:
            return Outcome(dev, "failed", str(err))
        if err in LATER_REFUSALS:
            return Outcome(dev, "later", str(err))
        return Outcome(dev, "skipped", str(err or "refused"))
    if stage in ("downloaded", "trial") and health in ("offline", "silent") \
            and now_ms - (fw.get("updated_ms") or 0) > rules.trial_s * 1000:
        return Outcome(dev, "failed", "offline")
    return Outcome(dev, "sent", str(stage))


def may_send(o: Outcome, fw: dict | None, health: str, active: bool, now_ms: int, rules: Rules) -> bool:
    """Whether the device should be sent the release's `ota` command now: registered and
    active, heard from (a button that is offline gets it when it is back), and either never
    sent it, or asked to try later and the wait is over, or sent it long ago with no word since
    (the command may have been lost with a session)."""
    if not active or health not in ("online", "sleeping"):
        return False
    since = now_ms - ((fw or {}).get("updated_ms") or 0)
    if o.state == "waiting":
        return True
    if o.state == "later":
        return since >= rules.retry_s * 1000
    if o.state == "sent" and o.why == "sent":
        return since >= rules.retry_s * 1000
    return False


def tally(outcomes: list[Outcome]) -> Tally:
    t = Tally(wave=len(outcomes))
    for o in outcomes:
        t.by_state[o.state] = t.by_state.get(o.state, 0) + 1
        if o.state == "failed":
            t.failures.append(o)
    return t


def halt_reason(t: Tally, rules: Rules) -> str | None:
    """Why the rollout must stop, or None to go on: the trial group's failures (rolled back,
    refused for signature or hash, offline during the trial) above `halt_pct` % of the
    devices with an outcome, once at least `halt_min` have one."""
    failed = len(t.failures)
    if not failed or t.decided < rules.halt_min or failed * 100 <= rules.halt_pct * t.decided:
        return None
    return reason_text(t, rules)


def reason_text(t: Tally, rules: Rules) -> str:
    kinds: dict[str, int] = {}
    for o in t.failures:
        key = o.why.split(":", 1)[0]
        kinds[key] = kinds.get(key, 0) + 1
    parts = ", ".join(f"{n} {FAILURE_WORDS.get(k, k)}" for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))
    causes = sorted({o.why.split(":", 1)[1] for o in t.failures if ":" in o.why})
    share = 100 * len(t.failures) / t.decided
    text = (f"{len(t.failures)} of {t.decided} devices with an outcome failed the trial "
            f"({share:.0f} % > {rules.halt_pct:g} %): {parts}")
    if causes:
        text += f" (causes: {', '.join(causes)})"
    first = sorted(o.dev for o in t.failures)[:3]
    return text + f"; e.g. {', '.join(first)}"


def finished(t: Tally, pct: float) -> bool:
    """A rollout at 100 % is done when every device has an outcome that needs no more sends."""
    return pct >= 100 and t.wave > 0 and all(
        s in ("ok", "skipped", "failed") for s, n in t.by_state.items() if n)
