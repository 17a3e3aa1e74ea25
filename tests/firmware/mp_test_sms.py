# protocol/vectors.json "sms" under micropython: firmware/sms.py writes the shared alert
# texts byte for byte and accepts and refuses the shared acks with the host's reasons
# (tests/protocol runs protocol/sms.py against the same file).
import json  # noqa: I001
from mp_util import eq, check, done, _here
from hmac256 import HMAC
import sms

with open(_here + "/../../protocol/vectors.json") as f:
    V = json.load(f)
S = V["sms"]
mac = HMAC(V["secret"])
eq(sms.SEGMENT, S["segment"], "segment")

for v in S["alerts"]:
    a = v["args"]
    text = sms.alert_text(mac, a["dev"], a["boot"], a["seq"], a["kind"], a["lat6"], a["lon6"],
                          a["src"], a["acc"], a["t_s"], a["age_s"])
    eq(text, v["text"], "alert text: " + v["name"])
    check(len(text) <= sms.SEGMENT, "one segment: " + v["name"])

a = S["alerts"][0]["args"]
eq(sms.alert_text(mac, a["dev"], 1, 1, "cancel", 0, 0, "gps", 1, 1, 0), None, "no cancel by SMS")

for v in S["acks_accept"]:
    why, d = sms.verify_ack(mac, v["text"])
    eq(why, None, "ack accepted: " + v["name"])
    eq(d, v["ack"], "ack fields: " + v["name"])
    eq(sms.verify_ack(mac, v["text"].encode() + b"\r\n"), (None, v["ack"]), "as modem bytes: " + v["name"])

for v in S["acks_reject"]:
    eq(sms.verify_ack(mac, v["text"]), (v["reason"], None), "ack refused: " + v["name"])

good = S["acks_accept"][0]["text"]
for bad, why in ((good.replace(" ", "  ", 1), "format"), (good[:-1] + "g", "format"),
                 (good.upper(), "format"), ("", "format"), (b"\xff\xfe", "format"),
                 (good.replace("12:3", "12:4"), "mac"), (good + " x", "format"),
                 (good.replace("received", "rejected:" + "x" * 21), "format")):
    eq(sms.verify_ack(mac, bad)[0], why, "refused %r" % bad)
done()
