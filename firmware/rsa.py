# RSA PKCS#1 v1.5 signature check with SHA-256, e = 65537: the release manifest's signature
# (docs/firmware.md "Over-the-air updates"). One pow() on MicroPython's big integers; the
# expected block is built and compared whole, so no parsing of attacker bytes happens.
# Imported by ota.py only for the check, then unloaded.
from binascii import a2b_base64

_DI = b"\x30\x31\x30\x0d\x06\x09\x60\x86\x48\x01\x65\x03\x04\x02\x01\x05\x00\x04\x20"


def verify(digest, sig, mod_b64):
    """True when sig (bytes) is a signature of the SHA-256 digest under the modulus."""
    try:
        nb = a2b_base64(mod_b64)
    except ValueError:
        return False
    k = len(nb)
    if k < 128 or nb[0] == 0 or len(sig) != k or len(digest) != 32:
        return False
    n = int.from_bytes(nb, "big")
    s = int.from_bytes(sig, "big")
    if s >= n:
        return False
    em = pow(s, 65537, n).to_bytes(k, "big")
    return em == b"\x00\x01" + b"\xff" * (k - 3 - len(_DI) - 32) + b"\x00" + _DI + digest
