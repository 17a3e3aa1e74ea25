"""Firmware modules under CPython: MicroPython's tick clock and a loader that runs a
firmware file with that clock in place of `time`.

Pure-logic firmware modules (gesture.py, gps.py) import `ticks_ms`/`ticks_diff`/
`ticks_add` from `time`, which CPython's `time` lacks. Loading them here, rather than
copying their logic into the simulator, keeps one implementation: a fix to the firmware
is a fix to the protocol devices.
"""
from __future__ import annotations

import builtins
import functools
import sys
import time
import types
from pathlib import Path
from typing import Any

FIRMWARE = Path(__file__).resolve().parents[1] / "firmware"

# MicroPython's ticks wrap at 2**30 on the ESP32 and the unix port; the same period here
# lets the firmware's wrap-around arithmetic run exactly as on a board.
TICKS_PERIOD = 1 << 30
TICKS_MAX = TICKS_PERIOD - 1
TICKS_HALF = TICKS_PERIOD // 2


def ticks_ms() -> int:
    return (time.monotonic_ns() // 1_000_000) & TICKS_MAX


def ticks_add(ticks: int, delta: int) -> int:
    return (ticks + delta) & TICKS_MAX


def ticks_diff(ticks1: int, ticks2: int) -> int:
    """Signed ticks1 - ticks2, correct across one wrap of the counter."""
    return ((ticks1 - ticks2 + TICKS_HALF) & TICKS_MAX) - TICKS_HALF


def _const(value: Any) -> Any:
    return value


# What a firmware module sees when it imports `time` or `micropython`.
_MP_MODULES = {
    "time": types.SimpleNamespace(ticks_ms=ticks_ms, ticks_add=ticks_add, ticks_diff=ticks_diff,
                                  sleep_ms=lambda ms: time.sleep(ms / 1000)),
    "micropython": types.SimpleNamespace(const=_const),
}


def _import(name: str, globals: Any = None, locals: Any = None, fromlist: Any = (), level: int = 0) -> Any:
    if level == 0 and name in _MP_MODULES:
        return _MP_MODULES[name]
    if level == 0 and (FIRMWARE / f"{name}.py").is_file():
        return firmware_module(name)  # firmware modules import each other by bare name
    return builtins.__import__(name, globals, locals, fromlist, level)


@functools.cache
def firmware_module(name: str) -> types.ModuleType:
    """firmware/<name>.py as a module whose `time`/`micropython` imports are the shims;
    other imports are CPython's, so only pure-logic modules belong here."""
    path = FIRMWARE / f"{name}.py"
    module = types.ModuleType(f"firmware_{name}")
    module.__file__ = str(path)
    module.__dict__["__builtins__"] = dict(vars(builtins), __import__=_import)
    exec(compile(path.read_text(), str(path), "exec"), module.__dict__)
    # Registered so that pickling, tracebacks and inspect find it; never shadows `time`.
    sys.modules.setdefault(module.__name__, module)
    return module
