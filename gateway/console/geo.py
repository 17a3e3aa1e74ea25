"""What the maps draw without any tile server: kelurahan centres, police posts, RT buttons.

Kelurahan centres and posts come from an areas file (`[console] areas`; by default
gateway/data/klojen_areas.json, shipped with the gateway); where a kelurahan is missing
from it, its centre is the mean of its registered buttons, so any deployment's own
registry is enough.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from ..models import Device


@lru_cache(maxsize=4)
def _areas_file(path: str) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return {}


def layers(areas_path: str, devices: list[Device]) -> dict:
    data = _areas_file(areas_path) if areas_path else {}
    kel = {k["name"]: {"name": k["name"], "lat": k["lat"], "lon": k["lon"], "approx": bool(k.get("approx"))}
           for k in data.get("kelurahan", [])}
    sums: dict[str, list[float]] = {}
    for d in devices:
        if d.kelurahan and d.kelurahan not in kel and (d.lat6 or d.lon6):
            s = sums.setdefault(d.kelurahan, [0.0, 0.0, 0])
            s[0] += d.lat6 / 1e6
            s[1] += d.lon6 / 1e6
            s[2] += 1
    for name, (lat, lon, n) in sums.items():
        kel[name] = {"name": name, "lat": lat / n, "lon": lon / n, "approx": True}
    return {
        "kelurahan": sorted(kel.values(), key=lambda k: k["name"]),
        "spread_m": data.get("spread_m", 450),
        "posts": [{"name": p["name"], "lat": p["lat"], "lon": p["lon"]} for p in data.get("posts", [])],
        # Compact rows: 675 RT buttons in a few kilobytes.
        "devices": [[d.id, d.lat6 / 1e6, d.lon6 / 1e6, d.kelurahan, d.rw, d.rt] for d in devices
                    if d.lat6 or d.lon6],
    }
