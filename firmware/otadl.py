# pyright: reportOptionalMemberAccess=false, reportOptionalSubscript=false
# (m, h and the files are set before the phase that uses them)
# Over-the-air update, the download: the bundle in 1 KiB chunks into ota/dl.bin (resumable:
# the file's size is the offset), its SHA-256 checked against the signed manifest, unpacked
# into the free slot, then handed to the loader (main.py) for a trial boot. Loaded only
# while a download runs and unloaded after or when an alert comes (otastate.drop): its code
# and buffer are RAM the alerts need. Each loop turn does one bounded step (a chunk, 8 KiB
# of hashing, 4 KiB of unpacking), so the watchdog and the button are served throughout.
import json
import os
from hashlib import sha256
from time import ticks_diff, ticks_ms

import mqtt
import otastate
import proto

_STEP_MS = 50      # of hashing or unpacking per loop turn: the button waits no longer


def _hex(b):
    return "".join("%02x" % x for x in b)


class Job:
    """The download in progress (ota/dl.json + ota/dl.bin), driven by otastate.tick."""

    def __init__(self, app):
        self.a = app
        self.d = app.b.flash + "/ota/"
        self.buf = bytearray(1024)
        self.f = None           # input (dl.bin) while hashing or unpacking
        self.out = None         # the slot file being written
        self.t_ask = None
        self.h = None
        try:
            with open(self.d + "dl.json") as f:
                j = json.load(f)
            self.m = json.loads(j["m"])   # checked and signed when it was accepted
            self.n = j["n"]
            self.slot = j["slot"]
            self.tries = j["tries"]
        except Exception:  # noqa: BLE001 -- a torn dl.json: the gateway will ask again
            self.m = None
        if self.m is not None and self.m["seq"] <= app.ost.get("seq", 0):
            self.m = None        # already installed (a power cut before the files went)
        if self.m is None or self.slot not in ("a", "b"):
            self.m = None
            self.phase = "gone"
            return
        app.ota_rel = self.m["seq"]
        self.size = self._size()
        self.phase = "get"

    def _size(self):
        try:
            return os.stat(self.d + "dl.bin")[6]
        except OSError:
            return 0

    def close(self):
        for f in (self.f, self.out):
            if f is not None:
                f.close()
        self.f = self.out = None

    def _end(self, err=None):
        """Done (err None: handed to the loader) or refused: the download files go."""
        self.close()
        otastate.remove(self.d + "dl.json")
        otastate.remove(self.d + "dl.bin")
        a = self.a
        a.ota_dl = False
        self.phase = "gone"
        if err is not None:
            a.emit("ota", stage="refused", err=err, rel=self.m["seq"] if self.m else None)
            if a.mq.state == mqtt.UP and self.m:
                a.result(self.n, "ota", False, err, stage="refused", rel=self.m["seq"])

    # -- the download --
    def chunk(self, p):
        if self.phase != "get" or len(p) < 12 or p[:4] != b"PBO1":
            return
        seq = int.from_bytes(p[4:8], "big")
        off = int.from_bytes(p[8:12], "big")
        if seq != self.m["seq"] or off != self.size or len(p) == 12 or \
                off + len(p) - 12 > self.m["size"]:
            return               # a late copy of an earlier answer, or not ours
        with open(self.d + "dl.bin", "ab") as f:
            f.write(memoryview(p)[12:])
        self.size += len(p) - 12
        self.t_ask = None        # the next one at once

    def _ask(self, now):
        a = self.a
        if not a.mq.can_send():
            return
        body = json.dumps({"v": 1, "dev": a.dev, "op": "get", "rel": self.m["seq"],
                           "off": self.size}).encode()
        # keep=False: after a reconnect the request is made again from the file's size.
        a.mq.publish(a.t_result, proto.sign(a.mac, body), retain=False, keep=False)
        self.t_ask = now

    def step(self, now):
        ph = self.phase
        if ph == "get":
            if self.size >= self.m["size"]:
                self.phase = "hash"
                self.h = sha256()
                self.f = open(self.d + "dl.bin", "rb")
                self.a.emit("ota", stage="verify", rel=self.m["seq"])
            elif self.t_ask is None or now - self.t_ask >= self.a.cfg["ota_chunk_ms"]:
                self._ask(now)
        elif ph in ("hash", "unpack"):
            t = ticks_ms()
            while self.phase == ph and ticks_diff(ticks_ms(), t) < _STEP_MS:
                self._hash() if ph == "hash" else self._unpack()
                self.a.b.feed()
        elif ph == "gone":
            otastate.remove(self.d + "dl.json")
            self.a.ota_dl = False

    def _hash(self):
        f = self.f
        mv = memoryview(self.buf)
        for _ in range(8):
            k = f.readinto(self.buf)
            if not k:
                break
            self.h.update(mv[:k])
        else:
            return
        f.close()
        self.f = None
        if _hex(self.h.digest()) == self.m["sha256"]:
            self._unpack_start()
            return
        # Corrupt in flash or on the way: once more from the start, then refused.
        self.tries += 1
        if self.tries >= 2:
            self._end("hash")
            return
        with open(self.d + "dl.json") as f:
            j = json.load(f)
        j["tries"] = self.tries
        with open(self.d + "dl.tmp", "w") as f:
            f.write(json.dumps(j))
        otastate.remove(self.d + "dl.json")
        os.rename(self.d + "dl.tmp", self.d + "dl.json")
        otastate.remove(self.d + "dl.bin")
        self.size = 0
        self.phase = "get"
        self.a.emit("ota", stage="hash_retry", rel=self.m["seq"])

    # -- unpacking into the free slot --
    def _unpack_start(self):
        sd = self.d + self.slot
        otastate.mkdir(sd)
        for name in os.listdir(sd):
            os.remove(sd + "/" + name)
        self.f = open(self.d + "dl.bin", "rb")
        if self.f.read(4) != b"PBF1":
            self._end("format")
            return
        self.left = 0            # bytes of the current file still to copy
        self.phase = "unpack"

    def _unpack(self):
        f = self.f
        done = 0
        while done < 4096:
            if not self.left:
                if self.out is not None:
                    self.out.close()
                    self.out = None
                h = f.read(1)
                if not h:
                    self._finish()
                    return
                name = f.read(h[0])
                sz = f.read(4)
                if len(name) != h[0] or len(sz) != 4 or not _name_ok(name):
                    self._end("format")
                    return
                self.left = int.from_bytes(sz, "big")
                self.out = open(self.d + self.slot + "/" + name.decode(), "wb")
                if not self.left:
                    continue
            k = f.readinto(memoryview(self.buf)[:min(len(self.buf), self.left)])
            if not k:
                self._end("format")
                return
            self.out.write(memoryview(self.buf)[:k])
            self.left -= k
            done += k

    def _finish(self):
        a = self.a
        self.close()
        st = a.ost
        run = st.get("run", "factory")
        # From here the loader boots the new slot on trial; a power cut before this write
        # leaves the old slot running and the download is redone from the file.
        otastate.write(a.b.flash, {"run": self.slot, "prev": run, "seq": self.m["seq"],
                                    "pseq": st.get("seq", 0), "fw": self.m["fw"],
                                    "pfw": st.get("fw") or proto.FW, "trial": True,
                                    "n": self.n, "report": None})
        otastate.remove(self.d + "boots")
        self._end()
        a.emit("ota", stage="downloaded", rel=self.m["seq"], slot=self.slot)
        pid = a.result(self.n, "ota", True, None, stage="downloaded", rel=self.m["seq"])
        # The result on its way before the reset (bounded: the gateway also learns from
        # the trial result).
        t = a.clk.ms() + 2000
        while pid in a.mq.inflight and a.mq.state == mqtt.UP and a.clk.ms() < t:
            a.poller.poll(20)
            a.b.feed()
            a.mq.service()
        a.reset("update")


def _name_ok(b):
    if not 0 < len(b) <= 64 or b == b"main.py":
        return False
    for c in b:
        if not (48 <= c <= 57 or 65 <= c <= 90 or 97 <= c <= 122 or c in (45, 46, 95)):
            return False
    return b not in (b".", b"..")
