"""Setup mode on real parts: the firmware under `micropython` serves its setup page
(firmware/portal.py) on the sim board's local port, an RT head's browser (Chromium, driven
by Playwright) reads the device id, tests a wrong and then the right home WiFi password
and saves; the button leaves setup mode and reaches the project's real mosquitto and
gateway. The sim board's WiFi is a stand-in: <flash>/sim_wifi.json lists the networks in
range. And the rule that matters most after a power cut: a button whose stored network is
down for a long time keeps retrying it and never opens setup mode."""
from __future__ import annotations

import json
import os
import socket
import time

import pytest

from simulator.firmware import FirmwareDevice
from simulator.stack import free_port
from tests.conftest import KAUMAN, wait_until

pytest.importorskip("playwright.sync_api")
DEV = "klj-kauman-rw05-rt03"
# From source the modules setup mode loads mid-run (portal.py) are compiled on the button's
# heap, as the modem's are (MODEM_HEAP): test_firmware_remote.py holds the .mpy build, as
# flashed, to the board's 96 KB with the page served.
SOURCE_HEAP = "128K"
HOME, PSK = "RT03-rumah", "sandi-rumah-03"


@pytest.fixture
def button(stack, tmp_path):
    """A registered button with a setup port; `air` is what sim_wifi.json says is in range."""
    started: list[FirmwareDevice] = []

    def make(wifi: list, air: dict | None, flag: bool = False, **config) -> FirmwareDevice:
        creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman", rw=5, rt=3)
        flash = tmp_path / "flash"
        flash.mkdir(parents=True, exist_ok=True)
        if air is not None:     # None: the simulated network needs no WiFi (no stand-in)
            (flash / "sim_wifi.json").write_text(json.dumps(air))
        if flag:
            (flash / "setup").write_bytes(b"")     # what safemode.py leaves after the gesture
        port = free_port()
        fw = FirmwareDevice(flash, dict(creds["config"], wifi=wifi, **config), heap=SOURCE_HEAP,
                            env={"PANIC_SETUP_PORT": str(port)})
        fw.port = port  # type: ignore[attr-defined]
        started.append(fw)
        return fw.start()

    yield make
    for fw in started:
        fw.stop()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _linked(fw) -> bool:
    return any(e["ev"] == "link" and e["state"] == "up" for e in fw.history)


def test_an_rt_head_sets_up_the_home_wifi_in_a_browser(button, browser, stack):
    fw = button(wifi=[], air={HOME: PSK, "Tetangga": "bukan-punya-kita"})
    assert [e["why"] for e in fw.seen("setup", state="on")] == ["no_wifi"]    # before "ready"
    page = browser.new_page()
    try:
        page.goto(f"http://127.0.0.1:{fw.port}/generate_204")   # a phone's captive-portal probe
        assert page.url.endswith(f":{fw.port}/"), "probes are sent to the page"
        assert page.locator("#dev").inner_text() == DEV
        assert page.locator("#wifi").inner_text() == "tidak tersambung"
        assert page.locator("#server").inner_text() == "tidak tersambung"

        page.fill("input[name=ssid]", HOME)
        page.fill("input[name=psk]", "sandi-yang-salah")
        page.get_by_role("button", name="Uji koneksi").click()
        page.wait_for_selector("text=kata sandi salah", timeout=10000)

        page.fill("input[name=ssid]", "RT03-jauh")
        page.fill("input[name=psk]", PSK)
        page.get_by_role("button", name="Uji koneksi").click()
        page.wait_for_selector("text=jaringan tidak ditemukan", timeout=10000)

        page.fill("input[name=ssid]", HOME)
        page.fill("input[name=psk]", PSK)
        page.get_by_role("button", name="Uji koneksi").click()
        page.wait_for_selector("text=Berhasil", timeout=10000)
        assert not _linked(fw), "a test is only a test: nothing is stored or used yet"

        page.fill("input[name=ssid]", HOME)      # the password field is never sent back
        page.fill("input[name=psk]", PSK)
        page.get_by_role("button", name="Simpan").click()
        page.wait_for_selector("text=Tersimpan", timeout=10000)
    finally:
        page.close()
    wait_until(lambda: fw.seen("setup", state="off", why="saved") and _linked(fw), 15,
               what="setup mode over (the browser's spare connections closed) and the link up")
    assert json.loads((fw.flash / "config.json").read_text())["wifi"] == [{"ssid": HOME, "psk": PSK}]
    assert not _listening(fw.port), "setup mode is over: the page is gone"
    tested = [e["result"] for e in fw.seen("setup", state="tested")]
    assert tested == ["password", "not_found", "ok"]
    fw.send("trigger")
    wait_until(lambda: [e for e in fw.seen("ack") if e["stage"] == "received"], 15,
               what="a panic through the home WiFi, acked by the gateway")
    # Configured now: the next boot goes straight to the stored network.
    fw.stop()
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    assert len(fw.seen("setup", state="on")) == 1


def test_no_wifi_list_opens_no_setup_where_the_board_needs_no_wifi(button):
    """The simulator's buttons reach the broker without WiFi (no sim_wifi.json): an empty
    `wifi` list is no reason for setup mode there. Before `joins_wifi` every one of them
    served the page and held portal.py (8 KB) for its whole life."""
    fw = button(wifi=[], air=None)
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    fw.send("trigger")
    wait_until(lambda: [e for e in fw.seen("ack") if e["stage"] == "received"], 15, what="the panic acked")
    assert not fw.seen("setup") and not _listening(fw.port)


def test_a_router_down_for_long_never_opens_setup_mode(button):
    fw = button(wifi=[{"ssid": HOME, "psk": PSK}], air={})     # the router has no power
    fw.send("trigger")                                         # a press while it is down
    for _ in range(3):                                         # power cuts while it stays down
        time.sleep(4)
        assert not _linked(fw)
        assert not _listening(fw.port), "no setup page"
        fw.power_cut()
        fw.start()
    time.sleep(4)
    assert not fw.seen("setup") and not _listening(fw.port)
    (fw.flash / "sim_wifi.json").write_text(json.dumps({HOME: PSK}))   # power is back
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    wait_until(lambda: [e for e in fw.seen("ack") if e["stage"] == "received"], 15,
               what="the press made while the router was down, delivered once it is back")


def test_setup_asked_for_by_hand_keeps_the_button_working_and_is_one_shot(button):
    fw = button(wifi=[{"ssid": HOME, "psk": PSK}], air={HOME: PSK}, flag=True)
    assert [e["why"] for e in fw.seen("setup", state="on")] == ["button"]
    assert not (fw.flash / "setup").exists(), "the flag is used up at once"
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    assert _listening(fw.port)
    fw.send("trigger")
    wait_until(lambda: [e for e in fw.seen("ack") if e["stage"] == "received"], 15,
               what="a panic during setup mode still goes through")
    fw.power_cut()                      # a power cut in setup mode: back to normal
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 15)
    assert not _listening(fw.port) and len(fw.seen("setup", state="on")) == 1


def test_the_setup_gesture_on_the_esp32_stand_in(stack, tmp_path):
    """Held through power-up into safe mode (no app, so never a panic), released, then one
    short press: the board restarts into setup mode, once. (The stand-in has no listening
    sockets: the app says it cannot serve the page and runs on, as it would on a board.)"""
    from tests.firmware.esp32.host import Esp32Device
    from tests.firmware.test_esp32_field import BUTTON, _press_at_boot
    creds = stack.add_device(DEV, *KAUMAN, kelurahan="Kauman")
    fw = Esp32Device(tmp_path / "flash", dict(creds["config"], wifi=[{"ssid": "RT03-home", "psk": "x"}],
                                              safe_hold_ms=1500), hw={})
    try:
        _press_at_boot(fw)
        assert fw.wait_for(lambda e: e["ev"] == "safe_mode", 10)["why"] == "button"
        time.sleep(0.3)
        fw.pin(BUTTON, 1)
        time.sleep(0.5)
        fw.hold(BUTTON, 300)
        fw.wait_for(lambda e: e["ev"] == "setup_mode" and e["state"] == "next_boot", 10)
        assert fw.exit_code() != 0, "safe mode ends in a reset"
        fw.start(wait_ready=0)
        on = fw.wait_for(lambda e: (e["ev"] == "setup" and e["state"] == "on") or
                         (e["ev"] == "log" and "setup mode" in e.get("msg", "")), 20)
        assert on.get("why") == "button" or "no page" in on.get("msg", ""), on
        assert not (fw.flash / "setup").exists(), "used up by the boot it asked for"
        assert not fw.seen("alert"), "the gesture is never a panic"
    finally:
        fw.stop()
