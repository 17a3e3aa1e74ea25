"""Field behaviour of firmware/app.py + board_esp32.py on the ESP32 stand-in
(tests/firmware/esp32/), against the project's real mosquitto and gateway: a press made
while the loop is stuck in a blocking call, 13 days of uptime across the 2**30 tick wrap,
an empty battery, a bad config on the board."""
from __future__ import annotations

import time

import pytest

from tests.conftest import KAUMAN
from tests.firmware.esp32.host import Esp32Device

BUTTON = 27
LED = 2
DAY_MS = 86_400_000
TICKS_WRAP = 1 << 30


def _device(stack, tmp_path, hw=None, **config) -> Esp32Device:
    creds = stack.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman")
    cfg = dict(creds["config"], wifi=[{"ssid": "RT03-home", "psk": "x"}], **config)
    return Esp32Device(tmp_path / "flash", cfg, hw=hw or {})


def _link_up(fw, timeout=20):
    return fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", timeout)


def _acked(fw, aid, timeout=15):
    return fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == aid, timeout)


def test_a_hold_made_inside_a_3s_blocking_call_raises_the_alert(stack, tmp_path):
    # The broker's name takes 3 s to resolve: the loop is stuck in getaddrinfo while the
    # holder presses for 2.5 s. The hard IRQ puts both edges in the ring; the loop replays them.
    fw = _device(stack, tmp_path, hw={"hosts": {"mqtt.rt03.test": "127.0.0.1"}, "dns_ms": 3000},
                 brokers=[{"host": "mqtt.rt03.test", "port": stack.broker_port}])
    try:
        fw.start()
        fw.wait_for(lambda e: e["ev"] == "esp32" and e.get("what") == "dns", 20)
        time.sleep(0.2)
        fw.hold(BUTTON, 2500)
        alert = fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "panic", 15)
        assert _acked(fw, alert["id"])["stage"] == "received"
        assert [i["alert_id"] for i in stack.incidents()] == [alert["id"]]
    finally:
        fw.stop()


def test_13_days_across_the_tick_wrap_with_a_press_on_each_side(stack, tmp_path):
    # Booted 30 s before ticks_ms wraps. A press with the broker down stays queued for 13
    # days (more than the 6.2 days a ticks difference can span), then goes out with its
    # true age; a press after the wrap works as on day one.
    fw = _device(stack, tmp_path, hw={"ticks0": TICKS_WRAP - 30_000}, retry_ms=500,
                 reconnect_max_ms=2000, fail_ms=5000)
    try:
        fw.start()
        _link_up(fw)
        stack.stop_broker()
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "down", 30)
        fw.hold(BUTTON, 2300)                       # before the wrap
        fw.wait_for(lambda e: e["ev"] == "led" and e["pattern"] == "failed", 15)
        n_led = len(fw.history)
        for _ in range(13):
            fw.advance(DAY_MS)                      # a day at a time: the loop runs in between
            time.sleep(0.3)
        # Still undelivered after 13 days: the LED must still say so.
        assert not [e for e in fw.history[n_led:] if e["ev"] == "led"]
        stack.start_broker()
        _link_up(fw, 30)
        first = fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "panic", 15)
        assert first["pub_ms"] >= 13 * DAY_MS, first
        # The gateway keeps no incident for a 13-day-old press (it rejects it as stale,
        # which needs the true age); the ack settles it on the button.
        assert _acked(fw, first["id"])["stage"] == "rejected"
        fw.hold(BUTTON, 2300)                       # after the wrap
        second = fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "panic", 15)
        assert second["pub_ms"] < 60_000
        assert _acked(fw, second["id"])["stage"] == "received"
        assert [i["alert_id"] for i in stack.incidents()] == [second["id"]]
    finally:
        fw.stop()


def test_an_empty_battery_shows_low_battery_not_full(stack, tmp_path):
    # 1.6 V at the ADC behind the 1:2 divider = 3.2 V: an empty cell (0 %).
    fw = _device(stack, tmp_path, hw={"batt_uv": 1_600_000},
                 pins={"button": BUTTON, "led": LED, "buzzer": 4, "batt_adc": 34})
    try:
        fw.start()
        _link_up(fw)
        fw.wait_for(lambda e: e["ev"] == "led" and e["pattern"] == "low_battery", 10)
    finally:
        fw.stop()


@pytest.mark.parametrize("config", [{"dev": "klj-kauman-rw05-rt03"},
                                    {"dev": "klj-kauman-rw05-rt03", "pins": {"button": 0}}])
def test_bad_config_blinks_config_error_on_the_led_pin(tmp_path, config):
    fw = Esp32Device(tmp_path / "flash", config, hw={"trace_out": [LED]})
    try:
        fw.start()      # up to "ready", so the config_error event is in the history
        assert [e for e in fw.history if e["ev"] == "config_error"]
        # config_error: 1000 on, 200 off, 200 on, 200 off, repeated.
        changes: list[dict] = []
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and len(changes) < 6:
            try:
                e = fw.wait_for(lambda e: e["ev"] == "esp32" and e.get("what") == "out", 1)
            except TimeoutError:
                continue
            changes.append(e)
        assert len(changes) >= 6, fw.history[-10:]
        assert {e["pin"] for e in changes} == {LED}
        assert [e["v"] for e in changes[:4]] in ([1, 0, 1, 0], [0, 1, 0, 1])
    finally:
        fw.stop()


def _events(fw, what):
    return [e for e in fw.history if e["ev"] == what]


def _run_until_exit(fw, timeout=15):
    fw.start(wait_ready=0)
    return fw.exit_code(timeout)


def test_a_reboot_loop_ends_in_safe_mode_without_the_watchdog(stack, tmp_path):
    # A re-flash reset mid-copy left a torn .mpy (its flash blocks erased, never written):
    # every boot crashes. After four crash boots in a row the board stays up in safe mode,
    # with no app and no watchdog, so `make flash` can replace the file; a power-on with
    # the file fixed runs the app.
    fw = _device(stack, tmp_path, hw={"trace_out": [LED]}, wdt_ms=4000)
    torn = tmp_path / "flash-esp32" / "firmware" / "gesture.mpy"
    good = torn.read_bytes()
    torn.write_bytes(b"\xff" * len(good))
    try:
        codes = [_run_until_exit(fw) for _ in range(4)]
        assert codes == [71, 71, 71, 71]           # machine.reset() after each crash
        fw.start(wait_ready=0)
        safe = fw.wait_for(lambda e: e["ev"] == "safe_mode", 15)
        assert safe["why"] == "crash_loop"
        time.sleep(6)                              # longer than wdt_ms: no watchdog runs
        assert fw.running
        assert [e for e in fw.history if e.get("what") == "out"], "safe mode blinks"
        fw.stop()
        torn.write_bytes(good)                     # the USB session re-flashes the file
        fw.power_on(wait_ready=0)
        _link_up(fw)
    finally:
        fw.stop()


def _press_at_boot(fw):
    fw.start(wait_ready=0)
    fw.pin(BUTTON, 0)                              # held while the board powers up


def test_button_held_at_power_up_gives_safe_mode_and_a_confirmed_factory_reset(stack, tmp_path):
    fw = _device(stack, tmp_path, safe_hold_ms=1500, retry_ms=500)
    try:
        # One alert in the outbox (broker down), then power off.
        stack.stop_broker()
        fw.start()
        fw.hold(BUTTON, 2300)
        fw.wait_for(lambda e: e["ev"] == "led" and e["pattern"] == "sending", 10)
        fw.stop()
        jnl = fw.flash / "outbox.jnl"
        assert jnl.stat().st_size > 0
        boot0 = (fw.flash / "boot0").read_bytes() if (fw.flash / "boot0").exists() else b""
        # Held through power-up, released after safe mode began: safe mode, outbox kept.
        _press_at_boot(fw)
        assert fw.wait_for(lambda e: e["ev"] == "safe_mode", 10)["why"] == "button"
        time.sleep(0.3)
        fw.pin(BUTTON, 1)
        time.sleep(2)
        assert not _events(fw, "factory_reset") and jnl.stat().st_size > 0
        fw.stop()
        # Held on past twice the hold: armed; but a long press is no confirmation.
        _press_at_boot(fw)
        fw.wait_for(lambda e: e["ev"] == "factory_reset" and e["state"] == "armed", 10)
        fw.pin(BUTTON, 1)
        time.sleep(1.0)                            # after the arming beeps
        fw.hold(BUTTON, 2500)
        assert fw.wait_for(lambda e: e["ev"] == "factory_reset", 5)["state"] == "refused"
        assert jnl.exists() and jnl.stat().st_size > 0
        fw.stop()
        # Armed, then a short confirming press: the outbox is cleared, the boot counter kept.
        _press_at_boot(fw)
        fw.wait_for(lambda e: e["ev"] == "factory_reset" and e["state"] == "armed", 10)
        fw.pin(BUTTON, 1)
        time.sleep(1.0)
        fw.hold(BUTTON, 300)
        assert fw.wait_for(lambda e: e["ev"] == "factory_reset", 5)["state"] == "done"
        assert not jnl.exists()
        if boot0:
            assert (fw.flash / "boot0").read_bytes() == boot0
        fw.stop()
        stack.start_broker()
        fw.power_on(wait_ready=0)
        boot = fw.wait_for(lambda e: e["ev"] == "boot", 10)
        assert boot["outbox"] == 0 and boot["boot"] >= 2
    finally:
        fw.stop()


def test_battery_variant_wakes_on_a_triple_press_and_sleeps_30_min(stack, tmp_path):
    # Timer wakes only every 30 min (heartbeat); a button wake checks the button first:
    # the press that woke the chip and the two after it, made while it boots, are a
    # triple press.
    fw = _device(stack, tmp_path, hw={"ntp": ["pool.ntp.org"]}, sleep=True, trigger="triple",
                 pins={"button": BUTTON, "led": LED, "buzzer": 4, "batt_adc": 34})
    try:
        fw.power_on(wait_ready=0)
        nap = fw.wait_for(lambda e: e["ev"] == "sleep", 30)
        assert nap["ms"] == 1_800_000
        assert fw.exit_code() == 72
        print(f"timer wake: awake {nap['awake_ms']} ms")
        fw.hw["wake"] = "ext0"                     # asleep: the setting is for the next boot
        fw.write_hw()
        fw.start(wait_ready=0)
        fw.pin(BUTTON, 0)                          # the press that woke it
        time.sleep(0.15)
        fw.pin(BUTTON, 1)
        for _ in range(2):
            time.sleep(0.3)
            fw.hold(BUTTON, 150)
        alert = fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "panic", 20)
        assert _acked(fw, alert["id"])["stage"] == "received"
        nap = fw.wait_for(lambda e: e["ev"] == "sleep", 40)
        print(f"button wake with an alert: awake {nap['awake_ms']} ms")
        assert fw.exit_code() == 72
    finally:
        fw.stop()


def test_a_press_held_through_power_up_is_still_a_panic(stack, tmp_path):
    # Power returns while the holder is pressing: held 3 s, released before safe mode
    # (safe_hold_ms 5 s) -> judged as the 2 s long press it is, once the app is up.
    fw = _device(stack, tmp_path, safe_hold_ms=5000)
    try:
        _press_at_boot(fw)
        time.sleep(3)
        fw.pin(BUTTON, 1)
        alert = fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "panic", 20)
        assert _acked(fw, alert["id"])["stage"] == "received"
        assert not _events(fw, "safe_mode")
    finally:
        fw.stop()
