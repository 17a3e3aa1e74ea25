# Ack verification (forged, malformed, oversize) and the signed alert format.
import json
from mp_util import eq, check, done
from hmac256 import HMAC
import proto

KEY = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
mac = HMAC(KEY)


def signed(body):
    return body + b"\n" + mac.hexdigest(body)


good = json.dumps({"v": 1, "id": "dev-1:1:1", "stage": "received", "inc": "I1",
                   "reason": None, "now": 1764269000123}).encode()
why, d = proto.verify_ack(mac, signed(good))
eq(why, None, "valid ack accepted")
eq(d["stage"], "received", "stage parsed")

# A MAC under another key (forged), a zero MAC, a truncated MAC, an uppercase MAC
other = HMAC("ff" * 32)
eq(proto.verify_ack(mac, good + b"\n" + other.hexdigest(good))[0], "mac", "foreign key")
eq(proto.verify_ack(mac, good + b"\n" + b"0" * 64)[0], "mac", "zero mac")
eq(proto.verify_ack(mac, signed(good)[:-1])[0], "mac", "truncated mac")
eq(proto.verify_ack(mac, good + b"\n" + mac.hexdigest(good).upper())[0], "mac",
   "uppercase mac is not the protocol's")
# Body changed after signing (e.g. stage upgraded by an attacker)
tampered = signed(good).replace(b"received", b"on_scene")
eq(proto.verify_ack(mac, tampered)[0], "mac", "tampered body")
eq(proto.verify_ack(mac, b"no newline here")[0], "format", "no separator")
eq(proto.verify_ack(mac, b"")[0], "format", "empty")
eq(proto.verify_ack(mac, b"x" * 2000)[0], "size", "oversize")
eq(proto.verify_ack(mac, signed(b"{not json"))[0], "json", "signed garbage")
eq(proto.verify_ack(mac, signed(b"[1,2]"))[0], "version", "not an object")
eq(proto.verify_ack(mac, signed(b'{"v":2,"id":"a","stage":"received"}'))[0], "version", "v2")
eq(proto.verify_ack(mac, signed(b'{"v":1,"stage":"received"}'))[0], "field", "no id")
eq(proto.verify_ack(mac, signed(b'{"v":1,"id":"a","stage":"eaten"}'))[0], "stage",
   "unknown stage")
eq(proto.verify_ack(mac, signed(b'{"v":1,"id":"a","stage":"received","now":"x"}'))[0],
   "field", "now not int")
eq(proto.verify_ack(mac, b"\xff\xfe\n" + mac.hexdigest(b"\xff\xfe"))[0], "json",
   "binary body")

# Alert: body + \n + hex MAC over exactly the body bytes; 1 KiB at most
rec = {"id": "klj-kauman-rw05-rt03:12:3", "boot": 12, "seq": 3, "kind": "cancel",
       "t": None, "ref": "klj-kauman-rw05-rt03:12:2"}
FIXED = (-7982600, 112627000, 25)
p = proto.alert(mac, "klj-kauman-rw05-rt03", rec, 1520, 87, -61, FIXED)
body, sig = p.rsplit(b"\n", 1)
eq(sig, mac.hexdigest(body), "alert signature")
b = json.loads(body)
eq((b["v"], b["id"], b["kind"], b["age"], b["t"], b["ref"], b["batt"]),
   (1, rec["id"], "cancel", 1520, None, rec["ref"], 87), "alert fields")
check(len(p) <= proto.MAX_PAYLOAD, "alert within 1 KiB")
eq((b["lat6"], b["lon6"], b["acc"], b["src"]), (-7982600, 112627000, 25, "fixed"),
   "fixed location from config")
rec2 = {"id": "d:1:1", "boot": 1, "seq": 1, "kind": "panic", "t": 5, "lat6": 1, "lon6": 2,
        "acc": 7}
b2 = json.loads(proto.alert(mac, "d", rec2, 0, None, None, FIXED).rsplit(b"\n", 1)[0])
eq((b2["lat6"], b2["lon6"], b2["acc"], b2["src"], b2["batt"]), (1, 2, 7, "gps", None),
   "gps location from the record")
check(b"\n" not in body, "body has no newline")
done()
