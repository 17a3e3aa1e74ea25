"""`make flash` (docs/security.md, rows 15 and 16, host half): config.json owner-only and gone once
copied, also when the copy fails; the broker's CA goes on the flash when the device's broker
entry uses TLS. The real Makefile and `panic-gateway`; only `mpremote` is replaced by a
recorder (no ESP32 on a serial port here), through the Makefile's MPREMOTE variable."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

from tests.gateway.test_gateway_support import KAUMAN, custom_stack

ROOT = Path(__file__).resolve().parents[2]
DEV = "klj-kauman-rw05-rt03"

# Records each `cp SRC :DST` it is given, with the source's mode and content at that moment.
RECORDER = """import json, os, stat, sys
args = sys.argv[1:]
copied = {}
for i, a in enumerate(args):
    if a == "cp":
        srcs = []
        for b in args[i + 1:]:
            if b == "+":
                break
            srcs.append(b)
        for src in srcs[:-1]:
            if os.path.exists(src):
                copied[srcs[-1] if srcs[-1] != ":" else os.path.basename(src)] = {
                    "src": src, "mode": stat.S_IMODE(os.stat(src).st_mode), "text": open(src).read()}
with open(os.environ["RECORD"], "w") as f:
    json.dump({"argv": args, "copied": copied}, f)
sys.exit(int(os.environ.get("RECORDER_EXIT", "0")))
"""


def flash(tmp_path: Path, config: Path, *, fail: bool = False) -> tuple[subprocess.CompletedProcess, dict, Path]:
    work = tmp_path / "checkout"
    (work / "build").mkdir(parents=True, exist_ok=True)
    recorder = tmp_path / "mpremote"
    recorder.write_text(f"#!{sys.executable}\n{RECORDER}")
    recorder.chmod(0o755)
    record = tmp_path / "record.json"
    env = dict(os.environ, PANIC_CONFIG=str(config), RECORD=str(record), RECORDER_EXIT="1" if fail else "0")
    # -o firmware: the firmware build is not what is under test (and the checkout is shared).
    proc = subprocess.run(["make", "-s", "-f", str(ROOT / "Makefile"), "-C", str(work), "-o", "firmware", "flash",
                           f"VENV={ROOT / '.venv'}", f"MPREMOTE={recorder}", "PORT=/dev/ttyUSB9", f"DEVICE={DEV}"],
                          capture_output=True, text=True, env=env, timeout=120)
    return proc, json.loads(record.read_text()), work / "build"


def test_flash_with_tls_installs_the_ca_and_leaves_no_config_behind(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    s.broker_tls_port()
    creds = s.add_device(DEV, *KAUMAN)
    proc, rec, build = flash(tmp_path, s.config)
    assert proc.returncode == 0, proc.stderr
    cfg = rec["copied"][":config.json"]
    assert cfg["mode"] == 0o600 and json.loads(cfg["text"])["secret"] == creds["secret"]
    assert json.loads(cfg["text"])["brokers"][0] == {**json.loads(cfg["text"])["brokers"][0], "tls": True,
                                                    "ca": "ca.crt"}
    ca = rec["copied"][":ca.crt"]
    assert ca["text"] == (s.state / "broker" / "tls" / "ca.crt").read_text()
    assert not (build / "config.json").exists() and not (build / "ca.crt").exists()


def test_flash_without_tls_copies_no_ca_and_a_failed_copy_leaves_no_config(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    s.add_device(DEV, *KAUMAN)
    proc, rec, build = flash(tmp_path, s.config, fail=True)
    assert proc.returncode != 0
    assert ":ca.crt" not in rec["copied"] and stat.S_IMODE(rec["copied"][":config.json"]["mode"]) == 0o600
    assert not (build / "config.json").exists()
