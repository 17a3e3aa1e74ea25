"""The release manager's part of a simulated run (`panic-sim run --release`): a release key
of the run's own, the firmware compiled as `make firmware` compiles it under a new version
and signed, released to a canary share of the fleet, widened to every button once the
canaries kept it, all while the world's presses go on. The run's report says how long the
rollout took and what it did to the alerts that were pressed meanwhile."""
from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gateway import config as gwconfig
from gateway import fleet
from gateway.store import open_store
from protocol import release


@dataclass
class Wave:
    pct: float
    started: float                     # time.monotonic()
    kept: float | None = None          # when every device of the wave had an outcome
    started_ms: int = field(default_factory=lambda: time.time_ns() // 1_000_000)
    kept_ms: int | None = None         # wall clock, to place presses against the rollout


@dataclass
class Rollout:
    state: Path                        # the run's state folder
    canary_pct: float = 5.0
    seq: int = 1
    waves: list[Wave] = field(default_factory=list)
    file: Path | None = None
    fw: str = ""
    keys: dict[str, str] = field(default_factory=dict)
    last: dict | None = None           # the last fleet status seen
    why: str | None = None             # halted: the gateway's reason

    def prepare(self, stack) -> None:
        """Before the gateway starts: a key pair, the gateway told to trust it, and the
        release built from this checkout's firmware under a version of its own."""
        folder = self.state / "release"
        folder.mkdir(parents=True, exist_ok=True)
        priv = folder / "release-manager.pem"
        pub = folder / "release-manager.pub.json"
        if not priv.exists():
            release.keygen("release-manager", folder)
        self.keys = json.loads(pub.read_text())
        stack.set_config("fleet", release_keys=str(pub))
        self.fw = release.firmware_version() + "+sim"
        built = release.compile_firmware(folder / "build", fw=self.fw)
        rel = release.build(release.bundle_dir(built.parent), fw=self.fw, seq=self._next_seq(stack),
                            private_key=release.load_private(priv))
        self.seq = rel.seq
        self.file = folder / f"r{rel.seq}.pbr"
        self.file.write_bytes(rel.pack())

    def _next_seq(self, stack) -> int:
        """Above every release the stack already holds (a re-run on the same state)."""
        store = open_store(gwconfig.load(stack.config))
        try:
            r = store.current_rollout()
            return (r.seq + 1) if r is not None else 1
        finally:
            store.close()

    def install_keys(self, flash: Path) -> None:
        """What `make flash` writes beside config.json: the keys a release must be signed with."""
        flash.mkdir(parents=True, exist_ok=True)
        (flash / release.KEYS_FILE).write_text(json.dumps(self.keys))

    def start(self, stack) -> None:
        assert self.file is not None, "prepare() builds the release first"
        stack.cli("fleet", "release", str(self.file), "--to", f"{self.canary_pct:g}%", "--by", "sim:release-manager")
        self.waves.append(Wave(self.canary_pct, time.monotonic()))

    def step(self, stack) -> str:
        """Called every few seconds: widens to 100 % once the canaries are through.
        Returns a one-line progress text."""
        st = self._status(stack)
        r = st["rollout"]
        self.last = st
        if r is None or not self.waves:
            return "release: waiting"
        counts = r["counts"]
        # "later": the button said not now (an alert pending, a low battery) and is asked
        # again after [fleet] retry_s; the wave is through without waiting for it.
        through = sum(counts.get(k, 0) for k in ("ok", "failed", "skipped", "later"))
        w = self.waves[-1]
        if r["state"] == "halted":
            self.why = r["why"]
        elif w.kept is None and (r["state"] == "done" or through >= r["wave"]):
            w.kept = time.monotonic()
            w.kept_ms = time.time_ns() // 1_000_000
            if w.pct < 100:
                stack.cli("fleet", "release", "--to", "100%", "--by", "sim:release-manager")
                self.waves.append(Wave(100.0, time.monotonic()))
        return (f"release {r['seq']} at {r['pct']:g} %: {r['state']}, "
                + ", ".join(f"{n} {k}" for k, n in counts.items()))

    def done(self) -> bool:
        return self.why is not None or (bool(self.waves) and self.waves[-1].pct >= 100
                                        and self.waves[-1].kept is not None)

    @staticmethod
    def _status(stack) -> dict:
        cfg = gwconfig.load(stack.config)
        store = open_store(cfg)
        try:
            return fleet.status(store, cfg)
        finally:
            store.close()

    def window_ms(self) -> tuple[int, int] | None:
        """Wall-clock ms from the first release command to the last wave's end (or now)."""
        if not self.waves:
            return None
        return self.waves[0].started_ms, self.waves[-1].kept_ms or time.time_ns() // 1_000_000

    def summary(self, t0: float) -> dict:
        """For the run's report: the waves' times from the world's start, and where every
        button ended."""
        devices = (self.last or {}).get("devices", [])
        on_release = sum(1 for d in devices if d["seq"] == self.seq and d["stage"] == "kept")
        return {
            "seq": self.seq, "fw": self.fw, "halted": self.why,
            "waves": [{"pct": w.pct, "start_s": round(w.started - t0, 1),
                       "through_s": None if w.kept is None else round(w.kept - t0, 1)} for w in self.waves],
            "duration_s": (round(self.waves[-1].kept - self.waves[0].started, 1)
                           if self.waves and self.waves[-1].kept is not None else None),
            "kept": on_release, "devices": len(devices),
            "by_stage": dict(sorted(Counter(d["stage"] or "none" for d in devices).items())),
        }
