# Tiny test harness for scripts run by the MicroPython unix port (no pytest there).
import os
import sys

_here = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."
sys.path.insert(0, _here + "/../../firmware")

_n = [0, 0]


def check(cond, what):
    _n[0] += 1
    if not cond:
        _n[1] += 1
        print("FAIL:", what)


def eq(a, b, what):
    check(a == b, "%s: %r != %r" % (what, a, b))


def raises(exc, fn, what):
    try:
        fn()
    except exc:
        check(True, what)
        return
    check(False, what + " (no exception)")


def tmpdir(name):
    base = os.getenv("MP_TMP") or "/tmp"
    d = base + "/" + name
    try:
        os.mkdir(d)
    except OSError:
        pass
    for f in os.listdir(d):
        os.remove(d + "/" + f)
    return d


def done():
    print("%d checks, %d failed" % (_n[0], _n[1]))
    sys.exit(1 if _n[1] else 0)
