"""The host protocol module's own rules: strict JSON, the alert schema, the defaults it
shares with the firmware's config."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import protocol

FIRMWARE = Path(__file__).resolve().parents[2] / "firmware"
DEV = "klj-kauman-rw05-rt03"


def _firmware_config():
    spec = importlib.util.spec_from_file_location("fw_config", FIRMWARE / "config.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(FIRMWARE))   # its own imports (cfgset.py) are flat files beside it
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.path.remove(str(FIRMWARE))
        sys.modules.pop("cfgset", None)
    return mod


def test_device_defaults_are_the_firmwares():
    fw = _firmware_config().DEFAULTS
    for key, value in protocol.DEVICE_DEFAULTS.items():
        assert fw[key] == value, key


def test_the_config_template_holds_known_keys_at_their_defaults():
    mod = _firmware_config()
    template = json.loads((FIRMWARE / "config.template.json").read_text())
    for key, value in template.items():
        assert key in mod.DEFAULTS or key in mod._REQUIRED, f"{key}: not a config key"
        if key in protocol.DEVICE_DEFAULTS:
            assert value == protocol.DEVICE_DEFAULTS[key], key
    assert template["silent"] is False, "the silent profile is shown, off"


def _fields(**over):
    f = dict(dev=DEV, boot=1, seq=2, kind="panic", t=None, age=0, lat6=1, lon6=2, acc=3, src="fixed",
             batt=None, rssi=None)
    f.update(over)
    return f


def test_alert_fields_pass_the_schema():
    body = protocol.parse_object(protocol.alert_body(**_fields()))
    assert protocol.check_alert_fields(body, DEV)["id"] == f"{DEV}:1:2"
    cancel = protocol.parse_object(protocol.alert_body(**_fields(kind="cancel", ref=f"{DEV}:1:1")))
    assert protocol.check_alert_fields(cancel, DEV)["ref"] == f"{DEV}:1:1"


@pytest.mark.parametrize("over, field", [
    (dict(kind="party"), "kind"), (dict(lat6="south"), "lat6"), (dict(batt=101), "batt"),
    (dict(src="guess"), "src"), (dict(kind="cancel"), "ref"), (dict(age=-1), "age"),
])
def test_schema_names_the_wrong_field(over, field):
    body = protocol.parse_object(protocol.alert_body(**_fields(**over)))
    with pytest.raises(ValueError, match=field):
        protocol.check_alert_fields(body, DEV)


def test_schema_checks_the_id_against_dev_boot_seq():
    body = protocol.parse_object(protocol.alert_body(**_fields()))
    body["id"] = f"{DEV}:9:9"
    with pytest.raises(ValueError, match="id must be"):
        protocol.check_alert_fields(body, DEV)


@pytest.mark.parametrize("raw", [b"[1]", b'{"a": NaN}', b'{"a": -Infinity}', b"\xff\xfe", b"{"])
def test_parse_object_is_strict(raw):
    with pytest.raises(ValueError):
        protocol.parse_object(raw)


def test_split_needs_a_64_character_tag():
    assert protocol.split(b"body") is None
    assert protocol.split(b"body\nabc") is None
    assert protocol.split(b"a\nb\n" + b"0" * 64) == (b"a\nb", b"0" * 64)
