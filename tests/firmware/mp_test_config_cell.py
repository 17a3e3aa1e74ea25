# config.json for the second path: the modem block, sms_to and the timings are validated
# with clear messages; no modem (the default) leaves the feature off.
import json
from mp_util import eq, check, done
import config

BASE = {"dev": "klj-kauman-rw05-rt03", "secret": "ab" * 32, "mqtt_user": "klj-kauman-rw05-rt03",
        "mqtt_password": "pw", "brokers": [{"host": "127.0.0.1", "port": 18830}],
        "lat6": -7982600, "lon6": 112627000}


def v(**kw):
    c = json.loads(json.dumps(BASE))
    c.update(kw)
    return config.validate(c)


c, err = v()
eq(err, None, "valid without a modem")
eq((c["modem"], c["sms_to"], c["cell_after_ms"], c["sms_after_ms"], c["cell_test_h"]),
   (None, None, 5000, 60000, 24), "defaults: no modem, no SMS")
c, err = v(modem={"apn": "telkomsel"}, sms_to="+62341000110")
eq(err, None, "modem with defaults")
eq((c["modem"]["uart"], c["modem"]["tx"], c["modem"]["rx"], c["modem"]["pwrkey"], c["modem"]["apn"],
    c["modem"]["reg_s"]), (1, 26, 25, 32, "telkomsel", 60), "modem defaults merged")
c, err = v(modem={}, gps={"uart": 2})
eq(err, None, "modem and GPS on separate UARTs")

for kw, word in (({"modem": 3}, "modem must be"),
                 ({"modem": {"tx": 2}}, "modem.tx: GPIO2"),
                 ({"modem": {"pwrkey": 0}}, "modem.pwrkey: GPIO0"),
                 ({"modem": {"rx": 12}}, "GPIO12"),
                 ({"modem": {"tx": 7}}, "flash"),
                 ({"modem": {"pwrkey": 35}}, "input-only"),
                 ({"modem": {"rx": 27}}, "differ"),
                 ({"modem": {"rx": 26}}, "differ"),
                 ({"modem": {"uart": 0}}, "modem.uart"),
                 ({"modem": {"uart": 2}, "gps": {"uart": 2}}, "GPS"),
                 ({"modem": {"apn": ""}}, "apn"),
                 ({"modem": {"apn": 'a"b'}}, "apn"),
                 ({"modem": {"pin": 1234}}, "modem.pin"),
                 ({"modem": {"pin": "12a4"}}, "modem.pin"),
                 ({"modem": {"reg_s": 5}}, "reg_s"),
                 ({"modem": {"baud": "fast"}}, "modem.baud"),
                 ({"modem": {"bogus": 1}}, "unknown key bogus"),
                 ({"sms_to": "112"}, "sms_to"),
                 ({"sms_to": "+62 341 000"}, "sms_to"),
                 ({"sms_to": 62341000110}, "sms_to"),
                 ({"cell_after_ms": 10}, "cell_after_ms"),
                 ({"cell_after_ms": "5s"}, "cell_after_ms must be an integer"),
                 ({"sms_after_ms": 4000}, "longer than cell_after_ms"),
                 ({"sms_retry_ms": 5000}, "sms_retry_ms"),
                 ({"track_s": 2}, "track_s"),
                 ({"track_s": 7200}, "track_s"),
                 ({"cell_test_h": -1}, "cell_test_h")):
    c, err = v(**kw)
    check(c is None and err is not None and word in err, "%r -> %r" % (kw, err))
done()
