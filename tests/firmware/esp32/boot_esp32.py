# Starts the firmware on the ESP32 stand-in under the unix port:
#   PANIC_FLASH=<dir> micropython -X heapsize=96K tests/firmware/esp32/boot_esp32.py
# This folder comes first on sys.path (the script's own), so `machine`, `network`, `time`,
# `socket`, `ssl`... are the stand-ins; the firmware (PANIC_FIRMWARE, default firmware/)
# then runs unchanged from main.py, with the flash folder as its working directory, as
# the ESP32's filesystem root is.
import gc
import os
import sys

import harness  # reads the settings and the reset cause first

# Every stand-in loaded up front, so the baseline below holds all of them.
for _m in ("esp32", "machine", "network", "ntptime", "select", "socket", "ssl", "time"):
    __import__(_m)

_here = __file__.rsplit("/", 1)[0]
_fw = os.getenv("PANIC_FIRMWARE") or _here + "/../../../firmware"
os.chdir(os.getenv("PANIC_FLASH") or ".")
sys.path.append(_fw)

# The stand-in's own code sits in the heap (on a board it would be in flash): the test
# gives the process that much more heap and subtracts this baseline from the firmware's.
gc.collect()
harness.emit(what="baseline", alloc=gc.mem_alloc())

__import__("main")
