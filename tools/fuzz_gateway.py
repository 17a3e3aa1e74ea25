"""Fuzz the gateway's alert parser/validator: `python -m tools.fuzz_gateway -n 100000`.

Inputs are mutations of valid alerts and of the hostile corpus. Most are re-signed with
the device's real secret, so they get past the MAC into the JSON and schema checks,
where the bugs would be; the rest test the framing and MAC checks themselves. Any
exception escaping `check_alert` is a failure.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter

from gateway import signing
from gateway.models import Device
from gateway.validate import Rejection, check_alert

DEV = "klj-kauman-rw05-rt03"
SECRET = "a" * 64
DEVICE = Device(DEV, SECRET, "pw")
TOPIC = f"panic/v1/{DEV}/alert"

INTERESTING = [b"", b"null", b"true", b"-0", b"1e999", b"NaN", b"-Infinity", b"\"\\ud800\"", b"[]", b"{}",
               b"9" * 40, b"\"" + b"x" * 300 + b"\"", b"\xff", b"\x00", b"[[[[[[[[[[", b"{\"a\":", b"0.5",
               b"-1", b"2147483648", b"18446744073709551616", b"\"klj-kauman-rw05-rt03:1:1\""]
FIELDS = ["v", "dev", "id", "boot", "seq", "kind", "t", "age", "lat6", "lon6", "acc", "src", "batt", "rssi", "ref"]


def valid_body(rng: random.Random, now: int) -> dict:
    boot, seq = rng.randrange(1, 10**6), rng.randrange(0, 10**6)
    return {"v": 1, "dev": DEV, "id": f"{DEV}:{boot}:{seq}", "boot": boot, "seq": seq,
            "kind": rng.choice(["panic", "test", "cancel"]), "t": rng.choice([now - rng.randrange(0, 10**6), None]),
            "age": rng.randrange(0, 10**6), "lat6": rng.randrange(-90_000_000, 90_000_001),
            "lon6": rng.randrange(-180_000_000, 180_000_001), "acc": rng.randrange(0, 5000),
            "src": rng.choice(["gps", "fixed"]), "batt": rng.choice([None, rng.randrange(0, 101)]),
            "rssi": rng.choice([None, rng.randrange(-120, 1)]), "ref": f"{DEV}:1:1"}


def mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randrange(1, 6)):
        op = rng.randrange(5)
        pos = rng.randrange(len(b) + 1)
        if op == 0 and b:
            b[min(pos, len(b) - 1)] = rng.randrange(256)
        elif op == 1:
            b[pos:pos] = rng.choice(INTERESTING)
        elif op == 2 and b:
            del b[pos:pos + rng.randrange(1, 20)]
        elif op == 3:
            b[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
        else:
            cut = rng.randrange(len(b) + 1)
            b = b[:cut]
    return bytes(b)


def mutate_json(rng: random.Random, body: dict) -> bytes:
    body = dict(body)
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice([*FIELDS, "extra"])
        choice = rng.randrange(4)
        if choice == 0:
            body.pop(key, None)
        elif choice == 1:
            body[key] = rng.choice([None, True, 1.5, -1, 2**64, "", "x" * 100, [], {}, [1, [2, [3]]],
                                    {"nested": {"deep": 1}}])
        elif choice == 2:
            body[key] = rng.randrange(-2**63, 2**63)
        else:
            raw = json.dumps(body).encode()
            return mutate_bytes(rng, raw)
    return json.dumps(body).encode()


def one_input(rng: random.Random, now: int) -> bytes:
    body = valid_body(rng, now)
    mode = rng.randrange(10)
    if mode < 6:
        return signing.sign(mutate_json(rng, body), SECRET)       # past the MAC: parser and schema
    if mode < 8:
        return mutate_bytes(rng, signing.sign(json.dumps(body).encode(), SECRET))  # framing and MAC
    if mode < 9:
        return signing.sign(mutate_bytes(rng, json.dumps(body).encode()), SECRET)
    return signing.sign(json.dumps(body).encode(), SECRET)     # valid: must be accepted


def run(n: int, seed: int, progress: bool = True) -> Counter:
    rng = random.Random(seed)
    outcomes: Counter = Counter()
    now = int(time.time() * 1000)
    lookup = {DEV: DEVICE}.get
    started = time.monotonic()
    for i in range(1, n + 1):
        payload = one_input(rng, now)
        try:
            result = check_alert(TOPIC, payload, root="panic/v1", max_payload=1024, device=lookup, now_ms=now,
                                 stale_past_ms=86400_000, stale_future_ms=300_000)
        except Exception:
            print(f"\nunhandled exception on input #{i}: {payload!r}", file=sys.stderr)
            traceback.print_exc()
            outcomes["CRASH"] += 1
            continue
        outcomes[result.reason if isinstance(result, Rejection) else "accepted"] += 1
        if progress and i % 10_000 == 0:
            rate = i / (time.monotonic() - started)
            print(f"\r{i:>8}/{n} inputs  {rate:,.0f}/s", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    return outcomes


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("-n", type=int, default=100_000)
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args()
    outcomes = run(args.n, args.seed)
    total = sum(outcomes.values())
    print(f"fuzz: {total} inputs, {outcomes.get('CRASH', 0)} unhandled exceptions")
    for reason, count in outcomes.most_common():
        print(f"  {reason:16} {count:>8}")
    return 1 if outcomes.get("CRASH") else 0


if __name__ == "__main__":
    sys.exit(main())
