"""`panic-gateway`: run the gateway and manage its registry, tokens and broker files.

Output meant for scripts is JSON on stdout; messages for people go to stderr.
"""
from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
import tomllib
from pathlib import Path

from . import broker, config
from .auth import ROLES, new_token, token_hash
from .ids import new_password, new_secret, valid_device_id
from .models import Device
from .store import open_store


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _fail(msg: str) -> int:
    print(f"panic-gateway: {msg}", file=sys.stderr)
    return 2


def firmware_config(cfg: config.Config, d: Device) -> dict:
    """The device's config.json, as `firmware/config.py` reads it."""
    return {
        "dev": d.id, "secret": d.secret, "topic_root": cfg.topic_root,
        "brokers": [{"host": cfg.broker.public_host, "port": cfg.broker.device_port, "tls": False}],
        "mqtt_user": d.id, "mqtt_password": d.mqtt_password,
        "lat6": d.lat6, "lon6": d.lon6, "acc": 25,
    }


def cmd_init(args) -> int:
    state = Path(args.state).resolve()
    path = state / "gateway.toml"
    if path.exists() and not args.force:
        # Keep credentials and settings; only follow the ports asked for now.
        data = tomllib.loads(path.read_text())
        data.setdefault("mqtt", {})["port"] = args.broker_port
        data.setdefault("broker", {})["device_port"] = args.broker_port
        data.setdefault("api", {})["port"] = args.api_port
        config.write(data, path)
        print(f"kept existing {path}", file=sys.stderr)
        cfg = config.load(path)
    else:
        data = {
            "gateway": {"topic_root": "panic/v1"},
            "mqtt": {"host": "127.0.0.1", "port": args.broker_port, "username": "gateway",
                     "password": new_password(), "client_id": "gateway-1", "group": "gateways"},
            "broker": {"dir": "broker", "device_port": args.broker_port},
            "store": {"kind": args.store, "path": "gateway.db", "dsn": args.dsn},
            "api": {"host": "127.0.0.1", "port": args.api_port},
            "webhooks": [{"url": u, "secret": new_secret(), "name": f"dispatch{i}"}
                         for i, u in enumerate(args.webhook or [])],
        }
        config.write(data, path)
        cfg = config.load(path)
    store = open_store(cfg)
    broker.write_files(cfg, store.list_devices())
    print(path)
    return 0


def cmd_run(args) -> int:
    from .service import run
    run(config.load(args.config))
    return 0


def _sync_broker(cfg, store) -> None:
    told = broker.sync(cfg, store.list_devices())
    print("broker reloaded" if told else "broker files written (no running broker)", file=sys.stderr)


def cmd_device_add(args) -> int:
    if not valid_device_id(args.id):
        return _fail(f"invalid device id {args.id!r}: [a-z0-9-]{{3,64}}, not a reserved name")
    cfg = config.load(args.config)
    store = open_store(cfg)
    if store.get_device(args.id):
        return _fail(f"device {args.id} exists")
    d = Device(id=args.id, secret=new_secret(), mqtt_password=new_password(), kelurahan=args.kelurahan,
               kecamatan=args.kecamatan, rw=args.rw, rt=args.rt, lat6=args.lat6, lon6=args.lon6,
               holder=args.holder, phone=args.phone, address=args.address, created_ms=_now_ms())
    store.add_device(d)
    _sync_broker(cfg, store)
    out = {"id": d.id, "secret": d.secret, "mqtt_username": d.id, "mqtt_password": d.mqtt_password,
           "config": firmware_config(cfg, d)}
    print(json.dumps(out) if args.json else f"added {d.id}")
    return 0


IMPORT_FIELDS = ("id", "kelurahan", "kecamatan", "rw", "rt", "lat6", "lon6", "holder", "phone", "address")


def cmd_device_import(args) -> int:
    """Register many buttons from a CSV (header: id,kelurahan,kecamatan,rw,rt,lat6,lon6[,holder,phone,address])."""
    cfg = config.load(args.config)
    store = open_store(cfg)
    with open(args.file, newline="") as f:
        rows = list(csv.DictReader(f))
    devices, errors = [], []
    for n, row in enumerate(rows, start=2):
        try:
            if not valid_device_id(row["id"]):
                raise ValueError(f"invalid device id {row['id']!r}")
            if store.get_device(row["id"]):
                raise ValueError(f"device {row['id']} exists")
            devices.append(Device(
                id=row["id"], secret=new_secret(), mqtt_password=new_password(),
                kelurahan=row.get("kelurahan", ""), kecamatan=row.get("kecamatan") or "Klojen",
                rw=int(row.get("rw") or 0), rt=int(row.get("rt") or 0),
                lat6=int(row["lat6"]), lon6=int(row["lon6"]), holder=row.get("holder") or "",
                phone=row.get("phone") or "", address=row.get("address") or "", created_ms=_now_ms()))
        except (KeyError, ValueError) as exc:
            errors.append(f"line {n}: {exc}")
    if errors:
        return _fail("import refused, nothing added:\n  " + "\n  ".join(errors))
    store.add_devices(devices)
    _sync_broker(cfg, store)
    if args.json:
        print(json.dumps([{"id": d.id, "secret": d.secret, "mqtt_username": d.id,
                           "mqtt_password": d.mqtt_password, "config": firmware_config(cfg, d)} for d in devices]))
    else:
        print(f"imported {len(devices)} devices", file=sys.stderr)
    return 0


def cmd_device_list(args) -> int:
    store = open_store(config.load(args.config))
    devices = [d.public() for d in store.list_devices()]
    if args.json:
        print(json.dumps(devices))
    else:
        for d in devices:
            print(f"{d['id']:40} {d['status']:10} {d['kelurahan']:16} RW{d['rw']:02d} RT{d['rt']:02d}")
    return 0


def cmd_device_show(args) -> int:
    d = open_store(config.load(args.config)).get_device(args.id)
    if d is None:
        return _fail(f"no device {args.id}")
    print(json.dumps(d.public(), indent=2))
    return 0


def cmd_device_config(args) -> int:
    cfg = config.load(args.config)
    d = open_store(cfg).get_device(args.id)
    if d is None:
        return _fail(f"no device {args.id}")
    print(json.dumps(firmware_config(cfg, d), indent=2))
    return 0


def cmd_device_remove(args) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    if not store.remove_device(args.id):
        return _fail(f"no device {args.id}")
    _sync_broker(cfg, store)
    return 0


def cmd_token_create(args) -> int:
    store = open_store(config.load(args.config))
    token = new_token()
    store.add_token(token_hash(token), args.role, args.name or args.role, _now_ms())
    print(token)
    return 0


def cmd_broker_config(args) -> int:
    cfg = config.load(args.config)
    if args.out:
        cfg.broker.dir = Path(args.out).resolve()
    print(broker.write_files(cfg, open_store(cfg).list_devices()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="panic-gateway", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)

    def command(parent, name, func, help):
        c = parent.add_parser(name, help=help)
        c.add_argument("--config", help="gateway TOML (default: $PANIC_CONFIG or var/gateway.toml)")
        c.set_defaults(func=func)
        return c

    c = command(sub, "init", cmd_init, "create a state folder: config, database, broker files")
    c.add_argument("--state", default="var")
    c.add_argument("--broker-port", type=int, default=18830)
    c.add_argument("--api-port", type=int, default=8080)
    c.add_argument("--webhook", action="append", help="dispatch webhook URL (repeatable)")
    c.add_argument("--store", choices=("sqlite", "postgres"), default="sqlite")
    c.add_argument("--dsn", default="")
    c.add_argument("--force", action="store_true", help="overwrite an existing config")

    command(sub, "run", cmd_run, "run the gateway")

    dev = sub.add_parser("device", help="the device registry").add_subparsers(dest="dcmd", required=True)
    c = command(dev, "add", cmd_device_add, "register a button")
    c.add_argument("id")
    c.add_argument("--kelurahan", default="")
    c.add_argument("--kecamatan", default="Klojen")
    c.add_argument("--rw", type=int, default=0)
    c.add_argument("--rt", type=int, default=0)
    c.add_argument("--lat6", type=int, required=True)
    c.add_argument("--lon6", type=int, required=True)
    c.add_argument("--holder", default="")
    c.add_argument("--phone", default="")
    c.add_argument("--address", default="")
    c.add_argument("--json", action="store_true")
    c = command(dev, "import", cmd_device_import, "register buttons from a CSV file")
    c.add_argument("file")
    c.add_argument("--json", action="store_true", help="print every new device's credentials and config")
    c = command(dev, "list", cmd_device_list, "list buttons")
    c.add_argument("--json", action="store_true")
    command(dev, "show", cmd_device_show, "one button, without credentials").add_argument("id")
    command(dev, "config", cmd_device_config, "the button's firmware config.json").add_argument("id")
    command(dev, "remove", cmd_device_remove, "remove a button and revoke its broker login").add_argument("id")

    tok = sub.add_parser("token", help="API tokens").add_subparsers(dest="tcmd", required=True)
    c = command(tok, "create", cmd_token_create, "print a new bearer token")
    c.add_argument("--role", choices=ROLES, required=True)
    c.add_argument("--name", default="")

    c = command(sub, "broker-config", cmd_broker_config, "write mosquitto.conf, passwd and acl")
    c.add_argument("--out", help="folder (default: the config's [broker] dir)")
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr)
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except config.ConfigError as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
