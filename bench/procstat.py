"""CPU shares of the benchmark's processes over a window; the /proc readers are the
simulator's (simulator/measure.py)."""
from __future__ import annotations

import time

from simulator.measure import HZ, cpu_ticks, rss_kb, system_cpu


def rss_bytes(pid: int) -> int:
    return (rss_kb(pid) or 0) * 1024


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent busy (not idle, not iowait) since boot."""
    return system_cpu()[0] / HZ


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
        """User + system CPU seconds of the whole process (0 once it is gone)."""
        ticks = cpu_ticks(pid)
        return 0.0 if ticks is None else ticks / HZ

    def shares(self) -> dict[str, float]:
        dt = max(1e-6, time.monotonic() - self.t0)
        out = {name: 100.0 * (self._cpu(pid) - self.c0[name]) / dt for name, pid in self.pids.items()}
        machine = 100.0 * (machine_busy_seconds() - self.m0) / dt
        out["others"] = max(0.0, machine - sum(out.values()))
        return out
