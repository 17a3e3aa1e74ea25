# NMEA parser: checksums, GGA/RMC, integer micro-degrees, fix age, garbage.
from mp_util import eq, check, done
from gps import GPS, checksum_ok, coord6


def nmea(body):
    c = 0
    for ch in body:
        c ^= ord(ch)
    return "$%s*%02X" % (body, c)


gga = nmea("GPGGA,123519,0758.9560,S,11237.6200,E,1,08,0.9,545.4,M,46.9,M,,")
rmc = nmea("GPRMC,123519,A,0758.3240,S,11237.6900,E,022.4,084.4,230394,003.1,W")
check(checksum_ok(gga), "checksum ok")
check(checksum_ok("$GPGSV,1,1,00*79"), "known sentence checksum")
check(not checksum_ok(gga[:-1] + ("0" if gga[-1] != "0" else "1")), "bad checksum")
check(not checksum_ok(gga.replace("*", "")), "no checksum")
check(not checksum_ok(""), "empty")

eq(coord6("0758.9560", "S", 2), -7982600, "lat S")
eq(coord6("11237.6200", "E", 3), 112627000, "lon E")
eq(coord6("4807.038", "N", 2), 48117300, "lat N 3 decimals")
eq(coord6("01131.000", "W", 3), -11516667, "rounded micro-degrees")
eq(coord6("0760.0000", "S", 2), None, "60 minutes is invalid")
eq(coord6("07x8.9560", "S", 2), None, "non-digit")
eq(coord6("0758.9560", "Q", 2), None, "bad hemisphere")
eq(coord6("", "S", 2), None, "empty field")

g = GPS(30)
eq(g.fix(0), None, "no fix at start")
check(g.feed(gga, 1000), "GGA accepted")
eq(g.fix(1000), (-7982600, 112627000, 5), "GGA fix, acc from HDOP")
eq(g.fix(31000), (-7982600, 112627000, 5), "fix at 30 s still valid")
eq(g.fix(31001), None, "fix older than fix_timeout_s falls back")
eq(g.age_ms(2000), 1000, "fix age")
check(g.feed(rmc, 40000), "RMC accepted")
eq(g.fix(40000)[:2], (-7972067, 112628167), "RMC position")

# no-fix sentences do not count as fixes
g2 = GPS(30)
check(not g2.feed(nmea("GPGGA,123519,,,,,0,00,,,M,,M,,"), 0), "GGA quality 0")
check(not g2.feed(nmea("GPRMC,123519,V,0758.3240,S,11237.6900,E,0,0,230394,,"), 0),
      "RMC status V")
eq(g2.fix(0), None, "still no fix")
# garbage: wrong checksum, truncated, binary noise, absurd fields
bad0 = g2.bad
for s in ("$GPGGA,1,2,3*00", "garbage", "$$$$", "\x00\xff", gga[:20],
          nmea("GPGGA,123519,99x9.9,S,11237.62,E,1,08,0.9,545.4,M,46.9,M,,"),
          nmea("GPGGA,123519,0758.9560,S,11237.6200,E,1,08,zz,545.4,M,46.9,M,,")):
    check(not g2.feed(s, 0), "garbage refused: %r" % s)
check(g2.bad >= bad0 + 6, "garbage counted")
eq(g2.fix(0), None, "garbage never becomes a fix")
check(g2.feed(nmea("GNGGA,123519,0758.9560,S,11237.6200,E,1,08,0.9,545.4,M,46.9,M,,"), 5),
      "multi-constellation talker GN")

# UART bytes in odd chunks
g3 = GPS(30)
data = (b"\xff\xfe" + b"$GPGSV,1,1,00*79\r\n" + gga.encode() + b"\r\n")
for i in range(0, len(data), 7):
    g3.feed_bytes(data[i:i + 7])
check(g3.fix() is not None, "fix from chunked UART bytes after noise")
g3.feed_bytes(b"x" * 300)
eq(g3.buf, "", "runaway line discarded")
done()
