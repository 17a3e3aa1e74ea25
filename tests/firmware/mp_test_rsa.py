# firmware/rsa.py against protocol/vectors.json "release" under micropython: the test key's
# signature verifies, every altered manifest or signature is refused; the time and heap of
# one RSA-3072 check are printed (docs/firmware.md "Over-the-air updates" quotes them).
import gc  # noqa: I001
import json
import time
from binascii import a2b_base64
from hashlib import sha256
from mp_util import check, done, _here
import rsa

with open(_here + "/../../protocol/vectors.json") as f:
    R = json.load(f)["release"]
mod = list(R["keys"].values())[0]
del R["pbr_hex"]
gc.collect()


def ok(m, sig_b64, modulus=mod):
    return rsa.verify(sha256(m.encode()).digest(), a2b_base64(sig_b64), modulus)


gc.collect()
before = gc.mem_alloc()
t0 = time.ticks_us()
good = ok(R["manifest"], R["sig"])
us = time.ticks_diff(time.ticks_us(), t0)
check(good, "the release vector's signature verifies")
gc.collect()
print(json.dumps({"rsa_verify_us": us, "heap_after": gc.mem_alloc() - before}))
for v in R["reject"]:
    check(not ok(v["manifest"], v["sig"]), "refused: " + v["name"])
check(not ok(R["manifest"], R["sig"], mod[:-8] + "AAAAAAA="), "another modulus")
check(not ok(R["manifest"], R["sig"], "!!notbase64"), "garbage modulus")
check(not rsa.verify(b"short", a2b_base64(R["sig"]), mod), "a digest that is not SHA-256")
# Peak of the check: gc off, so every temporary integer stays allocated.
gc.collect()
gc.disable()
a0 = gc.mem_alloc()
ok(R["manifest"], R["sig"])
peak = gc.mem_alloc() - a0
gc.enable()
print(json.dumps({"rsa_verify_alloc_total": peak}))
done()
