"""Who reads what: the one rule for which incidents and which holder data a caller sees.

The desk (operator, admin) reads everything. A field role reads only the incidents
dispatched to its own unit, holder contact included, since it is on its way there; without
a unit it reads nothing. A viewer reads every incident and device but no holder personal
data. Every read path (API, console pages, the live stream) asks `view_for` once and then
filters with `sees` and `redact`, so a further filter is added here only.

Sectors: a desk account of a Polsek (`sector`, domain/dispatch.py) reads only the incidents
of its kecamatan; the command centre (`polresta`, or no sector) reads every sector. The
incident's sector is its device's kecamatan, so `sees` takes it; a caller that does not know
it passes nothing and a sector view then hides the incident (fails closed).
"""
from __future__ import annotations

from dataclasses import dataclass

from .dispatch import COMMAND_CENTRE, sector_of
from .lifecycle import FIELD_ROLES

# The holder's personal data on a device record (the button's SIM number reaches the holder too).
PERSONAL = ("holder", "phone", "address", "sim")
_NO_PERSONAL_DATA = frozenset(("viewer",))


@dataclass(frozen=True)
class View:
    units: frozenset[str] | None  # incidents dispatched to these units only; None: every incident
    personal: bool                # holder name, phone and address shown
    sectors: frozenset[str] | None = None  # incidents of these sectors only; None: every sector

    @property
    def everything(self) -> bool:
        return self.units is None


def view_for(role: str, unit: str, *, sector: str = "") -> View:
    if role in FIELD_ROLES:
        return View(units=frozenset((unit,)) if unit else frozenset(), personal=True)
    own = None if not sector or sector == COMMAND_CENTRE else frozenset((sector,))
    return View(units=None, personal=role not in _NO_PERSONAL_DATA, sectors=own)


def sees(view: View, incident_unit: str | None, *, kecamatan: str = "") -> bool:
    if view.units is not None and (incident_unit is None or incident_unit not in view.units):
        return False
    return sees_area(view, kecamatan)


def sees_area(view: View, kecamatan: str) -> bool:
    """Whether the view covers this kecamatan: a sector desk sees its own buttons and calls only."""
    return view.sectors is None or sector_of(kecamatan) in view.sectors


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
