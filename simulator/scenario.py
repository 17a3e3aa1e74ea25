"""Scenarios as data: kelurahan with RW/RT counts and centres, expanded into buttons.

Expansion is deterministic (seeded by the scenario name), so every run, test and
report sees the same RT heads at the same places.
"""
from __future__ import annotations

import json
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCENARIOS = Path(__file__).parent / "scenarios"
M_PER_DEG_LAT = 111_320.0


@dataclass
class Button:
    id: str
    kelurahan: str
    kecamatan: str
    rw: int
    rt: int
    lat6: int
    lon6: int


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", name.lower())


def load(name: str) -> dict:
    """A scenario file; one with `"extends": "<scenario>"` is that scenario with its own keys
    on top (a variant: the same RT heads at the same places, another world)."""
    path = Path(name) if name.endswith(".json") else SCENARIOS / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.json")))
        raise SystemExit(f"unknown scenario {name!r}; known: {known}")
    data = json.loads(path.read_text())
    base_name = data.pop("extends", None)
    if base_name is None:
        return data
    beside = path.parent / f"{base_name}.json"
    base = load(str(beside) if beside.exists() else base_name)
    # The buttons are seeded by the base's name: a variant keeps every RT head where it was.
    return {**base, "buttons_of": base.get("buttons_of", base["name"]), **data}


def variant(name: str, which: str) -> str:
    """The scenario file of a named variant of `name` (e.g. klojen -> klojen-powercut)."""
    stem = Path(name).stem
    path = (Path(name).parent if name.endswith(".json") else SCENARIOS) / f"{stem}-{which}.json"
    if not path.exists():
        raise SystemExit(f"scenario {stem!r} has no {which} variant ({path.name} not found)")
    return str(path)


def world_settings(scenario: dict) -> dict:
    """The scenario's world settings as WorldConfig fields (simulator/world.py); absent keys
    keep WorldConfig's defaults. The command line overrides them."""
    out: dict = {}
    cuts = scenario.get("neighbourhood_cuts")
    if cuts:
        out["neighbourhood_cuts"] = int(cuts.get("count", 0))
        if "sim_minutes" in cuts:
            out["neighbourhood_cut_sim_s"] = float(cuts["sim_minutes"]) * 60
        if "press_rate_per_h" in cuts:
            out["cut_press_rate_per_h"] = float(cuts["press_rate_per_h"])
    if "modem_share" in scenario:
        out["modem_share"] = float(scenario["modem_share"])
    if "carrier" in scenario:
        out["carrier"] = carrier_settings(scenario["carrier"])
    return out


def carrier_settings(block: dict) -> dict:
    """A scenario's `carrier` block, checked: coverage shares per kelurahan (`"*"` for the rest),
    the share of covered buttons with a working data call, attach time and SMS delay as
    lognormal (median, sigma) in real seconds, SMS loss a share."""
    cov = block.get("coverage", {})
    cov = {"*": float(cov)} if isinstance(cov, (int, float)) else {k: float(v) for k, v in cov.items()}
    out: dict[str, Any] = {"coverage": cov,
           "attach_median_s": float(block.get("attach_median_s", 4.0)),
           "attach_sigma": float(block.get("attach_sigma", 0.5)),
           "attach_max_s": float(block.get("attach_max_s", 30.0)),
           "sms_delay_median_s": float(block.get("sms_delay_median_s", 8.0)),
           "sms_delay_sigma": float(block.get("sms_delay_sigma", 0.5)),
           "sms_loss": float(block.get("sms_loss", 0.0)),
           # Of the buttons with signal, the share whose data call works (the rest: SMS only,
           # e.g. a SIM without a data plan or a cell without capacity for it).
           "data_share": float(block.get("data_share", 1.0))}
    shares: list[tuple[str, float]] = [*cov.items(), ("sms_loss", out["sms_loss"]), ("data_share", out["data_share"])]
    for k, v in shares:
        if not 0.0 <= v <= 1.0:
            raise SystemExit(f"carrier: {k} must be a share in [0, 1], not {v}")
    if out["attach_median_s"] <= 0 or out["sms_delay_median_s"] <= 0:
        raise SystemExit("carrier: attach_median_s and sms_delay_median_s must be > 0")
    return out


def buttons(scenario: dict) -> list[Button]:
    """Every RT head of the scenario, kelurahan by kelurahan, RT spread over the RWs.

    Order interleaves kelurahan so that `--devices N` takes a city-wide sample.
    """
    rng = random.Random(scenario.get("buttons_of", scenario["name"]))
    spread = scenario.get("spread_m", 450)
    per_kel: list[list[Button]] = []
    default_prefix = slug(scenario.get("prefix", scenario["kecamatan"]))[:3]
    for kel in scenario["kelurahan"]:
        # City-wide scenarios name the kecamatan per kelurahan, with its own id prefix.
        kecamatan = kel.get("kecamatan", scenario["kecamatan"])
        prefix = scenario.get("prefixes", {}).get(kecamatan, default_prefix)
        out = []
        rts_per_rw = [kel["rt"] // kel["rw"] + (1 if i < kel["rt"] % kel["rw"] else 0) for i in range(kel["rw"])]
        for rw, n_rt in enumerate(rts_per_rw, start=1):
            for rt in range(1, n_rt + 1):
                r = spread * math.sqrt(rng.random())
                a = rng.random() * 2 * math.pi
                lat = kel["lat"] + r * math.sin(a) / M_PER_DEG_LAT
                lon = kel["lon"] + r * math.cos(a) / (M_PER_DEG_LAT * math.cos(math.radians(kel["lat"])))
                out.append(Button(f"{prefix}-{slug(kel['name'])[:12]}-rw{rw:02d}-rt{rt:02d}", kel["name"],
                                  kecamatan, rw, rt, round(lat * 1e6), round(lon * 1e6)))
        per_kel.append(out)
    interleaved = []
    for i in range(max(len(k) for k in per_kel)):
        interleaved += [k[i] for k in per_kel if i < len(k)]
    return interleaved


@dataclass
class Post:
    name: str
    lat: float
    lon: float
    units: int
    sector: str = ""    # the sector its units belong to; "" = read from its name (units.post_sector)


def posts(scenario: dict) -> list[Post]:
    """Police posts where units are stationed (Polresta Malang Kota and sector posts)."""
    return [Post(p["name"], p["lat"], p["lon"], int(p.get("units", 1)), p.get("sector", ""))
            for p in scenario.get("posts", [])]


def centres(scenario: dict) -> dict[str, tuple[float, float]]:
    """Kelurahan name -> (lat, lon) of its centre, for map labels."""
    return {k["name"]: (k["lat"], k["lon"]) for k in scenario["kelurahan"]}
