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


def _flash():
    try:
        import os
        return os.getenv("PANIC_FLASH") or "flash"   # the unix port (board_sim.py)
    except AttributeError:
        return "."                                     # a board: the working directory


def _slot():
    """The loader (never updated over the air): before any module an update can replace is
    imported, pick the slot to run from ota/state.json (docs/firmware.md "Over-the-air
    updates"). A slot on trial counts its boots in ota/boots; a trial boot that follows a
    crash or a watchdog reset, or a third trial boot, rolls back to the slot before it.
    otastate.py reads and writes the same file for the app. Returns the state."""
    import json
    import os
    d = _flash() + "/ota/"
    st = None
    for name in ("state.json", "state.tmp"):
        try:
            with open(d + name) as f:
                st = json.load(f)
            if isinstance(st, dict) and st.get("run") in ("factory", "a", "b"):
                break
        except Exception:  # noqa: BLE001 -- missing or torn: the other copy, else factory
            pass
        st = None
    if st is None:
        return {"run": "factory", "seq": 0, "trial": False}
    if st.get("trial"):
        try:
            n = os.stat(d + "boots")[6]
        except OSError:
            n = 0
        with open(d + "boots", "ab") as f:
            f.write(b"x")
        cause = None
        try:
            import machine
            cause = machine.reset_cause()
            why = {machine.WDT_RESET: "watchdog", machine.SOFT_RESET: "crash"}.get(cause)
        except (ImportError, AttributeError):
            why = None                  # the simulator: every start is a power-up
        if not n:
            why = None                  # the first trial boot follows the update's own reset
        elif n >= 2:
            why = why or "boot"
        if why:
            st = {"run": st.get("prev") or "factory", "prev": st["run"], "seq": st.get("pseq", 0),
                  "fw": st.get("pfw"), "trial": False, "n": st.get("n"),
                  "report": {"stage": "rolled_back", "err": why, "rel": st.get("seq")}}
            with open(d + "state.tmp", "w") as f:
                f.write(json.dumps(st))
            try:
                os.remove(d + "state.json")
            except OSError:
                pass
            os.rename(d + "state.tmp", d + "state.json")
            os.remove(d + "boots")
            sys.stderr.write("ota: rolled back to %s (%s)\n" % (st["run"], why))
    if st["run"] != "factory":
        sys.path.insert(0, d + st["run"])
    return st


def _guard():
    """Before any compiled module: count a boot that followed a crash or watchdog reset
    (one byte each in flash: a torn append cannot corrupt the count), then let safemode.py
    decide. Returns (held_ms, watchdog) to run the app, or None when safe mode ran."""
    try:
        import machine
        cause = machine.reset_cause()
    except (ImportError, AttributeError):
        return 0, None            # the simulator board: no resets, no watchdog
    import os
    if cause == machine.PWRON_RESET:
        try:
            os.remove("crashes")
        except OSError:
            pass
    elif cause != machine.DEEPSLEEP_RESET:
        with open("crashes", "ab") as f:
            f.write(b"x")
    n = os.stat("crashes")[6] if "crashes" in os.listdir() else 0
    try:
        import safemode
    except Exception:  # noqa: BLE001
        if n >= 4:
            return None           # safemode.mpy is the torn file: no app, no watchdog, REPL
        raise
    r = safemode.guard(n)
    del sys.modules["safemode"]   # not needed again this boot: its RAM goes back
    return r


def _main():
    b = None
    try:
        try:
            st = _slot()
        except Exception as e:  # noqa: BLE001 -- a loader fault must not brick: factory
            sys.print_exception(e, sys.stderr)
            st = {"run": "factory", "seq": 0, "trial": False}
        g = _guard()
        if g is None:
            return 0
        import board
        b = board.make()   # first: on an ESP32 its button IRQ records presses from here on
        if g[1] is not None:
            b.wdt = g[1]   # fed by the loop from now on, whatever the config says
        # The config is read and checked before the app is loaded, and its code unloaded
        # again: validation is needed once, and the app's long-lived buffers should not
        # be allocated around its freed remains.
        import config
        cfg = config.load(b.flash + "/config.json")
        del config
        del sys.modules["config"]
        sys.modules.pop("cfgset", None)   # its rules, too (remote.py loads them again)
        import gc
        gc.collect()
        # The biggest modules next, while the heap is emptiest: compiling them from
        # source is the peak of a boot.
        import mqtt  # noqa: F401
        import app
        a = app.App(b, cfg)
        a.boot_hold_ms = g[0]
        a.ost = st
        return a.run()
    except Exception as e:  # noqa: BLE001
        # stdout carries only JSON events; the unix port would print tracebacks there.
        sys.print_exception(e, sys.stderr)
        if b is not None:
            b.crashed(e)   # on hardware: reset; the outbox is in flash and survives
        else:
            import machine
            if hasattr(machine, "reset_cause"):   # a board, not the simulator
                machine.reset()   # counted: a boot that keeps crashing ends in safe mode
        return 1


_fix_path()
_rc = _main()
if _rc:
    sys.exit(_rc)
