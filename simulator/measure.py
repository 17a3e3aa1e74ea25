"""What the run costs the machine: CPU and memory of the firmware processes, the broker,
the gateway and the simulator itself, read from /proc (Linux).

RSS double-counts the pages the firmware processes share (the interpreter's code), so the
fleet's memory is also given as PSS (each shared page divided among its users), which is
what the processes really add up to.
"""
from __future__ import annotations

import os
import threading
import time

HZ = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except (OSError, IndexError, ValueError):
        return None


def _kb(path: str, key: str) -> int | None:
    """A `Key:  N kB` line of a /proc file, in kB (None when the process is gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_kb(pid: int) -> int | None:
    return _kb(f"/proc/{pid}/status", "VmRSS:")


def pss_kb(pid: int) -> int | None:
    return _kb(f"/proc/{pid}/smaps_rollup", "Pss:")


def system_cpu() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def mem_available_kb() -> int:
    return _kb("/proc/meminfo", "MemAvailable:") or 0


class Sampler:
    """Samples every `interval` seconds while the world runs; summary() gives the figures."""

    def __init__(self, run, interval: float = 2.0) -> None:
        self.run, self.interval = run, interval
        self.samples: list[dict] = []
        self.idle: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="sampler", daemon=True)

    def _pids(self) -> dict[str, list[int]]:
        fw = [s.device.proc.pid for s in self.run.devs.values()
              if s.firmware and s.device.proc is not None and s.device.proc.poll() is None]
        st = self.run.stack
        out = {"firmware": fw, "simulator": [os.getpid()]}
        if st is not None and self.run.own_stack:
            out["gateway"] = [g.pid for g in st.gateways if g.poll() is None]
            out["broker"] = [st.broker.pid] if st.broker is not None and st.broker.poll() is None else []
        return out

    def probe_idle(self, seconds: float = 5.0) -> dict:
        """CPU of the linked, untouched fleet: what one idle button costs."""
        pids = self._pids()
        before = {p: cpu_ticks(p) for group in pids.values() for p in group}
        sys0 = system_cpu()
        time.sleep(seconds)
        sys1 = system_cpu()
        out = {"seconds": seconds}
        for name, group in pids.items():
            after = {p: cpu_ticks(p) for p in group}
            d = [t - b for p in group if (t := after[p]) is not None and (b := before.get(p)) is not None]
            out[f"{name}_cpu_pct"] = round(100 * sum(d) / HZ / seconds, 2)
        n = max(1, len(pids["firmware"]))
        out["firmware_processes"] = len(pids["firmware"])
        out["per_device_cpu_pct"] = round(out["firmware_cpu_pct"] / n, 4)
        rss = [rss_kb(p) or 0 for p in pids["firmware"]]
        pss = [pss_kb(p) or 0 for p in pids["firmware"]]
        out["per_device_rss_mib"] = round(sum(rss) / n / 1024, 2)
        out["per_device_pss_mib"] = round(sum(pss) / n / 1024, 2)
        out["machine_cpu_pct"] = round(100 * (sys1[0] - sys0[0]) / max(1, sys1[1] - sys0[1]) * (os.cpu_count() or 1), 1)
        self.idle = out
        return out

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _loop(self) -> None:
        last: dict[int, int] = {}
        last_sys = system_cpu()
        last_t = time.monotonic()
        n = 0
        while not self._stop.wait(self.interval):
            now = time.monotonic()
            dt = now - last_t
            sample = {"t": now}
            for name, group in self._pids().items():
                cpu = 0
                rss = 0
                for p in group:
                    c = cpu_ticks(p)
                    if c is not None:
                        cpu += c - last.get(p, c)
                        last[p] = c
                    rss += rss_kb(p) or 0
                sample[f"{name}_cpu_pct"] = 100 * cpu / HZ / dt
                sample[f"{name}_rss_mib"] = rss / 1024
                if name == "firmware" and n % 5 == 0:
                    sample["firmware_pss_mib"] = sum(pss_kb(p) or 0 for p in group) / 1024
            s = system_cpu()
            sample["machine_cpu_pct"] = 100 * (s[0] - last_sys[0]) / max(1, s[1] - last_sys[1]) * (os.cpu_count() or 1)
            sample["mem_available_mib"] = mem_available_kb() / 1024
            last_sys, last_t = s, now
            self.samples.append(sample)
            n += 1

    def summary(self) -> dict:
        s = self.samples[1:] or self.samples   # the first interval includes start-up
        if not s:
            return {"idle": self.idle}

        def avg(k):
            v = [x[k] for x in s if k in x]
            return round(sum(v) / len(v), 1) if v else None

        def peak(k):
            v = [x[k] for x in s if k in x]
            return round(max(v), 1) if v else None
        keys = sorted({k for x in s for k in x if k != "t"})
        out = {"idle": self.idle, "cpu_count": os.cpu_count(),
               "mem_total_mib": round(_mem_total_kb() / 1024)}
        for k in keys:
            if k.endswith("_cpu_pct"):
                out[k.replace("_pct", "_avg_pct")] = avg(k)
                out[k.replace("_pct", "_peak_pct")] = peak(k)
            elif k == "mem_available_mib":
                out["mem_available_min_mib"] = round(min(x[k] for x in s))
            else:
                out[k.replace("_mib", "_peak_mib")] = peak(k)
        return out


def _mem_total_kb() -> int:
    return _kb("/proc/meminfo", "MemTotal:") or 0
