"""The second path around the simulated buttons (docs/protocol.md "Paths").

A button fitted with a modem gets a SIM number (registered with the gateway, so its SMS are
believed), `modem` and `sms_to` in its config, and the modem emulator behind its sim board's
UART with the carrier's settings for it: registered after its attach time, or never where the
kelurahan gives it no signal. The command centre's side is the real gammu-smsd on Gammu's
dummy phone, set up by `panic-gateway sms setup` (its RunOnReceive hook hands each SMS to the
gateway and injects the signed reply), and the carrier (simulator/carrier.py) carries SMS
between the buttons' spool and that phone, with the scenario's delay and loss.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass

from .carrier import CENTRE, Carrier
from .firmware import modem_settings
from .stack import Stack

# SMS one button may send an hour before the gateway refuses it as `rate`: a button sends one
# per unacked alert, so a busy run's stress rate must not trip the limit meant for floods.
PER_NUMBER_PER_HOUR = 120


def msisdn(index: int) -> str:
    """The SIM number of the scenario's button number `index` (E.164, an Indonesian mobile
    range; made up: no real subscriber is meant)."""
    return f"+62899{index:07d}"


@dataclass
class Fitted:
    """One button's modem, as the run fitted it."""
    msisdn: str
    coverage: bool
    attach_ms: int
    data: bool


def button_config(cfg: dict) -> dict:
    """A button's config.json with the modem on (firmware/config.py's defaults for its UART and
    pins) and the centre's number for the SMS."""
    return dict(cfg, modem={}, sms_to=CENTRE)


class SmsCentre:
    """gammu-smsd on the dummy phone and the carrier between it and the buttons' spool."""

    def __init__(self, *, stack: Stack, carrier: dict, seed: int, fitted: dict[str, Fitted]) -> None:
        self.stack = stack
        self.settings = carrier
        self.seed = seed
        self.spool = stack.state / "carrier"
        self.dir = stack.state / "sms"
        self.covered = {f.msisdn: f.coverage for f in fitted.values()}
        self.smsd: subprocess.Popen | None = None
        self.carrier: Carrier | None = None

    def setup(self) -> SmsCentre:
        """`panic-gateway sms setup` on the dummy phone: [sms], the smsdrc, the relay token."""
        if shutil.which("gammu-smsd") is None:
            raise SystemExit("buttons with a modem need gammu-smsd (Debian package gammu-smsd: `make setup`)")
        self.stack.cli("sms", "setup", "--device", "dummy", "--per-number-per-hour", str(PER_NUMBER_PER_HOUR))
        return self

    def up(self) -> SmsCentre:
        """The daemon and the carrier (after setup)."""
        log = open(self.dir / "smsd.out", "ab")
        self.smsd = subprocess.Popen(["gammu-smsd", "-c", str(self.dir / "smsdrc")], stdout=log, stderr=log,
                                     env=dict(os.environ, PANIC_CONFIG=str(self.stack.config)))
        self.carrier = Carrier(spool=self.spool, phone=self.dir / "phone", sent=self.dir / "sent",
                               settings=self.settings, seed=self.seed,
                               covered=lambda number: self.covered.get(number, False)).start()
        return self

    def modem(self, fitted: Fitted) -> dict:
        return modem_settings(spool=self.spool, msisdn=fitted.msisdn, coverage=fitted.coverage,
                              attach_ms=fitted.attach_ms, faults=None if fitted.data else {"data": False})

    def stats(self) -> dict:
        """What the carrier carried: SMS each way, delivered and lost (by loss or no signal)."""
        if self.carrier is None:
            return {}
        legs = self.carrier.stats.legs
        out: dict = {}
        for d in ("mo", "mt"):
            mine = [g for g in legs if g.direction == d]
            out[d] = {"sent": len(mine), "delivered": sum(1 for g in mine if g.delivered_ms is not None),
                      "lost": sum(1 for g in mine if g.lost == "loss"),
                      "no_coverage": sum(1 for g in mine if g.lost == "no_coverage")}
        return out

    def down(self) -> None:
        if self.carrier is not None:
            self.carrier.stop()
        if self.smsd is not None and self.smsd.poll() is None:
            self.smsd.terminate()
            try:
                self.smsd.wait(10)
            except subprocess.TimeoutExpired:
                self.smsd.kill()
                self.smsd.wait()
        self.smsd = None


def fit(profiles: dict, ids: list[str], index_of: dict[str, int]) -> dict[str, Fitted]:
    """The modems of the run's buttons whose profile has one, each with its SIM number."""
    return {d: Fitted(msisdn(index_of[d]), profiles[d].coverage, profiles[d].attach_ms, profiles[d].data)
            for d in ids if profiles[d].modem}

