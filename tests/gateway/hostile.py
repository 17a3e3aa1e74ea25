"""A hostile corpus: one case per class of bad input a panic gateway meets in the wild.

Each case is (name, expected reason, payload builder). Builders take a RawDevice and
return (topic or None for the device's own alert topic, payload bytes). Used by the
live corpus test and by `make fuzz` as seeds.
"""
from __future__ import annotations

import json
import time

from gateway import signing


def _signed(d, body: bytes) -> bytes:
    return signing.sign(body, d.secret)


def _raw(d, **over) -> bytes:
    return _signed(d, d.body(seq=over.pop("seq", 50), **over))


CASES = [
    ("truncated JSON", "json", lambda d: _signed(d, d.body(seq=51)[:40])),
    ("not an object", "json", lambda d: _signed(d, b"[1, 2, 3]")),
    ("empty body", "json", lambda d: _signed(d, b"")),
    ("deep nesting", "json", lambda d: _signed(d, b"[" * 450 + b"]" * 450)),
    ("NaN", "json", lambda d: _signed(d, d.body(seq=52).replace(b'"acc": 25', b'"acc": NaN'))),
    ("Infinity", "json", lambda d: _signed(d, d.body(seq=53).replace(b'"acc": 25', b'"acc": -Infinity'))),
    ("non-UTF-8", "json", lambda d: _signed(d, b'{"v":1,"dev":"\xc3\x28"}')),
    ("huge number", "schema", lambda d: _raw(d, seq=54, lat6=10**40)),
    # no double holds it: the strict parser refuses it as JSON (RFC 8259 lets a parser limit numbers)
    ("float overflow", "json", lambda d: _signed(d, d.body(seq=55).replace(b'"acc": 25', b'"acc": 1e400'))),
    ("wrong type", "schema", lambda d: _raw(d, seq=56, boot="12")),
    ("bool as int", "schema", lambda d: _raw(d, seq=57, acc=True)),
    ("missing field", "schema", lambda d: _signed(d, json.dumps(
        {k: v for k, v in json.loads(d.body(seq=58)).items() if k != "lon6"}).encode())),
    ("id not dev:boot:seq", "schema", lambda d: _raw(d, seq=59, id=f"{d.dev}:1:999")),
    ("unknown kind", "schema", lambda d: _raw(d, seq=60, kind="DROP TABLE")),
    ("cancel of another device", "schema", lambda d: _raw(d, seq=61, kind="cancel", ref="klj-other-rw01-rt01:1:1")),
    ("version 2", "schema", lambda d: _raw(d, seq=62, v=2)),
    ("wrong MAC", "mac", lambda d: d.body(seq=63) + b"\n" + signing.mac(d.body(seq=63), "x" * 64).encode()),
    ("MAC of another body", "mac", lambda d: d.body(seq=64) + b"\n" + signing.mac(d.body(seq=65), d.secret).encode()),
    ("uppercase MAC", "mac", lambda d: d.body(seq=66) + b"\n" + signing.mac(d.body(seq=66), d.secret).upper().encode()),
    ("missing MAC", "format", lambda d: d.body(seq=67)),
    ("short MAC", "format", lambda d: d.body(seq=68) + b"\nabc"),
    ("dev not the topic's", "dev_mismatch", lambda d: _raw(d, seq=69, dev="klj-kauman-rw05-rt04")),
    ("press far in the past", "stale", lambda d: _raw(d, seq=70, t=int(time.time() * 1000) - 3 * 86400_000)),
    ("press far in the future", "stale", lambda d: _raw(d, seq=71, t=int(time.time() * 1000) + 86400_000)),
    ("unsynced, age of a week", "stale", lambda d: _raw(d, seq=72, t=None, age=7 * 86400_000)),
    ("oversize (2 KB)", "size", lambda d: _raw(d, seq=73, pad="x" * 2048)),
]
