"""The tick clock firmware modules see under CPython: an ESP32's 30-bit wrap, and a
loader that gives firmware files that clock without touching CPython's `time`."""
from __future__ import annotations

import time

import pytest

from simulator import mpcompat
from simulator.mpcompat import TICKS_PERIOD, firmware_module, ticks_add, ticks_diff, ticks_ms


@pytest.mark.parametrize("start", [0, 1, TICKS_PERIOD - 1, TICKS_PERIOD // 2, 123_456_789])
@pytest.mark.parametrize("delta", [0, 1, -1, 2000, -2000, TICKS_PERIOD // 2 - 1, -(TICKS_PERIOD // 2)])
def test_ticks_diff_undoes_ticks_add_across_the_wrap(start, delta):
    later = ticks_add(start, delta)
    assert 0 <= later < TICKS_PERIOD
    assert ticks_diff(later, start) == delta


def test_ticks_wrap_at_2_to_the_30():
    assert ticks_add(TICKS_PERIOD - 1, 1) == 0
    assert ticks_diff(0, TICKS_PERIOD - 1) == 1
    assert 0 <= ticks_ms() < TICKS_PERIOD


def test_firmware_modules_get_the_shim_and_cpython_keeps_its_time():
    monotonic = firmware_module("monotonic")
    assert monotonic.ticks_diff is mpcompat.ticks_diff and monotonic.ticks_ms is mpcompat.ticks_ms
    assert firmware_module("monotonic") is monotonic, "loaded once"
    assert not hasattr(time, "ticks_diff")
    assert firmware_module("gps").Mono is monotonic.Mono, "firmware modules import each other, shimmed"


def test_a_long_press_across_the_wrap_fires_in_the_firmware_gesture():
    now = [ticks_add(0, -1000)]
    clk = firmware_module("monotonic").Mono(ticks=lambda: now[0])
    g = firmware_module("gesture").Gesture("long", 2000, 3000, 5000)
    assert g.edge(True, clk.at(now[0])) is None
    now[0] = ticks_add(now[0], 1999)
    assert g.tick(clk.ms()) is None
    now[0] = ticks_add(now[0], 1)
    assert g.tick(clk.ms()) == "trigger"
