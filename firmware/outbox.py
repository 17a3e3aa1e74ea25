# Flash outbox: an append-only journal, one record per line:
#   b"A" + alert JSON + b"*" + crc32 hex + b"\n"     alert added (written before sending)
#   b"D" + alert id   + b"*" + crc32 hex + b"\n"     alert done (verified ack)
# A power cut can only tear the line being written; a line without its newline or with a
# bad checksum is ignored and the file is rewritten clean, so later appends never merge
# into a torn tail. Compaction writes a temp file and renames it over the journal.
import json
import os
from binascii import crc32
from micropython import const

_COMPACT_MIN = const(4096)


def _line(tag, data):
    b = tag + data
    return b + b"*%08x\n" % (crc32(b) & 0xFFFFFFFF)


def parse_line(ln):
    """Returns (tag, data) for a valid record line, else None."""
    if len(ln) < 11 or ln[-1:] != b"\n":
        return None
    i = ln.rfind(b"*")
    if i < 1 or len(ln) - i != 10:
        return None
    b = ln[:i]
    try:
        c = int(ln[i + 1:-1], 16)
    except ValueError:
        return None
    if crc32(b) & 0xFFFFFFFF != c:
        return None
    return b[:1], b[1:]


def _record(data):
    """An alert record from a journal line, or None when it is not one. A checksum only
    says the bytes are as written: whatever wrote them, a wrong shape must not crash the
    boot (the app reads id, boot and kind of every pending record)."""
    try:
        r = json.loads(data)
    except ValueError:
        return None
    if not isinstance(r, dict) or not isinstance(r.get("id"), str) or \
            not isinstance(r.get("kind"), str):
        return None
    b = r.get("boot", 0)
    if not isinstance(b, int) or isinstance(b, bool):
        return None
    r["boot"] = b
    return r


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


class Outbox:
    def __init__(self, folder, maxn=32, log=None):
        self.path = folder + "/outbox.jnl"
        self.tmp = folder + "/outbox.tmp"
        self.folder = folder
        self.maxn = maxn
        self.log = log or (lambda m: None)
        self.recs = []        # pending alerts, oldest first
        self.size = 0         # bytes in the journal file
        self.max_boot = 0     # highest boot seen in the journal (guards the boot counter)
        self.bad = 0          # torn or corrupt lines found at load
        self._load()

    # -- load / compaction --
    def _load(self):
        if not _exists(self.path) and _exists(self.tmp):
            # A compaction got as far as removing the journal (FAT has no atomic
            # rename-over); the temp file is complete because it is closed first.
            os.rename(self.tmp, self.path)
        elif _exists(self.tmp):
            os.remove(self.tmp)
        self.recs = recs = []
        try:
            f = open(self.path, "rb")
        except OSError:
            return
        with f:
            while True:
                ln = f.readline()
                if not ln:
                    break
                self.size += len(ln)
                r = parse_line(ln)
                if r is None:
                    self.bad += 1
                    continue
                tag, data = r
                if tag == b"A":
                    rec = _record(data)
                    if rec is None:
                        self.bad += 1
                        continue
                    if rec["boot"] > self.max_boot:
                        self.max_boot = rec["boot"]
                    if self._find(rec["id"]) < 0:
                        recs.append(rec)
                elif tag == b"D":
                    try:
                        i = self._find(data.decode())
                    except UnicodeError:
                        self.bad += 1
                        continue
                    if i >= 0:
                        recs.pop(i)
                else:
                    self.bad += 1
        if self.bad:
            self.log("outbox: %d torn/corrupt line(s) dropped, rewriting" % self.bad)
            self.compact()

    def compact(self):
        with open(self.tmp, "wb") as f:
            n = 0
            for r in self.recs:
                ln = _line(b"A", self._ser(r))
                f.write(ln)
                n += len(ln)
        try:
            os.rename(self.tmp, self.path)
        except OSError:
            os.remove(self.path)
            os.rename(self.tmp, self.path)
        self.size = n

    # -- records --
    @staticmethod
    def _ser(rec):
        # Keys starting with "_" are runtime state (tries, timers), not journal data.
        d = {}
        for k in rec:
            if k[0] != "_":
                d[k] = rec[k]
        return json.dumps(d).encode()

    def _find(self, rid):
        for i in range(len(self.recs)):
            if self.recs[i]["id"] == rid:
                return i
        return -1

    def _append(self, ln):
        with open(self.path, "ab") as f:
            f.write(ln)
        self.size += len(ln)

    def add(self, rec):
        """Journal a new alert (before it is sent). Returns the record evicted to keep the
        outbox bounded, or None."""
        ev = None
        if len(self.recs) >= self.maxn:
            # Bounded flash: drop the oldest drill/cancel first, a panic only if all are.
            j = 0
            for i in range(len(self.recs)):
                if self.recs[i]["kind"] != "panic":
                    j = i
                    break
            ev = self.recs[j]
            self.done(ev["id"])
        self._append(_line(b"A", self._ser(rec)))
        self.recs.append(rec)
        if rec["boot"] > self.max_boot:
            self.max_boot = rec["boot"]
        return ev

    def done(self, rid):
        i = self._find(rid)
        if i < 0:
            return False
        self._append(_line(b"D", rid.encode()))
        self.recs.pop(i)
        if self.size > _COMPACT_MIN and self.size > 4 * (1 + len(self.recs)) * 300:
            self.compact()
        return True

    def get(self, rid):
        i = self._find(rid)
        return self.recs[i] if i >= 0 else None

    def __len__(self):
        return len(self.recs)


# ---- boot counter: two checksummed slots, written alternately, so a torn write leaves
# the previous value readable (and an unused boot number is safe to reuse). ----

def _read_slot(p):
    try:
        with open(p, "rb") as f:
            r = parse_line(f.read(64))
    except OSError:
        return -1
    if r is None or r[0] != b"B":
        return -1
    try:
        return int(r[1])
    except ValueError:
        return -1


def next_boot(folder, floor=0):
    n = max(_read_slot(folder + "/boot0"), _read_slot(folder + "/boot1"), floor) + 1
    with open(folder + "/boot%d" % (n & 1), "wb") as f:
        f.write(_line(b"B", b"%d" % n))
    return n
