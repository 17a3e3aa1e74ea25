"""The SMS daemon's side: hand each received message to the running gateway, send its answer.

gammu-smsd runs `panic-gateway sms receive <inbox file>...` for every message it stores
(RunOnReceive). Each file goes to `POST /api/sms/inbound` with the relay token; once the
gateway has answered (taken or refused) the file moves to `done/` and a reply, if any, goes
into the daemon's outbox through `gammu-smsd-inject`. When the gateway cannot be reached the
file stays in the inbox and the hook exits non-zero; `sms replay-inbox` hands over what is
there later (the alert id makes a second hand-over harmless).
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from .gammu import inbox_files, inbox_number, inbox_text
from .redact import masked
from .settings import SmsSettings

log = logging.getLogger("panic.sms.hook")
TIMEOUT_S = 10.0
INJECT = "gammu-smsd-inject"


class GatewayDown(Exception):
    """The gateway did not take the message: keep it for replay-inbox."""


@dataclass(frozen=True, kw_only=True)
class Relay:
    url: str    # the gateway's API, e.g. http://127.0.0.1:8080
    token: str  # the sms_relay token
    settings: SmsSettings

    def submit(self, number: str, text: str) -> dict:
        # urllib, not httpx: smsd starts the hook once per message and waits for it, so its
        # start-up time is the path's throughput in a burst (docs/gateway.md "SMS").
        req = urllib.request.Request(f"{self.url}/api/sms/inbound", method="POST",
                                     data=json.dumps({"from": number, "text": text}).encode(),
                                     headers={"Authorization": f"Bearer {self.token}",
                                              "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT_S) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as exc:
            if exc.code == 400:
                # The gateway read the request and will never take it (not a text it can read).
                return {"refused": "format", "reply": None}
            raise GatewayDown(f"gateway answered {exc.code}") from None
        except (OSError, ValueError) as exc:
            raise GatewayDown(f"gateway unreachable: {type(exc).__name__}") from None

    def inject(self, number: str, text: str) -> bool:
        """Queue a reply in the daemon's outbox (the daemon sends it)."""
        try:
            done = subprocess.run([INJECT, "-c", str(self.settings.smsdrc), "TEXT", number, "-text", text],
                                  capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.error("reply to %s not queued: %s", masked(number), exc)
            return False
        if done.returncode != 0:
            log.error("reply to %s not queued: %s exited %d", masked(number), INJECT, done.returncode)
            return False
        return True

    def hand_over(self, path: Path) -> dict:
        """One inbox file to the gateway; on success it moves to done/. GatewayDown otherwise."""
        number = inbox_number(path.name)
        if number is None:
            raise ValueError(f"{path.name}: not an inbox file of gammu-smsd")
        verdict = self.submit(number, inbox_text(path))
        if verdict.get("reply"):
            self.inject(number, verdict["reply"])
        _keep(path, self.settings.folder("done"))
        return verdict


def _keep(path: Path, folder: Path) -> None:
    """Move a handed-over file into `folder` under a name no other file there has: smsd names
    two messages of one number in one second alike once the first has left the inbox."""
    for n in range(10_000):
        target = folder / (path.name if n == 0 else f"{path.stem}.{n}{path.suffix}")
        try:
            os.link(path, target)
        except FileExistsError:
            continue
        except FileNotFoundError:
            return  # handed over at the same time by replay-inbox
        path.unlink(missing_ok=True)
        return
    raise OSError(f"{folder}: no free name for {path.name}")


def receive(relay: Relay, names: list[str]) -> int:
    """RunOnReceive: the files smsd just stored. 0 when every one was handed over."""
    status = 0
    for name in names:
        path = relay.settings.folder("inbox") / Path(name).name
        if not path.exists():
            continue  # already handed over
        try:
            verdict = relay.hand_over(path)
        except GatewayDown as exc:
            log.error("SMS %s kept in the inbox: %s (`panic-gateway sms replay-inbox` later)", path.name, exc)
            status = 1
        except ValueError as exc:
            log.error("%s", exc)
            status = 1
        else:
            log.info("SMS %s handed over: %s", path.name, verdict.get("refused") or verdict.get("stage"))
    return status


def replay_inbox(relay: Relay) -> tuple[int, int]:
    """Every message still in the inbox, oldest first; stops at the first the gateway does not
    take. (handed over, left)."""
    files = inbox_files(relay.settings)
    for n, path in enumerate(files):
        try:
            relay.hand_over(path)
        except GatewayDown as exc:
            log.error("replay stopped: %s; %d message(s) left in the inbox", exc, len(files) - n)
            return n, len(files) - n
    return len(files), 0
