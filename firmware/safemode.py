# Safe mode: the board runs without the app and without its watchdog, so a deployed unit
# can be re-flashed over USB (`make flash`, mpremote): a started watchdog can never be
# stopped and resets the board in the middle of a copy, and a half-written .mpy then
# crash-loops. Entered when the button is held for `safe_hold_ms` while the board powers
# up, or after CRASH_BOOTS crash/watchdog boots in a row (main.py counts them).
# Held on to twice `safe_hold_ms`, the button arms a factory reset that clears the outbox;
# only a short press within CONFIRM_MS confirms it. The boot counter is kept, so alert ids
# never repeat. After SAFE_MS without a USB session the board restarts the app.
import json
import os
import time
from time import ticks_diff, ticks_ms

import machine
from machine import Pin

from patterns import BUZZER, LED

CRASH_BOOTS = 4
CRASHES = "crashes"       # one byte per crash boot in a row: an append cannot tear a count
SAFE_MS = 15 * 60 * 1000
CONFIRM_MS = 10000
_SHORT_MS = 2000          # a confirming press is shorter than a panic hold
_HOLD_MS = 10000


def _settings():
    # config.json may be the broken part: every value falls back to a default.
    s = {"button": 27, "led": 2, "buzzer": 4, "hold": _HOLD_MS, "wdt": 8000, "silent": False}
    try:
        with open("config.json") as f:
            c = json.load(f)
        p = c.get("pins") or {}
        for k in ("button", "led", "buzzer"):
            v = p.get(k)
            if isinstance(v, int) and 4 <= v <= 33 and v not in (5, 6, 7, 8, 9, 10, 11, 12, 15):
                s[k] = v
        h = c.get("safe_hold_ms")
        if isinstance(h, int) and h >= 1000:
            s["hold"] = h
        s["silent"] = c.get("silent") is True
        w = c.get("wdt_ms")
        if isinstance(w, int) and 4000 <= w <= 60000:
            s["wdt"] = w
    except Exception:  # noqa: BLE001 -- no or bad config: the defaults
        pass
    return s


def forget_crashes():
    try:
        os.remove(CRASHES)
    except OSError:
        pass


def _emit(ev, **kw):
    kw["ev"] = ev
    print(json.dumps(kw))


class _Out:
    def __init__(self, s):
        self.led = Pin(s["led"], Pin.OUT, value=0)
        self.pwm = machine.PWM(Pin(s["buzzer"]), freq=2700, duty_u16=0)
        self.t0 = ticks_ms()
        self.silent = s["silent"]

    def show(self, name):
        """LED on or off for this moment of the pattern; call every few ms."""
        seq = LED[name]
        x = ticks_diff(ticks_ms(), self.t0) % sum(seq)
        on = True
        for d in seq:
            if x < d:
                break
            x -= d
            on = not on
        self.led.value(on)

    def beep(self, name):
        # The silent profile holds here too: a crash loop must not give its holder away.
        seq = () if self.silent else BUZZER[name]
        for i in range(len(seq)):
            self.pwm.duty_u16(0 if i & 1 else 32768)
            time.sleep_ms(seq[i])
        self.pwm.duty_u16(0)


def guard(crashes):
    """main.py, at boot: `crashes` = crash boots in a row. Runs safe mode (never returns:
    it ends in a reset) or returns (ms a press was held through power-up, the watchdog)."""
    why, held, wdt_ms = check(crash_loop=crashes >= CRASH_BOOTS)
    if why:
        run(why)
    # Before the app is even imported: a torn .mpy can hang its import, and only a
    # watchdog reset (counted in main.py) turns that hang into safe mode.
    return held, machine.WDT(timeout=wdt_ms)


def check(crash_loop):
    """At boot, before the app. Returns (why, held_ms, wdt_ms): why is "crash_loop",
    "button" or None (start the app); held_ms is how long a press held through power-up
    lasted, for the app to judge as a panic press; wdt_ms the watchdog period to start."""
    s = _settings()
    if crash_loop:
        return "crash_loop", 0, 0
    if machine.reset_cause() == machine.DEEPSLEEP_RESET:
        return None, 0, s["wdt"]   # a button wake is a panic press, never a service hold
    btn = Pin(s["button"], Pin.IN, Pin.PULL_UP)
    if btn.value():
        return None, 0, s["wdt"]
    t0 = ticks_ms()
    while btn.value() == 0:
        held = ticks_diff(ticks_ms(), t0)
        if held >= s["hold"]:
            return "button", held, 0
        time.sleep_ms(10)
    return None, ticks_diff(ticks_ms(), t0), s["wdt"]


def _wait_level(btn, level, ms, out, name):
    """Shows `name` until the button reads `level` or ms pass; the ms waited, or None."""
    t0 = ticks_ms()
    while btn.value() != level:
        if ticks_diff(ticks_ms(), t0) >= ms:
            return None
        out.show(name)
        time.sleep_ms(10)
    return ticks_diff(ticks_ms(), t0)


def _factory_reset(s, btn, out):
    # Held on for another safe_hold_ms: armed, and it says so (beeps, fast LED).
    if _wait_level(btn, 1, s["hold"], out, "safe_mode") is not None:
        _setup_press(btn, out)
        return                # released: plain safe mode
    _emit("factory_reset", state="armed")
    out.beep("factory_reset")
    if _wait_level(btn, 1, 60000, out, "factory_reset") is None:
        return                # never released: not a deliberate confirmation
    if _wait_level(btn, 0, CONFIRM_MS, out, "factory_reset") is None:
        _emit("factory_reset", state="expired")
        return
    if _wait_level(btn, 1, _SHORT_MS, out, "factory_reset") is None:
        _emit("factory_reset", state="refused")   # a long hold is not a confirmation
        return
    for f in ("outbox.jnl", "outbox.tmp"):
        try:
            os.remove(f)
        except OSError:
            pass
    _emit("factory_reset", state="done")
    out.beep("cancelled")


def _setup_press(btn, out):
    # Released into safe mode, then one short press within CONFIRM_MS: setup mode at the
    # next boot (docs/firmware.md "Setup mode"). Safe mode runs no app, so this press can
    # never be a panic; the flag file is used up by that boot (startup.py), so a power cut
    # in setup mode ends it.
    if _wait_level(btn, 0, CONFIRM_MS, out, "safe_mode") is None:
        return
    if _wait_level(btn, 1, _SHORT_MS, out, "safe_mode") is None:
        return                # a long hold is not this gesture
    with open("setup", "w") as f:
        f.write("1")
    _emit("setup_mode", state="next_boot")
    out.beep("sending")
    forget_crashes()
    machine.reset()


def run(why):
    """No app, no watchdog: blink `safe_mode` until a USB session interrupts (Ctrl-C from
    mpremote lands here) or SAFE_MS pass, then try the app again."""
    s = _settings()
    out = _Out(s)
    _emit("safe_mode", why=why)
    out.beep("safe_mode")
    if why == "button":
        _factory_reset(s, Pin(s["button"], Pin.IN, Pin.PULL_UP), out)
    t0 = ticks_ms()
    while ticks_diff(ticks_ms(), t0) < SAFE_MS:
        out.show("safe_mode")
        time.sleep_ms(10)
    forget_crashes()
    machine.reset()
