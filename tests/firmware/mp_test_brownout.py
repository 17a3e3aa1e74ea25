# Brown-out at every step of every journal write: each byte of an append, of a compaction's
# temp file, each rename and remove (FAT semantics: no rename over an existing file), and
# the boot counter. After any cut the next boot must load without an exception and hold
# every alert whose add() had returned and whose done() had not.
import os

from mp_util import check, done, eq, tmpdir  # first: puts firmware/ on the path
import outbox
from outbox import Outbox, next_boot, _line

D = tmpdir("mp_brownout")


class Cut(Exception):
    pass


class Power:
    """Counts write steps; at step `at` the power fails (the write is torn)."""

    def __init__(self, at=None, garbage=False):
        self.at = at
        self.n = 0
        self.garbage = garbage
        self.meta = []        # steps that were a remove or rename (dry run)

    def step(self, k=1):
        """Returns how many of k steps happen before the cut (raising after them)."""
        if self.at is None:
            self.n += k
            return k
        left = self.at - self.n
        if left < k:
            self.n = self.at
            return max(0, left)
        self.n += k
        return k


class File:
    def __init__(self, f, pw):
        self.f = f
        self.pw = pw

    def write(self, b):
        k = self.pw.step(len(b))
        self.f.write(b[:k])
        if k < len(b):
            if self.pw.garbage:
                self.f.write(b"\xff" * (len(b) - k))   # an erased page, half programmed
            self.f.close()
            raise Cut()
        return k

    def __getattr__(self, k):
        return getattr(self.f, k)

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.f.close()


class Fs:
    """os for the outbox module: FAT-like rename, and each metadata change is a step."""

    def __init__(self, pw):
        self.pw = pw

    def stat(self, p):
        return os.stat(p)

    def remove(self, p):
        self.pw.meta.append(self.pw.n)
        if self.pw.step() < 1:
            raise Cut()
        os.remove(p)

    def rename(self, a, b):
        try:
            os.stat(b)
            raise OSError(17)      # FAT: the target exists
        except OSError as e:
            if e.args and e.args[0] == 17:
                raise
        self.pw.meta.append(self.pw.n)
        if self.pw.step() < 1:
            raise Cut()
        os.rename(a, b)


def powered(pw):
    def op(p, mode="r"):
        f = open(p, mode)
        return File(f, pw) if ("w" in mode or "a" in mode) else f
    outbox.open = op
    outbox.os = Fs(pw)


def unpowered():
    outbox.open = open
    outbox.os = os


def rec(i, kind="panic"):
    return {"id": "dev-1:7:%d" % i, "boot": 7, "seq": i, "kind": kind, "t": None,
            "lat6": -7982600, "lon6": 112627000, "acc": 25}


def clear():
    for f in os.listdir(D):
        os.remove(D + "/" + f)


def scenario(pw, stored, removed):
    """Adds, acks, evicts and compacts; records what returned, in `stored`/`removed`."""
    powered(pw)
    ob = Outbox(D, 4)
    for i in range(1, 4):
        ob.add(rec(i))
        stored.append("dev-1:7:%d" % i)
    removed.append("dev-1:7:2")    # an ack being recorded may be complete when power fails
    ob.done("dev-1:7:2")
    ob.add(rec(4, "test"))
    stored.append("dev-1:7:4")
    removed.append("dev-1:7:4")
    ob.add(rec(5))                 # full: the drill is evicted
    stored.append("dev-1:7:5")
    for i in range(6, 40):         # enough acks to compact the journal
        ob.add(rec(i))
        stored.append("dev-1:7:%d" % i)
        removed.append("dev-1:7:%d" % i)
        ob.done("dev-1:7:%d" % i)
    next_boot(D)


def pending(stored, removed):
    return [i for i in stored if i not in removed]


# Dry run: how many steps the scenario takes, and that it compacts at least once.
clear()
pw = Power()
scenario(pw, [], [])
total = pw.n
unpowered()
check(total > 4096, "scenario compacts (steps: %d)" % total)
want_final = ["dev-1:7:1", "dev-1:7:3", "dev-1:7:5"]
eq([r["id"] for r in Outbox(D, 4).recs], want_final, "uncut scenario")

# Both tearing styles; every remove and rename, the steps around them, and every 6th byte
# written (each byte of a line is the same code path: the sampling keeps the run short).
points = set(range(0, total, 6))
for m in pw.meta:
    points.update((m - 1, m, m + 1))
points = sorted(p for p in points if 0 <= p < total)
check(len(pw.meta) >= 2, "the scenario renames/removes (%d)" % len(pw.meta))
fails = 0
for garbage in (False, True):
    for at in points:
        clear()
        stored, removed = [], []
        try:
            scenario(Power(at, garbage), stored, removed)
        except Cut:
            pass
        unpowered()
        try:
            ob = Outbox(D, 4)
            got = [r["id"] for r in ob.recs]
        except Exception as e:      # noqa: BLE001 -- the point: a boot must never crash
            fails += 1
            print("boot crashed after a cut at step %d: %r" % (at, e))
            continue
        # A cut while an add() was writing may or may not keep that one record (it had
        # not returned); every record whose add() returned and done() did not must stay.
        lost = [i for i in pending(stored, removed) if i not in got]
        if lost:
            fails += 1
            print("cut at step %d (garbage=%s) lost %r" % (at, garbage, lost))
eq(fails, 0, "no lost record and no crashed boot at any of %d cut points" % (2 * len(points)))

# A cut during the boot's own clean-up rewrite of a torn journal.
clear()
unpowered()
ob = Outbox(D, 8)
ob.add(rec(1))
ob.add(rec(2))
with open(D + "/outbox.jnl", "ab") as f:
    f.write(b"Atorn{")
for at in range(0, 400):
    with open(D + "/outbox.jnl", "rb") as f:
        keep = f.read()
    try:
        powered(Power(at))
        Outbox(D, 8)
    except Cut:
        pass
    unpowered()
    got = [r["id"] for r in Outbox(D, 8).recs]
    if got != ["dev-1:7:1", "dev-1:7:2"]:
        print("cut at %d of the boot's rewrite: %r" % (at, got))
        fails += 1
    clear()
    with open(D + "/outbox.jnl", "wb") as f:
        f.write(keep)
eq(fails, 0, "a cut during the boot's rewrite loses nothing")

# Lines with a valid checksum but the wrong shape (a bug in an older firmware, a bit
# pattern that matches): dropped and counted, never a crash at boot.
clear()
unpowered()
bad = [b'{"id": 5, "boot": 1, "kind": "panic"}', b'{"id": "x:1:1", "boot": "1", "kind": "panic"}',
       b'{"id": "x:1:2", "boot": 1}', b'[1, 2]', b'"str"']
with open(D + "/outbox.jnl", "wb") as f:
    for b in bad:
        f.write(_line(b"A", b))
    f.write(_line(b"A", b'{"id": "x:1:3", "boot": 1, "seq": 3, "kind": "panic", "t": null}'))
    f.write(_line(b"D", b"\xff\xfe"))
try:
    ob = Outbox(D, 2)
    eq([r["id"] for r in ob.recs], ["x:1:3"], "only the well-formed record loads")
    eq(ob.bad, len(bad) + 1, "the others are counted as bad")
    ob.add(rec(1))
    ob.add(rec(2))                 # eviction works on what loaded
    eq(len(Outbox(D, 2)), 2, "and the outbox keeps working")
except Exception as e:             # noqa: BLE001
    check(False, "boot crashed on a well-checksummed bad line: %r" % e)
done()
