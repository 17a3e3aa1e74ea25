"""`panic-gateway sms ...`: set up the SMS daemon's files and token, and its hook."""
from __future__ import annotations

import os
import sys
import tomllib
from pathlib import Path

from .. import config
from ..auth import new_token, token_hash
from ..store import open_store
from ..timeutil import now_ms
from . import gammu
from . import settings as sms_settings

RELAY_ROLE = "sms_relay"


def _write_private(path: Path, text: str) -> None:
    path.unlink(missing_ok=True)  # a new file, created 0600 whoever made the old one
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)


def cmd_setup(args) -> int:
    """Write [sms] into the config, the smsdrc and its folders, and the relay token (0600)."""
    cfg = config.load(args.config)
    data = tomllib.loads(cfg.path.read_text())
    section = data.setdefault("sms", {})
    for key in ("device", "connection", "pin", "per_number_per_hour", "number"):
        value = getattr(args, key)
        if value is not None:
            section[key] = value
    config.write(data, cfg.path)
    settings = sms_settings.load(cfg)
    gammu.make_folders(settings)
    _write_private(settings.smsdrc, gammu.render(settings, hook=gammu.hook_command(Path(sys.executable), cfg.path)))
    if not settings.token_file.exists() or args.new_token:
        token = new_token()
        # A token of its own role: it may hand in SMS and read nothing (gateway/api_sms.py).
        open_store(cfg).add_token(token_hash(token), RELAY_ROLE, "sms-relay", now_ms(), unit="", expires_ms=None)
        _write_private(settings.token_file, token + "\n")
    print(settings.smsdrc)
    print(f"run the daemon: gammu-smsd -c {settings.smsdrc}", file=sys.stderr)
    return 0


def cmd_receive(args) -> int:
    from .__main__ import receive
    return receive(args.config, args.files)


def cmd_replay_inbox(args) -> int:
    from .__main__ import replay_inbox
    return replay_inbox(args.config)


def add_commands(sub, command) -> None:
    sms = sub.add_parser("sms", help="the SMS path: gammu-smsd's files and hook").add_subparsers(
        dest="scmd", required=True)
    c = command(sms, "setup", cmd_setup, "write [sms], the smsdrc, its folders and the relay token")
    c.add_argument("--device", help='the GSM modem, e.g. /dev/ttyUSB0; "dummy": gammu\'s file-based phone')
    c.add_argument("--connection", help="gammu connection of the modem (default at)")
    c.add_argument("--pin", help="the SIM's PIN")
    c.add_argument("--number", help="the centre's own SMS number, E.164 (what buttons send to: their sms_to)")
    c.add_argument("--per-number-per-hour", type=int, help="SMS one number may send per hour")
    c.add_argument("--new-token", action="store_true", help="issue a new relay token (revoke the old one with "
                                                            "`token revoke`)")
    c = command(sms, "receive", cmd_receive, "gammu-smsd's RunOnReceive: hand the messages to the gateway")
    c.add_argument("files", nargs="*", help="inbox file names, as gammu-smsd gives them")
    command(sms, "replay-inbox", cmd_replay_inbox, "hand the messages still in the inbox to the gateway")
