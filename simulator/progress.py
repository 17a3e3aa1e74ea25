"""A progress line on stderr, no dependency: redrawn in place on a terminal, one line
every 10 s otherwise (logs and CI stay readable)."""
from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, enabled: bool = True, stream=sys.stderr, width: int = 24) -> None:
        self.enabled, self.out, self.width = enabled, stream, width
        self.tty = stream.isatty()
        self._open = False
        self._last = 0.0
        self.t0 = time.monotonic()

    def _write(self, line: str, final: bool) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            self.out.write("\r\x1b[K" + line + ("\n" if final else ""))
            self._open = not final
        elif final or now - self._last >= 10:
            self.out.write(line + "\n")
            self._last = now
        self.out.flush()

    def phase(self, msg: str) -> None:
        if self._open:
            self._write("", True)
        self._write(f"[{self._clock()}] {msg}", True)
        self._last = 0.0

    def update(self, msg: str) -> None:
        self._write(f"[{self._clock()}] {msg}", False)

    def tick(self, run, frac: float | None) -> None:
        """One status line from the run's live counters; frac None = draining."""
        if frac is None:
            bar = "draining".center(self.width, ".")
        else:
            frac = min(1.0, max(0.0, frac))
            n = int(frac * self.width)
            bar = "#" * n + "." * (self.width - n)
        with run.lock:
            pressed = len(run.presses)
            linked = sum(1 for p in run.presses if p.alert_id)
            links = sum(1 for s in run.devs.values() if s.link)
        p = run.people
        with p.lock:
            cases = list(p.cases.values())
        on_scene = sum(1 for c in cases if c.state in ("on_scene", "resolved"))
        self.update(f"[{bar}] pressed {pressed} sent {linked} incidents {len(cases)} on scene {on_scene} "
                    f"open {p.open_cases()} units busy {p.busy_units()}/{len(p.units)} "
                    f"links {links}/{len(run.devs)}")

    def done(self) -> None:
        if self._open:
            self._write("", True)

    def _clock(self) -> str:
        s = int(time.monotonic() - self.t0)
        return f"{s // 60:02d}:{s % 60:02d}"
