"""The per-device status gate (gateway/status_gate.py): one status per device with the health
worker, the newest one waiting, about `rate_per_s` a second handed on, superseded ones counted;
and the held-back statuses found without walking every device."""
from __future__ import annotations

from types import SimpleNamespace

from gateway import metrics
from gateway.status_gate import StatusGate


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


class NoWalk(dict):
    """A slot table that fails the test when something walks all of it."""

    def values(self):  # type: ignore[override]
        raise AssertionError("walked every device")

    def items(self):  # type: ignore[override]
        raise AssertionError("walked every device")

    def __iter__(self):
        raise AssertionError("walked every device")


def status(dev: str, n: int) -> SimpleNamespace:
    return SimpleNamespace(topic=f"panic/v1/{dev}/status", n=n)


def superseded() -> float:
    return metrics.status_limited.labels("superseded")._value.get()


def test_one_with_the_worker_the_newest_waiting_the_rest_counted():
    handed: list = []
    clock = Clock()
    gate = StatusGate(handed.extend, rate_per_s=1.0, burst=1, clock=clock)
    before = superseded()
    for n in range(5):
        gate.offer([status("a", n)])
    gate.offer([status("b", 0)])
    assert [(m.topic[9:10], m.n) for m in handed] == [("a", 0), ("b", 0)]
    assert gate.pending() == 1 and superseded() - before == 3  # 1, 2, 3 replaced; 4 waits
    gate.done([handed[0]])  # the worker is done, but no token yet: 4 keeps waiting
    assert len(handed) == 2 and gate.pending() == 1
    clock.t = 1.0
    gate.flush()
    assert handed[-1].n == 4 and gate.pending() == 0
    gate.done([handed[-1]])
    gate.flush()
    assert len(handed) == 3


def test_held_statuses_are_found_without_walking_every_device():
    handed: list = []
    clock = Clock()
    gate = StatusGate(handed.extend, rate_per_s=1.0, burst=1, clock=clock)
    slots = NoWalk()
    gate._slots = slots
    blocks: list = []
    gate.submit = lambda hands: (blocks.append(len(hands)), handed.extend(hands))
    gate.offer([status(f"d{i:05d}", 0) for i in range(2000)])  # a fleet's read, one status each
    assert blocks == [2000]  # one hand-over for the block, none held back
    gate.done(list(handed))
    assert blocks == [2000]  # nothing was waiting behind them
    gate.flush()
    gate.offer([status("d00007", 1)])  # over its rate: held
    assert gate.pending() == 1
    gate.flush()
    assert handed[-1].n == 0
    clock.t = 1.0
    gate.flush()
    assert handed[-1].n == 1 and gate.pending() == 0 and len(slots) == 2000
