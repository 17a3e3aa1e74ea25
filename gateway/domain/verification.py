"""Verification and the holder's cancel: the operator's call-back, and who closes an incident.

A cancel from the button is a *request* (`cancel_requested` on the incident's timeline): the
incident stays open, because a holder may be made to cancel. The desk calls the holder back
and records the outcome with `verify` (timed: `verified_ms`); only then may it close the
incident with `confirm_cancel`, and only when the call-back found the holder safe. Only the
command side closes an incident, as AIS-140 asks of panic alarms.

The outcome is the first word of the `verify` note ("safe: spoke to Pak Budi, pressed by
mistake"), so both edges carry it in the one note field they already have.
"""
from __future__ import annotations

from .lifecycle import TransitionError

OUTCOMES = ("safe", "needs_help", "no_answer")


def outcome_of(note: str | None) -> str:
    """The call-back's outcome from a `verify` note; TransitionError (409) names the choices."""
    word = (note or "").strip().split(maxsplit=1)[0].rstrip(":,.").lower() if (note or "").strip() else ""
    if word not in OUTCOMES:
        raise TransitionError(f"verify needs an outcome first in its note: one of {', '.join(OUTCOMES)}")
    return word


def check_confirm_cancel(*, cancel_requested_ms: int | None, verify_outcome: str | None) -> None:
    """Closing on the holder's word: only after a request and a call-back that found them safe."""
    if cancel_requested_ms is None:
        raise TransitionError("no cancel was requested from the button (a false alarm is marked with false_alarm)")
    if verify_outcome != "safe":
        raise TransitionError("call the holder back first: verify with outcome safe before confirming the cancel")
