"""Gammu's files: the smsd config, the files service's inbox names, smsbackup messages.

- inbox (inboxformat = unicode): `IN<YYYYMMDD>_<HHMMSS>_<serial>_<number>_<part>.txt`, the
  text as UTF-16BE after a BOM; RunOnReceive is given these names (relative to inboxpath).
- sent (outboxformat = detail): an smsbackup file per message (`OUTC..._<number>_sms0.smsbackup`),
  INI sections `[SMSBackupNNN]` with `Number = "<number>"` and `Text00 = <UCS-2 hex>`.
- the dummy phone (model dummy) reads an incoming SMS from `<device>/sms/1/<n>`, one
  smsbackup file with `PDU = Deliver`, and deletes it once smsd has stored it in the inbox.
"""
from __future__ import annotations

import re
import shlex
import string
import time
from pathlib import Path

from .settings import SmsSettings

TEMPLATES = Path(__file__).resolve().parents[2] / "deploy" / "gammu"
FOLDERS = ("inbox", "outbox", "sent", "error", "done")
_INBOX = re.compile(r"IN\d{8}_\d{6}_\d{2}_(?P<number>[^_/]{1,40})_(?P<part>\d{2})\.(?P<ext>txt|bin)")


def render(settings: SmsSettings, *, hook: str) -> str:
    """The smsdrc for these settings: the dummy phone, or a modem on settings.device."""
    template = (TEMPLATES / ("smsdrc-dummy" if settings.dummy else "smsdrc")).read_text()
    return string.Template(template).substitute(dir=str(settings.dir), device=settings.device,
                                                connection=settings.connection, pin=settings.pin, hook=hook)


def make_folders(settings: SmsSettings) -> None:
    for name in FOLDERS:
        settings.folder(name).mkdir(parents=True, exist_ok=True)
    if settings.dummy:
        for n in range(1, 6):
            (settings.folder("phone") / "sms" / str(n)).mkdir(parents=True, exist_ok=True)


def hook_command(python: Path, config: Path) -> str:
    """RunOnReceive: the hook's lean entry point (gateway/sms/__main__.py), under this Python."""
    return f"{shlex.quote(str(python))} -m gateway.sms receive --config {shlex.quote(str(config))}"


def inbox_number(name: str) -> str | None:
    """The sender of an inbox file, from its name; None for a name smsd does not write."""
    m = _INBOX.fullmatch(name)
    return m["number"] if m else None


def inbox_text(path: Path) -> str:
    raw = path.read_bytes()
    if raw.startswith(b"\xfe\xff"):
        return raw[2:].decode("utf-16-be", "replace")
    return raw.decode("utf-8", "replace")


def inbox_files(settings: SmsSettings) -> list[Path]:
    """Messages waiting in the inbox, oldest first (the names start with the time received)."""
    return sorted(p for p in settings.folder("inbox").iterdir() if inbox_number(p.name) is not None)


def _ucs2(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


def incoming_backup(*, number: str, text: str, when_s: float | None = None) -> str:
    """An SMS as the dummy phone stores a received one."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.localtime(time.time() if when_s is None else when_s))
    return (f'[SMSBackup000]\nSMSC = "+6281100000"\nState = UnRead\nNumber = "{number}"\nCoding = Default\n'
            f"Folder = 1\nPDU = Deliver\nDateTime = {stamp}\nText00 = {_ucs2(text)}\n")


def read_backup(text: str) -> tuple[str, str] | None:
    """(number, text) of the first message in an smsbackup file, or None when it has none."""
    number, parts, started = None, {}, False
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            if started:
                break
            started = line.startswith("[SMSBackup")
            continue
        if not started or "=" not in line or line.startswith(";"):
            continue
        key, _, value = (s.strip() for s in line.partition("="))
        if key == "Number":
            number = value.strip('"')
        elif re.fullmatch(r"Text\d\d", key):
            parts[int(key[4:])] = value
    if number is None:
        return None
    try:
        body = "".join(bytes.fromhex(parts[k]).decode("utf-16-be") for k in sorted(parts))
    except (ValueError, UnicodeDecodeError):
        return None
    return number, body
