"""The carrier between the buttons' spool and gammu-smsd: with the real daemon on Gammu's dummy
phone for the two hand-overs, and on its own for the seeded delay and loss model."""
from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

from gateway.sms import gammu
from gateway.sms.settings import SmsSettings
from simulator.carrier import CENTRE, Carrier
from tests.conftest import wait_until

BUTTON = "+6281234567801"
NO_DELAY = {"sms_delay_median_s": 0.0, "sms_delay_sigma": 0.0, "sms_loss": 0.0}

T = TypeVar("T")


def wait_for(what: str, pred: Callable[[], T], timeout: float = 60.0) -> T:
    return wait_until(pred, timeout, 0.05, what)


def send(spool: Path, text: str, name: str, msisdn: str = BUTTON) -> None:
    tmp = spool / "mo" / f"{name}.tmp"
    tmp.write_text(json.dumps({"from": msisdn, "to": CENTRE, "text": text, "sent_ms": time.time_ns() // 10**6}))
    os.replace(tmp, spool / "mo" / f"{name}.json")


@pytest.fixture
def smsd(tmp_path):
    """gammu-smsd on the dummy phone, its RunOnReceive a script that keeps what gammu gives it."""
    settings = SmsSettings(dir=tmp_path / "sms", per_number_per_hour=10, device="dummy", connection="none", pin="",
                           number="")
    gammu.make_folders(settings)
    hook = tmp_path / "hook.sh"
    hook.write_text(f'#!/bin/sh\nenv | grep "^SMS_" > {tmp_path}/env.$$\necho "$@" >> {tmp_path}/env.$$\n')
    hook.chmod(0o755)
    settings.smsdrc.write_text(gammu.render(settings, hook=str(hook)))
    proc = subprocess.Popen(["gammu-smsd", "-c", str(settings.smsdrc)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        yield settings
    finally:
        proc.terminate()
        proc.wait(10)


def test_a_buttons_sms_reaches_the_daemon_as_a_received_message_with_its_number_and_text(smsd, tmp_path):
    carrier = Carrier(spool=tmp_path / "spool", phone=smsd.folder("phone"), sent=smsd.folder("sent"),
                      settings=NO_DELAY, poll_s=0.05).start()
    try:
        text = "PB1 klj-kauman-rw05-rt03 12:3 P -7982600 112627000 G12 T1764269000 38fd5035740afc00"
        send(tmp_path / "spool", text, "a")
        (inbox,) = wait_for("the message in the daemon's inbox", lambda: gammu.inbox_files(smsd))
        assert gammu.inbox_number(inbox.name) == BUTTON and gammu.inbox_text(inbox) == text
        env = wait_for("the hook's run", lambda: [p.read_text() for p in tmp_path.glob("env.*")
                                                  if p.read_text().rstrip().endswith(".txt")])
        assert f"SMS_1_NUMBER={BUTTON}" in env[0] and f"SMS_1_TEXT={text}" in env[0] and inbox.name in env[0]
    finally:
        carrier.stop()
    assert [g.direction for g in carrier.stats.legs] == ["mo"] and carrier.stats.legs[0].delivered_ms


def test_what_the_daemon_sends_reaches_the_buttons_mt_folder(smsd, tmp_path):
    carrier = Carrier(spool=tmp_path / "spool", phone=smsd.folder("phone"), sent=smsd.folder("sent"),
                      settings=NO_DELAY, poll_s=0.05).start()
    try:
        reply = "PB1A 12:3 received 1764269001 199f0bd447f01493"
        subprocess.run(["gammu-smsd-inject", "-c", str(smsd.smsdrc), "TEXT", BUTTON, "-text", reply],
                       check=True, capture_output=True)
        box = tmp_path / "spool" / "mt" / BUTTON
        (got,) = wait_for("the reply at the button", lambda: sorted(box.glob("*.json")) if box.exists() else [])
    finally:
        carrier.stop()
    msg = json.loads(got.read_text())
    assert (msg["from"], msg["to"], msg["text"]) == (CENTRE, BUTTON, reply) and isinstance(msg["sent_ms"], int)
    assert list(smsd.folder("sent").iterdir()) == [], "the carrier took the message off the daemon's sent folder"


def fates(tmp_path: Path, name: str, seed: int, n: int, **settings) -> list[tuple[str, float]]:
    c = Carrier(spool=tmp_path / name, phone=tmp_path / name / "phone", sent=tmp_path / name / "sent",
                settings={**NO_DELAY, **settings}, seed=seed)
    (tmp_path / name / "sent").mkdir()
    for i in range(n):
        send(tmp_path / name, f"m{i}", f"{i:04d}")
    c.step()
    return [(g.lost, g.delay_s) for g in c.stats.legs]


def test_the_delay_and_loss_are_seeded_and_follow_the_settings(tmp_path):
    model = {"sms_delay_median_s": 3600.0, "sms_delay_sigma": 0.5, "sms_loss": 0.3}
    a = fates(tmp_path, "a", 7, 300, **model)
    assert a == fates(tmp_path, "b", 7, 300, **model)
    assert a != fates(tmp_path, "c", 8, 300, **model)
    lost = sum(1 for how, _ in a if how == "loss")
    assert 60 <= lost <= 120, lost  # 30 % of 300, well inside binomial bounds
    delays = sorted(d for _, d in a)
    assert 2400 < delays[len(delays) // 2] < 5400  # the median near the setting
    # An hour's delay: nothing has reached the phone yet, and the lost ones never will.
    assert list((tmp_path / "a" / "phone" / "sms" / "1").iterdir()) == []
    assert len(list((tmp_path / "a" / "transit").iterdir())) == 300 - lost


def test_a_sim_without_coverage_loses_its_messages_and_a_bad_file_is_set_aside(tmp_path):
    c = Carrier(spool=tmp_path, phone=tmp_path / "phone", sent=tmp_path / "sent", settings=NO_DELAY,
                covered=lambda msisdn: msisdn != BUTTON)
    (tmp_path / "sent").mkdir()
    send(tmp_path, "no signal here", "a")
    send(tmp_path, "covered", "b", msisdn="+6281234567802")
    (tmp_path / "mo" / "c.json").write_text("{not json")
    (tmp_path / "mo" / "d.tmp").write_text("half written")
    c.step()
    assert [(g.msisdn, g.lost) for g in c.stats.legs] == [(BUTTON, "no_coverage"), ("+6281234567802", "")]
    (delivered,) = list((tmp_path / "phone" / "sms" / "1").iterdir())
    assert gammu.read_backup(delivered.read_text()) == ("+6281234567802", "covered")
    assert [p.name for p in (tmp_path / "bad").iterdir()] == ["c.json"]
    assert [p.name for p in (tmp_path / "mo").iterdir()] == ["d.tmp"], "a file being written is left alone"
