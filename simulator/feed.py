"""How the simulated police learn about incidents: the gateway's dispatch webhook (the
way a real dispatch system integrates), or polling the REST API when the simulator is
pointed at a stack whose webhooks it cannot configure. Both deliver the same
(event, incident) pairs, each at most once."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

log = logging.getLogger("panic-sim")
Handler = Callable[[str, dict], None]


class WebhookFeed:
    """An HTTP receiver for the gateway's webhook; checks the signature when it knows the
    secret, deduplicates by Idempotency-Key (delivery is at least once)."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.secret: str | None = None
        self.seen: set[str] = set()
        self.bad_signatures = 0
        self.received = 0
        self._lock = threading.Lock()
        feed = self

        class H(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(204)
                self.end_headers()
                feed._post(body, self.headers.get("Idempotency-Key", ""), self.headers.get("X-Panic-Signature", ""))

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_port}/dispatch"
        threading.Thread(target=self.server.serve_forever, name="webhook", daemon=True).start()

    def _post(self, body: bytes, key: str, sig: str) -> None:
        if self.secret:
            want = "sha256=" + hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
            if not hmac.compare_digest(want, sig):
                self.bad_signatures += 1
                return
        with self._lock:
            self.received += 1
            if key and key in self.seen:
                return
            self.seen.add(key)
        try:
            msg = json.loads(body)
            self.handler(msg["event"], msg["incident"])
        except Exception:
            log.exception("webhook event not handled")

    def stop(self) -> None:
        self.server.shutdown()


class PollFeed:
    """Polls GET /api/incidents and turns state changes into the webhook's events."""

    def __init__(self, api: str, token: str, handler: Handler, since_ms: int, interval: float = 0.25) -> None:
        self.api, self.handler, self.since, self.interval = api, handler, since_ms, interval
        self.client = httpx.Client(headers={"Authorization": f"Bearer {token}"}, timeout=10)
        self.state: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="poll-feed", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                r = self.client.get(f"{self.api}/api/incidents", params={"since": self.since, "limit": 5000})
                r.raise_for_status()
            except httpx.HTTPError as exc:
                log.warning("poll: %s", exc)
                continue
            for inc in reversed(r.json()["incidents"]):   # oldest first
                old = self.state.get(inc["id"])
                if old == inc["state"]:
                    continue
                self.state[inc["id"]] = inc["state"]
                if old is None:
                    self.handler("new", inc)
                if inc["state"] != "new":
                    # Intermediate states between two polls are skipped; the people only
                    # act on new, dispatched and cancelled, which polling cannot miss for long.
                    self.handler(inc["state"], inc)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
