"""`python -m gateway.sms receive|replay-inbox --config ...`: the hook without the whole CLI.

gammu-smsd runs RunOnReceive once per message and waits for it; this entry point imports
only the config, the [sms] settings and the hook (~0.2 s against ~1.2 s for
`panic-gateway`), so a burst of SMS is handed over that much faster."""
from __future__ import annotations

import argparse
import json
import sys

from .. import config
from ..logs import setup
from . import hook
from . import settings as sms_settings


def relay(config_path: str | None) -> hook.Relay:
    cfg = config.load(config_path)
    settings = sms_settings.load(cfg)
    host = "127.0.0.1" if cfg.api.host in ("0.0.0.0", "::", "") else cfg.api.host
    try:
        token = settings.token_file.read_text().strip()
    except FileNotFoundError:
        raise config.ConfigError(f"no relay token at {settings.token_file}: run `panic-gateway sms setup`") from None
    return hook.Relay(url=f"http://{host}:{cfg.api.port}", token=token, settings=settings)


def receive(config_path: str | None, files: list[str]) -> int:
    return hook.receive(relay(config_path), files)


def replay_inbox(config_path: str | None) -> int:
    done, left = hook.replay_inbox(relay(config_path))
    print(json.dumps({"handed_over": done, "left": left}))
    return 1 if left else 0


def main(argv: list[str] | None = None) -> int:
    setup("text")
    p = argparse.ArgumentParser(prog="python -m gateway.sms", description=__doc__)
    p.add_argument("command", choices=("receive", "replay-inbox"))
    p.add_argument("--config")
    p.add_argument("files", nargs="*")
    args = p.parse_intermixed_args(argv)
    try:
        return receive(args.config, args.files) if args.command == "receive" else replay_inbox(args.config)
    except config.ConfigError as exc:
        print(f"panic-gateway sms: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
