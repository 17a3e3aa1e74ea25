# NMEA 0183 parser (GGA, RMC) with checksum, integer micro-degrees (ESP32 floats are
# single precision: 1e-7 degrees is lost at 112 degrees east), and fix age.
from monotonic import Mono


def checksum_ok(line):
    if not line or line[0] != "$":
        return False
    i = line.find("*")
    if i < 0 or len(line) < i + 3:
        return False
    c = 0
    for ch in line[1:i]:
        c ^= ord(ch)
    try:
        return c == int(line[i + 1:i + 3], 16)
    except ValueError:
        return False


def coord6(val, hemi, degw):
    """'0758.9560','S' (degw=2) -> -7982600. Integer maths only."""
    if not val or hemi not in ("N", "S", "E", "W"):
        return None
    if "." in val:
        ip, fp = val.split(".", 1)
    else:
        ip, fp = val, ""
    if len(ip) != degw + 2 or not ip.isdigit() or (fp and not fp.isdigit()):
        return None
    deg = int(ip[:degw])
    fp = fp[:7]
    scale = 10 ** len(fp)
    mins = int(ip[degw:]) * scale + (int(fp) if fp else 0)   # minutes * scale
    if mins >= 60 * scale:
        return None
    # round to nearest micro-degree
    v = deg * 1000000 + (mins * 1000000 * 2 + 60 * scale) // (120 * scale)
    return -v if hemi in ("S", "W") else v


class GPS:
    def __init__(self, fix_timeout_s=30, clock=None):
        self.timeout_ms = fix_timeout_s * 1000
        # Monotonic ms (the app's monotonic.Mono): a fix from before a week without GPS
        # must read a week old, which a ticks_ms difference cannot after 6.2 days.
        self.clock = clock or Mono().ms
        self.lat6 = None
        self.lon6 = None
        self.acc = None
        self.t_fix = None
        self.bad = 0      # sentences refused (checksum, format): garbage on the UART
        self.buf = ""     # partial line from the UART

    def feed(self, line, now=None):
        """One NMEA sentence. Returns True if it gave a valid fix."""
        line = line.strip()
        if not checksum_ok(line):
            self.bad += 1
            return False
        f = line[1:line.find("*")].split(",")
        typ = f[0][2:]
        try:
            if typ == "GGA" and len(f) >= 9:
                if f[6] in ("", "0"):
                    return False
                lat = coord6(f[2], f[3], 2)
                lon = coord6(f[4], f[5], 3)
                acc = None
                if f[8]:
                    # HDOP x ~5 m user range error: a rough but honest accuracy figure
                    acc = int(float(f[8]) * 5 + 0.5)
            elif typ == "RMC" and len(f) >= 7:
                if f[2] != "A":
                    return False
                lat = coord6(f[3], f[4], 2)
                lon = coord6(f[5], f[6], 3)
                acc = None
            else:
                return False
        except (ValueError, IndexError):
            self.bad += 1
            return False
        if lat is None or lon is None:
            self.bad += 1
            return False
        self.lat6 = lat
        self.lon6 = lon
        if acc is not None:
            self.acc = max(acc, 3)
        elif self.acc is None:
            self.acc = 10
        self.t_fix = self.clock() if now is None else now
        return True

    def feed_bytes(self, data):
        """UART bytes, any chunking; complete lines go to feed()."""
        try:
            self.buf += data.decode()
        except Exception:
            self.buf = ""
            self.bad += 1
            return
        while "\n" in self.buf:
            ln, self.buf = self.buf.split("\n", 1)
            self.feed(ln)
        if len(self.buf) > 100:   # NMEA lines are <= 82 chars: this is noise
            self.buf = ""
            self.bad += 1

    def fix(self, now=None):
        """(lat6, lon6, acc) of a fix younger than the timeout, else None."""
        if self.t_fix is None:
            return None
        now = self.clock() if now is None else now
        if now - self.t_fix > self.timeout_ms:
            return None
        return self.lat6, self.lon6, self.acc

    def age_ms(self, now=None):
        if self.t_fix is None:
            return None
        return (self.clock() if now is None else now) - self.t_fix
