"""Who reads what: the one rule for which incidents and which holder data a caller sees.

The desk (operator, admin) reads everything. A field role reads only the incidents
dispatched to its own unit, holder contact included, since it is on its way there; without
a unit it reads nothing. A viewer reads every incident and device but no holder personal
data. Every read path (API, console pages, the live stream) asks `view_for` once and then
filters with `sees` and `redact`, so a further filter (a sector) is added here only.
"""
from __future__ import annotations

from dataclasses import dataclass

from .lifecycle import FIELD_ROLES

# The holder's personal data on a device record.
PERSONAL = ("holder", "phone", "address")
_NO_PERSONAL_DATA = frozenset(("viewer",))


@dataclass(frozen=True)
class View:
    units: frozenset[str] | None  # incidents dispatched to these units only; None: every incident
    personal: bool                # holder name, phone and address shown

    @property
    def everything(self) -> bool:
        return self.units is None


def view_for(role: str, unit: str) -> View:
    if role in FIELD_ROLES:
        return View(units=frozenset((unit,)) if unit else frozenset(), personal=True)
    return View(units=None, personal=role not in _NO_PERSONAL_DATA)


def sees(view: View, incident_unit: str | None) -> bool:
    return view.units is None or (incident_unit is not None and incident_unit in view.units)


def redact(view: View, device: dict | None) -> dict | None:
    """A device's public record as this view may read it."""
    if device is None or view.personal:
        return device
    return {**device, **{k: "" for k in PERSONAL if k in device}}


def redact_registry(view: View, device: dict) -> dict:
    """A device in the registry's lists (not tied to an incident): holder data for the desk only."""
    if view.personal and view.everything:
        return device
    return {**device, **{k: "" for k in PERSONAL if k in device}}
