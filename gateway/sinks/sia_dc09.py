"""An alarm-receiving centre (ARC) over SIA DC-09: each incident event as a SIA-DCS message
on TCP, optionally AES-encrypted, and NULL supervision messages at a set interval.

SIA-DCS rather than ADM-CID: its event codes are letters an ARC operator reads without a
table (PA panic, PR panic restoral, OC cancel, RX manual test), and its data block takes
several extended-data fields (`[X…][Y…]` location, `[H…]` time of the press, `[S…]` the
button), where ADM-CID receivers (pysiaalarm among them) take one.

Each message goes on a connection of its own, and the forwarder's queue holds it until the
ARC's ACK: a NAK (a wrong key, a clock outside the receiver's window), no reply or a broken
reply is a transient failure, retried with backoff; a DUH (the ARC cannot take the code) is
a permanent one, dead-lettered at once, except on an encrypted link, where a DUH is also
what an ARC holding another key may answer. Replies are counted by kind in `panic_sia_replies`.
"""
from __future__ import annotations

import logging
import socket
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from .. import metrics
from ..config import ConfigError
from ..domain.dispatch import sector_of
from ..sia import codec
from .base import DeliveryError, Forward, SinkContext, SinkEntry

log = logging.getLogger("panic.sia")

ACCOUNT_BY = ("default", "device", "sector")
# What an ARC is told: the press (or test), its cancel and its end. Other incident stages
# are police work the ARC does not track.
DEFAULT_EVENTS = frozenset({"new", "cancelled", "resolved"})
CODES = {("new", "panic"): "PA", ("new", "test"): "RX", ("cancelled", "panic"): "OC",
         ("resolved", "panic"): "PR"}
MAX_REPLY = 1024


@dataclass
class Options:
    host: str
    port: int
    account: str  # for NULL messages and any event the mapping below does not place
    account_by: str = "default"  # default | device | sector
    accounts: dict[str, str] = field(default_factory=dict)  # device id or sector -> account
    key: str = field(default="", repr=False)  # AES key; empty: unencrypted
    receiver: str = ""  # the `R` receiver number (hex), left out when empty
    line: str = "0"  # the `L` line prefix (hex)
    area: int = 1  # the `ri` area (partition) of every event
    timeout_s: float = 10.0
    supervision_s: float = 0.0  # NULL message interval; 0: none

    def __post_init__(self) -> None:
        if not self.host:
            raise ValueError("host is required")
        if not 0 < self.port < 65536:
            raise ValueError("port must be 1-65535")
        if self.account_by not in ACCOUNT_BY:
            raise ValueError(f"account_by must be one of {', '.join(ACCOUNT_BY)}, not {self.account_by!r}")
        if not isinstance(self.accounts, dict) or not all(isinstance(k, str) for k in self.accounts):
            raise ValueError("accounts must be a table of device ids or sectors to accounts")
        for acct in (self.account, *self.accounts.values()):
            if not isinstance(acct, str) or not codec.ACCOUNT_RE.fullmatch(acct):
                raise ValueError(f"account {acct!r}: 3-16 upper-case hex digits")
        if self.key:
            codec.check_key(self.key)
        for name in ("receiver", "line"):
            value = getattr(self, name)
            if (value or name == "line") and not codec.PREFIX_RE.fullmatch(value):
                raise ValueError(f"{name} must be 1-6 upper-case hex digits")
        if not 0 <= self.area <= 999:
            raise ValueError("area must be 0-999")
        if self.timeout_s <= 0 or self.supervision_s < 0:
            raise ValueError("timeout_s must be positive and supervision_s not negative")


def sequence(idem_key: str) -> int:
    """1-9999, the same for every attempt at one event (the standard repeats a message's
    sequence number on retransmission) and across gateway restarts."""
    return zlib.crc32(idem_key.encode()) % 9999 + 1


def clock_note(reply: codec.Reply) -> str:
    """Why a NAK may have come: the receiver refuses timestamps outside its window, and its
    NAK carries its own time. Told, not acted on: a receiver set to local time instead of
    UTC would otherwise pull every later timestamp out of its window."""
    if reply.receiver_time is None:
        return ""
    offset = (reply.receiver_time - datetime.now(UTC)).total_seconds()
    # A few seconds is transit and rounding, not a wrong clock.
    return f"; the ARC's clock is {offset:+.0f} s from ours" if abs(offset) > 5 else ""


class SiaSink:
    def __init__(self, name: str, events: frozenset[str] | None, options: Options, *,
                 kecamatan_of: Callable[[str], str] | None = None) -> None:
        self.name = name
        # A new incident's event carries no device: its kecamatan comes from the registry.
        self.kecamatan_of = kecamatan_of
        self.events = events
        self.options = options
        self.key = codec.check_key(options.key) if options.key else None
        self._null_seq = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None

    # --- what to send -------------------------------------------------------------
    def account_for(self, incident: dict[str, Any]) -> str:
        o = self.options
        dev = str(incident.get("dev", ""))
        if o.account_by == "device":
            return o.accounts.get(dev, o.account)
        if o.account_by == "sector":
            device = incident.get("device")
            if isinstance(device, dict):
                kecamatan = str(device.get("kecamatan", ""))
            else:
                kecamatan = self.kecamatan_of(dev) if self.kecamatan_of else ""
            return o.accounts.get(sector_of(kecamatan), o.account)
        return o.account

    def message(self, item: Forward) -> codec.Message | None:
        """The event's message; None when the ARC is owed nothing (a test's end)."""
        event = item.event()
        incident = event.get("incident")
        if not isinstance(incident, dict):
            raise DeliveryError("not an incident event", permanent=True)
        code = CODES.get((str(event.get("event")), str(incident.get("kind"))))
        if code is None:
            if incident.get("kind") == "test":
                return None
            raise DeliveryError(f"no SIA code for {event.get('event')!r} of a {incident.get('kind')!r}",
                                permanent=True)
        extended = ""
        lat6, lon6 = incident.get("lat6"), incident.get("lon6")
        if isinstance(lat6, int) and isinstance(lon6, int):
            extended += codec.location(lat6, lon6)
        press_ms = incident.get("press_ms")
        if isinstance(press_ms, int):
            pressed = datetime.fromtimestamp(press_ms / 1000, UTC)
            extended += f"[H{pressed.strftime(codec.TIMESTAMP_FORMAT)}]"
        extended += f"[S{codec.safe_text(str(incident.get('dev', '')), 64)}]"
        extended += f"[I{codec.safe_text(str(incident.get('id', '')), 64)}]"
        account = self.account_for(incident)
        data = codec.event_data(account, code, area=self.options.area, extended=extended)
        return codec.Message("SIA-DCS", sequence(item.idem_key), account, data)

    # --- sending ------------------------------------------------------------------
    def send(self, message: codec.Message) -> codec.Reply:
        """Send one message on its own connection and return the ARC's reply."""
        o = self.options
        wire = message.encode(receiver=o.receiver, line=o.line, key=self.key, at=datetime.now(UTC))
        try:
            with socket.create_connection((o.host, o.port), timeout=o.timeout_s) as sock:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.sendall(wire)
                buf = b""
                while not codec.reply_complete(buf) and len(buf) < MAX_REPLY:
                    chunk = sock.recv(MAX_REPLY)
                    if not chunk:
                        break
                    buf += chunk
        except OSError as exc:
            metrics.sia_replies.labels(self.name, "none").inc()
            raise DeliveryError(f"ARC unreachable: {type(exc).__name__}: {exc}") from None
        try:
            reply = codec.parse_reply(buf, self.key)
        except codec.SiaError as exc:
            metrics.sia_replies.labels(self.name, "bad" if buf else "none").inc()
            raise DeliveryError(f"no valid reply from the ARC: {exc}") from None
        metrics.sia_replies.labels(self.name, reply.kind.lower()).inc()
        return reply

    def deliver(self, item: Forward) -> None:
        message = self.message(item)
        if message is not None:
            self.send_checked(message)

    def send_checked(self, message: codec.Message) -> None:
        """Send, and raise DeliveryError unless the ARC acknowledged this very message."""
        reply = self.send(message)
        if reply.kind == "DUH":
            if self.key:
                # An ARC holding another key decrypts our message into noise, which now and
                # then parses into a code it does not know: a DUH we cannot tell from an
                # unsupported code. Kept and retried (the forward deadline still ends it),
                # never dead-lettered on what may be a key to fix.
                raise DeliveryError("the ARC could not take this message (DUH): an unknown code, or another key")
            raise DeliveryError("the ARC cannot take this message (DUH)", permanent=True)
        if reply.kind == "NAK":
            raise DeliveryError("the ARC refused the message (NAK)" + clock_note(reply))
        if reply.seq is not None and reply.seq != message.seq:
            raise DeliveryError(f"the ARC acknowledged sequence {reply.seq}, not {message.seq}")

    # --- supervision ----------------------------------------------------------------
    def supervise_once(self) -> codec.Reply:
        """Send one NULL message (the link test an ARC expects at its supervision interval)."""
        with self._lock:
            self._null_seq = self._null_seq % 9999 + 1
            seq = self._null_seq
        return self.send(codec.Message("NULL", seq, self.options.account, codec.NULL_DATA))

    def start(self) -> None:
        if self.options.supervision_s <= 0 or self._supervisor is not None:
            return
        self._supervisor = threading.Thread(target=self._supervise, name=f"sia-null-{self.name}", daemon=True)
        self._supervisor.start()

    def close(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(timeout=self.options.timeout_s + 1)

    def _supervise(self) -> None:
        while not self._stop.wait(self.options.supervision_s):
            try:
                reply = self.supervise_once()
            except DeliveryError as exc:
                log.warning("ARC %s: supervision message failed: %s", self.name, exc)
                continue
            if reply.kind != "ACK":
                log.warning("ARC %s: supervision message answered %s", self.name, reply.kind)


def from_config(entry: SinkEntry, ctx: SinkContext) -> SiaSink:
    extra = sorted((entry.events or frozenset()) - {event for event, _ in CODES})
    if extra:
        raise ConfigError(f"[[sinks]] {entry.name}: a SIA DC-09 sink takes only new, cancelled and resolved, "
                          f"not {extra}")
    store = ctx.store

    def kecamatan_of(dev: str) -> str:
        found = store.get_device(dev) if store is not None else None
        return found.kecamatan if found is not None else ""

    sink = SiaSink(entry.name, entry.events, entry.options, kecamatan_of=kecamatan_of)
    sink.start()
    return sink



