"""Which unit to send: sectors, the ETA approximation and the ranking the console recommends.

Sectors. Kota Malang's police are one command centre (Polresta Malang Kota, sector
`polresta`) over one Polsek per kecamatan; a sector is named by its kecamatan in lower
case (`klojen`). Polresta's own units patrol the whole city, so they stand beside the
incident's own sector's units. The neighbouring sectors are the kecamatan that share a
border (approximate, from public maps).

ETA is an approximation and says so: straight-line (haversine) distance times a road factor,
at a speed per unit kind; a deployment with a road graph would replace `eta_s`. The unit's
last fix counts when it is fresher than `stale_s`, else the unit is placed at its home post.

The answer for one incident: the available units of its sector (and Polresta's) by ETA, the
first `top` of them; `in_time` says whether the best of them can still arrive inside what
is left of the promise. When none can, the answer also names the nearest busy units and the
neighbouring sectors' available units, so the operator sees the next options at once.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass

COMMAND_CENTRE = "polresta"
KECAMATAN = ("Klojen", "Blimbing", "Lowokwaru", "Sukun", "Kedungkandang")
SECTORS = (COMMAND_CENTRE, *(k.lower() for k in KECAMATAN))
# Shared borders between Kota Malang's kecamatan (Klojen is the centre and borders all four).
NEIGHBOURS: dict[str, tuple[str, ...]] = {
    "klojen": ("blimbing", "lowokwaru", "sukun", "kedungkandang"),
    "blimbing": ("klojen", "lowokwaru", "kedungkandang"),
    "lowokwaru": ("klojen", "blimbing", "sukun"),
    "sukun": ("klojen", "lowokwaru", "kedungkandang"),
    "kedungkandang": ("klojen", "blimbing", "sukun"),
    COMMAND_CENTRE: (),
}

KINDS = ("car", "motorbike", "foot")
STATUSES = ("available", "dispatched", "en_route", "on_scene", "off_duty")
BUSY = ("dispatched", "en_route", "on_scene")
EARTH_M = 6_371_000.0


class DispatchError(ValueError):
    """A unit, sector or setting that does not fit the rules (HTTP 400, CLI error)."""


def sector_of(kecamatan: str) -> str:
    """The sector of a kecamatan name (any case); the command centre for an unknown one,
    because an incident nobody's sector owns must still reach someone."""
    key = (kecamatan or "").strip().lower()
    return key if key in NEIGHBOURS and key != COMMAND_CENTRE else COMMAND_CENTRE


def check_sector(sector: str) -> str:
    s = (sector or "").strip().lower()
    if s not in SECTORS:
        raise DispatchError(f"sector must be one of {', '.join(SECTORS)}, not {sector!r}")
    return s


def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise DispatchError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    return kind


def check_status(status: str) -> str:
    if status not in STATUSES:
        raise DispatchError(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    return status


def check_position(lat: object, lon: object, acc: object = 0) -> tuple[int, int, int]:
    """(lat6, lon6, acc) from a reported fix; DispatchError names what is wrong."""
    for name, v, lo, hi in (("lat", lat, -90.0, 90.0), ("lon", lon, -180.0, 180.0)):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or not lo <= v <= hi:
            raise DispatchError(f"{name} is a number in [{lo:g}, {hi:g}]")
    if isinstance(acc, bool) or not isinstance(acc, (int, float)) or not 0 <= acc <= 100_000:
        raise DispatchError("acc is metres in [0, 100000]")
    if lat == 0 and lon == 0:
        raise DispatchError("0, 0 is no fix")
    return round(float(lat) * 1e6), round(float(lon) * 1e6), int(acc)  # type: ignore[arg-type]


@dataclass(frozen=True)
class DispatchConfig:
    """`[dispatch]` in the gateway's config: the ETA approximation's knobs."""
    road_factor: float = 1.35     # road distance / straight-line distance in a city grid
    car_kmh: float = 30.0         # median city speeds with lights and traffic
    motorbike_kmh: float = 35.0
    foot_kmh: float = 5.0
    stale_s: int = 120            # a fix older than this no longer places the unit
    top: int = 3                  # how many units the console recommends

    def kmh(self, kind: str) -> float:
        return {"car": self.car_kmh, "motorbike": self.motorbike_kmh, "foot": self.foot_kmh}[check_kind(kind)]

    @classmethod
    def from_toml(cls, data: Mapping[str, object]) -> DispatchConfig:
        known = cls.__dataclass_fields__
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise DispatchError(f"[dispatch]: unknown keys {unknown}")
        values: dict[str, float | int] = {}
        for key, value in data.items():
            integer = isinstance(known[key].default, int)
            if isinstance(value, bool) or not isinstance(value, int if integer else (int, float)) or value <= 0:
                raise DispatchError(f"[dispatch] {key}: a positive {'integer' if integer else 'number'}, "
                                    f"not {value!r}")
            values[key] = value
        if values.get("road_factor", 1.0) < 1.0:
            raise DispatchError("[dispatch] road_factor: roads are never shorter than the straight line (>= 1)")
        return cls(**values)  # type: ignore[arg-type]


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_M * math.asin(math.sqrt(min(1.0, a)))


def eta_s(distance_m: float, kind: str, cfg: DispatchConfig) -> float:
    """Seconds to drive (or walk) a straight-line distance: the approximation, stated above."""
    return distance_m * cfg.road_factor / (cfg.kmh(kind) / 3.6)


@dataclass(frozen=True)
class UnitView:
    """What the ranking reads of a unit (gateway.store.units.Unit has these)."""
    call_sign: str
    kind: str
    sector: str
    status: str
    post_lat6: int
    post_lon6: int
    lat6: int | None = None
    lon6: int | None = None
    fix_ms: int | None = None


@dataclass(frozen=True)
class Candidate:
    call_sign: str
    kind: str
    sector: str
    status: str
    distance_m: int
    eta_s: int
    in_time: bool
    placed_by: str  # "fix" (a fresh position) or "post" (home post: no fresh fix)


@dataclass(frozen=True)
class Recommendation:
    sector: str
    remaining_s: int          # what is left of the promise now (negative: already missed)
    in_time: bool             # the best candidate can still arrive in time
    candidates: tuple[Candidate, ...]
    busy: tuple[Candidate, ...] = ()
    neighbours: tuple[Candidate, ...] = ()

    def to_json(self) -> dict:
        return {"sector": self.sector, "remaining_s": self.remaining_s, "in_time": self.in_time,
                "approximation": "straight-line distance x road factor / speed per unit kind",
                "candidates": [asdict(c) for c in self.candidates], "busy": [asdict(c) for c in self.busy],
                "neighbours": [asdict(c) for c in self.neighbours]}


def place(u: UnitView, now_ms: int, cfg: DispatchConfig) -> tuple[int, int, str]:
    """Where the unit is taken to be: its fresh fix, else its home post."""
    if u.lat6 is not None and u.lon6 is not None and u.fix_ms is not None and now_ms - u.fix_ms <= cfg.stale_s * 1000:
        return u.lat6, u.lon6, "fix"
    return u.post_lat6, u.post_lon6, "post"


def candidate(u: UnitView, lat6: int, lon6: int, *, now_ms: int, remaining_s: float,
              cfg: DispatchConfig) -> Candidate:
    ulat6, ulon6, how = place(u, now_ms, cfg)
    d = haversine_m(lat6 / 1e6, lon6 / 1e6, ulat6 / 1e6, ulon6 / 1e6)
    eta = eta_s(d, u.kind, cfg)
    return Candidate(u.call_sign, u.kind, u.sector, u.status, round(d), math.ceil(eta), eta <= remaining_s, how)


def _ranked(units: Iterable[UnitView], lat6: int, lon6: int, *, now_ms: int, remaining_s: float,
            cfg: DispatchConfig) -> list[Candidate]:
    out = [candidate(u, lat6, lon6, now_ms=now_ms, remaining_s=remaining_s, cfg=cfg) for u in units]
    return sorted(out, key=lambda c: (c.eta_s, c.distance_m, c.call_sign))


def recommend(units: Iterable[UnitView], *, lat6: int, lon6: int, sector: str, press_ms: int, now_ms: int,
              sla_s: int, cfg: DispatchConfig) -> Recommendation:
    """The units to offer for an incident at (lat6, lon6) in `sector`, pressed at `press_ms`."""
    units = list(units)
    remaining = sla_s - (now_ms - press_ms) / 1000
    own = (sector, COMMAND_CENTRE)
    near = NEIGHBOURS.get(sector, ())

    def ranked(keep: Callable[[UnitView], bool]) -> list[Candidate]:
        return _ranked((u for u in units if keep(u)), lat6, lon6, now_ms=now_ms, remaining_s=remaining, cfg=cfg)

    top = tuple(ranked(lambda u: u.status == "available" and (u.sector in own or sector == COMMAND_CENTRE))
                [:cfg.top])
    in_time = bool(top) and top[0].in_time
    busy: tuple[Candidate, ...] = ()
    neighbours: tuple[Candidate, ...] = ()
    if not in_time:
        busy = tuple(ranked(lambda u: u.status in BUSY)[:cfg.top])
        neighbours = tuple(ranked(lambda u: u.status == "available" and u.sector in near)[:cfg.top])
    return Recommendation(sector, math.floor(remaining), in_time, top, busy, neighbours)
