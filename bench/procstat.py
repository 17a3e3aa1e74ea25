"""CPU and memory of a process from /proc (psutil is not installed, and need not be)."""
from __future__ import annotations

import os
import time

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the whole process (all threads), seconds."""
    with open(f"/proc/{pid}/stat") as f:
        text = f.read()
    # the command name may contain spaces: fields after the closing parenthesis
    fields = text[text.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime, stime (fields 14, 15)


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle, not iowait) since boot."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    return (sum(v[:8]) - idle) / TICK


class CpuMeter:
    """CPU share (in % of one core) of several processes over a window, and of everything
    else on the machine (`others`: what the benchmark does not own, e.g. other jobs)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid}
        self.start()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = {name: self._cpu(pid) for name, pid in self.pids.items()}
        self.m0 = machine_busy_seconds()

    def seconds(self, name: str) -> float:
        """CPU seconds `name` used since start."""
        return self._cpu(self.pids[name]) - self.c0[name]

    @staticmethod
    def _cpu(pid: int) -> float:
        try:
            return cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            return 0.0

    def shares(self) -> dict[str, float]:
        dt = max(1e-6, time.monotonic() - self.t0)
        out = {name: 100.0 * (self._cpu(pid) - self.c0[name]) / dt for name, pid in self.pids.items()}
        machine = 100.0 * (machine_busy_seconds() - self.m0) / dt
        out["others"] = max(0.0, machine - sum(out.values()))
        return out
