"""The SMS path's parts without the daemon: the per-number limit, the [sms] settings, gammu's
file names and smsbackup files, the smsdrc templates, and `sms setup`'s files."""
from __future__ import annotations

import json
import stat
import tomllib

import pytest

from gateway import config
from gateway.sms import gammu
from gateway.sms import settings as sms_settings
from gateway.sms.ratelimit import HOUR_MS, PerNumberLimit
from simulator.stack import Stack


def test_the_limit_counts_every_message_per_number_over_a_sliding_hour():
    limit = PerNumberLimit(per_hour=2)
    assert [limit.allow("+62811", t) for t in (0, 10, 20)] == [True, True, False]
    assert limit.allow("+62822", 20), "another number has its own count"
    assert not limit.allow("+62811", HOUR_MS - 1), "the first message is still inside the hour"
    assert limit.allow("+62811", HOUR_MS), "an hour on, the first message no longer counts"
    assert not limit.allow("+62811", HOUR_MS + 5), "the second one and this hour's still do"


def test_the_limit_forgets_the_stalest_numbers_first_and_stays_bounded():
    limit = PerNumberLimit(per_hour=1, max_numbers=2)
    assert limit.allow("a", 0) and limit.allow("b", 1) and limit.allow("c", 2)
    assert limit.allow("a", 3), "a was forgotten (bounded memory), so it starts again"
    assert not limit.allow("c", 4)


def test_inbox_names_as_gammu_smsd_writes_them():
    assert gammu.inbox_number("IN20261128_123000_00_+628123456789_00.txt") == "+628123456789"
    assert gammu.inbox_number("IN20261128_123000_01_+628123456789_00.bin") == "+628123456789"
    for name in ("IN20261128_123000_00_+628123456789_00.txt.1", "OUTC20261128_x.smsbackup", "notes.txt"):
        assert gammu.inbox_number(name) is None


def test_an_smsbackup_message_reads_back_as_written_and_a_sent_one_as_the_daemon_keeps_it():
    text = "PB1A 12:3 received 1764269001 199f0bd447f01493"
    assert gammu.read_backup(gammu.incoming_backup(number="+628123", text=text)) == ("+628123", text)
    # The daemon's sent file (outboxformat = detail) after transmission: two sections, comments.
    sent = ("; This file format was designed for Gammu\n\n[SMSBackup000]\n; PB1A 1:2\nPDU = Submit\n"
            'Number = "+628123456789"\nText00 = 005000420031004100200031003A0032\nCoding = Default_No_Compression\n'
            '\n[SMSBackup000]\nNumber = "+620000"\nText00 = 0041\n')
    assert gammu.read_backup(sent) == ("+628123456789", "PB1A 1:2")
    assert gammu.read_backup("[SMSBackup000]\nText00 = 0041\n") is None
    assert gammu.read_backup('[SMSBackup000]\nNumber = "+1"\nText00 = zz\n') is None


@pytest.mark.parametrize("section, error", [
    ({"per_number_per_hour": 0}, "positive"), ({"per_number_per_hour": "5"}, "expected int"),
    ({"unknown": 1}, "unknown keys"), ({"number": "0341 000110"}, "E.164")])
def test_bad_sms_settings_are_refused_by_name(tmp_path, section, error):
    path = tmp_path / "gateway.toml"
    config.write({"sms": section}, path)
    with pytest.raises(config.ConfigError, match=error):
        sms_settings.load(config.load(path))


def test_sms_setup_writes_the_daemons_config_and_a_private_relay_token(tmp_path):
    stack = Stack(tmp_path / "state")
    stack.init()
    stack.cli("sms", "setup", "--device", "dummy", "--per-number-per-hour", "7", "--number", "+62341000110")
    sms = stack.state / "sms"
    rc = (sms / "smsdrc").read_text()
    assert "model = dummy" in rc and f"device = {sms}/phone/" in rc and f"inboxpath = {sms}/inbox/" in rc
    assert f"-m gateway.sms receive --config {stack.config}" in rc
    assert tomllib.loads(stack.config.read_text())["sms"] == {"device": "dummy", "per_number_per_hour": 7,
                                                                "number": "+62341000110"}
    # Every button's config names the centre's number: the SMS path needs nothing more than a modem.
    stack.cli("device", "add", "klj-kauman-rw01-rt01", "--lat6", "-7982600", "--lon6", "112627000")
    fw = json.loads(stack.cli("device", "config", "klj-kauman-rw01-rt01").stdout)
    assert fw["sms_to"] == "+62341000110"
    token = (sms / "relay.token").read_text().strip()
    assert stat.S_IMODE((sms / "relay.token").stat().st_mode) == 0o600
    assert stat.S_IMODE((sms / "smsdrc").stat().st_mode) == 0o600
    listed = {t["role"] for t in json.loads(stack.cli("token", "list", "--json").stdout)}
    assert "sms_relay" in listed
    # Again: the token is kept (the running hook keeps working); a modem config replaces the dummy.
    stack.cli("sms", "setup", "--device", "/dev/ttyUSB0", "--pin", "1234")
    assert (sms / "relay.token").read_text().strip() == token
    rc = (sms / "smsdrc").read_text()
    assert "device = /dev/ttyUSB0" in rc and "connection = at" in rc and "pin = 1234" in rc
    assert "model = dummy" not in rc
