"""A fleet of simulated buttons: provisioned through the gateway's CLI, each one the
real firmware under `micropython`."""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path

from .firmware import FirmwareDevice
from .scenario import Button
from .stack import Stack


def provision(stack: Stack, buttons: list[Button], sims: dict[str, str] | None = None) -> list[dict]:
    """Register buttons in one `panic-gateway device import`; returns their credentials.
    sims: the SIM number of each button with a modem (its SMS are believed only from it)."""
    path = stack.state / "import.csv"
    sims = sims or {}
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "kelurahan", "kecamatan", "rw", "rt", "lat6", "lon6", "sim"])
        for b in buttons:
            w.writerow([b.id, b.kelurahan, b.kecamatan, b.rw, b.rt, b.lat6, b.lon6, sims.get(b.id, "")])
    creds = json.loads(stack.cli("device", "import", str(path), "--json").stdout)
    stack.issued.extend(creds)  # the registry keeps only MQTT password hashes
    return creds


def start_devices(stack: Stack, creds: list[dict], flash_root: Path, heap: str = "96K",
                  **config) -> list[FirmwareDevice]:
    devices = []
    for c in creds:
        fw = FirmwareDevice(flash_root / c["id"], dict(c["config"], **config), heap=heap)
        devices.append(fw.start(wait_ready=0))
    for fw in devices:
        fw.wait_for(lambda e: e["ev"] == "ready", 30)
    return devices


def wait_links(devices: list[FirmwareDevice], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    for fw in devices:
        fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", max(0.1, deadline - time.monotonic()))
