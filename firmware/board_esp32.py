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

import battery
import edges
from patterns import LED, BUZZER

# time.time() counts from 2000 on ports built without MICROPY_EPOCH_IS_1970.
_EPOCH_MS = 946684800000 if time.gmtime(0)[0] == 2000 else 0
_WIFI_TRY_MS = 15000
_NTP_EVERY_MS = 6 * 3600 * 1000
# While unsynced NTP is tried often (5 s, doubling to 2 min), one server a turn: each try
# blocks the loop for up to 1 s, and an unset clock keeps CA-verified TLS down.
_NTP_RETRY_MIN_MS = 5000
_NTP_RETRY_MAX_MS = 120000
_CLOCK_SAVE_MS = 3600 * 1000    # the last known time goes to flash this often
_RESETS = {}


_DEFAULT_PINS = {"button": 27, "led": 2, "buzzer": 4, "batt_adc": None}


def _early_pins():
    # Read before config.py has validated anything: only plain output/input pins are
    # taken from it, anything odd means the defaults (config.py then reports the error).
    try:
        with open("config.json") as f:
            p = json.load(f)["pins"]
        d = dict(_DEFAULT_PINS)
        for k in ("button", "led", "buzzer"):
            v = p.get(k, d[k])
            if not isinstance(v, int) or not 0 <= v <= 33 or v in (0, 1, 3, 5, 6, 7, 8, 9,
                                                                   10, 11, 12, 15):
                return _DEFAULT_PINS
            d[k] = v
        return d
    except Exception:  # noqa: BLE001 -- no or bad config: the defaults
        return _DEFAULT_PINS


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
    joins_wifi = True
    tick_ms = 20       # LED phases and button debounce need a short loop period

    def __init__(self):
        self.flash = "."    # the working directory: "/" on the board
        self._synced = False
        self.wdt = None
        self.cfg = None
        # The edge ring exists before any IRQ can fire and is never reallocated.
        self.ring = edges.Ring(32)
        self.deb = None
        self._irq_on = False
        # Pins from config.json as early as possible (a press made while the rest boots
        # is recorded), else the defaults, so a config error can still blink.
        self._pins(_early_pins())
        self.wlan = network.WLAN(network.STA_IF)
        self.wifi = []
        self.wi = 0
        # Due "now", not at tick 0: a board may boot just before the 2**30 wrap, where
        # tick 0 reads as 30 s in the future.
        self.w_due = ticks_ms()
        self.w_start = None
        self.w_delay = 2000
        self.ntp_due = self.w_due
        self.ntp_i = 0
        self.ntp_delay = _NTP_RETRY_MIN_MS
        self.t_saved = 0
        self.floor = 0           # the wall clock is at least this (port seconds)
        self.uart = None
        self.gps = None
        self.m_uart = None
        self.m_key = None
        self.ppp = None
        self.ppp_on = False
        self.t_try = None        # ticks of a setup-mode WiFi test under way
        # Woken by the button from deep sleep: the press began at reset (ticks ~0), before
        # the IRQ existed. Recorded first, so the wake press counts (a triple press from
        # sleep, a long press that started the board).
        self.woke_by_button = machine.reset_cause() == machine.DEEPSLEEP_RESET and \
            machine.wake_reason() == machine.EXT0_WAKE
        if self.woke_by_button:
            self.ring.push(0, 0)        # ticks_ms() counts from the reset
            if self.btn.value():
                self.ring.push(ticks_ms(), 1)

    def _pins(self, p):
        if self._irq_on:
            self.btn.irq(handler=None)
        self._irq_on = True
        self.btn = Pin(p["button"], Pin.IN, Pin.PULL_UP)
        self._irq_h = self._irq    # one bound method, made here: the IRQ must not allocate
        trig = Pin.IRQ_FALLING | Pin.IRQ_RISING
        try:
            # A hard IRQ timestamps the edge even inside a blocking C call; the ESP32 port
            # has only scheduled ("soft") IRQs and refuses the keyword.
            self.btn.irq(handler=self._irq_h, trigger=trig, hard=True)
        except TypeError:
            self.btn.irq(handler=self._irq_h, trigger=trig)
        self.led_pin = Pin(p["led"], Pin.OUT, value=0)
        self.pwm = machine.PWM(Pin(p["buzzer"]), freq=2700, duty_u16=0)
        self.adc = None
        self.gauge = battery.Smoother()
        if p.get("batt_adc") is not None:
            self.adc = machine.ADC(Pin(p["batt_adc"]))
            self.adc.atten(machine.ADC.ATTN_11DB)
        self.led_b = _Blinker(self.led_pin.value, True)
        self.buz_b = _Blinker(self._buzz, False)

    def _irq(self, pin):
        # IRQ context: no allocation.
        self.ring.push(ticks_ms(), pin.value())

    def _buzz(self, on):
        self.pwm.duty_u16(32768 if on else 0)

    # -- hooks used by the app --
    def setup(self, app):
        c = app.cfg
        self.cfg = c
        self._pins(c["pins"])
        self.wifi = c["wifi"]
        self.wlan.active(True)
        if c["gps"]:
            g = c["gps"]
            self.uart = machine.UART(g["uart"], baudrate=g["baud"], tx=g["tx"], rx=g["rx"])
            self.gps = app.gps_on()
        # The RTC restarts at 2000 on power-up: the last time this board knew is a floor.
        import clockfloor
        self._raise_floor(clockfloor.load(self.flash + "/clock"))
        # main.py started the watchdog before the app was imported; this sets the
        # config's period. With a bad config the loop still feeds it while it blinks.
        self.wdt = machine.WDT(timeout=c["wdt_ms"])

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
        # 1:2 divider on a single Li-ion cell: 3.3 V empty, 4.2 V full (linear is good
        # enough for a "low battery" warning). Eight reads per call, then a running
        # average: one read wanders by tens of mV, more while the radio transmits.
        uv = 0
        for _ in range(8):
            uv += self.adc.read_uv()
        return battery.percent(self.gauge.feed(uv // 4000))

    def rssi(self):
        try:
            return self.wlan.status("rssi") if self.wlan.isconnected() else None
        except OSError:
            return None

    def net_up(self):
        return self.wlan.isconnected()

    # -- the cellular modem (docs/firmware.md "Cellular") --
    def modem_uart(self):
        m = self.cfg["modem"] if self.cfg else None
        if m and self.m_uart is None:
            # timeout=0: read() returns what is there; a big RX buffer holds a whole +CMGR
            # and PPP's bursts between loop turns.
            self.m_uart = machine.UART(m["uart"], baudrate=m["baud"], tx=m["tx"], rx=m["rx"],
                                       timeout=0, rxbuf=2048)
            # PWRKEY through an NPN transistor: the pin high pulls the modem's PWRKEY low.
            self.m_key = Pin(m["pwrkey"], Pin.OUT, value=0)
        return self.m_uart

    def modem_pin(self, name, level):
        if name == "pwrkey" and self.m_key is not None:
            self.m_key.value(1 if level else 0)

    def modem_ppp(self, on):
        if on and self.m_uart is not None:
            if self.ppp is None:
                self.ppp = network.PPP(self.m_uart)
            # PPP.connect() makes it lwIP's default interface (netif_set_default): new
            # sockets (the MQTT client's next connect) go over cellular. It returns at
            # once; isconnected() says when IPCP is done.
            self.ppp_on = True
            try:
                if hasattr(self.ppp, "active"):
                    self.ppp.active(True)     # the esp32 port's own PPP wants it first
                self.ppp.connect()
            except OSError:
                pass     # EALREADY: a call from before is still up
        elif not on and self.ppp is not None and self.ppp_on:
            self.ppp_on = False
            try:
                self.ppp.disconnect()
                if hasattr(self.ppp, "active"):
                    self.ppp.active(False)
            except OSError:
                pass
            # PPP does not give the default route back: WiFi's next association does
            # (esp_netif sets it on GOT_IP), so re-associate now rather than strand the
            # MQTT client's WiFi sockets on a dead interface.
            if self.wlan.isconnected():
                self.wlan.disconnect()
                self.w_start = None
                self.w_due = ticks_ms()

    def modem_ppp_up(self):
        try:
            return self.ppp is not None and self.ppp.isconnected()
        except OSError:
            return False

    def synced(self):
        return self._synced

    def wall_ms(self):
        if not self._synced:
            return None
        return time.time_ns() // 1000000 + _EPOCH_MS

    def set_clock(self, ms):
        # From an ack's "now" when NTP is unreachable: better than no clock at all.
        _set_rtc((ms - _EPOCH_MS) // 1000)
        self._synced_now(ticks_ms())

    def _synced_now(self, now):
        self._synced = True
        self.t_saved = now
        import clockfloor
        clockfloor.save(self.flash + "/clock", time.time())

    def _raise_floor(self, s):
        # Not "synced": alerts still carry t = null. Only certificate checks use this time.
        if s > self.floor:
            self.floor = s
        if not self._synced and time.time() < self.floor:
            _set_rtc(self.floor)

    def read_ca(self, path):
        if not path:
            return None
        with open(path, "rb") as f:
            d = f.read()
        if d.startswith(b"-----"):
            from binascii import a2b_base64
            d = a2b_base64(b"".join(ln for ln in d.split(b"\n")
                                    if ln and not ln.startswith(b"-----")))
        if not self._synced:
            import clockfloor
            self._raise_floor(clockfloor.ca_start(d)[0])
        return d

    def reset_cause(self):
        if not _RESETS:
            _RESETS.update({machine.PWRON_RESET: "pwron", machine.HARD_RESET: "hard",
                            machine.WDT_RESET: "wdt", machine.DEEPSLEEP_RESET: "deepsleep",
                            machine.SOFT_RESET: "soft"})
        return _RESETS.get(machine.reset_cause(), "other")

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
        d = self.deb
        if d is None:
            d = self.deb = edges.Debounce(self.debounce_ms(), app.button)
        while True:
            e = self.ring.pop()
            if e is None:
                break
            d.edge(e[0], e[1])
        d.settle(ticks_ms(), self.btn.value())
        now = ticks_ms()
        if self.uart is not None and self.gps is not None and self.uart.any():
            d = self.uart.read()
            if d:
                self.gps.feed_bytes(d)
        if self.cfg is not None:
            self._wifi(now)
            self._ntp(now, app)

    def debounce_ms(self):
        return self.cfg["debounce_ms"] if self.cfg else 30

    # -- setup mode (docs/firmware.md "Setup mode") --
    def ap(self, on):
        a = network.WLAN(network.AP_IF)
        if not on:
            a.active(False)
            return None
        a.active(True)
        # Open, like ESPHome's and Tasmota's: the RT head's phone joins without a password.
        # The page shows no secret; see "Setup mode" for what someone in range could do.
        dev = self.cfg["dev"] if self.cfg else "baru"
        a.config(essid="Tombol-" + dev[:25], authmode=0)     # network.AUTH_OPEN
        return ("0.0.0.0", 80)

    def wifi_try(self, ssid, psk):
        # The station tries this one network; _wifi() leaves it alone until wifi_result().
        self.t_try = ticks_ms()
        w = self.wlan
        w.active(True)
        try:
            w.disconnect()
            w.connect(ssid, psk)
        except OSError:
            pass

    def wifi_result(self):
        if self.t_try is None:
            return "error"
        st = self.wlan.status()
        if st == network.STAT_GOT_IP:
            r = "ok"
        elif st == network.STAT_WRONG_PASSWORD:
            r = "password"
        elif st == network.STAT_NO_AP_FOUND:
            r = "not_found"
        elif ticks_diff(ticks_ms(), self.t_try) >= _WIFI_TRY_MS:
            r = "timeout"
        else:
            return None
        self.t_try = None
        if r != "ok":
            self.wlan.disconnect()
        self.w_start = None
        self.w_due = ticks_ms()      # the stored networks again at once
        return r

    def set_wifi(self, networks):
        self.wifi = networks
        self.wi = 0
        self.w_start = None
        self.w_due = ticks_ms()

    def _wifi(self, now):
        if self.t_try is not None:
            return
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

    def _ntp_servers(self, c):
        # The configured servers, then every broker host: the gateway's machine answers
        # NTP where the internet's pool is out of reach (a closed police network).
        out = c["ntp"] if isinstance(c["ntp"], list) else [c["ntp"]]
        for b in c["brokers"]:
            if b["host"] not in out:
                out = out + [b["host"]]
        return out

    def _ntp(self, now, app):
        c = self.cfg
        if c is None or not self.wlan.isconnected():
            return
        if self._synced and ticks_diff(now, self.t_saved) >= _CLOCK_SAVE_MS:
            import clockfloor
            self.t_saved = now
            clockfloor.save(self.flash + "/clock", time.time())
        if ticks_diff(now, self.ntp_due) < 0:
            return
        servers = self._ntp_servers(c)
        host = servers[self.ntp_i % len(servers)]
        try:
            import ntptime
            ntptime.host = host
            ntptime.timeout = 1
            self.feed()
            ntptime.settime()   # blocks <= 1 s (plus a DNS lookup)
            was = self._synced
            self._synced_now(now)
            self.ntp_due = ticks_add(now, _NTP_EVERY_MS)
            self.ntp_delay = _NTP_RETRY_MIN_MS
            if not was:
                app.log("clock set by NTP from %s" % host)
                app.clock_set()
        except Exception as e:  # noqa: BLE001
            app.log("ntp %s: %s" % (host, e))
            self.ntp_i += 1
            if self._synced:
                self.ntp_due = ticks_add(now, _NTP_RETRY_MAX_MS)
            else:
                self.ntp_due = ticks_add(now, self.ntp_delay)
                if self.ntp_i % len(servers) == 0:
                    self.ntp_delay = min(self.ntp_delay * 2, _NTP_RETRY_MAX_MS)


def _set_rtc(s):
    tm = time.gmtime(s)
    machine.RTC().datetime((tm[0], tm[1], tm[2], tm[6], tm[3], tm[4], tm[5], 0))


# The check below is for pyright only: it takes any TYPE_CHECKING as true, and
# MicroPython, which has no typing module, never runs the block.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import board
    _contract: "board.Board" = Board()   # checked by pyright against board.pyi
