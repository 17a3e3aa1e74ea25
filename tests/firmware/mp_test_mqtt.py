# MQTT 3.1.1 codec: remaining length, packet builders, packet splitting and parsing.
from mp_util import eq, check, raises, done
import mqtt

for n, enc in ((0, b"\x00"), (127, b"\x7f"), (128, b"\x80\x01"), (16383, b"\xff\x7f"),
               (16384, b"\x80\x80\x01"), (2097151, b"\xff\xff\x7f"),
               (2097152, b"\x80\x80\x80\x01"), (268435455, b"\xff\xff\xff\x7f")):
    eq(mqtt.enc_len(n), enc, "enc_len %d" % n)
    eq(mqtt.dec_len(b"\x30" + enc, 1), (n, 1 + len(enc)), "dec_len %d" % n)
eq(mqtt.dec_len(b"\x30\x80", 1), None, "dec_len incomplete")
raises(ValueError, lambda: mqtt.dec_len(b"\x30\xff\xff\xff\xff\x01", 1), "dec_len 5 bytes")

# CONNECT: protocol level 4, flags = user|pass|will retain|will qos1|will, clean=0
c = mqtt.connect_pkt("dev-1", "dev-1", "pw", 30, "panic/v1/dev-1/status", b"{}")
eq(c[0], 0x10, "connect type")
eq(c[2:9], b"\x00\x04MQTT\x04", "protocol name/level")
eq(c[9], 0x80 | 0x40 | 0x20 | 0x08 | 0x04, "connect flags")
eq(c[9] & 0x02, 0, "clean_session is 0")
eq((c[10] << 8) | c[11], 30, "keepalive")
eq(mqtt.dec_len(c, 1)[0], len(c) - 2, "connect remaining length")
check(c.endswith(b"\x00\x05dev-1\x00\x02pw"), "user and password last")
eq(mqtt.connect_pkt("x", None, None, 0)[9], 0, "anonymous, no will, no clean")

# PUBLISH QoS1 retain, round trip through split/parse
p = mqtt.publish_pkt("a/b", b"payload", 1, True, False, 0x1234)
eq(p[0], 0x33, "publish qos1 retain")
r = mqtt.split(p)
eq(r, (0x33, 2, len(p)), "split complete")
eq(mqtt.parse_publish(p[0], p[r[1]:r[2]]), ("a/b", 0x1234, b"payload"), "parse publish")
eq(mqtt.publish_pkt("a", b"", 1, False, True, 1)[0], 0x3A, "dup flag")
q0 = mqtt.publish_pkt("t", b"x", 0)
eq(mqtt.parse_publish(q0[0], q0[2:]), ("t", 0, b"x"), "qos0 has no packet id")
for i in range(len(p)):
    eq(mqtt.split(p[:i]), None, "split incomplete at %d" % i)
big = mqtt.publish_pkt("t", b"x" * 300, 1, False, False, 1)
eq(mqtt.split(big + b"\x40\x02")[2], len(big), "split with trailing bytes")
raises(ValueError, lambda: mqtt.split(b"\x30\xff\xff\x7f"), "oversize refused")

eq(mqtt.subscribe_pkt(7, "a/ack", 1), b"\x82\x0a\x00\x07\x00\x05a/ack\x01", "subscribe")
eq(mqtt.puback_pkt(0x0102), b"\x40\x02\x01\x02", "puback")
done()
