# The earliest the wall clock can be, for a board whose RTC restarts at 2000-01-01 on power-up.
# mbedTLS checks certificate dates, so a CA-verified TLS connect fails until the clock is
# near right; NTP may be out of reach. Two floors hold without any network: the last time
# the board knew (saved in flash), and the broker CA's start date (the board got its CA
# after it was made). Times are the port's time.time() seconds.
import time

_MARGIN_S = 3600     # the server certificate is made after its CA: clear its start too


def load(path):
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def save(path, s):
    # Through a temporary file: a power cut mid-write must not leave a wrong floor.
    try:
        with open(path + ".tmp", "w") as f:
            f.write("%d" % s)
        import os
        os.rename(path + ".tmp", path)
    except OSError:
        pass


def ca_start(der):
    """The CA certificate's notBefore (plus a margin) and notAfter, or (0, 0) if unreadable.
    The first two X.509 times (UTCTime 0x17 / GeneralizedTime 0x18) are its validity."""
    out = []
    i = 0
    n = len(der) - 2
    while len(out) < 2 and i < n:
        k = der[i + 1]
        if (der[i] == 0x17 and k == 13) or (der[i] == 0x18 and k == 15):
            try:
                out.append(_x509_time(bytes(der[i + 2:i + 2 + k]).decode(), der[i] == 0x17))
                i += 2 + k
                continue
            except ValueError:
                pass
        i += 1
    if len(out) < 2:
        return 0, 0
    return min(out[0] + _MARGIN_S, out[1]), out[1]


def _x509_time(s, utc):
    if utc:
        y = int(s[:2])
        y += 2000 if y < 50 else 1900
        s = s[2:]
    else:
        y = int(s[:4])
        s = s[4:]
    if s[-1] != "Z":
        raise ValueError("not UTC")
    return time.mktime((y, int(s[0:2]), int(s[2:4]), int(s[4:6]), int(s[6:8]),
                        int(s[8:10]), 0, 0))
