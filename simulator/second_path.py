"""The second path around the simulated buttons (docs/protocol.md "Paths").

A button fitted with a modem gets a SIM number (registered with the gateway, so its SMS are
believed), `modem` and `sms_to` in its config, and the modem emulator behind its sim board's
UART with the carrier's settings for it: registered after its attach time, or never where the
kelurahan gives it no signal. The command centre's side is the real gammu-smsd on Gammu's
dummy phone, run by carrier.SmsCentre through `panic-gateway sms setup` (its RunOnReceive hook hands each SMS to the
gateway and injects the signed reply), and the carrier (simulator/carrier.py) carries SMS
between the buttons' spool and that phone, with the scenario's delay and loss.
"""
from __future__ import annotations

import random
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from protocol import DEVICE_DEFAULTS

from .carrier import CENTRE, SmsCentre
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


def installed_before(flash: Path, fitted: Fitted, cfg: dict, rng: random.Random) -> None:
    """The run starts with buttons in service, not fresh from the box: one with signal proved
    its cellular path (the supervised test, firmware/cellular.py's `celltest` file: Unix
    seconds) at a random moment of its last test interval, so no test is due at the start of
    the run. A button without signal never proved it: its test comes due at boot and fails,
    as a dead SIM is found at install."""
    if not fitted.coverage:
        return
    every_s = 3600 * cfg.get("cell_test_h", DEVICE_DEFAULTS["cell_test_h"])
    if every_s <= 0:
        return
    flash.mkdir(parents=True, exist_ok=True)
    (flash / "celltest").write_text(str(int(time.time() - rng.uniform(0.05, 0.5) * every_s)))


def centre(*, stack: Stack, carrier: dict, seed: int, fitted: dict[str, Fitted]) -> SmsCentre:
    """The command centre's SMS side for the run's buttons (not started): a SIM the scenario
    gives no signal loses its SMS in the carrier, as its modem never registers."""
    if shutil.which("gammu-smsd") is None:
        raise SystemExit("buttons with a modem need gammu-smsd (Debian package gammu-smsd: `make setup`)")
    covered = {f.msisdn: f.coverage for f in fitted.values()}
    return SmsCentre(stack, settings=carrier, seed=seed, number=CENTRE, per_number_per_hour=PER_NUMBER_PER_HOUR,
                     covered=lambda number: covered.get(number, False))


def modem(sms: SmsCentre, fitted: Fitted) -> dict:
    """The emulator's settings for one fitted button."""
    return modem_settings(spool=sms.spool, msisdn=fitted.msisdn, coverage=fitted.coverage,
                          attach_ms=fitted.attach_ms, faults=None if fitted.data else {"data": False})


def sms_stats(sms: SmsCentre | None) -> dict:
    """What the carrier carried: SMS each way, delivered and lost (by loss or no signal)."""
    if sms is None or sms.carrier is None:
        return {}
    legs = sms.carrier.stats.legs
    out: dict = {}
    for d in ("mo", "mt"):
        mine = [g for g in legs if g.direction == d]
        out[d] = {"sent": len(mine), "delivered": sum(1 for g in mine if g.delivered_ms is not None),
                  "lost": sum(1 for g in mine if g.lost == "loss"),
                  "no_coverage": sum(1 for g in mine if g.lost == "no_coverage")}
    return out


def fit(profiles: dict, ids: list[str], index_of: dict[str, int]) -> dict[str, Fitted]:
    """The modems of the run's buttons whose profile has one, each with its SIM number."""
    return {d: Fitted(msisdn(index_of[d]), profiles[d].coverage, profiles[d].attach_ms, profiles[d].data)
            for d in ids if profiles[d].modem}

