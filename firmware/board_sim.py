# Simulator board for the unix port. The "flash" is the folder in $PANIC_FLASH; the
# simulator drives the button, WiFi, battery and GPS through stdin (one command a line)
# and reads events from stdout (one JSON object a line). docs/firmware.md has the contract.
import json
import os
import select
import sys
import time
from time import ticks_ms


class Board:
    name = "sim"
    can_sleep = False
    tick_ms = 1000     # no LED to blink here: wake only for real work

    def __init__(self):
        self.flash = os.getenv("PANIC_FLASH") or "flash"
        self.wifi = True
        self.batt = 100
        self._in = sys.stdin.buffer
        self._p = select.poll()
        self._p.register(self._in, select.POLLIN)
        self._line = bytearray()
        self._out = sys.stdout
        self.emu = None
        # The WiFi stand-in: with <flash>/sim_wifi.json ({ssid: psk} of the networks in
        # range) the button is online only while one of its configured networks is there.
        # Without the file the network is simply up (or down by the `wifi` command).
        self.nets = []
        # Without the stand-in the simulated network needs no WiFi list, so no list is no
        # reason for setup mode.
        self.joins_wifi = self._air() is not None
        self._assoc = True
        self._t_scan = None
        self._try = None

    # -- hooks used by the app --
    def setup(self, app):
        self.nets = app.cfg["wifi"]
        self._scan(ticks_ms())

    def register(self, poller):
        poller.register(self._in, select.POLLIN)

    def emit(self, d):
        self._out.write(json.dumps(d))
        self._out.write("\n")

    def led(self, pattern):
        pass

    def buzzer(self, pattern):
        pass

    def led_tick(self, now):
        pass

    def feed(self):
        pass

    def battery(self):
        return self.batt

    def rssi(self):
        return -55 if self.wifi else None

    def net_up(self):
        return self.wifi and self._assoc

    def _air(self):
        try:
            with open(self.flash + "/sim_wifi.json") as f:
                return json.load(f)
        except (OSError, ValueError):
            return None

    def _scan(self, now):
        # Once a second, like a board retrying its stored networks: for ever.
        if self._t_scan is not None and time.ticks_diff(now, self._t_scan) < 1000:
            return
        self._t_scan = now
        air = self._air()
        self._assoc = air is None or any(air.get(n.get("ssid")) == n.get("psk", "") for n in self.nets)

    # -- setup mode (docs/firmware.md): the page on 127.0.0.1:$PANIC_SETUP_PORT --
    def ap(self, on):
        p = os.getenv("PANIC_SETUP_PORT")
        if not on or not p:
            return None
        return ("127.0.0.1", int(p))

    def wifi_try(self, ssid, psk):
        self._try = (ssid, psk, ticks_ms())

    def wifi_result(self):
        t = self._try
        if t is None:
            return "error"
        if time.ticks_diff(ticks_ms(), t[2]) < 800:
            return None           # a real association takes a few seconds
        self._try = None
        air = self._air() or {}
        if t[0] not in air:
            return "not_found"
        return "ok" if air[t[0]] == t[1] else "password"

    def set_wifi(self, networks):
        self.nets = networks
        self._t_scan = None
        self._scan(ticks_ms())

    def synced(self):
        return True

    def wall_ms(self):
        # The host clock is NTP-disciplined: the simulated device counts as synced.
        return time.time_ns() // 1000000

    def set_clock(self, ms):
        pass

    def read_ca(self, path):
        if not path:
            return None
        if path[0] != "/":
            path = self.flash + "/" + path  # on a board, flash is the working directory
        with open(path, "rb") as f:
            d = f.read()
        return pem_to_der(d)

    def deepsleep(self, ms):
        pass

    def reset_cause(self):
        return "pwron"     # every start of the simulated button is a power-up

    def crashed(self, e):
        pass

    # The modem is simulator/modem_emu.py (never shipped to a board), named by the JSON
    # file in $PANIC_MODEM: {"lib": <its folder>, "spool": <carrier spool>, "msisdn": <the
    # SIM's number>, "faults": {...}}. Without it the simulated button has no modem.
    def modem_uart(self):
        p = os.getenv("PANIC_MODEM")
        if self.emu is None and p:
            # Its folder may hold a modem_emu.mpy (mpy-cross): less of the heap than source.
            with open(p) as f:
                d = json.load(f)
            sys.path.append(d["lib"])
            from modem_emu import Emu  # pyright: ignore[reportMissingImports]
            self.emu = Emu(d["spool"], d["msisdn"], d.get("faults"))
        return self.emu

    def modem_pin(self, name, level):
        if self.emu is not None:
            self.emu.pin(name, level)

    def modem_ppp(self, on):
        if self.emu is not None:
            self.emu.ppp(on)

    def modem_ppp_up(self):
        # The stand-in for PPP: once the emulated call is up, the same sockets reach the
        # brokers (over the host's network, as WiFi does here).
        return self.emu is not None and self.emu.ppp_up()

    # -- stdin commands --
    def service(self, app):
        self._scan(ticks_ms())
        # Byte by byte: the unix port's stream reads loop until their buffer is full, so
        # only a 1-byte read after a successful poll is guaranteed not to block.
        while True:
            ev = self._p.poll(0)
            if not ev:
                return
            if ev[0][1] & select.POLLIN:
                b = self._in.read(1)
            else:
                b = b""
            if not b:
                if self._line:
                    self._cmd(app, bytes(self._line))
                    self._line = bytearray()
                app.stop()        # EOF: the simulator went away
                return
            if b == b"\n":
                ln = bytes(self._line)
                self._line = bytearray()
                self._cmd(app, ln)
                return            # one command per loop turn keeps each one's latency
            self._line.extend(b)
            if len(self._line) > 512:
                self._line = bytearray()

    def _cmd(self, app, ln):
        tk = ticks_ms()
        try:
            s = ln.decode().strip()
        except Exception:
            app.log("bad command bytes")
            return
        if not s:
            return
        cmd, _, arg = s.partition(" ")
        if cmd == "trigger":
            app.trigger(arg or "panic", tk) if arg in ("", "panic", "test") else \
                app.log("unknown trigger kind " + arg)
        elif cmd == "cancel":
            app.cancel(tk)
        elif cmd == "down":
            app.button(True, tk)
        elif cmd == "up":
            app.button(False, tk)
        elif cmd == "wifi":
            self.wifi = arg != "off"
            if not self.wifi:
                app.link_lost("wifi off")
        elif cmd == "battery":
            try:
                self.batt = max(0, min(100, int(arg)))
            except ValueError:
                app.log("battery needs an integer percent")
        elif cmd == "gps":
            g = app.gps_on()
            if g is not None and not g.feed(arg):
                app.log("gps sentence ignored (bad checksum/format or no fix)")
        elif cmd == "modem":
            # Faults of the emulated modem, a JSON object (simulator/modem_emu.py).
            try:
                f = json.loads(arg)
                emu = self.modem_uart()
                if emu is None:
                    raise ValueError("no $PANIC_MODEM")
                emu.set_faults(f)
            except Exception:  # noqa: BLE001 -- a bad test command, not a crash
                app.log("modem needs a JSON object of faults and $PANIC_MODEM")
        elif cmd == "status":
            app.status()
        elif cmd == "quit":
            app.stop()
        else:
            app.log("unknown command " + s)


def pem_to_der(d):
    if not d.startswith(b"-----"):
        return d
    from binascii import a2b_base64
    body = b"".join(ln for ln in d.split(b"\n") if ln and not ln.startswith(b"-----"))
    return a2b_base64(body)


# The check below is for pyright only: it takes any TYPE_CHECKING as true, and
# MicroPython, which has no typing module, never runs the block.
TYPE_CHECKING = False
if TYPE_CHECKING:
    import board
    _contract: "board.Board" = Board()   # checked by pyright against board.pyi
