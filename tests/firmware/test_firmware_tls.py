"""The firmware's TLS path under `micropython` (mbedTLS, as on the ESP32): it talks to
the broker's TLS listener only through the CA it was given, and refuses any other."""
from __future__ import annotations

import shutil
import subprocess

from simulator.firmware import FirmwareDevice
from tests.gateway.test_gateway_support import KAUMAN, custom_stack


def test_button_over_tls_with_the_pinned_ca_and_not_with_another(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    s.broker_tls_port()
    s.start_broker()
    s.start_gateway()
    devices = []
    try:
        creds = s.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman")
        assert creds["config"]["brokers"][0]["tls"] is True
        good = FirmwareDevice(tmp_path / "good", creds["config"])
        shutil.copy(s.state / "broker" / "tls" / "ca.crt", good.flash / "ca.crt")
        devices.append(good.start())
        good.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 20)
        good.send("trigger")
        ack = good.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 10)

        # Another CA (an attacker's broker would present a certificate chained to it).
        other = s.add_device("klj-kauman-rw05-rt04", *KAUMAN, kelurahan="Kauman")
        bad = FirmwareDevice(tmp_path / "bad", other["config"])
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(tmp_path / "other.key"), "-out", str(bad.flash / "ca.crt"),
                        "-days", "1", "-subj", "/CN=Some other CA"], check=True, capture_output=True)
        devices.append(bad.start())
        bad.send("trigger")
        bad.wait_for(lambda e: e["ev"] == "log" and "connect" in e["msg"], 20)
        assert not bad.seen("link", state="up") and not bad.seen("ack")
        assert [i["alert_id"] for i in s.incidents()] == [ack["id"]]
    finally:
        for fw in devices:
            fw.stop()
        s.down()
