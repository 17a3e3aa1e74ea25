# protocol/vectors.json "fleet" under micropython: firmware/remote.py accepts the shared
# commands with the fields the host meant and refuses the bad ones for the host's reasons
# (tests/protocol/test_fleet_vectors.py runs the same file under CPython); cmdseq survives a
# torn save. The app's signed results are parsed by protocol/fleet.py in
# tests/firmware/test_firmware_remote.py (the whole app does not fit beside the vectors here).
# mp_util comes first: it puts firmware/ on sys.path.
from mp_util import eq, check, done, tmpdir, _here  # noqa: I001
import gc
import json
import os

with open(_here + "/../../protocol/vectors.json") as f:
    V = json.load(f)
F = V["fleet"]
SECRET = V["secret"]
V = None    # only the fleet part stays: the heap is the ESP32's
gc.collect()
from hmac256 import HMAC  # noqa: E402
import remote  # noqa: E402

mac = HMAC(SECRET)
DEV = F["dev"]

eq(list(remote.SETTABLE), F["settable"], "settable keys")
eq(remote.MAX_CMD, F["max_command"], "max command")



def fields(v):
    return json.loads(v["payload"].rsplit("\n", 1)[0])


for v in F["commands_accept"]:
    why, d = remote.check(mac, DEV, v["payload"].encode())
    eq(why, None, "accepted: " + v["name"])
    eq(d, fields(v), "fields: " + v["name"])

for v in F["commands_reject"]:
    p = b"x" * v["payload_len"] if "payload_len" in v else v["payload"].encode()
    eq(remote.check(mac, DEV, p), (v["reason"], None), "refused: " + v["name"])
eq(remote.check(mac, DEV, None), ("size", None), "oversize (mqtt passes None)")

# cmdseq: none yet, a saved one, and the temp copy of a save cut between remove and rename.
fl = tmpdir("fleet_seq")
eq(remote.last_n(fl), 0, "no cmdseq: 0")
remote.save_n(fl, 17)
eq(remote.last_n(fl), 17, "saved")
remote.save_n(fl, 18)
eq(remote.last_n(fl), 18, "saved over")
os.remove(fl + "/cmdseq")
with open(fl + "/cmdseq.tmp", "w") as f:
    f.write("19")
eq(remote.last_n(fl), 19, "temp copy of a cut save")
with open(fl + "/cmdseq", "w") as f:
    f.write("")
eq(remote.last_n(fl), 19, "torn main file: the temp copy still counts")


done()
