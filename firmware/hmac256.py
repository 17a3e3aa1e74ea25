# HMAC-SHA256 (RFC 2104) over hashlib.sha256: MicroPython ships no hmac module.
import hashlib
from binascii import hexlify

_BLOCK = 64


class HMAC:
    # The padded keys are computed once per key: the device signs with one secret for
    # its whole life, so every message saves two 64-byte XOR passes.
    def __init__(self, key):
        if isinstance(key, str):
            key = key.encode()
        if len(key) > _BLOCK:
            key = hashlib.sha256(key).digest()
        k = bytearray(_BLOCK)
        k[:len(key)] = key
        self._i = bytes(b ^ 0x36 for b in k)
        self._o = bytes(b ^ 0x5C for b in k)

    def digest(self, msg):
        h = hashlib.sha256(self._i)
        h.update(msg)
        inner = h.digest()
        h = hashlib.sha256(self._o)
        h.update(inner)
        return h.digest()

    def hexdigest(self, msg):
        return hexlify(self.digest(msg))


def hmac_sha256(key, msg):
    return HMAC(key).digest(msg)


def equal(a, b):
    # Constant time: the time to reject a forged ack must not reveal how many leading
    # MAC bytes were right.
    if len(a) != len(b):
        return False
    r = 0
    for i in range(len(a)):
        r |= a[i] ^ b[i]
    return r == 0
