# HMAC-SHA256 against RFC 4231 test vectors, and the constant-time compare.
from binascii import hexlify, unhexlify
from mp_util import eq, check, done
from hmac256 import HMAC, hmac_sha256, equal

V = [
    (b"\x0b" * 20, b"Hi There",
     "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"),
    (b"Jefe", b"what do ya want for nothing?",
     "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"),
    (b"\xaa" * 20, b"\xdd" * 50,
     "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe"),
    (unhexlify("0102030405060708090a0b0c0d0e0f10111213141516171819"), b"\xcd" * 50,
     "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b"),
    (b"\xaa" * 131, b"Test Using Larger Than Block-Size Key - Hash Key First",
     "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"),
    (b"\xaa" * 131, b"This is a test using a larger than block-size key and a larger "
     b"than block-size data. The key needs to be hashed before being used by the HMAC "
     b"algorithm.",
     "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2"),
]
for i, (k, m, h) in enumerate(V):
    eq(hexlify(hmac_sha256(k, m)).decode(), h, "rfc4231 case %d" % (i + 1))
    eq(HMAC(k).hexdigest(m).decode(), h, "HMAC object case %d" % (i + 1))
# RFC 4231 case 5: truncated to 128 bits
eq(hexlify(hmac_sha256(b"\x0c" * 20, b"Test With Truncation")[:16]).decode(),
   "a3b6167473100ee06e0c796c2955552b", "rfc4231 case 5 (truncated)")
# The key object is reusable: two messages, same key, independent results
h = HMAC("k" * 64)
a = h.hexdigest(b"one")
h.hexdigest(b"two")
eq(h.hexdigest(b"one"), a, "HMAC object is stateless between messages")
check(equal(b"abc", b"abc"), "equal same")
check(not equal(b"abc", b"abd"), "equal differs")
check(not equal(b"abc", b"ab"), "equal length")
done()
