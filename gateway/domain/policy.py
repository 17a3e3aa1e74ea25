"""The false-alarm policy: after `limit` operator-marked false alarms within `window_ms`, a
device is flagged for review or suspended.

A false alarm is an incident an operator closed with the `false_alarm` action (the store's
`false_alarm` flag). A cancel from the button is the holder correcting a slip, and never
counts: the programme blocks a number for repeated false alarms, not for honesty.
The console marks a device as a repeat offender from `warn_at` false alarms, before the
policy acts.
"""
from __future__ import annotations

from dataclasses import dataclass

DAY_MS = 86_400_000
ACTIONS = ("flag", "suspend")


@dataclass(frozen=True)
class FalseAlarmPolicy:
    limit: int = 3                   # 0: no policy
    window_ms: int = 30 * DAY_MS
    action: str = "flag"             # flag | suspend
    warn_at: int = 2                 # the console marks a device from this many

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"false-alarm action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if self.limit < 0 or self.window_ms <= 0:
            raise ValueError("false-alarm limit must be >= 0 and the window positive")

    def since(self, now_ms: int) -> int:
        """Start of the window that counts at `now_ms`."""
        return now_ms - self.window_ms

    def warns(self, count: int) -> bool:
        """Whether the console should mark the device as a repeat offender."""
        return count >= self.warn_at


@dataclass(frozen=True)
class Decision:
    action: str   # flag | suspend
    count: int
    reason: str

    @property
    def flag(self) -> str:
        """The text kept in the device's `flag` column."""
        return f"{'suspended' if self.action == 'suspend' else 'review'}: {self.reason}"


def decide(policy: FalseAlarmPolicy, count: int) -> Decision | None:
    """What the policy does about a device with `count` false alarms in its window, if anything."""
    if policy.limit <= 0 or count < policy.limit:
        return None
    return Decision(policy.action, count, f"{count} false alarms within {policy.window_ms / DAY_MS:g} days")
