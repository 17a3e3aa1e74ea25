# Setup mode's web page (docs/firmware.md "Setup mode"): setup.html, in Bahasa Indonesia,
# on the button's own access point: the device id, the link status, the home WiFi to test
# ("Uji koneksi") and save. A few sockets served from the app's poll loop, never blocking,
# so the button keeps working meanwhile. Loaded only in setup mode and dropped after; the
# page's text lives in setup.html, not here, because compiling source costs heap.
import select
import socket
import sys

_CLIENTS = 3            # a browser opens spare connections; more wait in the backlog
_REQ_MAX = 1024         # request line, headers and form: anything longer is dropped
_IDLE_MS = 5000
_BY_HAND_MS = 900000    # setup asked for by hand: back to normal after 15 minutes
# No Content-Length: HTTP/1.0 ends the body at the close, so the page goes out line by line
# and never needs one block of heap its size.
_HEAD = "HTTP/1.0 %s\r\nContent-Type: text/html; charset=utf-8\r\nCache-Control: no-store\r\n" \
        "Connection: close\r\n%s\r\n"


def start(app, why):
    """Setup mode on: the access point and the page (app.portal), if this board has one."""
    addr = app.b.ap(True)
    if addr is None:
        return            # no access point on this board (the sim without a setup port)
    try:
        app.portal = Portal(app, addr, why)
    except Exception as e:  # noqa: BLE001 -- no page is bad; no button would be worse
        app.log("setup mode: no page: %s" % e)
        app.b.ap(False)


def _esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def form(body):
    """A urlencoded body as a dict of str ("+" a space, %XY a byte, UTF-8)."""
    d = {}
    for part in body.split(b"&"):
        k, _, v = part.replace(b"+", b" ").partition(b"=")
        out = bytearray()
        i = 0
        while i < len(v):
            if v[i] == 37 and i + 2 < len(v):       # "%"
                try:
                    out.append(int(v[i + 1:i + 3], 16))
                    i += 3
                    continue
                except ValueError:
                    pass
            out.append(v[i])
            i += 1
        try:
            if k:
                d[k.decode()] = bytes(out).decode()
        except UnicodeError:
            pass
    return d


class Portal:
    def __init__(self, app, addr, why):
        self.app = app
        self.until = app.clk.ms() + _BY_HAND_MS if why == "button" else None
        self.clients = []       # [socket, bytes received, [bytes to send], last activity]
        self.test = None        # the network under test: its ssid
        self.last = ""          # the network tested last
        self.said = ""          # the last test's outcome (setup.html's s-<state>)
        self.saved = False
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(socket.getaddrinfo(addr[0], addr[1])[0][-1])
        s.listen(2)
        s.setblocking(False)
        self.srv = s
        app.poller.register(s, 1)       # POLLIN: a new connection wakes the loop
        self.p = select.poll()          # ... and tells tick() someone is waiting
        self.p.register(s, 1)
        app.emit("setup", state="on", why=why, port=addr[1])

    def busy(self):
        return self.test is not None or any(c[2] for c in self.clients)

    def close(self, why):
        """Setup mode over: the page, the access point and this module go."""
        a = self.app
        for c in list(self.clients):
            self._drop(c)
        a.poller.unregister(self.srv)
        self.srv.close()
        a.portal = None
        a.b.ap(False)
        a.emit("setup", state="off", why=why)
        sys.modules.pop("portal", None)

    def _drop(self, c):
        self.app.poller.unregister(c[0])
        c[0].close()
        self.clients.remove(c)

    def tick(self, now):
        if self.test is not None:
            r = self.app.b.wifi_result()
            if r is not None:
                self.said = r
                self.app.emit("setup", state="tested", ssid=self.test, result=r)
                self.test = None
        if len(self.clients) >= _CLIENTS and self.p.poll(0):
            # Someone waits while every slot is taken: a browser's spare connections that
            # sent nothing give way (oldest first) rather than hold the page for _IDLE_MS.
            for c in self.clients:
                if not c[1] and not c[2]:
                    self._drop(c)
                    break
        if len(self.clients) < _CLIENTS:
            try:
                c = self.srv.accept()[0]
                c.setblocking(False)
                self.app.poller.register(c, 1)
                self.clients.append([c, b"", b"", now])
            except OSError:
                pass            # nobody waiting (EAGAIN)
        for c in list(self.clients):
            try:
                if c[2]:
                    out = c[2]
                    out[0] = out[0][c[0].send(out[0]):]
                    if not out[0]:
                        out.pop(0)
                    if not out:
                        self._drop(c)
                    continue
                d = c[0].recv(512)
                if not d:
                    self._drop(c)
                    continue
                c[1] += d
                c[3] = now
            except OSError:
                pass            # EAGAIN; a dead peer ends in the idle check
            try:
                i = c[1].find(b"\r\n\r\n")
                n = 0
                for ln in c[1][:max(i, 0)].split(b"\r\n"):
                    if ln.lower().startswith(b"content-length:"):
                        n = int(ln[15:].strip() or b"0")
                if now - c[3] > _IDLE_MS or len(c[1]) > _REQ_MAX or n > _REQ_MAX:
                    raise ValueError("idle or too long")
                if i >= 0 and len(c[1]) >= i + 4 + n:
                    c[2] = self._answer(c[1][:i].split(b" "), c[1][i + 4:i + 4 + n])
            except Exception as e:  # noqa: BLE001 -- a bad request costs its connection only
                self._drop(c)
                if not isinstance(e, ValueError):
                    self.app.log("setup page: %s" % e)
        if self.saved and not self.clients:
            self.close("saved")
        elif self.until is not None and now >= self.until and not self.clients:
            self.close("timeout")

    def _answer(self, req, body):
        path = req[1] if len(req) > 1 else b"/"
        if path != b"/":
            # Phones probe a fixed address to find a captive portal: send them to the page.
            return [(_HEAD % ("302 Found", "Location: /\r\n")).encode()]
        if req[0] != b"POST":
            return self._page(self.said if self.test is None else "testing", self.last)
        f = form(body)
        ssid = f.get("ssid", "").strip()
        psk = f.get("psk", "")
        if not 0 < len(ssid.encode()) <= 32:
            return self._page("bad_ssid", ssid)
        if psk and not 8 <= len(psk) <= 63:       # WPA2's passphrase, or an open network
            return self._page("bad_psk", ssid)
        if f.get("act") != "save":
            self.test = self.last = ssid
            self.app.b.wifi_try(ssid, psk)
            self.app.emit("setup", state="testing", ssid=ssid)
            return self._page("testing", ssid)
        return self._page("saved" if self._save(ssid, psk) else "save_failed", ssid)

    def _save(self, ssid, psk):
        import json
        a = self.app
        p = a.b.flash + "/config.json"
        try:
            with open(p) as fh:
                c = json.load(fh)
            # The new network first, the others kept (a router may come back later).
            nets = [{"ssid": ssid, "psk": psk}] + [x for x in c.get("wifi") or [] if x.get("ssid") != ssid]
            c["wifi"] = nets[:5]
            with open(p + ".tmp", "w") as fh:
                fh.write(json.dumps(c))
            import os
            try:
                os.rename(p + ".tmp", p)     # config.write_atomic's way, without its heap
            except OSError:
                os.remove(p)
                os.rename(p + ".tmp", p)
        except Exception as e:  # noqa: BLE001
            a.log("setup: config.json not saved: %s" % e)
            return False
        a.cfg["wifi"] = c["wifi"]
        a.b.set_wifi(c["wifi"])
        self.saved = True
        a.emit("setup", state="saved", ssid=ssid, networks=len(c["wifi"]))
        return True

    def _page(self, state, ssid):
        a = self.app
        net = a.b.net_up()
        rssi = a.b.rssi()
        subs = (("$REFRESH", "<meta http-equiv=refresh content=1>" if state == "testing" else ""),
                ("$STATE", state), ("$DEV", a.dev),
                ("$WIFI", ("tersambung (%s dBm)" % rssi if rssi is not None else "tersambung")
                 if net else "tidak tersambung"),
                ("$SERVER", "tersambung" if a.was_up else "tidak tersambung"),
                ("$TESTED", _esc(self.last)), ("$SSID", _esc(ssid)))
        out = [(_HEAD % ("200 OK", "")).encode()]
        with open(__file__.rsplit("/", 1)[0] + "/setup.html" if "/" in __file__ else "setup.html") as f:
            for ln in f:
                if "$" in ln:
                    for k, v in subs:
                        ln = ln.replace(k, v)
                out.append(ln.encode())
        return out
