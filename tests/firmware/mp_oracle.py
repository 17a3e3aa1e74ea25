# Runs under `micropython`: answers one query a line, so CPython property tests
# (hypothesis) can throw generated inputs at the firmware's own parsers.
#   ack <hex>      -> "ok <id hex> <stage> <now>" | "rej <reason>"
#   nmea <hex>     -> "fix <lat6> <lon6> <acc>" | "none"
#   line <hex>     -> "rec <tag> <data hex>" | "none"
#   journal <hex>  -> "load <n pending> <bad> <ids,...>"   (bytes written as outbox.jnl)
#   mkline <tag> <hex> -> "<line hex>"
# An exception escaping a parser answers "EXC <type> <message>".
import sys
import os
from binascii import hexlify, unhexlify

sys.path.insert(0, os.getenv("FIRMWARE_DIR"))
import proto
import outbox
from gps import GPS
from hmac256 import HMAC

KEY = HMAC("k" * 64)
TMP = os.getenv("MP_TMP")


def answer(kind, arg):
    if kind == "ack":
        reason, d = proto.verify_ack(KEY, unhexlify(arg))
        if reason is not None:
            return "rej " + reason
        # Only ASCII-safe fields: MicroPython turns \ud800-style escapes into raw surrogates.
        return "ok %s %s %s" % (hexlify(d["id"].encode()).decode(), d["stage"], d.get("now"))
    if kind == "nmea":
        g = GPS(30)
        ok = g.feed(unhexlify(arg).decode(), 0)
        f = g.fix(0)
        return "fix %d %d %d" % f if ok and f else "none"
    if kind == "line":
        r = outbox.parse_line(unhexlify(arg))
        return "none" if r is None else "rec %s %s" % (r[0].decode(), hexlify(r[1]).decode())
    if kind == "mkline":
        tag, data = arg.split(" ")
        return hexlify(outbox._line(tag.encode(), unhexlify(data))).decode()
    if kind == "journal":
        for name in ("outbox.jnl", "outbox.tmp"):
            try:
                os.remove(TMP + "/" + name)
            except OSError:
                pass
        with open(TMP + "/outbox.jnl", "wb") as f:
            f.write(unhexlify(arg))
        ob = outbox.Outbox(TMP, 64)
        return "load %d %d %s" % (len(ob), ob.bad, ",".join(r["id"] for r in ob.recs))
    return "EXC ValueError unknown query"


while True:
    line = sys.stdin.readline()
    if not line:
        break
    kind, _, arg = line.rstrip("\n").partition(" ")
    try:
        out = answer(kind, arg)
    except Exception as e:
        out = "EXC %s %s" % (type(e).__name__, e)
    sys.stdout.write(out + "\n")
