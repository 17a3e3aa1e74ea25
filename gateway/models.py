"""Plain records passed between the gateway's parts."""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass, field, fields

# The lifecycle's names live with its rules; re-exported for the code that reads them here.
from .domain import sla
from .domain.lifecycle import ACK_STAGE, FINAL, STAGES

__all__ = ["ACK_STAGE", "FINAL", "STAGES", "Alert", "Device", "Incident", "Outcome"]


@dataclass
class Device:
    id: str
    secret: str
    mqtt_password: str
    kelurahan: str = ""
    kecamatan: str = "Klojen"
    rw: int = 0
    rt: int = 0
    lat6: int = 0
    lon6: int = 0
    holder: str = ""
    phone: str = ""
    address: str = ""
    status: str = "active"  # active | suspended
    created_ms: int = 0
    flag: str = ""  # non-empty: flagged for review (e.g. the false-alarm policy), with the reason
    secret_rotated_ms: int | None = None
    sim: str | None = None  # E.164 number of the button's SIM: an SMS is believed only from it

    def public(self) -> dict:
        """What the API may show: everything but credentials."""
        d = asdict(self)
        d.pop("secret")
        d.pop("mqtt_password")
        return d


@dataclass
class Alert:
    """A validated alert, as the gateway received it."""
    id: str
    dev: str
    boot: int
    seq: int
    kind: str
    t: int | None
    age: int
    lat6: int
    lon6: int
    acc: int
    src: str
    batt: int | None
    rssi: int | None
    ref: str | None
    received_ms: int
    body: str
    via: str | None = None  # the link the transmission left on, as the body says (None: wifi)
    path: str = "wifi"      # domain/paths.py: how this copy reached the gateway

    @property
    def press_ms(self) -> int:
        # The device clock when it was synced, else our clock less the device's age.
        return self.t if self.t is not None else self.received_ms - self.age


@dataclass
class Incident:
    id: str
    alert_id: str
    dev: str
    kind: str
    state: str
    press_ms: int
    received_ms: int
    lat6: int
    lon6: int
    acc: int
    src: str
    batt: int | None = None
    rssi: int | None = None
    clock: str = "device"  # device: press time from the device clock; age: from received - age
    acknowledged_ms: int | None = None
    dispatched_ms: int | None = None
    on_scene_ms: int | None = None
    resolved_ms: int | None = None
    cancelled_ms: int | None = None
    unit: str | None = None
    escalated: int = 0
    updated_ms: int = 0
    escalated_ms: int | None = None
    false_alarm: int = 0
    cancel_requested_ms: int | None = None  # the holder cancelled from the button (a request)
    verified_ms: int | None = None          # the desk's call-back (domain/verification.py)
    verify_outcome: str | None = None
    path: str = "wifi"  # the path of the first delivery (domain/paths.py)
    device: dict | None = field(default=None, compare=False)

    def to_json(self) -> dict:
        # What dataclasses.asdict gives, without its deep copy of every field: the fields
        # are ints, strings and None, only `device` is a dict. asdict was a third of the
        # ingest worker's time under a burst (py-spy, docs/benchmarks.md).
        d = {name: getattr(self, name) for name in _INCIDENT_FIELDS}
        if self.device is not None:
            d["device"] = copy.deepcopy(self.device)
        d["latency_ms"] = self.latencies()
        return d

    def latencies(self) -> dict[str, int | None]:
        """Each SLA step in ms (domain/sla.py's steps), None until it happened."""
        return {step: sla.step_ms(self, step) for step in sla.STEPS}


_INCIDENT_FIELDS = tuple(f.name for f in fields(Incident))


@dataclass
class Outcome:
    """What ingesting one alert did: the incident it belongs to and the ack stage owed."""
    alert: Alert
    incident: Incident | None
    created: bool
    duplicate: bool
    stage: str
    reason: str | None = None
    floor: int | None = None  # with id_reuse: the highest boot number the gateway has seen
    new_path: bool = False  # this (alert id, path) was not delivered before: a delivery row was added
