"""One simulated button: the project's real firmware running under `micropython`.

The sim board of the firmware reads commands on stdin and writes one JSON event per
line on stdout (docs/firmware.md); this class is the host side of that pipe. A button
with a modem gets the modem emulator (simulator/modem_emu.py) behind its sim board's UART:
its settings go to `<flash>/modem.json`, named by $PANIC_MODEM (firmware/board_sim.py).
"""
from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIRMWARE_MAIN = ROOT / "firmware" / "main.py"
# `make firmware` output: .mpy files, as deployed to a board (smaller heap at run time).
BUILD_MAIN = ROOT / "build" / "firmware" / "main.py"
# From source, compiling app.py at boot is the peak, which a board running the .mpy build
# (88K, tests/firmware/test_firmware_faults.py) never pays; taking an update also holds a
# command, remote.py, ota.py and the RSA check beside the idle app. On the unix port, whose
# objects are up to twice an ESP32's, both need more than 96K (docs/firmware.md, Memory).
DEFAULT_HEAP = "128K"
MODEM_EMU_LIB = Path(__file__).resolve().parent   # where modem_emu.py is
# The emulator is compiled and runs inside the button's own VM, which a board's heap never
# carries (its modem is another chip): a button with one gets that much more. The firmware's
# own cellular session is held to the board's heap by tests/firmware/test_firmware_cellular.py.
MODEM_HEAP = "192K"


def modem_settings(*, spool: Path, msisdn: str, coverage: bool = True, attach_ms: int | None = None,
                   faults: dict | None = None) -> dict:
    """The emulator's settings for one button: its SIM number, the carrier's spool, and its
    faults (modem_emu.DEFAULT's keys). No coverage is a network that never registers it."""
    f = dict(faults or {})
    if attach_ms is not None:
        f["attach_ms"] = attach_ms
    if not coverage:
        f["reg"] = "searching"
    return {"lib": str(MODEM_EMU_LIB), "spool": str(spool), "msisdn": msisdn, "faults": f}


def micropython_binary() -> str:
    here = Path(sys.executable).parent / "micropython"
    found = str(here) if here.exists() else shutil.which("micropython")
    if not found:
        raise RuntimeError("micropython not found: run `make setup`")
    return found


class FirmwareDevice:
    """Start, command and power-cut one firmware process; its flash is a folder."""

    def __init__(self, flash_dir: Path, config: dict | None = None, heap: str = DEFAULT_HEAP,
                 on_event: Callable[[FirmwareDevice, dict], None] | None = None,
                 main: Path = FIRMWARE_MAIN, modem: dict | None = None, env: dict[str, str] | None = None,
                 reboots: bool = False) -> None:
        """modem: modem_settings(...) to fit the emulated modem (else the button has none);
        env: more environment for the firmware (PANIC_SETUP_PORT: setup mode's page port);
        reboots: a process that ends by itself (the sim board's reset after an update or a
        `reboot` command, or a crash) is started again at once, as a board boots again."""
        self.main = Path(main)
        self.flash = Path(flash_dir)
        self.flash.mkdir(parents=True, exist_ok=True)
        if config is not None:
            (self.flash / "config.json").write_text(json.dumps(config))
        self.modem_file: Path | None = None
        if modem is not None:
            self.modem_file = self.flash / "modem.json"
            self.modem_file.write_text(json.dumps(modem))
        self.dev = json.loads((self.flash / "config.json").read_text())["dev"]
        self.heap = heap
        self.env = dict(env or {})
        self.on_event = on_event
        self.events: queue.Queue[dict] = queue.Queue()
        self.history: list[dict] = []
        self.proc: subprocess.Popen | None = None
        self._reader: threading.Thread | None = None
        self.stderr_path = self.flash / "stderr.log"
        self.reboots = reboots
        self.restarts = 0
        self._off = False         # stopped or power cut on purpose: no reboot

    # --- process -------------------------------------------------------------------
    def start(self, wait_ready: float = 10.0) -> FirmwareDevice:
        self.events = queue.Queue()  # a restart after a power cut starts a fresh stream
        self._off = False
        env = dict(os.environ, PANIC_FLASH=str(self.flash))
        env.pop("PANIC_MODEM", None)
        env.pop("PANIC_SETUP_PORT", None)
        env.update(self.env)
        if self.modem_file is not None:
            env["PANIC_MODEM"] = str(self.modem_file)
        self.proc = subprocess.Popen(
            [micropython_binary(), "-X", f"heapsize={self.heap}", str(self.main)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(self.stderr_path, "ab"),
            env=env, bufsize=0)
        # The reader keeps the stream it was started with: the last lines and the "exit" of a
        # process that has just died must not land in the next boot's stream.
        self._reader = threading.Thread(target=self._read, args=(self.proc, self.events), daemon=True,
                                        name=f"fw-{self.dev}")
        self._reader.start()
        if wait_ready:
            self.wait_for(lambda e: e.get("ev") == "ready", wait_ready)
        return self

    def _read(self, proc: subprocess.Popen, events: queue.Queue) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                event = {"ev": "raw", "line": line.decode(errors="replace").rstrip()}
            event["host_ms"] = time.time_ns() // 1_000_000
            event["host_t"] = time.perf_counter()
            self.history.append(event)
            events.put(event)
            if self.on_event:
                self.on_event(self, event)
        events.put({"ev": "exit", "host_t": time.perf_counter()})
        rc = proc.wait()
        if self.reboots and not self._off and proc is self.proc:
            self.restarts += 1
            if self.on_event:
                self.on_event(self, {"ev": "rebooted", "rc": rc, "host_ms": time.time_ns() // 1_000_000})
            self.start(wait_ready=0)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, command: str) -> float:
        """Write one command line; returns the host time it was written."""
        assert self.proc is not None and self.proc.stdin is not None
        t = time.perf_counter()
        self.proc.stdin.write(command.encode() + b"\n")
        return t

    def power_cut(self) -> None:
        """SIGKILL: no flush, no goodbye, exactly what pulling the battery does."""
        self._off = True
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
        self._join()

    def stop(self, timeout: float = 5.0) -> None:
        self._off = True
        if self.proc and self.proc.poll() is None:
            try:
                self.send("quit")
                self.proc.wait(timeout)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._join()

    def _join(self) -> None:
        if self._reader:
            self._reader.join(timeout=2)

    # --- events --------------------------------------------------------------------
    def wait_for(self, match: Callable[[dict], bool], timeout: float) -> dict:
        """Next event (from the queue, in order) that matches; earlier ones are consumed."""
        deadline = time.perf_counter() + timeout
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                raise TimeoutError(f"{self.dev}: no matching event within {timeout}s; "
                                   f"last events: {self.history[-8:]}")
            try:
                event = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if match(event):
                return event
            if event["ev"] == "exit" and not match(event):
                raise RuntimeError(f"{self.dev}: firmware exited; stderr: {self.stderr_tail()}")

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            return self.stderr_path.read_bytes()[-n:].decode(errors="replace")
        except FileNotFoundError:
            return ""

    def seen(self, ev: str, **fields) -> list[dict]:
        return [e for e in self.history if e.get("ev") == ev and all(e.get(k) == v for k, v in fields.items())]
