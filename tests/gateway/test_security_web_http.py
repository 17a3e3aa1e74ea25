"""Attacks on the gateway's HTTP edge by anyone who can reach it (docs/security.md, rows 6, 7 and 13),
on the real stack: the gateway as a process under uvicorn, as `panic-gateway run` starts
it, with the project's mosquitto and SQLite. Memory is read from the server process itself
(/proc: peak and current resident size), never timed."""
from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from gateway.console.security import MAX_FIELD, LoginLimiter
from simulator.stack import BIN, Stack
from tests.gateway.test_gateway_support import custom_stack

PASSWORD = "kata-sandi-uji-1"
MB = 1024 * 1024


def add_user(stack: Stack, name: str, role: str = "operator") -> None:
    subprocess.run([str(BIN / "panic-gateway"), "user", "add", name, "--role", role, "--password-stdin"],
                   input=PASSWORD + "\n", text=True, check=True, capture_output=True,
                   env=dict(os.environ, PANIC_CONFIG=str(stack.config)))


def started(tmp: Path, *, api: dict | None = None, console: dict | None = None) -> Stack:
    s = custom_stack(tmp / "state", start=False)
    if api:
        s.set_config("api", **api)
    if console:
        s.set_config("console", **console)
    s.start_broker()
    s.start_gateway()
    return s


@pytest.fixture
def stack(tmp_path):
    s = started(tmp_path)
    yield s
    s.down()


@pytest.fixture
def proxied(tmp_path):
    """Behind a reverse proxy on loopback that the config names; two failures per name and address."""
    s = started(tmp_path, api={"trusted_proxies": ["127.0.0.1"]}, console={"login_max_failures": 2})
    yield s
    s.down()


def try_login(stack: Stack, name: str, password: str, headers: dict | None = None) -> httpx.Response:
    with httpx.Client(base_url=stack.api, follow_redirects=False, timeout=30, headers=headers or {}) as c:
        m = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
        assert m
        return c.post("/console/login", data={"csrf": m.group(1), "username": name, "password": password})


def memory(stack: Stack) -> dict[str, int]:
    """The gateway process's resident memory now and at its peak, in bytes."""
    text = Path(f"/proc/{stack.gateways[-1].pid}/status").read_text()
    return {k: int(re.search(rf"^{k}:\s+(\d+) kB", text, re.M).group(1)) * 1024  # type: ignore[union-attr]
            for k in ("VmRSS", "VmHWM")}


# --- row 6: the login limit is not chosen by the attacker ------------------------------------------
def test_a_spoofed_forwarded_for_does_not_escape_the_login_limit(stack):
    add_user(stack, "op")
    codes = [try_login(stack, "op", "wrong-password", {"X-Forwarded-For": f"203.0.113.{i}"}).status_code
             for i in range(12)]
    # Five failures from this (the real) address, then refused before any password check.
    assert codes == [401] * 5 + [429] * 7
    r = try_login(stack, "op", PASSWORD, {"X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0


def test_behind_a_trusted_proxy_limits_hold_per_name_across_addresses_and_per_address(proxied):
    add_user(proxied, "op")
    add_user(proxied, "colleague")
    # A spray against one name from ever new addresses: stopped by the per-name limit (10 x 2).
    codes = [try_login(proxied, "op", "wrong", {"X-Forwarded-For": f"203.0.113.{i}"}).status_code
             for i in range(24)]
    assert codes == [401] * 20 + [429] * 4
    # One address guessing a colleague's password is stopped (2 per name and address, 4 x 2 per
    # address) long before it could lock the colleague out (10 x 2 per name).
    codes = [try_login(proxied, "colleague", "wrong", {"X-Forwarded-For": "198.51.100.66"}).status_code
             for _ in range(4)]
    codes += [try_login(proxied, f"guess{i}", "wrong", {"X-Forwarded-For": "198.51.100.66"}).status_code
              for i in range(8)]
    assert codes == [401] * 2 + [429] * 2 + [401] * 6 + [429] * 2
    r = try_login(proxied, "colleague", PASSWORD, {"X-Forwarded-For": "198.51.100.7"})
    assert r.status_code == 303 and "pbh_session=" in r.headers["set-cookie"]


def test_the_limiter_is_bounded_and_never_forgets_a_limited_name_wholesale():
    limiter = LoginLimiter(5, 300)
    for i in range(50):
        limiter.failed(f"203.0.113.{i}", "op")
    assert limiter.retry_after("198.51.100.1", "op") > 0
    # A spray of new names from ever new addresses, far past the bound on memory.
    for i in range(30_000):
        limiter.failed(f"10.{i // 250}.{i % 250}.1", f"user{i}")
    assert len(limiter) <= 50_000
    assert limiter.retry_after("198.51.100.1", "op") > 0, "the spray reset the limit on 'op'"


# --- row 7: unauthenticated memory ------------------------------------------------------------------
def _big_body(total: int, chunk: int = MB):
    block = b"a=" + b"x" * (chunk - 2)
    for _ in range(total // chunk):
        yield block


BOUNDARY = "pbh-test-boundary"
PART_VALUE = 1_000_000  # under the parser's own 1 MiB part limit, so each part is kept


def _part(i: int) -> bytes:
    return (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f{i}"\r\n\r\n'.encode()
            + b"x" * PART_VALUE + b"\r\n")


def _many_parts(n: int):
    for i in range(n):
        yield _part(i)
    yield f"--{BOUNDARY}--\r\n".encode()


def test_a_200mb_form_to_login_costs_no_memory(stack):
    before = memory(stack)
    parts = 190
    multipart_len = sum(len(_part(i)) for i in range(parts)) + len(f"--{BOUNDARY}--\r\n")
    attempts = [  # declared, streamed (chunked), and many parts each under the parser's own limit
        (_big_body(200 * MB), {"Content-Length": str(200 * MB), "Content-Type": "application/x-www-form-urlencoded"}),
        (_big_body(200 * MB), {"Content-Type": "application/x-www-form-urlencoded"}),
        (_many_parts(parts), {"Content-Length": str(multipart_len),
                              "Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}),
    ]
    codes = []
    for body, headers in attempts:
        try:
            r = httpx.post(f"{stack.api}/console/login", content=body, headers=headers, timeout=60)
            codes.append(r.status_code)
        except (httpx.WriteError, httpx.RemoteProtocolError, httpx.ReadError):
            pass  # the server answered 413 and closed while we were still sending
    after = memory(stack)
    assert after["VmHWM"] - before["VmHWM"] < 20 * MB, (before, after)
    assert set(codes) <= {413}
    assert try_login(stack, "nobody", "x").status_code == 401  # still serving


def test_an_over_long_field_is_refused_413_like_an_oversize_body(stack):
    # Under the body cap, over the form parser's field cap: the parser's refusal, not a 400.
    field = b"username=" + b"x" * (MAX_FIELD + 1)
    for body in (field, iter([field])):  # declared length, then chunked
        r = httpx.post(f"{stack.api}/console/login", content=body, timeout=30,
                       headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert r.status_code == 413, r.text


def test_32_parallel_logins_do_not_run_32_argon2_at_once(stack):
    assert try_login(stack, "warm-up", "x").status_code == 401  # one argon2 check's memory, once
    # 32 login forms fetched first, then posted together: every one reaches the password check.
    forms = []
    for _ in range(32):
        c = httpx.Client(base_url=stack.api, follow_redirects=False, timeout=120)
        m = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
        assert m
        forms.append((c, m.group(1)))
    before = memory(stack)
    codes: list[int] = []
    lock = threading.Lock()
    go = threading.Barrier(len(forms))

    def one(i: int) -> None:
        c, csrf = forms[i]
        go.wait()
        code = c.post("/console/login", data={"csrf": csrf, "username": f"someone-{i}", "password": "wrong"}).status_code
        with lock:
            codes.append(code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(forms))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    for c, _ in forms:
        c.close()
    assert codes == [401] * 32
    after = memory(stack)
    # 64 MiB per argon2id check: two at a time fit well within 200 MB; 32 at once need 2 GB.
    assert after["VmHWM"] - before["VmHWM"] < 200 * MB, (before, after)


def test_form_parts_are_capped_before_parsing(stack):
    add_user(stack, "op")
    with httpx.Client(base_url=stack.api, follow_redirects=False, timeout=30) as c:
        m = re.search(r'name="csrf" value="([^"]+)"', c.get("/console/login").text)
        assert m
        many = {f"f{i}": "x" for i in range(2000)}
        r = c.post("/console/login", data={"csrf": m.group(1), "username": "op", "password": PASSWORD, **many})
        assert r.status_code in (400, 413)
        files = {f"file{i}": (f"f{i}.txt", b"x" * 10) for i in range(5)}
        r = c.post("/console/login", data={"csrf": m.group(1)}, files=files)
        assert r.status_code == 400


# --- row 13: the session cookie never travels in clear once HTTPS is in front ---------------------------
def https_login(stack: Stack, name: str) -> httpx.Response:
    """As a browser behind the TLS proxy does: httpx keeps Secure cookies from plain http,
    so the login form's cookie goes back by hand."""
    proto = {"X-Forwarded-Proto": "https"}
    with httpx.Client(base_url=stack.api, follow_redirects=False, timeout=30) as c:
        page = c.get("/console/login", headers=proto)
        assert "secure" in page.headers["set-cookie"].lower()
        m = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert m
        return c.post("/console/login", data={"csrf": m.group(1), "username": name, "password": PASSWORD},
                      headers={**proto, "Cookie": f"pbh_login={m.group(1)}"})


def test_session_cookie_secure_and_hsts_behind_an_https_proxy(proxied):
    add_user(proxied, "op")
    r = https_login(proxied, "op")
    assert r.status_code == 303
    assert "secure" in r.headers["set-cookie"].lower()
    assert r.headers["strict-transport-security"].startswith("max-age=")
    # Plain HTTP on loopback (no proxy in front): no Secure, or the console could not log in.
    r = try_login(proxied, "op", PASSWORD)
    assert r.status_code == 303 and "secure" not in r.headers["set-cookie"].lower()
    assert "strict-transport-security" not in r.headers


def test_an_untrusted_client_cannot_claim_https(stack):
    add_user(stack, "op")
    r = try_login(stack, "op", PASSWORD, {"X-Forwarded-Proto": "https"})
    assert r.status_code == 303 and "strict-transport-security" not in r.headers


def test_secure_cookie_setting_forces_secure_and_hsts(tmp_path):
    s = started(tmp_path, console={"secure_cookie": True})
    try:
        add_user(s, "op")
        with httpx.Client(base_url=s.api, timeout=10) as c:
            page = c.get("/console/login")
            assert "secure" in page.headers["set-cookie"].lower()
            assert page.headers["strict-transport-security"].startswith("max-age=")
            assert c.get("/healthz").headers["strict-transport-security"].startswith("max-age=")
    finally:
        s.down()
