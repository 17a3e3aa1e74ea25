"""How many incidents one button may hold open at once.

A real emergency needs one open incident per button, a few at most (a second press after
a cancel, a press while help is on the way, presses queued while the button was offline). A stolen or broken button signing hundreds of
alerts must not bury the city's other calls in the operators' queue, nor may any of its
alerts be lost: past the cap each further alert is stored, acked and attached to the
button's newest open incident, counted, and the button is flagged for review.
"""
from __future__ import annotations

FLAG = "alert flood: over {cap} open incidents; further alerts attached to the newest"


def folds(open_count: int, cap: int) -> bool:
    """Whether a new alert, with `open_count` incidents of its button open, joins the newest;
    `cap` is [gateway] open_incidents_per_device, 0 for no cap."""
    return cap > 0 and open_count >= cap
