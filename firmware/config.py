# config.json: load, validate, fill defaults. A bad file must give a clear message and an
# LED pattern, never an exception that reboots the board into the same failure forever.
import json

DEFAULTS = {
    "topic_root": "panic/v1",
    "wifi": [],
    "acc": 25,
    "trigger": "long",
    "long_press_ms": 2000,
    "triple_window_ms": 3000,
    "cancel_hold_ms": 5000,
    "cancel_window_s": 1800,   # how long after an alert a hold still means "cancel it"
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
    "pins": {"button": 0, "led": 2, "buzzer": 4, "batt_adc": 34},
    "batt_low": 20,
    "boot_floor": 0,           # from the gateway: boot numbers it has already seen (re-flash)
    "sleep": False,
    "awake_s": 30,
    "ntp": "pool.ntp.org",
    "wdt_ms": 8000,
}

_REQUIRED = ("dev", "secret", "mqtt_user", "mqtt_password", "brokers", "lat6", "lon6")
_INTS = ("lat6", "lon6", "acc", "long_press_ms", "triple_window_ms", "cancel_hold_ms",
         "cancel_window_s", "debounce_ms", "heartbeat_s", "keepalive_s", "retry_ms",
         "retry_max_ms", "reconnect_min_ms", "reconnect_max_ms", "fail_ms", "outbox_max",
         "batt_low", "awake_s", "wdt_ms", "boot_floor")


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
              "retry_ms", "outbox_max", "reconnect_min_ms", "wdt_ms"):
        if out[k] <= 0:
            return None, k + " must be > 0"
    if out["keepalive_s"] < 0 or out["keepalive_s"] > 65535:
        return None, "keepalive_s out of range"
    if out["trigger"] not in ("long", "triple"):
        return None, "trigger must be 'long' or 'triple'"
    if out["cancel_hold_ms"] <= out["long_press_ms"] and out["trigger"] == "long":
        return None, "cancel_hold_ms must be longer than long_press_ms"
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
    w = out["wifi"]
    if not isinstance(w, list):
        return None, "wifi must be a list"
    for x in w:
        if not isinstance(x, dict) or not isinstance(x.get("ssid"), str):
            return None, "each wifi entry needs an ssid"
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
    p = dict(DEFAULTS["pins"])
    if not isinstance(out["pins"], dict):
        return None, "pins must be an object"
    for k in out["pins"]:
        p[k] = out["pins"][k]
    out["pins"] = p
    if not isinstance(out["topic_root"], str) or not out["topic_root"]:
        return None, "topic_root must be a non-empty string"
    return out, None


def load(path):
    try:
        with open(path) as f:
            raw = f.read()
    except OSError:
        return None, "no config file at " + path
    try:
        c = json.loads(raw)
    except Exception:
        return None, "config.json is not valid JSON"
    return validate(c)
