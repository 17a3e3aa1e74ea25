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


def _main():
    b = None
    try:
        # The biggest module first, while the heap is empty: compiling it from source is
        # the peak of a boot.
        import app
        import board
        b = board.make()
        return app.App(b).run()
    except Exception as e:  # noqa: BLE001
        # stdout carries only JSON events; the unix port would print tracebacks there.
        sys.print_exception(e, sys.stderr)
        if b is not None:
            b.crashed(e)   # on hardware: reset; the outbox is in flash and survives
        return 1


_fix_path()
_rc = _main()
if _rc:
    sys.exit(_rc)
