# protocol/vectors.json under micropython: firmware/proto.py and hmac256.py sign the shared
# bodies to exactly the shared payloads, build the expected alert/status objects from the
# firmware's own inputs, and accept and reject the shared acks with the same reasons as
# the host module (tests/protocol/test_vectors.py runs the same file under CPython).
# mp_util comes first: it puts firmware/ on sys.path.
import json  # noqa: I001
from binascii import unhexlify
from mp_util import eq, check, done, _here
from hmac256 import HMAC
import proto
import config

with open(_here + "/../../protocol/vectors.json") as f:
    V = json.load(f)
mac = HMAC(V["secret"])


def payload(v):
    if "payload_hex" in v:
        return unhexlify(v["payload_hex"])
    return v["payload"].encode()


eq(proto.MAX_PAYLOAD, V["max_payload"], "max payload")
check(sorted(proto.STAGES) == sorted(V["stage_rank"].keys()), "stages")
for k in V["config_defaults"]:
    eq(config.DEFAULTS[k], V["config_defaults"][k], "config default " + k)

for v in V["alerts"]:
    body = v["body"].encode()
    eq(proto.sign(mac, body), v["payload"].encode(), "sign: " + v["name"])
    rec = v["rec"]
    loc = tuple(v["loc"])
    mine = proto.alert_body(v["dev"], rec, v["age"], v["batt"], v["rssi"], loc)
    eq(json.loads(mine), json.loads(body), "alert body: " + v["name"])
    p = proto.alert(mac, v["dev"], rec, v["age"], v["batt"], v["rssi"], loc)
    b, sig = p.rsplit(b"\n", 1)
    eq(sig, mac.hexdigest(b), "alert signed over its own bytes: " + v["name"])
    check(len(p) <= proto.MAX_PAYLOAD, "alert within the limit: " + v["name"])

s = V["status"]
eq(json.loads(proto.status_body(s["dev"], s["state"], s["boot"], s["up"], s["batt"], s["rssi"],
                                s["outbox"])), s["expect"], "status body")
eq(json.loads(proto.will_body(V["will"]["dev"])), V["will"]["expect"], "will body")

for v in V["acks_accept"]:
    why, d = proto.verify_ack(mac, payload(v))
    eq(why, None, "ack accepted: " + v["name"])
    if d is not None:
        eq((d["id"], d["stage"]), (v["id"], v["stage"]), "ack fields: " + v["name"])

for v in V["acks_reject"]:
    eq(proto.verify_ack(mac, payload(v)), (v["reason"], None), "ack rejected: " + v["name"])
done()
