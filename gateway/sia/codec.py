"""SIA DC-09 messages: framing, CRC, AES-CBC and the receiver's replies (no I/O).

A message on the wire is `LF crc length "id" seq [Rrcvr] Lline #acct [data] CR`: crc is
CRC-16/ARC of everything from the first quote to before CR, length the same span's size
(both 4 upper-case hex digits). Encrypted (`"*SIA-DCS"`), everything after `[` is AES-CBC
with a zero IV as upper-case hex, its plain text padded at the front and separated from the
data by `|`; the standard then requires the `_HH:MM:SS,MM-DD-YYYY` UTC timestamp, which
the receiver checks against its own clock (a replay outside its window is refused).
"""
from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from Crypto.Cipher import AES

ACCOUNT_RE = re.compile(r"[0-9A-F]{3,16}")
PREFIX_RE = re.compile(r"[0-9A-F]{1,6}")
# Text carried in extended data: printable ASCII without the brackets and bar that frame it.
_UNSAFE = re.compile(r"[^ -Z\\^-{}~]")
_PAD_ALPHABET = "0123456789ABCDEF"
_REPLY_RE = re.compile(r'"(?P<star>\*?)(?P<kind>ACK|NAK|DUH|RSP)"(?P<seq>\d{4})?')
_TIMESTAMP_RE = re.compile(r"_(\d{2}:\d{2}:\d{2},\d{2}-\d{2}-\d{4})")
TIMESTAMP_FORMAT = "%H:%M:%S,%m-%d-%Y"


class SiaError(ValueError):
    """A reply that is not a DC-09 reply (bad framing, CRC or length)."""


def crc16(data: bytes) -> int:
    """CRC-16/ARC (polynomial 0x8005 reflected, initial 0), the standard's message CRC."""
    crc = 0
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def check_key(key: str) -> bytes:
    """The AES key of a receiver's key setting: 16, 24 or 32 hex characters, taken as their
    ASCII bytes (AES-128/192/256), the way pysiaalarm and Home Assistant's SIA setup read it."""
    if len(key) not in (16, 24, 32) or not re.fullmatch(r"[0-9A-Fa-f]+", key):
        raise ValueError("key must be 16, 24 or 32 hex characters")
    return key.encode("ascii")


def timestamp(at: datetime) -> str:
    return "_" + at.astimezone(UTC).strftime(TIMESTAMP_FORMAT)


def safe_text(text: str, limit: int) -> str:
    """Text for an extended-data field: nothing that could end or open a field."""
    return _UNSAFE.sub("?", text)[:limit]


def location(lat6: int, lon6: int) -> str:
    """`[X…][Y…]` extended data: hemisphere letter and decimal degrees (micro-degrees in)."""
    lon = f"{'W' if lon6 < 0 else 'E'}{abs(lon6) // 1_000_000}.{abs(lon6) % 1_000_000:06d}"
    lat = f"{'S' if lat6 < 0 else 'N'}{abs(lat6) // 1_000_000}.{abs(lat6) % 1_000_000:06d}"
    return f"[X{lon}][Y{lat}]"


def _cipher(key: bytes):  # type: ignore[no-untyped-def]
    return AES.new(key, AES.MODE_CBC, bytes(16))


def encrypt(plain: str, key: bytes) -> str:
    """Pad at the front to whole blocks (at least one pad character, then `|`), encrypt."""
    body = "|" + plain
    pad = 16 - len(body) % 16 or 16
    padded = "".join(secrets.choice(_PAD_ALPHABET) for _ in range(pad)) + body
    return _cipher(key).encrypt(padded.encode("ascii")).hex().upper()


def decrypt(hex_text: str, key: bytes) -> str:
    plain = _cipher(key).decrypt(bytes.fromhex(hex_text)).decode("ascii", "replace")
    return plain.split("|", 1)[1] if "|" in plain else plain


def frame(body: str) -> bytes:
    raw = body.encode("ascii")
    return b"\n" + f"{crc16(raw):04X}{len(raw):04X}".encode() + raw + b"\r"


def header(token: str, seq: int, account: str, *, receiver: str, line: str, encrypted: bool) -> str:
    star = "*" if encrypted else ""
    rcvr = f"R{receiver}" if receiver else ""
    return f'"{star}{token}"{seq:04d}{rcvr}L{line}#{account}['


@dataclass(frozen=True)
class Message:
    """One message to send: its token (SIA-DCS or NULL), sequence and account, and the data
    that follows `[` (event block, extended data) before the timestamp."""
    token: str
    seq: int
    account: str
    data: str

    def encode(self, *, receiver: str, line: str, key: bytes | None, at: datetime) -> bytes:
        plain = self.data + timestamp(at)
        head = header(self.token, self.seq, self.account, receiver=receiver, line=line, encrypted=key is not None)
        return frame(head + (encrypt(plain, key) if key is not None else plain))


def event_data(account: str, code: str, *, area: int = 1, extended: str = "") -> str:
    """The SIA-DCS data block: `#acct|Nri<area>/<code>]` and extended data."""
    return f"#{account}|Nri{area}/{code}]{extended}"


NULL_DATA = "]"


@dataclass(frozen=True)
class Reply:
    kind: str  # ACK, NAK, DUH or RSP
    seq: int | None
    encrypted: bool
    # A NAK carries the receiver's time, so a sender with a wrong clock can correct it.
    receiver_time: datetime | None = None


def parse_reply(raw: bytes, key: bytes | None = None) -> Reply:
    """The receiver's reply, framed (`LF crc len "ACK"… CR`) or a bare `"ACK"`."""
    text = raw.strip(b"\r\n").decode("ascii", "replace")
    if text.startswith('"'):
        body = text
    else:
        if len(text) < 8:
            raise SiaError(f"reply too short: {text!r}")
        crc, length, body = text[:4], text[4:8], text[8:]
        try:
            sent_crc, sent_len = int(crc, 16), int(length, 16)
        except ValueError:
            raise SiaError(f"reply has no CRC and length: {text[:16]!r}") from None
        if sent_crc != crc16(body.encode("ascii", "replace")) or sent_len != len(body):
            raise SiaError("reply CRC or length mismatch")
    match = _REPLY_RE.match(body)
    if not match:
        raise SiaError(f"not an ACK, NAK, DUH or RSP reply: {body[:32]!r}")
    rest = body[match.end():]
    if match["star"] and key is not None and "[" in rest:
        try:
            rest = decrypt(rest.split("[", 1)[1], key)
        except ValueError:
            rest = ""
    when = None
    stamp = _TIMESTAMP_RE.search(rest)
    if stamp:
        try:
            when = datetime.strptime(stamp.group(1), TIMESTAMP_FORMAT).replace(tzinfo=UTC)
        except ValueError:
            when = None
    return Reply(match["kind"], int(match["seq"]) if match["seq"] else None, bool(match["star"]), when)


def reply_complete(buf: bytes) -> bool:
    """Whether `buf` holds a whole reply: framed up to CR, or a bare quoted token."""
    return b"\r" in buf or re.fullmatch(rb'\s*"\*?[A-Z]{3}"\s*', buf) is not None
