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
    path = Path(name) if name.endswith(".json") else SCENARIOS / f"{name}.json"
    if not path.exists():
        known = ", ".join(sorted(p.stem for p in SCENARIOS.glob("*.json")))
        raise SystemExit(f"unknown scenario {name!r}; known: {known}")
    return json.loads(path.read_text())


def buttons(scenario: dict) -> list[Button]:
    """Every RT head of the scenario, kelurahan by kelurahan, RT spread over the RWs.

    Order interleaves kelurahan so that `--devices N` takes a city-wide sample.
    """
    rng = random.Random(scenario["name"])
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
