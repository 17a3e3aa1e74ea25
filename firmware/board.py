# The board contract, declared once: app.py talks to the hardware only through these
# attributes and methods, and both boards (board_sim.Board on the unix port, board_esp32.Board
# on an ESP32) subclass Board, so pyright checks each against it (firmware/pyrightconfig.json).
# Times are ticks_ms() values; every method returns quickly (the loop must never block).
class Board:
    name = ""          # "sim" or "esp32"
    can_sleep = False  # deepsleep() really sleeps (battery variant)
    tick_ms = 1000     # longest the loop may wait between service() calls
    flash = "."        # folder of config.json, the outbox and the boot counter

    def setup(self, app):
        """Once, after a valid config: pins, radio, GPS UART, watchdog from app.cfg."""
        raise NotImplementedError

    def register(self, poller):
        """Add the board's own streams to the loop's select.poll() (or nothing)."""
        raise NotImplementedError

    def service(self, app):
        """Every loop turn: deliver button edges, GPS bytes, commands; keep WiFi and the
        clock going. Calls app.button(pressed, ticks) and friends."""
        raise NotImplementedError

    def emit(self, d):
        """One event (a dict) to the outside: stdout on the sim, the console on a board."""
        raise NotImplementedError

    def led(self, pattern):
        """Start an LED pattern (a name from patterns.LED)."""
        raise NotImplementedError

    def buzzer(self, pattern):
        """Start a buzzer pattern (a name from patterns.BUZZER)."""
        raise NotImplementedError

    def led_tick(self, now):
        """Advance the LED and buzzer patterns to ticks `now`."""
        raise NotImplementedError

    def feed(self):
        """Feed the watchdog (if one runs)."""
        raise NotImplementedError

    def battery(self):
        """Battery percent 0-100, or None without a battery ADC."""
        raise NotImplementedError

    def rssi(self):
        """WiFi signal in dBm, or None when not associated."""
        raise NotImplementedError

    def net_up(self):
        """True when the network (WiFi with an address) is up."""
        raise NotImplementedError

    def synced(self):
        """True when wall_ms() is trustworthy (NTP, or set from an ack)."""
        raise NotImplementedError

    def wall_ms(self):
        """Unix time in ms, or None while the clock is not set."""
        raise NotImplementedError

    def set_clock(self, ms):
        """Set the wall clock from a trusted source (the gateway's signed ack `now`)."""
        raise NotImplementedError

    def read_ca(self, path):
        """The broker CA as DER bytes from a PEM or DER file in flash; None without a path."""
        raise NotImplementedError

    def deepsleep(self, ms):
        """Sleep until the button or ms pass (does not return on a board)."""
        raise NotImplementedError

    def crashed(self, e):
        """The app raised: on a board, reset (the outbox survives in flash)."""
        raise NotImplementedError


def make():
    # The ESP32 port (or its stand-in under tests/firmware/esp32/) has an `esp32` module;
    # the plain unix port is the simulator.
    try:
        import esp32  # noqa: F401
    except ImportError:
        import board_sim
        return board_sim.Board()
    import board_esp32
    return board_esp32.Board()
