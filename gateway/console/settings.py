"""The console's own settings: an optional [console] table in gateway.toml.

Read here rather than in gateway/config.py so the console stays one self-contained part;
unknown keys are refused just as config.py refuses them elsewhere.
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import Config, ConfigError
from ..data import KLOJEN_AREAS
from ..domain.sla import SLA_S


@dataclass
class ConsoleSettings:
    # Behind TLS (a reverse proxy or uvicorn with certificates) set this: the cookie then
    # never travels over plain HTTP. Off by default because the API binds to loopback HTTP.
    secure_cookie: bool = False
    session_hours: int = 12
    lang: str = "id"                 # default language: id (Bahasa Indonesia) or en
    tile_url: str = ""               # e.g. a local tile server; empty: no tiles, own data only
    tile_attribution: str = ""
    areas: str = str(KLOJEN_AREAS)   # kelurahan centres and posts the maps draw (gateway/data/)
    login_max_failures: int = 5      # per client address and user name ...
    login_window_s: int = 300        # ... within this window
    # The promise in minutes, from [gateway] sla_s (domain/sla.py): not a console setting.
    sla_minutes: int | float = field(default=SLA_S // 60, init=False)


def load(cfg: Config | None) -> ConsoleSettings:
    if cfg is None or not Path(cfg.path).exists():
        return ConsoleSettings()
    raw = tomllib.loads(Path(cfg.path).read_text()).get("console", {})
    known = {f.name: f for f in fields(ConsoleSettings) if f.init}
    unknown = set(raw) - set(known)
    if unknown:
        raise ConfigError(f"[console]: unknown keys {sorted(unknown)}")
    s = ConsoleSettings(**raw)
    s.sla_minutes = cfg.sla_s // 60 if cfg.sla_s % 60 == 0 else cfg.sla_s / 60
    if s.lang not in ("id", "en"):
        raise ConfigError("[console] lang must be id or en")
    if s.areas and not Path(s.areas).is_absolute():
        s.areas = str(Path(cfg.path).parent / s.areas)
    return s
