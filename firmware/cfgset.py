# The rules for the configuration keys a signed `set` command may change (remote.py, docs/
# firmware.md "Remote commands"). Apart from config.py, which applies them to every
# config.json at boot, so that a running app can check a command without loading
# config.py's ~17 KB into its heap.
SETTABLE = ("heartbeat_s", "trigger", "long_press_ms", "wifi", "silent", "track_s",
            "battery_min_ota")


def check(c):
    """None, or the message for the first wrong settable key of c, a whole config with its
    defaults filled in (long_press_ms is judged against cancel_hold_ms)."""
    for k in ("heartbeat_s", "long_press_ms", "track_s", "battery_min_ota"):
        v = c[k]
        if not isinstance(v, int) or isinstance(v, bool):
            return k + " must be an integer"
    for k in ("heartbeat_s", "long_press_ms"):
        if c[k] <= 0:
            return k + " must be > 0"
    if c["track_s"] and not 5 <= c["track_s"] <= 3600:
        # The gateway keeps at most one status a second per button, and a track point a
        # minute apart still shows where a moving holder went.
        return "track_s must be 0 or 5..3600"
    if not isinstance(c["silent"], bool):
        return "silent must be true or false"
    if not 0 <= c["battery_min_ota"] <= 100:
        return "battery_min_ota must be 0..100"
    if c["trigger"] not in ("long", "triple"):
        return "trigger must be 'long' or 'triple'"
    if c["cancel_hold_ms"] <= c["long_press_ms"] and c["trigger"] == "long":
        return "cancel_hold_ms must be longer than long_press_ms"
    w = c["wifi"]
    if not isinstance(w, list):
        return "wifi must be a list"
    for x in w:
        # 802.11: an SSID is 1-32 bytes.
        if not isinstance(x, dict) or not isinstance(x.get("ssid"), str) or \
                not 0 < len(x["ssid"]) <= 32:
            return "each wifi entry needs an ssid (1-32 characters)"
        if not isinstance(x.get("psk", ""), str):
            return "wifi psk must be a string"
    return None
