# config.json: load, validate, fill defaults. A bad file must give a clear message and an
# LED pattern, never an exception that reboots the board into the same failure forever.
import json
import os

import cfgset

DEFAULTS = {
    "topic_root": "panic/v1",
    "wifi": [],
    "acc": 25,
    "trigger": "long",
    "long_press_ms": 2000,
    "triple_window_ms": 3000,
    "cancel_hold_ms": 5000,    # arms a cancel of a delivered alert ...
    "cancel_confirm_ms": 10000,  # ... which a short press within this confirms
    "cancel_window_s": 1800,   # how long after an alert it may still be cancelled
    "debounce_ms": 30,
    "drill": False,            # every press sends kind "test" (drills)
    "heartbeat_s": 60,
    "keepalive_s": 30,
    "retry_ms": 3000,
    "retry_max_ms": 30000,
    "reconnect_min_ms": 500,
    "reconnect_max_ms": 15000,
    "fail_ms": 10000,          # unacked this long -> LED "failed" (still retrying)
    "outbox_max": 32,
    "gps": None,
    # GPIO27: an RTC pin (wakes from deep sleep) that is not a boot-strapping pin, so a
    # button held at power-up cannot put the chip in download mode. No battery ADC
    # unless the divider is fitted: an open ADC pin reads noise, not a battery.
    "pins": {"button": 27, "led": 2, "buzzer": 4, "batt_adc": None},
    "batt_low": 20,
    "boot_floor": 0,           # from the gateway: boot numbers it has already seen (re-flash)
    "sleep": False,
    "awake_s": 30,
    "sleep_heartbeat_s": 1800,  # battery variant: timer wake for a heartbeat
    "ntp": "pool.ntp.org",
    "wdt_ms": 8000,
    "safe_hold_ms": 10000,     # button held this long at power-up: safe mode (safemode.py)
    # The second path (docs/protocol.md "Paths", docs/firmware.md "Cellular"): an LTE modem
    # (null: none fitted, the feature is off), data over it when no ack came within
    # cell_after_ms of a press (or WiFi is down), one SMS to sms_to (null: no SMS) when no
    # data path delivered within sms_after_ms; the cellular path proven every cell_test_h
    # hours (0: never).
    "modem": None,
    "sms_to": None,
    "cell_after_ms": 5000,
    "sms_after_ms": 60000,
    "sms_retry_ms": 300000,
    "track_s": 30,             # a GPS button's position every N s while its call is open (0: never)    # no SMS ack by then: the same SMS again, the wait doubling up to 8x
    "cell_test_h": 24,
    # Over-the-air updates (ota.py): a new slot not confirmed by a signed ack within
    # ota_trial_s is rolled back; a chunk is asked again after ota_chunk_ms; a battery
    # button below battery_min_ota % refuses to start one.
    "ota_trial_s": 300,
    "ota_chunk_ms": 5000,
    "battery_min_ota": 40,
    "silent": False,           # LED only, never the buzzer (a holder who must not be heard)
}
_MODEM = {"uart": 1, "tx": 26, "rx": 25, "baud": 115200, "pwrkey": 32, "apn": "internet",
          "pin": None, "reg_s": 60}

_REQUIRED = ("dev", "secret", "mqtt_user", "mqtt_password", "brokers", "lat6", "lon6")
_INTS = ("lat6", "lon6", "acc", "long_press_ms", "triple_window_ms", "cancel_hold_ms",
         "cancel_window_s", "debounce_ms", "heartbeat_s", "keepalive_s", "retry_ms",
         "retry_max_ms", "reconnect_min_ms", "reconnect_max_ms", "fail_ms", "outbox_max",
         "batt_low", "awake_s", "wdt_ms", "boot_floor", "cancel_confirm_ms",
         "sleep_heartbeat_s", "safe_hold_ms", "cell_after_ms", "sms_after_ms", "sms_retry_ms",
         "cell_test_h", "track_s", "ota_trial_s", "ota_chunk_ms", "battery_min_ota")

# ESP32 (WROOM/WROVER) pin rules.
_STRAP = (0, 2, 5, 12, 15)        # sampled at reset: a held button changes the boot mode
_FLASH = (6, 7, 8, 9, 10, 11)     # the SPI flash
_INPUT_ONLY = (34, 35, 36, 37, 38, 39)   # and without internal pull-ups
_RTC = (0, 2, 4, 12, 13, 14, 15, 25, 26, 27, 32, 33, 34, 35, 36, 37, 38, 39)
_ADC1 = (32, 33, 34, 35, 36, 39)  # ADC2 cannot be read while WiFi is on
_WDT_MIN = 4000     # above the longest bounded blocking step (TLS handshake, NTP)
_WDT_MAX = 60000


def _dev_ok(s):
    if not isinstance(s, str) or not 3 <= len(s) <= 64:
        return False
    for c in s:
        if not ("a" <= c <= "z" or "0" <= c <= "9" or c == "-"):
            return False
    return True


def _hex64(s):
    if not isinstance(s, str) or len(s) != 64:
        return False
    for c in s:
        if c not in "0123456789abcdefABCDEF":
            return False
    return True


def validate(c):
    """Returns (cfg_with_defaults, None) or (None, message)."""
    if not isinstance(c, dict):
        return None, "config is not a JSON object"
    for k in _REQUIRED:
        if k not in c:
            return None, "missing key: " + k
    if not _dev_ok(c["dev"]):
        return None, "dev must match [a-z0-9-]{3,64}"
    if not _hex64(c["secret"]):
        return None, "secret must be 64 hex characters"
    for k in ("mqtt_user", "mqtt_password"):
        if not isinstance(c[k], str):
            return None, k + " must be a string"
    out = {}
    for k in DEFAULTS:
        out[k] = DEFAULTS[k]
    for k in c:
        out[k] = c[k]
    for k in _INTS:
        v = out[k]
        if not isinstance(v, int) or isinstance(v, bool):
            return None, k + " must be an integer"
    if not -90000000 <= out["lat6"] <= 90000000 or not -180000000 <= out["lon6"] <= 180000000:
        return None, "lat6/lon6 out of range"
    for k in ("long_press_ms", "triple_window_ms", "cancel_hold_ms", "heartbeat_s",
              "retry_ms", "outbox_max", "reconnect_min_ms", "cancel_confirm_ms"):
        if out[k] <= 0:
            return None, k + " must be > 0"
    if out["safe_hold_ms"] < 1000:
        return None, "safe_hold_ms must be >= 1000"
    if not _WDT_MIN <= out["wdt_ms"] <= _WDT_MAX:
        return None, "wdt_ms must be %d..%d" % (_WDT_MIN, _WDT_MAX)
    if out["sleep"] and out["sleep_heartbeat_s"] < 1800:
        # Each wake costs WiFi + TLS: more often than this drains an 18650 in weeks.
        return None, "sleep_heartbeat_s must be >= 1800"
    if out["keepalive_s"] < 0 or out["keepalive_s"] > 65535:
        return None, "keepalive_s out of range"
    if not 10 <= out["ota_trial_s"] <= 3600:
        return None, "ota_trial_s must be 10..3600"
    if not 500 <= out["ota_chunk_ms"] <= 60000:
        return None, "ota_chunk_ms must be 500..60000"
    err = cfgset.check(out)     # the keys a remote `set` may change
    if err:
        return None, err
    b = out["brokers"]
    if not isinstance(b, list) or not b:
        return None, "brokers must be a non-empty list"
    for x in b:
        if not isinstance(x, dict) or not isinstance(x.get("host"), str):
            return None, "each broker needs a host"
        p = x.get("port", 8883 if x.get("tls") else 1883)
        if not isinstance(p, int) or not 0 < p < 65536:
            return None, "broker port out of range"
        x["port"] = p
        x["tls"] = bool(x.get("tls", False))
        if x["tls"] and not (isinstance(x.get("ca"), str) and x["ca"]):
            # TLS without a CA would skip certificate checks: anyone on the path could
            # pose as the broker and swallow alerts.
            return None, "broker %s: tls needs a ca file" % x["host"]
    g = out["gps"]
    if g is not None:
        if not isinstance(g, dict):
            return None, "gps must be null or an object"
        gd = {"uart": 2, "tx": 17, "rx": 16, "baud": 9600, "fix_timeout_s": 30}
        for k in g:
            gd[k] = g[k]
        for k in gd:
            if not isinstance(gd[k], int):
                return None, "gps." + k + " must be an integer"
        out["gps"] = gd
    err = _cell_error(out)
    if err:
        return None, err
    p = dict(DEFAULTS["pins"])
    if not isinstance(out["pins"], dict):
        return None, "pins must be an object"
    for k in out["pins"]:
        p[k] = out["pins"][k]
    out["pins"] = p
    err = _pins_error(p, sleep=out["sleep"]) or _modem_pins_error(out["modem"], p, out["gps"])
    if err:
        return None, err
    if not isinstance(out["topic_root"], str) or not out["topic_root"]:
        return None, "topic_root must be a non-empty string"
    return out, None


def _pins_error(p, sleep=False):
    for k in ("button", "led", "buzzer"):
        v = p.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 39 or v in _FLASH:
            return "pins.%s must be a usable GPIO number" % k
    for k in ("led", "buzzer"):
        if p[k] in _INPUT_ONLY:
            return "pins.%s: GPIO%d is input-only" % (k, p[k])
    b = p["button"]
    if b in _STRAP:
        return "pins.button: GPIO%d is a boot-strapping pin (use 27 or 33)" % b
    if b in _INPUT_ONLY:
        return "pins.button: GPIO%d has no pull-up (use 27 or 33)" % b
    if sleep and b not in _RTC:
        return "pins.button: GPIO%d cannot wake from deep sleep" % b
    a = p.get("batt_adc")
    if a is not None and a not in _ADC1:
        return "pins.batt_adc must be null or an ADC1 pin (32-36, 39)"
    if len({b, p["led"], p["buzzer"]}) < 3 or a in (b, p["led"], p["buzzer"]):
        return "pins must all differ"
    return None


def _cell_error(out):
    if out["cell_after_ms"] < 1000:
        return "cell_after_ms must be >= 1000"
    if out["sms_after_ms"] <= out["cell_after_ms"]:
        # The SMS is the last resort: it comes after the data paths had their chance.
        return "sms_after_ms must be longer than cell_after_ms"
    if out["sms_retry_ms"] < 10000:
        return "sms_retry_ms must be >= 10000"
    if not 0 <= out["cell_test_h"] <= 720:
        return "cell_test_h must be 0..720 (0: no supervised test)"
    t = out["sms_to"]
    if t is not None and not (isinstance(t, str) and 4 <= len(t) <= 16 and
                              _digits(t[1:] if t[:1] == "+" else t)):
        return "sms_to must be null or a phone number (+ and digits)"
    m = out["modem"]
    if m is None:
        return None
    if not isinstance(m, dict):
        return "modem must be null or an object"
    d = dict(_MODEM)
    for k in m:
        if k not in d:
            return "modem: unknown key " + k
        d[k] = m[k]
    for k in ("uart", "tx", "rx", "baud", "pwrkey", "reg_s"):
        if not isinstance(d[k], int) or isinstance(d[k], bool):
            return "modem." + k + " must be an integer"
    if d["uart"] not in (1, 2):
        return "modem.uart must be 1 or 2 (UART0 is the console)"
    if not 10 <= d["reg_s"] <= 600:
        return "modem.reg_s must be 10..600"
    if not isinstance(d["apn"], str) or not 0 < len(d["apn"]) <= 63 or '"' in d["apn"]:
        return "modem.apn must be a non-empty string without quotes"
    pin = d["pin"]
    if pin is not None and not (isinstance(pin, str) and 4 <= len(pin) <= 8 and _digits(pin)):
        return "modem.pin must be null or 4-8 digits"
    out["modem"] = d
    return None


def _digits(s):
    if not s:
        return False
    for c in s:
        if not "0" <= c <= "9":
            return False
    return True


def _modem_pins_error(m, p, g):
    if m is None:
        return None
    for k in ("tx", "rx", "pwrkey"):
        v = m[k]
        if not 0 <= v <= 39 or v in _FLASH or v in _STRAP:
            # A strapping pin driven by the modem at reset can change the boot mode.
            return "modem.%s: GPIO%d is a flash or boot-strapping pin" % (k, v)
    for k in ("tx", "pwrkey"):
        if m[k] in _INPUT_ONLY:
            return "modem.%s: GPIO%d is input-only" % (k, m[k])
    used = [p["button"], p["led"], p["buzzer"], p.get("batt_adc")]
    if g:
        used += [g["tx"], g["rx"]]
        if g["uart"] == m["uart"]:
            return "modem.uart: UART%d is the GPS's" % m["uart"]
    mine = [m["tx"], m["rx"], m["pwrkey"]]
    if len(set(mine)) < 3 or any(x in used for x in mine):
        return "modem pins must differ from each other and from the other pins"
    return None


def _exists(p):
    try:
        os.stat(p)
        return True
    except OSError:
        return False


def write_atomic(path, data):
    """Write `path` through a temp file renamed over it: a power cut leaves the old or the
    new content, never a torn one (littlefs renames over a file; FAT needs the remove, and
    load() finds the temp copy if the cut fell between the two)."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(data)
    try:
        os.rename(tmp, path)
    except OSError:
        os.remove(path)
        os.rename(tmp, path)


def load(path):
    if not _exists(path) and _exists(path + ".tmp"):
        os.rename(path + ".tmp", path)    # a save cut between remove and rename (FAT)
    try:
        with open(path) as f:
            raw = f.read()
    except OSError:
        return None, "no config file at " + path
    try:
        c = json.loads(raw)
    except Exception:
        return None, "config.json is not valid JSON"
    out, err = validate(c)
    if out is None:
        return None, err
    # CA paths are relative to the flash root, where config.json lives.
    i = path.rfind("/")
    folder = path[:i + 1] if i >= 0 else ""
    for b in out["brokers"]:
        ca = b.get("ca") or ""
        if b["tls"] and not _exists(ca if ca[:1] == "/" else folder + ca):
            return None, "broker %s: ca file %s not found" % (b["host"], ca)
    return out, None
