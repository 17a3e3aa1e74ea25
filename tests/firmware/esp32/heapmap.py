# Heap each firmware module takes once imported, on the ESP32 stand-in (never shipped):
#   micropython -X heapsize=512K heapmap.py <firmware dir> <module> ...
# Run after the stand-in modules are loaded, as boot_esp32.py loads them, so a figure holds
# only the firmware module (its bytecode, constants and interned names, which a frozen image
# keeps in flash, plus its globals and class objects, which stay in RAM). Prints one JSON line.
import gc
import json
import sys

import harness

for _m in ("esp32", "machine", "network", "ntptime", "select", "socket", "ssl", "time"):
    __import__(_m)
sys.path.append(sys.argv[1])
out = {}
for _m in sys.argv[2:]:
    gc.collect()
    _a = gc.mem_alloc()
    try:
        __import__(_m)
    except ImportError:
        continue
    gc.collect()
    out[_m] = gc.mem_alloc() - _a
harness._poll.unregister(harness._in)
print(json.dumps(out))
