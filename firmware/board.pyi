# The board contract, declared once: app.py talks to the hardware only through these
# attributes and methods. board_sim.Board (unix port) and board_esp32.Board (ESP32) are
# each checked against it by pyright (firmware/pyrightconfig.json). A typing stub, so
# nothing of it is loaded on the board, where every KB of heap counts.
# Times are ticks_ms() values; every method returns quickly (the loop must never block).
from typing import Any, Protocol

class Board(Protocol):
    name: str          # "sim" or "esp32"
    can_sleep: bool    # deepsleep() really sleeps (battery variant)
    joins_wifi: bool   # reaches the network only through config "wifi" (no list: setup mode)
    tick_ms: int       # longest the loop may wait between service() calls
    flash: str         # folder of config.json, the outbox and the boot counter

    def setup(self, app: Any) -> None:
        """Once, after a valid config: pins, radio, GPS UART, watchdog from app.cfg."""
    def register(self, poller: Any) -> None:
        """Add the board's own streams to the loop's select.poll() (or nothing)."""
    def service(self, app: Any) -> None:
        """Every loop turn: deliver button edges (app.button), GPS bytes, commands; keep
        WiFi and the clock going (app.clock_set() when the clock becomes right)."""
    def emit(self, d: dict) -> None:
        """One event (a dict) to the outside: stdout on the sim, the console on a board."""
    def led(self, pattern: str) -> None:
        """Start an LED pattern (a name from patterns.LED)."""
    def buzzer(self, pattern: str) -> None:
        """Start a buzzer pattern (a name from patterns.BUZZER)."""
    def led_tick(self, now: Any) -> None:   # a ticks_ms() value
        """Advance the LED and buzzer patterns to ticks `now`."""
    def feed(self) -> None:
        """Feed the watchdog (if one runs)."""
    def battery(self) -> int | None:
        """Battery percent 0-100, or None without a battery ADC."""
    def rssi(self) -> int | None:
        """WiFi signal in dBm, or None when not associated."""
    def net_up(self) -> bool:
        """True when the network (WiFi with an address) is up."""
    def synced(self) -> bool:
        """True when wall_ms() is trustworthy (NTP, or set from an ack)."""
    def wall_ms(self) -> int | None:
        """Unix time in ms, or None while the clock is not set."""
    def set_clock(self, ms: int) -> None:
        """Set the wall clock from a trusted source (the gateway's signed ack `now`)."""
    def read_ca(self, path: str | None) -> bytes | None:
        """The broker CA as DER bytes from a PEM or DER file in flash; None without a path."""
    def deepsleep(self, ms: int) -> None:
        """Sleep until the button or ms pass (does not return on a board)."""
    def reset_cause(self) -> str:
        """Why the board last started: "pwron", "wdt", "soft", "deepsleep", "hard"."""
    def modem_uart(self) -> Any | None:
        """The cellular modem's UART (read/write/any, never blocking), or None when none
        is fitted (config "modem" null). Called once, after setup()."""
    def modem_pin(self, name: str, level: int) -> None:
        """Drive a modem control line: "pwrkey" (1 = pressed, the board minds inversion)."""
    def modem_ppp(self, on: bool) -> None:
        """Start (after the modem's CONNECT) or stop PPP over the modem's UART."""
    def modem_ppp_up(self) -> bool:
        """True when PPP has an address: sockets then reach the brokers over cellular."""
    def ap(self, on: bool) -> tuple[str, int] | None:
        """Setup mode's access point on, returning the (host, port) its page listens on, or
        off (returns None). None when on: this board cannot serve a setup page."""
    def wifi_try(self, ssid: str, psk: str) -> None:
        """Start trying one network ("Uji koneksi"); returns at once, wifi_result() tells."""
    def wifi_result(self) -> str | None:
        """None while a wifi_try runs, then "ok", "password", "not_found", "timeout", "error"."""
    def set_wifi(self, networks: list) -> None:
        """Use this list of {"ssid", "psk"} from now on (setup mode saved a network)."""
    def crashed(self, e: BaseException) -> None:
        """The app raised: on a board, reset (the outbox survives in flash)."""

def make() -> Board: ...
