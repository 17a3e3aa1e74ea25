"""The escalation ladder: who takes over an incident nobody acknowledged, and when.

An incident goes to its sector's operators first (domain/visibility.py). Each step of the
ladder hands it further up once it is still unacknowledged `after_s` seconds after it was
received: the Polresta command centre, then the city's 112 centre (Ngalam 112, reached
through a sink). Steps run in order, each at most once per incident; the incident's
`escalated` column holds how many steps it has climbed, and every step writes its event
(timeline and sinks), so each one is timed.

`[[escalation]]` in the gateway's config lists the steps (`to`, `after_s`); without it the
ladder is the one step to Polresta after `[gateway] escalate_after_s`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

# Who a step may hand over to, and the event each queues (a sink lists the ones it takes).
TARGETS = {"polresta": "escalated", "ngalam112": "escalated_112"}


class LadderError(ValueError):
    """A ladder the config gets wrong (ConfigError at load)."""


@dataclass(frozen=True)
class Step:
    to: str
    after_s: int

    @property
    def event(self) -> str:
        return TARGETS[self.to]


def default(escalate_after_s: int) -> tuple[Step, ...]:
    return (Step("polresta", escalate_after_s),)


def parse(raw: object, escalate_after_s: int) -> tuple[Step, ...]:
    """The steps from `[[escalation]]` (a list of tables), checked; the default when absent."""
    if raw is None:
        return default(escalate_after_s)
    if not isinstance(raw, list) or not raw:
        raise LadderError("[[escalation]]: a list of steps {to, after_s}")
    steps: list[Step] = []
    for i, item in enumerate(raw, start=1):
        if not isinstance(item, dict) or set(item) != {"to", "after_s"}:
            raise LadderError(f"[[escalation]] step {i}: exactly the keys to and after_s")
        to, after = item["to"], item["after_s"]
        if to not in TARGETS:
            raise LadderError(f"[[escalation]] step {i}: to must be one of {', '.join(TARGETS)}, not {to!r}")
        if isinstance(after, bool) or not isinstance(after, int) or after <= 0:
            raise LadderError(f"[[escalation]] step {i}: after_s is a positive integer")
        if steps and after <= steps[-1].after_s:
            raise LadderError(f"[[escalation]] step {i}: after_s must grow step by step")
        if any(s.to == to for s in steps):
            raise LadderError(f"[[escalation]] step {i}: {to} is already a step")
        steps.append(Step(to, after))
    return tuple(steps)


def note(step: Step, waited_s: int) -> str:
    """The timeline's words for a step taken."""
    return f"to {step.to}: not acknowledged after {waited_s} s"


def first_check_s(steps: Sequence[Step]) -> int:
    return min(s.after_s for s in steps)
