# Flash outbox journal and boot counter: a power cut at any byte leaves a readable outbox.
import os
from mp_util import eq, check, done, tmpdir
import outbox
from outbox import Outbox, next_boot

D = tmpdir("mp_journal")


def rec(boot, seq, kind="panic"):
    return {"id": "dev-1:%d:%d" % (boot, seq), "boot": boot, "seq": seq, "kind": kind,
            "t": None, "lat6": -7982600, "lon6": 112627000, "acc": 25, "src": "fixed"}


def raw():
    with open(D + "/outbox.jnl", "rb") as f:
        return f.read()


def put(data):
    with open(D + "/outbox.jnl", "wb") as f:
        f.write(data)


def ids(ob):
    return [r["id"] for r in ob.recs]


# basic add / done / reload, oldest first, runtime keys not journalled
ob = Outbox(D, 8)
for i in range(1, 5):
    r = rec(1, i)
    ob.add(r)
    r["_n"] = 3
ob.done("dev-1:1:2")
eq(ids(Outbox(D, 8)), ["dev-1:1:1", "dev-1:1:3", "dev-1:1:4"], "reload after done")
check(b"_n" not in raw(), "runtime keys stay out of flash")
eq(Outbox(D, 8).max_boot, 1, "max boot from journal")
check(not ob.done("nope"), "done of unknown id is a no-op")

# power cut while appending a record: truncate the file at every byte of the tail
# record; the outbox must load, hold exactly the complete records, and accept appends.
base = raw()
ob = Outbox(D, 8)
ob.add(rec(1, 5))
full = raw()
tail = len(full) - len(base)
for cut in range(len(base), len(full) + 1):
    put(full[:cut])
    o = Outbox(D, 8)
    want = ["dev-1:1:1", "dev-1:1:3", "dev-1:1:4"] + (["dev-1:1:5"] if cut == len(full) else [])
    eq(ids(o), want, "torn tail at byte %d of %d" % (cut - len(base), tail))
    # the torn bytes were cleaned out, so the next append is readable again
    o.add(rec(2, 1))
    eq(ids(Outbox(D, 8))[-1], "dev-1:2:1", "append after torn tail at %d" % cut)

# power cut while appending a "done" record: the alert stays (resent, dedup by id)
put(full)
ob = Outbox(D, 8)
before = raw()
ob.done("dev-1:1:5")
after = raw()
for cut in range(len(before), len(after)):
    put(after[:cut])
    check("dev-1:1:5" in ids(Outbox(D, 8)), "torn done record at %d keeps the alert" % cut)
put(after)
check("dev-1:1:5" not in ids(Outbox(D, 8)), "complete done record removes the alert")

# a flipped bit in the middle: that record is dropped, the others survive
put(full)
b = bytearray(full)
b[len(base) // 2] ^= 0x01
put(bytes(b))
o = Outbox(D, 8)
check(o.bad == 1 and len(o) == 3, "corrupt middle record dropped, rest kept")

# garbage file
put(b"\x00\xff garbage \n\n***\n")
eq(len(Outbox(D, 8)), 0, "garbage journal loads empty")

# bounded: the oldest drill is evicted before any panic
put(b"")
ob = Outbox(D, 3)
ob.add(rec(3, 1))
ob.add(rec(3, 2, "test"))
ob.add(rec(3, 3))
ev = ob.add(rec(3, 4))
eq(ev["id"], "dev-1:3:2", "evicts the drill first")
ev = ob.add(rec(3, 5))
eq(ev["id"], "dev-1:3:1", "then the oldest panic")
eq(ids(Outbox(D, 3)), ["dev-1:3:3", "dev-1:3:4", "dev-1:3:5"], "bounded after reload")

# compaction keeps pending records and bounds the file
put(b"")
ob = Outbox(D, 32)
ob.add(rec(4, 0))
for i in range(1, 200):
    ob.add(rec(4, i))
    ob.done("dev-1:4:%d" % i)
check(len(raw()) < 8000, "journal compacted (%d bytes)" % len(raw()))
eq(ids(Outbox(D, 32)), ["dev-1:4:0"], "pending record survives compaction")

# compaction interrupted: temp file left behind (incomplete) -> ignored
with open(D + "/outbox.tmp", "wb") as f:
    f.write(b"Atorn")
eq(ids(Outbox(D, 32)), ["dev-1:4:0"], "stale temp file ignored")
check("outbox.tmp" not in os.listdir(D), "stale temp removed")
# FAT-style rename: journal removed, complete temp present -> temp is the journal
data = raw()
os.remove(D + "/outbox.jnl")
with open(D + "/outbox.tmp", "wb") as f:
    f.write(data)
eq(ids(Outbox(D, 32)), ["dev-1:4:0"], "temp promoted when journal missing")

# boot counter: raised each boot, two slots, a torn slot falls back to the other
B = tmpdir("mp_boot")
eq(next_boot(B), 1, "first boot")
eq(next_boot(B), 2, "second boot")
eq(next_boot(B), 3, "third boot")
with open(B + "/boot1", "wb") as f:    # boot 3 went to slot 1: tear it
    f.write(b"B3*0")
eq(next_boot(B), 3, "torn slot: the unused number is reused")
eq(next_boot(B, 10), 11, "never below the journal's highest boot")
for cut in range(12):
    with open(B + "/boot0", "wb") as f:
        f.write(outbox._line(b"B", b"500")[:cut])
    check(next_boot(B) >= 12, "torn write at %d never lowers the counter" % cut)
done()
