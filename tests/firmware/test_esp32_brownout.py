"""A brown-out at every step of a journal write, on the ESP32 stand-in (tests/firmware/esp32/):
firmware/main.py + app + board_esp32.py from the .mpy build, against the project's mosquitto
and gateway. The harness tears the flash write in progress (`brownout` setting) and the board
goes down; the next power-up must lose no alert whose journal line was whole, send none twice
as a new incident, and ignore the torn tail (a later press is journalled and delivered).

mp_test_brownout.py tears every byte of every outbox write, compaction and rename under FAT
rules on the unix port; this is the same fault with the whole device around it: the press,
the publish, the ack, the reboot, the resend and the gateway's dedup."""
from __future__ import annotations

import json
import time
import zlib
from pathlib import Path

import pytest

from tests.conftest import KAUMAN, wait_until
from tests.firmware.esp32.host import BROWNOUT_EXIT, Esp32Device, fill_outbox

BUTTON = 27
JOURNAL = ["outbox.jnl", "outbox.tmp"]
# The journal writes of the session, in order: 0 = the "done" line of the alert carried
# over from the last boot (its ack), 1 = the press's alert line, 2 = the press's "done" line.
# In each: nothing of it, one byte, half, all but the newline, all (cut before it returns).
KEEPS = [0, 1, "half", -1, "all"]
POINTS = [(w, k, False) for w in range(3) for k in KEEPS] + [(w, "half", True) for w in range(3)]


def _journal_lines(flash: Path) -> list[bytes]:
    """The journal's lines, each checked as outbox.parse_line does (crc32 of tag + data)."""
    data = (flash / "outbox.jnl").read_bytes() if (flash / "outbox.jnl").exists() else b""
    lines = data.split(b"\n")
    assert lines[-1] == b"", f"journal ends in a torn line: {lines[-1]!r}"
    for ln in lines[:-1]:
        body, _, crc = ln.rpartition(b"*")
        assert int(crc, 16) == zlib.crc32(body), ln
    return lines[:-1]


def _acked(fw: Esp32Device, aid: str):
    return lambda e: e["ev"] == "ack" and e["id"] == aid and e["stage"] == "received"


def _written(i: int):
    return lambda e: e["ev"] == "esp32" and e.get("what") == "fwrite" and e["i"] == i


def _press(fw: Esp32Device) -> None:
    """A 2.3 s press; the board may go down while it is held (the press's own line)."""
    fw.pin(BUTTON, 0)
    time.sleep(2.3)
    try:
        fw.pin(BUTTON, 1)
    except BrokenPipeError:
        pass


@pytest.mark.timeout(600)  # 30 cuts and reboots: 154 s in a loaded CI run
@pytest.mark.gateway(open_incidents_per_device=0)
def test_a_brownout_at_every_step_of_a_journal_write_loses_no_alert_and_doubles_none(stack, tmp_path):
    for n, (write, keep, erased) in enumerate(POINTS):
        _cut_and_reboot(stack, tmp_path, f"klj-kauman-rw05-rt{n + 10:02d}", write, keep, erased)


def _cut_and_reboot(stack, tmp_path: Path, dev: str, write: int, keep, erased: bool) -> None:
    where = f"write {write}, keep {keep}{' (erased page)' if erased else ''}"
    creds = stack.add_device(dev, *KAUMAN, kelurahan="Kauman")
    cfg = dict(creds["config"], wifi=[{"ssid": "RT03-home", "psk": "wifi-pw-1"}], pins={"button": BUTTON})
    fw = Esp32Device(tmp_path / dev, cfg, hw={"ntp": [], "brownout": {
        "files": JOURNAL, "write": write, "keep": keep, "erased": erased}})
    (old,) = fill_outbox(fw.flash, dev, 1)      # a press of the last boot, never acked
    try:
        # Boot 1: the old alert goes out and is acked, a press, its ack; the power fails
        # in the chosen write.
        fw.start(wait_ready=0)
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 20)
        fw.wait_for(_written(0), 15)             # the old alert's "done" line
        if write > 0:
            _press(fw)
            fw.wait_for(lambda e: e["ev"] == "exit" or _written(2)(e), 15)
        assert fw.exit_code() == BROWNOUT_EXIT, where
        writes = [e for e in fw.history if e["ev"] == "esp32" and e.get("what") == "fwrite"]
        assert [w["i"] for w in writes] == list(range(write + 1)), (where, writes)
        assert {w["file"] for w in writes} == {"outbox.jnl"}, where
        whole = writes[-1]["n"] == writes[-1]["of"]
        torn = 0 < writes[-1]["n"] < writes[-1]["of"] or (erased and not whole)
        press = [e["id"] for e in fw.seen("alert") if e["id"] != old]
        old_done = write > 0 or whole
        press_kept = write > 1 or (write == 1 and whole)
        press_done = write == 2 and whole
        # Nothing goes on the air before its line is whole in flash.
        assert bool(press) == (write > 1), (where, press)
        must = {old} | ({f"{dev}:2:1"} if press_kept else set())

        # Boot 2: a power-up with no fault; then a new press.
        fw.hw["brownout"] = None
        fw.write_hw()
        at = len(fw.history)
        fw.power_on(wait_ready=0)
        boot = fw.wait_for(lambda e: e["ev"] == "boot", 10)
        assert boot["outbox"] == (not old_done) + (press_kept and not press_done), (where, boot)
        dropped = [e for e in fw.history[at:] if e["ev"] == "log" and "torn/corrupt" in e["msg"]]
        assert bool(dropped) == torn, (where, dropped)
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 20)
        _press(fw)
        new = fw.wait_for(lambda e: e["ev"] == "alert" and e["id"].split(":")[1] == "3", 10)["id"]
        fw.wait_for(_acked(fw, new), 15)
        wait_until(lambda: {e["id"] for e in fw.seen("ack", stage="received")} >= must | {new}, 15,
                   what=f"every kept alert acked ({where})")
        fw.stop()
        # No alert lost, none doubled: one incident per journalled alert and no other.
        got = sorted(i["alert_id"] for i in stack.incidents() if i["alert_id"].startswith(dev + ":"))
        assert got == sorted(must | {new}), (where, got)
        # The torn tail is gone, later lines are whole, and every alert line has its
        # "done" line: nothing is left pending.
        lines = _journal_lines(fw.flash)
        added = {json.loads(ln[1:ln.rfind(b"*")])["id"] for ln in lines if ln[:1] == b"A"}
        done = {ln[1:ln.rfind(b"*")].decode() for ln in lines if ln[:1] == b"D"}
        assert added <= done, (where, lines)
    finally:
        fw.stop()
