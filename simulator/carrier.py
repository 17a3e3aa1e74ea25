"""The phone network between the buttons' modems and the command centre's GSM modem: SMS only.

A spool on disk, so the firmware under `micropython` (its modem emulator, simulator/modem_emu.py)
and gammu-smsd (on Gammu's file-based dummy phone) both reach it without sharing a process.

Spool layout (`<spool>` is any folder; the carrier creates the sub-folders):

    <spool>/mo/<name>.json            an SMS a button sent (mobile-originated)
    <spool>/mt/<msisdn>/<name>.json   an SMS for the button whose SIM is <msisdn> (mobile-terminated)
    <spool>/transit/                  the carrier's own: messages on their way (do not touch)
    <spool>/bad/                      mo files the carrier could not read, kept for a look

- Every message file is one UTF-8 JSON object:
  `{"from": "<msisdn>", "to": "<number>", "text": "<the SMS>", "sent_ms": <Unix ms>}`.
  Numbers are E.164 (`+6281234567890`); `text` is what the SMS carries (one GSM-7 segment
  for protocol v1, docs/protocol.md "SMS"); `sent_ms` is when the sender handed it over.
- Writers make each file appear whole: write `<name>.tmp` in the same folder, then rename
  it to `<name>.json`. Readers ignore every name not ending in `.json`.
- `<name>` is free (unique per writer: e.g. `<sent_ms>-<seq>`); the carrier names mt files
  `<deliver_ms>-<n>.json`, so sorting the names sorts them by arrival.
- The carrier takes an mo file away at once (into transit/) and, after the message's delay,
  drops it into the centre's modem (the dummy phone's `sms/1/<n>`, an smsbackup file gammu-smsd
  reads as a received SMS, whatever `to` says: there is one centre). What gammu-smsd sent
  (its files service moves each sent message to `sentsmspath`) the carrier takes from there
  and, after its delay, writes to `mt/<to>/`. The button's side deletes an mt file once it
  has read it.
- Delay: lognormal, median `sms_delay_median_s`, sigma `sms_delay_sigma` (real seconds);
  loss: `sms_loss` of the messages vanish (a lost message is counted, never delivered);
  a message from or to a SIM `covered(msisdn)` says has no signal is lost too. Seeded:
  the same seed and the same messages in the same order give the same delays and losses.
  The settings are the scenario's `carrier` block (simulator/scenario.carrier_settings).
"""
from __future__ import annotations

import heapq
import json
import math
import os
import random
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.sms.gammu import incoming_backup, read_backup

if TYPE_CHECKING:
    from .stack import Stack

POLL_S = 0.2
CENTRE = "+62341000110"  # the command centre's SMS number in the simulator (a Malang landline-style number)
DUMMY_MAX = 10_000  # the dummy phone's locations per folder are numbers; any free one will do


@dataclass
class Leg:
    """One message through the network, for the report."""
    direction: str  # mo | mt
    msisdn: str     # the button's SIM
    delay_s: float
    lost: str = ""  # "" delivered, "loss" or "no_coverage"
    delivered_ms: int | None = None


@dataclass
class Stats:
    legs: list[Leg] = field(default_factory=list)

    def count(self, direction: str, *, lost: bool) -> int:
        return sum(1 for g in self.legs if g.direction == direction and bool(g.lost) == lost)


def _write_atomic(path: Path, data: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(data)
    os.replace(tmp, path)


class Carrier:
    def __init__(self, *, spool: Path, phone: Path, sent: Path, settings: dict, seed: int = 0,
                 centre: str = CENTRE, covered: Callable[[str], bool] = lambda msisdn: True,
                 poll_s: float = POLL_S) -> None:
        """phone: the dummy phone's folder (gammu's `device`); sent: gammu-smsd's sentsmspath;
        centre: the command centre's number, the `from` of every mt message."""
        self.centre = centre
        self.spool, self.phone, self.sent = Path(spool), Path(phone), Path(sent)
        self.settings, self.covered, self.poll_s = settings, covered, poll_s
        self.rng = random.Random(seed)
        self.stats = Stats()
        self._due: list[tuple[float, int, str, Path, dict]] = []  # (due monotonic, n, direction, transit file, msg)
        self._n = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        for sub in ("mo", "mt", "transit", "bad"):
            (self.spool / sub).mkdir(parents=True, exist_ok=True)
        (self.phone / "sms" / "1").mkdir(parents=True, exist_ok=True)

    # --- the model ---------------------------------------------------------------------
    def _delay_s(self) -> float:
        median, sigma = self.settings["sms_delay_median_s"], self.settings["sms_delay_sigma"]
        return median * math.exp(sigma * self.rng.gauss(0.0, 1.0)) if median > 0 else 0.0

    def _fate(self, msisdn: str) -> tuple[str, float]:
        # Both draws every time, so one message's fate never shifts the next one's.
        lost_draw, delay = self.rng.random(), self._delay_s()
        if not self.covered(msisdn):
            return "no_coverage", delay
        return ("loss" if lost_draw < self.settings["sms_loss"] else ""), delay

    # --- one pass ----------------------------------------------------------------------
    def step(self) -> None:
        """Take new messages in, hand over the ones whose time has come."""
        for path in sorted((self.spool / "mo").glob("*.json")):
            try:
                msg = json.loads(path.read_text())
                if not all(isinstance(msg.get(k), str) for k in ("from", "to", "text")):
                    raise ValueError("from, to and text are strings")
            except (ValueError, UnicodeDecodeError):
                os.replace(path, self.spool / "bad" / path.name)
                continue
            self._admit("mo", msg["from"], path, msg)
        for path in sorted(self.sent.glob("*.smsbackup")):
            got = read_backup(path.read_text(errors="replace"))
            if got is None:
                continue
            number, text = got
            msg = {"from": self.centre, "to": number, "text": text,
                   "sent_ms": int(path.stat().st_mtime * 1000)}
            self._admit("mt", number, path, msg)
        now = time.monotonic()
        while self._due and self._due[0][0] <= now:
            _, _, direction, transit, msg = heapq.heappop(self._due)
            self._deliver(direction, msg)
            transit.unlink(missing_ok=True)

    def _admit(self, direction: str, msisdn: str, path: Path, msg: dict) -> None:
        self._n += 1
        transit = self.spool / "transit" / f"{direction}-{self._n:08d}-{path.name}"
        os.replace(path, transit)
        lost, delay = self._fate(msisdn)
        leg = Leg(direction, msisdn, round(delay, 3), lost)
        self.stats.legs.append(leg)
        if lost:
            transit.unlink(missing_ok=True)
            return
        msg = {**msg, "_leg": len(self.stats.legs) - 1}
        heapq.heappush(self._due, (time.monotonic() + delay, self._n, direction, transit, msg))

    def _deliver(self, direction: str, msg: dict) -> None:
        leg = self.stats.legs[msg.pop("_leg")]
        leg.delivered_ms = int(time.time() * 1000)
        if direction == "mo":
            self._into_phone(msg["from"], msg["text"])
        else:
            box = self.spool / "mt" / msg["to"]
            box.mkdir(parents=True, exist_ok=True)
            self._n += 1
            _write_atomic(box / f"{leg.delivered_ms}-{self._n:06d}.json", json.dumps(msg))

    def _into_phone(self, number: str, text: str) -> None:
        """An smsbackup file in the dummy phone's inbox folder, under the first free location:
        written aside, then linked in (a link never replaces a message not yet read)."""
        folder = self.phone / "sms" / "1"
        self._n += 1
        tmp = self.phone / f"incoming-{self._n}.tmp"
        tmp.write_text(incoming_backup(number=number, text=text))
        try:
            for n in range(1, DUMMY_MAX):
                try:
                    os.link(tmp, folder / str(n))
                    return
                except FileExistsError:
                    continue
            raise RuntimeError(f"the dummy phone's {folder} is full")
        finally:
            tmp.unlink(missing_ok=True)

    # --- as a thread -------------------------------------------------------------------
    def start(self) -> Carrier:
        self._thread = threading.Thread(target=self._run, name="carrier", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            self.step()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


class SmsCentre:
    """The command centre's SMS side of a Stack, as an operator runs it on the dummy phone:
    `panic-gateway sms setup --device dummy --number <centre>`, gammu-smsd on the smsdrc it
    wrote (its hook is the real `panic-gateway sms receive`), and the carrier from the spool
    `<state>/carrier` to that daemon. Buttons send to `number` (their config's `sms_to`)."""

    def __init__(self, stack: Stack, *, settings: dict, seed: int = 0, number: str = CENTRE,
                 per_number_per_hour: int | None = None, covered: Callable[[str], bool] = lambda msisdn: True,
                 poll_s: float = POLL_S) -> None:
        self.stack, self.settings, self.seed, self.number = stack, settings, seed, number
        self.per_number_per_hour, self.covered, self.poll_s = per_number_per_hour, covered, poll_s
        self.dir = stack.state / "sms"
        self.spool = stack.state / "carrier"
        self.smsd: subprocess.Popen | None = None
        self.carrier: Carrier | None = None

    def start(self) -> SmsCentre:
        args = ["sms", "setup", "--device", "dummy", "--number", self.number]
        if self.per_number_per_hour is not None:
            args += ["--per-number-per-hour", str(self.per_number_per_hour)]
        self.stack.cli(*args)
        log = open(self.dir / "smsd-stdout.log", "ab")
        self.smsd = subprocess.Popen(["gammu-smsd", "-c", str(self.dir / "smsdrc")], stdout=log, stderr=log)
        self.carrier = Carrier(spool=self.spool, phone=self.dir / "phone", sent=self.dir / "sent",
                               settings=self.settings, seed=self.seed, centre=self.number, covered=self.covered,
                               poll_s=self.poll_s).start()
        return self

    def stop(self) -> None:
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
