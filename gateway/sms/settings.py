"""The `[sms]` section of gateway.toml and the files of the SMS daemon beside it.

    [sms]
    dir = "sms"                 # smsdrc, the relay token, the daemon's folders (relative to the config)
    per_number_per_hour = 20    # SMS one number may send before `rate` refusals
    device = "/dev/ttyUSB0"     # the GSM modem (production); "dummy" for gammu's file-based phone
    connection = "at"           # gammu connection of a real modem (at, at115200, ...)
    pin = ""                    # the SIM's PIN, if it has one
    number = "+62341000110"     # the centre's own number: buttons send to it and believe acks from it
"""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..config import Config, ConfigError
from ..domain.paths import e164

DEFAULTS = {"dir": "sms", "per_number_per_hour": 20, "device": "/dev/ttyUSB0", "connection": "at", "pin": "",
            "number": ""}


@dataclass(frozen=True, kw_only=True)
class SmsSettings:
    dir: Path
    per_number_per_hour: int
    device: str
    connection: str
    pin: str
    number: str  # the centre's SMS number (E.164), for the buttons' config (sms_to); "" none yet

    @property
    def smsdrc(self) -> Path:
        return self.dir / "smsdrc"

    @property
    def token_file(self) -> Path:
        return self.dir / "relay.token"

    def folder(self, name: str) -> Path:
        """inbox, outbox, sent, error (gammu-smsd's), done (messages the gateway has taken),
        phone (the dummy phone's store)."""
        return self.dir / name

    @property
    def dummy(self) -> bool:
        return self.device == "dummy"


def load(cfg: Config) -> SmsSettings:
    try:
        raw = tomllib.loads(cfg.path.read_text()).get("sms", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{cfg.path}: {exc}") from None
    unknown = set(raw) - set(DEFAULTS)
    if unknown:
        raise ConfigError(f"[sms]: unknown keys {sorted(unknown)}")
    values = {**DEFAULTS, **raw}
    for key, default in DEFAULTS.items():
        if type(values[key]) is not type(default):
            raise ConfigError(f"[sms] {key}: expected {type(default).__name__}, got {values[key]!r}")
    if values["per_number_per_hour"] <= 0:
        raise ConfigError("[sms] per_number_per_hour must be positive")
    if values["number"] and e164(values["number"]) != values["number"]:
        raise ConfigError(f"[sms] number: an E.164 number (+ and 8 to 15 digits), not {values['number']!r}")
    folder = Path(values.pop("dir"))
    return SmsSettings(dir=folder if folder.is_absolute() else cfg.path.parent / folder, **values)
