"""Fixtures on real parts: the project's mosquitto and gateway as processes, a real
HTTP server as the dispatch webhook, and the firmware under `micropython`."""
from __future__ import annotations

import json
import os
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from simulator.firmware import DEFAULT_HEAP, FirmwareDevice
from simulator.stack import Stack

KAUMAN = (-7982600, 112627000)


class Webhook:
    """A dispatch system on loopback that records every POST; can fail for a while."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.fail_next = 0
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if hook.fail_next > 0:
                    hook.fail_next -= 1
                    self.send_response(503)
                    self.end_headers()
                    return
                try:
                    parsed = json.loads(body)
                except ValueError:
                    parsed = None  # CAP is XML
                hook.posts.append({"headers": dict(self.headers), "raw": body, "json": parsed})
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/dispatch"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def wait(self, n: int, timeout: float = 10.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while len(self.posts) < n and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.posts


@pytest.fixture
def webhook():
    hook = Webhook()
    yield hook
    hook.server.shutdown()


def secrets_of(stack: Stack) -> set[str]:
    """Every secret the stack handed out: none may ever appear in a log line."""
    from gateway import config
    from gateway.store import open_store
    cfg = config.load(stack.config)
    found = {cfg.mqtt.password, *(w.secret for w in cfg.webhooks), *stack._tokens.values()}
    # MQTT passwords are kept only as hashes: the plain ones are those the stack was handed.
    found |= {c[k] for c in stack.issued for k in ("secret", "mqtt_password")}
    store = open_store(cfg)
    try:
        for d in store.list_devices():
            found |= {d.secret, d.mqtt_password}
    finally:
        store.close()
    return {s for s in found if s}


def assert_no_secrets_in_logs(stack: Stack, extra_dirs=()) -> None:
    secrets = secrets_of(stack)
    logs = [p for d in (stack.state, *extra_dirs) for p in Path(d).rglob("*.log")]
    for path in logs:
        text = path.read_text(errors="replace")
        for secret in secrets:
            assert secret not in text, f"a secret appears in {path}"


@pytest.fixture
def extra_webhook():
    """A second receiver, for a sink of its own (escalations, health, CAP)."""
    hook = Webhook()
    yield hook
    hook.server.shutdown()


@pytest.fixture
def stack(request, tmp_path, webhook):
    # @pytest.mark.gateway(key=value, ...): [gateway] settings for this test's stack.
    marker = request.node.get_closest_marker("gateway")
    s = Stack(tmp_path / "state", webhooks=[webhook.url], gateway=marker.kwargs if marker else None)
    s.up()
    s.webhook = webhook  # type: ignore[attr-defined]  # tests reach the receiver through the stack
    yield s
    s.down()
    assert_no_secrets_in_logs(s, extra_dirs=[tmp_path])


@pytest.fixture
def raw_device(stack):
    """A registered button spoken for by tests/devices.RawDevice (exact bytes, hostile ones too)."""
    from tests.devices import RawDevice
    creds = stack.add_device("klj-kauman-rw05-rt03", *KAUMAN, kelurahan="Kauman", rw=5, rt=3)
    d = RawDevice(creds, stack.broker_port)
    yield d
    d.close()


@pytest.fixture
def make_device(stack, tmp_path):
    """Register a button with the gateway's CLI and run the real firmware for it."""
    started: list[FirmwareDevice] = []

    def make(dev: str = "klj-kauman-rw05-rt03", lat_lon=KAUMAN, start: bool = True, heap: str | None = None,
             **config) -> FirmwareDevice:
        creds = stack.add_device(dev, *lat_lon, kelurahan="Kauman", rw=5, rt=3)
        cfg = dict(creds["config"], **config)
        fw = FirmwareDevice(tmp_path / "flash" / dev, cfg, heap=heap or DEFAULT_HEAP)
        fw.creds = creds  # type: ignore[attr-defined]  # tests read the credentials off the device
        started.append(fw)
        return fw.start() if start else fw

    yield make
    for fw in started:
        fw.stop()


def wait_until(predicate, timeout: float = 10.0, interval: float = 0.02, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise TimeoutError(f"{what} not met within {timeout}s")


# Debian's Chromium, as the console, setup-page and screenshot tests drive it through Playwright.
CHROMIUM = os.environ.get("PANIC_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="module")
def browser():
    """One Chromium per test module."""
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}: apt-get install chromium (make setup does)")
    playwright_api = pytest.importorskip("playwright.sync_api")
    with playwright_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()
