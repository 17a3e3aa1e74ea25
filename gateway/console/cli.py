"""`panic-gateway user add|list|remove`: console accounts."""
from __future__ import annotations

import getpass
import json
import secrets
import sys

from .. import config
from ..auth import ROLES
from ..domain.dispatch import SECTORS
from ..store import open_store
from ..timeutil import now_ms
from . import accounts


def _store(args):
    store = open_store(config.load(args.config))
    accounts.ensure_tables(store)
    return store


def cmd_user_add(args) -> int:
    generated = False
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif not args.generate and sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.name}: ")
        if getpass.getpass("again: ") != password:
            print("panic-gateway: passwords differ", file=sys.stderr)
            return 2
    else:
        password, generated = secrets.token_urlsafe(12), True
    store = _store(args)
    try:
        created = accounts.set_user(store, args.name, args.role, password, args.unit,
                                    now_ms())
    except ValueError as exc:
        print(f"panic-gateway: {exc}", file=sys.stderr)
        return 2
    store.set_user_sector(args.name, args.sector)
    print(f"{'added' if created else 'updated'} {args.role} {args.name}", file=sys.stderr)
    if generated:  # the only time it is ever shown
        print(password)
    return 0


def cmd_user_list(args) -> int:
    users = accounts.list_users(_store(args))
    if args.json:
        print(json.dumps([u._asdict() for u in users]))
    else:
        for u in users:
            print(f"{u.name:24} {u.role:10} {u.unit:12} {u.sector or '-':14} {'disabled' if u.disabled else ''}")
    return 0


def cmd_user_remove(args) -> int:
    if not accounts.remove_user(_store(args), args.name):
        print(f"panic-gateway: no user {args.name}", file=sys.stderr)
        return 2
    return 0


def add_commands(sub, command) -> None:
    """Hook for gateway/cli.py: `command` is its helper that adds --config."""
    users = sub.add_parser("user", help="console accounts").add_subparsers(dest="ucmd", required=True)
    c = command(users, "add", cmd_user_add, "create or update a console account")
    c.add_argument("name")
    c.add_argument("--role", choices=ROLES, required=True)
    c.add_argument("--unit", default="", help="a responder's unit, e.g. sabhara-2")
    c.add_argument("--sector", default="", choices=("", *SECTORS),
                   help="a desk account's Polsek (its kecamatan); none or polresta: the command centre, every sector")
    how = c.add_mutually_exclusive_group()
    how.add_argument("--password-stdin", action="store_true",
                     help="read the password from the first line of stdin (default: prompt on a terminal)")
    how.add_argument("--generate", action="store_true",
                     help="make up a password and print it on stdout (the default without a terminal)")
    c = command(users, "list", cmd_user_list, "list console accounts")
    c.add_argument("--json", action="store_true")
    command(users, "remove", cmd_user_remove, "remove an account and end its sessions").add_argument("name")
