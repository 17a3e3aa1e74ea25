# config.json validation: defaults, required keys, clear messages, never an exception.
import json
from mp_util import eq, check, done, tmpdir
import config

BASE = {"dev": "klj-kauman-rw05-rt03", "secret": "ab" * 32, "mqtt_user": "klj-kauman-rw05-rt03",
        "mqtt_password": "pw", "brokers": [{"host": "127.0.0.1", "port": 18830}],
        "lat6": -7982600, "lon6": 112627000}


def v(**kw):
    c = json.loads(json.dumps(BASE))
    for k in kw:
        if kw[k] is None:
            c.pop(k, None)
        else:
            c[k] = kw[k]
    return config.validate(c)


c, err = v()
eq(err, None, "minimal config valid")
eq((c["trigger"], c["long_press_ms"], c["retry_ms"], c["topic_root"], c["acc"]),
   ("long", 2000, 3000, "panic/v1", 25), "defaults filled")
eq(c["pins"]["button"], 27, "default button: GPIO27, not a boot-strapping pin")
eq(c["pins"]["batt_adc"], None, "no battery ADC by default (no floating pin)")
eq(c["brokers"][0]["tls"], False, "tls default false")
c, err = v(pins={"led": 5})
eq((c["pins"]["led"], c["pins"]["button"]), (5, 27), "pins merged with defaults")
c, err = v(gps={"uart": 1})
eq((c["gps"]["uart"], c["gps"]["baud"]), (1, 9600), "gps defaults merged")

for k in ("dev", "secret", "mqtt_user", "mqtt_password", "brokers", "lat6", "lon6"):
    c, err = v(**{k: None})
    check(c is None and k in err, "missing %s -> %r" % (k, err))
for kw, word in (({"dev": "Bad Id"}, "dev"), ({"dev": "ab"}, "dev"),
                 ({"secret": "zz" * 32}, "secret"), ({"secret": "ab"}, "secret"),
                 ({"brokers": []}, "brokers"), ({"brokers": [{"port": 1}]}, "host"),
                 ({"brokers": [{"host": "h", "port": 70000}]}, "port"),
                 ({"lat6": -7.98}, "lat6"), ({"lat6": 91000000}, "range"),
                 ({"trigger": "double"}, "trigger"), ({"retry_ms": 0}, "retry_ms"),
                 ({"long_press_ms": True}, "long_press_ms"),
                 ({"cancel_hold_ms": 1000}, "cancel_hold_ms"),
                 ({"wifi": [{"psk": "x"}]}, "ssid"), ({"gps": "yes"}, "gps"),
                 ({"gps": {"baud": "fast"}}, "gps.baud"), ({"pins": 3}, "pins"),
                 ({"pins": {"button": 0}}, "boot-strapping"),
                 ({"pins": {"button": 2, "led": 13}}, "boot-strapping"),
                 ({"pins": {"button": 12}}, "boot-strapping"),
                 ({"pins": {"button": 15}}, "boot-strapping"),
                 ({"pins": {"button": 35}}, "pull-up"),
                 ({"pins": {"button": 7}}, "pins.button"),
                 ({"pins": {"button": "27"}}, "pins.button"),
                 ({"pins": {"led": 36}}, "input-only"),
                 ({"pins": {"led": 27, "button": 27}}, "differ"),
                 ({"pins": {"batt_adc": 4}}, "batt_adc"),
                 ({"pins": {"button": 23}, "sleep": True}, "deep sleep"),
                 ({"brokers": [{"host": "h", "tls": True}]}, "ca"),
                 ({"brokers": [{"host": "h", "tls": True, "ca": ""}]}, "ca"),
                 ({"wdt_ms": 0}, "wdt_ms"), ({"wdt_ms": 500}, "wdt_ms"),
                 ({"wdt_ms": 3600000}, "wdt_ms"), ({"wdt_ms": "8000"}, "wdt_ms"),
                 ({"sleep": True, "sleep_heartbeat_s": 60}, "sleep_heartbeat_s")):
    c, err = v(**kw)
    check(c is None and err and word in err, "%r -> %r" % (kw, err))

D = tmpdir("mp_config")
c, err = config.load(D + "/config.json")
check(c is None and "no config" in err, "missing file")
for raw in ("", "{", "[]", "null", "\xff", '{"dev": 1}'):
    with open(D + "/config.json", "w") as f:
        f.write(raw)
    c, err = config.load(D + "/config.json")
    check(c is None and isinstance(err, str), "bad file %r -> %r" % (raw, err))
with open(D + "/config.json", "w") as f:
    f.write(json.dumps(BASE))
eq(config.load(D + "/config.json")[1], None, "good file")
# TLS: the CA file must be on flash (relative to the folder of config.json)
tls = json.loads(json.dumps(BASE))
tls["brokers"] = [{"host": "mqtt.example", "port": 8883, "tls": True, "ca": "ca.der"}]
with open(D + "/config.json", "w") as f:
    f.write(json.dumps(tls))
c, err = config.load(D + "/config.json")
check(c is None and "ca.der" in err, "missing CA file -> %r" % err)
with open(D + "/ca.der", "wb") as f:
    f.write(b"0")
eq(config.load(D + "/config.json")[1], None, "CA file present")
for ok in ({"button": 33}, {"button": 27, "batt_adc": 34}, {"button": 13}):
    eq(v(pins=ok)[1], None, "safe pins %r accepted" % ok)
done()
