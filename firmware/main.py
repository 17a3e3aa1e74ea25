# Entry point: on an ESP32 this runs at boot; under the unix port:
#   PANIC_FLASH=<dir> micropython -X heapsize=96K firmware/main.py
import sys


def _fix_path():
    # The unix port puts the script's folder first on sys.path; keep that true even when
    # started through a symlink or with a relative path from another cwd.
    f = __file__ if "__file__" in globals() else ""
    i = f.rfind("/")
    if i > 0 and f[:i] not in sys.path:
        sys.path.insert(0, f[:i])


_CRASH_BOOTS = 4          # safemode.CRASH_BOOTS; here too, in case safemode.mpy is the broken file
_CRASHES = "crashes"


def _crash_boots():
    """Boots in a row that followed a crash or watchdog reset, counted in flash (one byte
    each: a torn append cannot corrupt the count). None on the simulator board."""
    try:
        import machine
        cause = machine.reset_cause()
    except (ImportError, AttributeError):
        return None
    import os
    if cause == machine.PWRON_RESET:
        try:
            os.remove(_CRASHES)
        except OSError:
            pass
        return 0
    if cause != machine.DEEPSLEEP_RESET:
        with open(_CRASHES, "ab") as f:
            f.write(b"x")
    try:
        return os.stat(_CRASHES)[6]
    except OSError:
        return 0


def _safe(n):
    """(True, 0, None) when safe mode ran instead of the app; else (False, ms the button
    was held through power-up, the watchdog now running or None)."""
    if n is None:
        return False, 0, None
    try:
        import safemode
    except Exception:  # noqa: BLE001
        if n >= _CRASH_BOOTS:
            return True, 0, None  # no app, no watchdog: the REPL stays reachable over USB
        raise
    why, held, wdt_ms = safemode.check(crash_loop=n >= _CRASH_BOOTS)
    if why:
        safemode.run(why)
        return True, 0, None
    del sys.modules["safemode"]   # not needed again this boot: its RAM goes back
    import machine
    # Before the app is even imported: a torn .mpy can hang its import, and only a
    # watchdog reset (counted above) turns that hang into safe mode.
    return False, held, machine.WDT(timeout=wdt_ms)


def _reset():
    try:
        import machine
        machine.reset()
    except (ImportError, AttributeError):
        pass


def _main():
    b = None
    try:
        safe, held, wdt = _safe(_crash_boots())
        if safe:
            return 0
        # The biggest module first, while the heap is empty: compiling it from source is
        # the peak of a boot.
        import app
        import board
        b = board.make()
        if wdt is not None:
            b.wdt = wdt    # fed by the loop from now on, whatever the config says
        a = app.App(b)
        a.boot_hold_ms = held
        return a.run()
    except Exception as e:  # noqa: BLE001
        # stdout carries only JSON events; the unix port would print tracebacks there.
        sys.print_exception(e, sys.stderr)
        if b is not None:
            b.crashed(e)   # on hardware: reset; the outbox is in flash and survives
        else:
            _reset()       # counted: a boot that keeps crashing ends in safe mode
        return 1


_fix_path()
_rc = _main()
if _rc:
    sys.exit(_rc)
