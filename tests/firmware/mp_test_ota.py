# firmware/ota.py under micropython, without a network: the `ota` command's checks (key,
# signature, downgrade, pending alert, battery) against protocol/vectors.json "release",
# then the vector's bundle fed as PBO1 chunks (stale and foreign ones among them), hashed,
# unpacked into the free slot and handed to the loader; a corrupt download is fetched
# once more, then refused.
import json  # noqa: I001
import os
from binascii import unhexlify
from mp_util import check, eq, done, _here
import mqtt  # the biggest first: compiling it from source is the peak
import otastate
import ota
import otadl
from hmac256 import HMAC

with open(_here + "/../../protocol/vectors.json") as f:
    R = json.load(f)["release"]
pbr = unhexlify(R["pbr_hex"])
del R["pbr_hex"]
ml = int.from_bytes(pbr[4:8], "big")
sl = int.from_bytes(pbr[8 + ml:10 + ml], "big")
BUNDLE = pbr[10 + ml + sl:]
M = json.loads(R["manifest"])


class Board:
    def __init__(self, fl):
        self.flash = fl
        self.batt = 100

    def battery(self):
        return self.batt

    def feed(self):
        pass


class Mq:
    state = mqtt.UP

    def __init__(self):
        self.sent = []
        self.inflight = {}

    def can_send(self):
        return True

    def publish(self, topic, payload, retain, keep):
        self.sent.append((topic, payload))
        return len(self.sent)


class Ob:
    recs = []


class Clk:
    def ms(self):
        return 0


class App:
    def __init__(self, fl):
        self.clk = Clk()
        self.b = Board(fl)
        self.mq = Mq()
        self.ob = Ob()
        self.cfg = {"battery_min_ota": 40, "ota_chunk_ms": 5000}
        self.ost = {"run": "factory", "seq": 3, "trial": False}
        self.ota = None
        self.ota_dl = False
        self.ota_rel = None
        self.dev = "dev-1"
        self.mac = HMAC("00" * 32)
        self.t_result = "panic/v1/dev-1/result"
        self.events = []
        self.resets = []
        self.results = []

    def emit(self, ev, **kw):
        kw["ev"] = ev
        self.events.append(kw)

    def result(self, n, op, ok, err=None, **extra):
        self.results.append((n, op, ok, err, extra))
        return 0

    def reset(self, why):
        self.resets.append(why)


def rmtree(d):
    try:
        names = os.listdir(d)
    except OSError:
        return
    for n in names:
        try:
            os.remove(d + "/" + n)
        except OSError:
            rmtree(d + "/" + n)
    os.rmdir(d)


fl = (os.getenv("MP_TMP") or "/tmp") + "/ota_flash"
rmtree(fl)
os.mkdir(fl)
app = App(fl)
args = {"m": R["manifest"], "sig": R["sig"]}
eq(ota.start(app, 5, args), "key", "no trusted keys on the flash: nothing installs")
with open(fl + "/release_keys.json", "w") as f:
    f.write(json.dumps(R["keys"]))
for v in R["reject"]:
    eq(ota.start(app, 5, {"m": v["manifest"], "sig": v["sig"]}), "sig", v["name"])
eq(ota.start(app, 5, {"m": "{", "sig": R["sig"]}), "field", "manifest not JSON")
eq(ota.start(app, 5, {"m": R["manifest"]}), "field", "no signature")
app.ost["seq"] = M["seq"]
eq(ota.start(app, 5, args), "old", "the running release again")
app.ost["seq"] = 3
app.ob.recs = [{"id": "x"}]
eq(ota.start(app, 5, args), "busy_alert", "an alert pending")
app.ob.recs = []
app.b.batt = 39
eq(ota.start(app, 5, args), "battery", "battery below battery_min_ota")
app.b.batt = None            # a mains button has no battery ADC
check(not app.ota_dl, "nothing accepted yet")
eq(ota.start(app, 5, args), None, "accepted")
eq(app.ota_rel, M["seq"], "the result's rel")
check(app.ota_dl, "download pending")


def chunk(off, data, seq=M["seq"]):
    return b"PBO1" + seq.to_bytes(4, "big") + off.to_bytes(4, "big") + data


def download(job, corrupt=False):
    now = 0
    while job.phase == "get":
        job.step(now)
        topic, p = app.mq.sent[-1]
        eq(topic, app.t_result, "chunk request topic")
        body = json.loads(p[:p.rfind(b"\n")])
        off = body["off"]
        data = BUNDLE[off:off + 16]
        if corrupt and off == 16:
            data = b"X" * len(data)
        job.chunk(chunk(off + 1, data))                 # not where the file ends: ignored
        job.chunk(chunk(off, data, seq=M["seq"] + 1))   # another release: ignored
        job.chunk(chunk(off, data))
        job.chunk(chunk(off, data))                     # a duplicate: ignored
        now += 1


job = otadl.Job(app)
app.ota = job
download(job, corrupt=True)
for _ in range(10):
    job.step(0)
check([e for e in app.events if e.get("stage") == "hash_retry"], "a corrupt download is fetched again")
eq(job.phase, "get", "downloading again")
eq(job.size, 0, "from the start")
download(job)
for _ in range(10):
    if job.phase == "gone":
        break
    job.step(0)
eq(job.phase, "gone", "unpacked and handed over")
eq(app.resets, ["update"], "reset into the new slot")
st = otastate.read(fl)
eq((st["run"], st["prev"], st["seq"], st["pseq"], st["trial"], st["fw"]),
   ("a", "factory", M["seq"], 3, True, M["fw"]), "state for the loader")
for name, data in R["bundle_files"].items():
    with open(fl + "/ota/a/" + name, "rb") as f:
        got = f.read()
    want = data.encode() if name.endswith(".py") else unhexlify(data)
    eq(got, want, "unpacked " + name)
check("dl.bin" not in os.listdir(fl + "/ota") and "dl.json" not in os.listdir(fl + "/ota"),
      "download files removed")
eq(app.results[-1][4]["stage"], "downloaded", "downloaded result")

# A download whose bytes never match: refused after the second try.
app2 = App(fl)
app2.ost = otastate.read(fl)
app2.ost["seq"] = 3
app2.ost["run"] = "a"
eq(ota.start(app2, 6, args), None, "accepted again (from slot a)")
job = otadl.Job(app2)
eq(job.slot, "b", "the free slot")
app = app2
for _ in range(2):
    download(job, corrupt=True)
    for _ in range(10):
        if job.phase != "hash":
            break
        job.step(0)
eq(job.phase, "gone", "given up")
eq(app2.results[-1][3], "hash", "refused: hash")
check(not app2.ota_dl, "nothing pending")
done()
