"""Small geography helpers: distances for driving units, NMEA sentences for GPS buttons."""
from __future__ import annotations

import math

EARTH_R_M = 6_371_000.0
M_PER_DEG_LAT = 111_320.0


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_R_M * math.asin(math.sqrt(a))


def offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (lat + north_m / M_PER_DEG_LAT,
            lon + east_m / (M_PER_DEG_LAT * math.cos(math.radians(lat))))


def _nmea(body: str) -> str:
    c = 0
    for ch in body:
        c ^= ord(ch)
    return f"${body}*{c:02X}"


def _ddmm(value: float, deg_width: int) -> str:
    v = abs(value)
    deg = int(v)
    minutes = (v - deg) * 60
    return f"{deg:0{deg_width}d}{minutes:07.4f}"


def gga(lat: float | None, lon: float | None, hdop: float = 0.9, utc: str = "120000.00") -> str:
    """A GGA sentence; lat=None gives a valid sentence that reports no fix (quality 0),
    which is what a receiver under a roof says for its first minutes."""
    if lat is None or lon is None:
        return _nmea(f"GPGGA,{utc},,,,,0,00,99.9,,M,,M,,")
    return _nmea(f"GPGGA,{utc},{_ddmm(lat, 2)},{'S' if lat < 0 else 'N'},{_ddmm(lon, 3)},"
                 f"{'W' if lon < 0 else 'E'},1,08,{hdop:.1f},450.0,M,0.0,M,,")
