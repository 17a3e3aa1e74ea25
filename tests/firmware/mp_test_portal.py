# firmware/portal.py's form parsing under micropython: what a browser posts from the setup
# page (urlencoded, UTF-8), and what it must survive (bad escapes, bad UTF-8).
from mp_util import eq, check, done  # noqa: I001
import portal

eq(portal.form(b"ssid=RT03+rumah&psk=a%26b%3Dc%2B&act=save"),
   {"ssid": "RT03 rumah", "psk": "a&b=c+", "act": "save"}, "spaces, & = + in values")
eq(portal.form(b"ssid=Warung+Bu+%C3%89ni"), {"ssid": "Warung Bu \u00c9ni"}, "UTF-8")
eq(portal.form(b"ssid=50%25&psk=%zz%4"), {"ssid": "50%", "psk": "%zz%4"}, "a bad escape stays as typed")
eq(portal.form(b"ssid=%ff%fe&act=test"), {"act": "test"}, "bad UTF-8: the field is dropped")
eq(portal.form(b""), {}, "empty body")
eq(portal._esc('<b>"x" & y</b>'), "&lt;b&gt;&quot;x&quot; &amp; y&lt;/b&gt;", "escaped for the page")
check(True, "portal")
done()
