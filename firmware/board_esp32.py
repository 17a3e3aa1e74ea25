# ESP32 board layer: button (debounced IRQ), LED, buzzer (PWM), battery ADC, WiFi list
# with backoff, NTP, RTC, GPS UART, watchdog, deep sleep. Type-checked against
# micropython-esp32-stubs (see firmware/pyrightconfig.json).
import json
import time
from time import ticks_ms, ticks_diff, ticks_add

import esp32
import machine
import network
from machine import Pin

from patterns import LED, BUZZER

# time.time() counts from 2000 on ports built without MICROPY_EPOCH_IS_1970.
_EPOCH_MS = 946684800000 if time.gmtime(0)[0] == 2000 else 0
_WIFI_TRY_MS = 15000
_NTP_EVERY_MS = 6 * 3600 * 1000
_NTP_RETRY_MS = 600 * 1000


class _Blinker:
    """Plays a duration pattern on an output without blocking the loop."""

    def __init__(self, out, repeat):
        self.out = out
        self.repeat = repeat
        self.seq = ()
        self.i = 0
        self.due = 0

    def play(self, seq, now):
        self.seq = seq
        self.i = 0
        self.due = now
        if not seq:
            self.out(False)

    def tick(self, now):
        seq = self.seq
        if not seq or ticks_diff(now, self.due) < 0:
            return
        if self.i >= len(seq):
            if not self.repeat:
                self.seq = ()
                self.out(False)
                return
            self.i = 0
        # even index = on, odd = off; a 0 ms phase is skipped (solid patterns)
        self.out(not self.i & 1)
        self.due = ticks_add(now, seq[self.i] or 1000)
        self.i += 1


class Board:
    name = "esp32"
    can_sleep = True
    tick_ms = 20       # LED phases and button debounce need a short loop period

    def __init__(self):
        self.flash = ""
        self._synced = False
        self.wdt = None
        self.cfg = None
        # Default pins until the config is read, so a config error can still blink.
        self._pins({"button": 0, "led": 2, "buzzer": 4, "batt_adc": None})
        self.wlan = network.WLAN(network.STA_IF)
        self.wifi = []
        self.wi = 0
        self.w_due = 0
        self.w_start = None
        self.w_delay = 2000
        self.ntp_due = 0
        self.uart = None
        self.gps = None
        # Woken by the button from deep sleep: the press began at reset (ticks ~0).
        self.woke_by_button = machine.reset_cause() == machine.DEEPSLEEP_RESET and \
            machine.wake_reason() == machine.EXT0_WAKE

    def _pins(self, p):
        self.btn = Pin(p["button"], Pin.IN, Pin.PULL_UP)
        self.btn.irq(handler=self._irq, trigger=Pin.IRQ_FALLING | Pin.IRQ_RISING)
        self.level = 1
        self.t_irq = ticks_ms()
        self.led_pin = Pin(p["led"], Pin.OUT, value=0)
        self.pwm = machine.PWM(Pin(p["buzzer"]), freq=2700, duty_u16=0)
        self.adc = None
        if p.get("batt_adc") is not None:
            self.adc = machine.ADC(Pin(p["batt_adc"]))
            self.adc.atten(machine.ADC.ATTN_11DB)
        self.led_b = _Blinker(self.led_pin.value, True)
        self.buz_b = _Blinker(self._buzz, False)

    def _irq(self, pin):
        # IRQ context: no allocation; just note when the line last moved.
        self.t_irq = ticks_ms()

    def _buzz(self, on):
        self.pwm.duty_u16(32768 if on else 0)

    # -- hooks used by the app --
    def setup(self, app):
        c = app.cfg
        self.cfg = c
        self.btn.irq(handler=None)
        self._pins(c["pins"])
        self.wifi = c["wifi"]
        self.wlan.active(True)
        if c["gps"]:
            g = c["gps"]
            self.uart = machine.UART(g["uart"], baudrate=g["baud"], tx=g["tx"], rx=g["rx"])
            self.gps = app.gps_on()
        # Started only with a valid config: a bad config must blink, not reset-loop.
        self.wdt = machine.WDT(timeout=c["wdt_ms"])
        if self.woke_by_button and self.btn.value() == 0:
            self.level = 0
            app.button(True, 0)

    def register(self, poller):
        pass

    def emit(self, d):
        print(json.dumps(d))

    def led(self, pattern):
        self.led_b.play(LED.get(pattern, ()), ticks_ms())

    def buzzer(self, pattern):
        self.buz_b.play(BUZZER.get(pattern, ()), ticks_ms())

    def led_tick(self, now):
        self.led_b.tick(now)
        self.buz_b.tick(now)

    def feed(self):
        if self.wdt is not None:
            self.wdt.feed()

    def battery(self):
        if self.adc is None:
            return None
        # 1:2 divider on a single Li-ion cell: 3.3 V empty, 4.2 V full (linear is
        # good enough for a "low battery" warning).
        mv = self.adc.read_uv() * 2 // 1000
        return max(0, min(100, (mv - 3300) * 100 // 900))

    def rssi(self):
        try:
            return self.wlan.status("rssi") if self.wlan.isconnected() else None
        except OSError:
            return None

    def net_up(self):
        return self.wlan.isconnected()

    def synced(self):
        return self._synced

    def wall_ms(self):
        if not self._synced:
            return None
        return time.time_ns() // 1000000 + _EPOCH_MS

    def set_clock(self, ms):
        # From an ack's "now" when NTP is unreachable: better than no clock at all.
        s = (ms - _EPOCH_MS) // 1000
        tm = time.gmtime(s)
        machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))
        self._synced = True

    def read_ca(self, path):
        if not path:
            return None
        with open(path, "rb") as f:
            d = f.read()
        if d.startswith(b"-----"):
            from binascii import a2b_base64
            d = a2b_base64(b"".join(ln for ln in d.split(b"\n")
                                    if ln and not ln.startswith(b"-----")))
        return d

    def deepsleep(self, ms):
        self.led_pin.value(0)
        self.pwm.duty_u16(0)
        esp32.wake_on_ext0(self.btn, esp32.WAKEUP_ALL_LOW)
        machine.deepsleep(ms)

    def crashed(self, e):
        # Any crash: reset with the outbox intact in flash, rather than hang silently.
        time.sleep_ms(2000)
        machine.reset()

    # -- periodic work --
    def service(self, app):
        now = ticks_ms()
        v = self.btn.value()
        if v != self.level and ticks_diff(now, self.t_irq) >= self.debounce_ms():
            self.level = v
            app.button(v == 0, now)
        if self.uart is not None and self.gps is not None and self.uart.any():
            d = self.uart.read()
            if d:
                self.gps.feed_bytes(d)
        if self.cfg is not None:
            self._wifi(now)
            self._ntp(now, app)

    def debounce_ms(self):
        return self.cfg["debounce_ms"] if self.cfg else 30

    def _wifi(self, now):
        w = self.wlan
        if w.isconnected():
            self.w_start = None
            self.w_delay = 2000
            return
        if not self.wifi:
            return
        if self.w_start is not None:
            if ticks_diff(now, self.w_start) < _WIFI_TRY_MS:
                return          # still associating; wlan.connect() does not block
            w.disconnect()
            self.w_start = None
            self.wi = (self.wi + 1) % len(self.wifi)
            if self.wi == 0:
                self.w_due = ticks_add(now, self.w_delay)
                self.w_delay = min(self.w_delay * 2, 60000)
        if ticks_diff(now, self.w_due) < 0:
            return
        n = self.wifi[self.wi]
        try:
            w.connect(n["ssid"], n.get("psk", ""))
        except OSError:
            pass
        self.w_start = now

    def _ntp(self, now, app):
        c = self.cfg
        if c is None or not self.wlan.isconnected() or ticks_diff(now, self.ntp_due) < 0:
            return
        try:
            import ntptime
            ntptime.host = c["ntp"]
            ntptime.timeout = 1
            self.feed()
            ntptime.settime()   # blocks <= 1 s: once per boot and every few hours
            self._synced = True
            self.ntp_due = ticks_add(now, _NTP_EVERY_MS)
        except Exception as e:  # noqa: BLE001
            app.log("ntp: %s" % e)
            self.ntp_due = ticks_add(now, _NTP_RETRY_MS)
