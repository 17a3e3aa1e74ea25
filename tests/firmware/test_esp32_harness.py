"""firmware/app.py + board_esp32.py, unchanged, on the ESP32 stand-in (tests/firmware/esp32/)
under the real `micropython -X heapsize=96K`, against the project's mosquitto and gateway:
a press on the button pin gives a verified ack."""
from __future__ import annotations

from tests.conftest import KAUMAN
from tests.firmware.esp32.host import Esp32Device

BUTTON = 27


def test_harnessed_esp32_presses_and_gets_a_verified_ack(stack, tmp_path):
    creds = stack.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman")
    fw = Esp32Device(tmp_path / "flash", dict(creds["config"], wifi=[{"ssid": "RT03-home", "psk": "x"}],
                                              pins={"button": BUTTON}),
                     hw={"ntp": ["pool.ntp.org"]})
    try:
        fw.start()
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 20)
        fw.hold(BUTTON, 2300)
        alert = fw.wait_for(lambda e: e["ev"] == "alert", 10)
        ack = fw.wait_for(lambda e: e["ev"] == "ack" and e["stage"] == "received", 10)
        assert ack["id"] == alert["id"]
        assert [i["alert_id"] for i in stack.incidents()] == [alert["id"]]
    finally:
        fw.stop()
