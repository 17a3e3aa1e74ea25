"""Helpers for the SMS tests (no tests here): the real gammu-smsd on Gammu's dummy phone, set
up by `panic-gateway sms setup`, the carrier between it and the buttons' side, and the
SMS a button sends."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from protocol import sms as sms_format
from simulator.carrier import SmsCentre
from simulator.stack import Stack
from tests.conftest import assert_no_secrets_in_logs, wait_until

WAIT_S = 60.0  # a liveness bound only: the daemon polls each second

T = TypeVar("T")


def wait_for(what: str, pred: Callable[[], T], timeout: float = WAIT_S) -> T:
    return wait_until(pred, timeout, 0.05, what)


class Smsd:
    """What the tests read of the centre's gammu-smsd (simulator/carrier.SmsCentre runs it)."""

    def __init__(self, centre: SmsCentre) -> None:
        self.centre = centre
        self.dir = centre.dir

    def log(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in (self.dir / "smsd.log", self.dir / "smsd-stdout.log")
                         if p.exists())

    def done(self, msisdn: str) -> list[Path]:
        """Inbox files from this number the hook has handed over."""
        return sorted(p for p in (self.dir / "done").iterdir() if f"_{msisdn}_" in p.name)

    def inbox(self, msisdn: str) -> list[Path]:
        return sorted(p for p in (self.dir / "inbox").iterdir() if f"_{msisdn}_" in p.name)

    def queued_replies(self, msisdn: str) -> list[Path]:
        """Replies to this number still in the daemon's outbox or sent folder."""
        return [p for folder in ("outbox", "sent") for p in (self.dir / folder).iterdir() if f"_{msisdn}_" in p.name]


class Phone:
    """The button's side of the carrier spool: what its modem sends and receives."""

    def __init__(self, spool: Path, msisdn: str, centre: str) -> None:
        self.spool, self.msisdn, self.centre = spool, msisdn, centre
        self.n = 0

    def send(self, text: str) -> None:
        self.n += 1
        sent_ms = time.time_ns() // 1_000_000
        name = f"{self.msisdn}-{sent_ms}-{self.n}"
        tmp = self.spool / "mo" / f"{name}.tmp"
        tmp.write_text(json.dumps({"from": self.msisdn, "to": self.centre, "text": text, "sent_ms": sent_ms}))
        os.replace(tmp, self.spool / "mo" / f"{name}.json")

    def received(self) -> list[dict]:
        box = self.spool / "mt" / self.msisdn
        return [json.loads(p.read_text()) for p in sorted(box.glob("*.json"))] if box.exists() else []


def alert_sms(creds: dict, *, boot: int = 1, seq: int = 1, kind: str = "panic", secret: str | None = None,
              t_s: int | None = None) -> str:
    return sms_format.alert_text(dev=creds["id"], boot=boot, seq=seq, kind=kind, lat6=-7982600, lon6=112627000,
                                 src="gps", acc=12, t_s=t_s if t_s is not None else int(time.time()), age_s=0,
                                 secret=secret or creds["secret"])


def start_sms(stack: Stack, *, per_number_per_hour: int) -> tuple[Smsd, SmsCentre]:
    """`sms setup` on the dummy phone, the daemon and a carrier without delay or loss."""
    centre = SmsCentre(stack, settings={"sms_delay_median_s": 0.0, "sms_delay_sigma": 0.0, "sms_loss": 0.0}, seed=1,
                       per_number_per_hour=per_number_per_hour, poll_s=0.05).start()
    return Smsd(centre), centre


def assert_no_secrets_in_sms_logs(stack: Stack, sms_dir: Path) -> None:
    """Neither the daemon's and the hook's logs hold the relay token, nor the stack's any secret."""
    token = (sms_dir / "relay.token").read_text().strip()
    for log in sms_dir.rglob("*.log"):
        assert token not in log.read_text(errors="replace"), f"the relay token in {log}"
    assert_no_secrets_in_logs(stack)
