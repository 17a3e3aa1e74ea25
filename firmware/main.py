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


_fix_path()

import board  # noqa: E402
import app  # noqa: E402

b = board.make()
try:
    rc = app.App(b).run()
except Exception as e:  # noqa: BLE001
    sys.print_exception(e, sys.stderr)
    # On hardware a crash resets the board; the outbox is in flash and survives.
    b.crashed(e)
    rc = 1
if rc:
    sys.exit(rc)
