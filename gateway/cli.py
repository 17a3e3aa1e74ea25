"""`panic-gateway`: run the gateway and manage its registry, tokens and broker files.

Output meant for scripts is JSON on stdout; messages for people go to stderr.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import sys
import time
import tomllib
from pathlib import Path

from . import broker, certs, config, dynsec, logs, natsconf, report
from .auth import ROLES, new_token, token_hash
from .domain import paths
from .domain import tokens as token_rules
from .health import describe, health_json
from .ids import new_password, new_secret, valid_device_id
from .models import Device
from .sinks.webhook import new_secret as new_webhook_secret
from .sms import settings as sms_settings
from .store import open_store
from .timeutil import now_ms


def _fail(msg: str) -> int:
    print(f"panic-gateway: {msg}", file=sys.stderr)
    return 2


def firmware_config(cfg: config.Config, d: Device, boot_floor: int = 0, *, mqtt_password: str) -> dict:
    """The device's config.json, as `firmware/config.py` reads it. `mqtt_password` is the
    plain one just issued: the registry keeps only its hash (`issue_password`).

    With a TLS listener the device gets only that (no plaintext fallback to downgrade to)
    and verifies the broker against `ca.crt`, which goes on its flash next to config.json
    (the broker's CA: `<broker dir>/tls/ca.crt` unless [broker] tls_cafile says otherwise)."""
    if cfg.mqtt.engine == "nats":
        # Every node: the firmware tries the next one by itself when one is down.
        brokers = [{"host": n.host, "port": n.mqtt_port, "tls": False} for n in natsconf.nodes(cfg)]
    else:
        # Every broker, the primary first: the button tries the next when one is down.
        brokers = [_broker_entry(view.broker) for _, view in broker.instances(cfg)]
    return {
        "dev": d.id, "secret": d.secret, "topic_root": cfg.topic_root,
        "brokers": brokers,
        "mqtt_user": d.id, "mqtt_password": mqtt_password,
        "lat6": d.lat6, "lon6": d.lon6, "acc": 25,
        # A re-flashed button must not reuse alert ids the gateway already holds.
        "boot_floor": boot_floor,
        # The centre's SMS number, the last-resort path; used only by a button fitted with a modem.
        "sms_to": sms_settings.load(cfg).number or None,
    }


def _broker_entry(b: config.BrokerConfig) -> dict:
    if b.tls_port:
        return {"host": b.public_host, "port": b.tls_port, "tls": True, "ca": "ca.crt",
                "server_hostname": b.public_host}
    return {"host": b.public_host, "port": b.device_port, "tls": False}


def _backup_settings(data: dict, args) -> None:
    """[broker] backup_* from `init --backup-broker-port/--backup-tls-port` (0: no backup broker)."""
    if args.backup_broker_port is None:
        return
    b = data.setdefault("broker", {})
    b["backup_port"] = args.backup_broker_port
    b.setdefault("backup_dir", "broker-backup")
    if args.backup_tls_port is not None:
        b["backup_tls_port"] = args.backup_tls_port


def cmd_init(args) -> int:
    state = Path(args.state).resolve()
    path = state / "gateway.toml"
    if path.exists() and not args.force:
        # Keep credentials and settings; only follow the ports asked for now.
        data = tomllib.loads(path.read_text())
        data.setdefault("mqtt", {})["port"] = args.broker_port
        data.setdefault("broker", {})["device_port"] = args.broker_port
        data.setdefault("api", {})["port"] = args.api_port
        if args.tls_port is not None:
            data["broker"]["tls_port"] = args.tls_port
        _backup_settings(data, args)
        if args.engine == "nats" and data["mqtt"].get("engine") != "nats":
            _nats_settings(data, args)  # a single-broker deployment moving to a cluster
        config.write(data, path)
        print(f"kept existing {path}", file=sys.stderr)
        cfg = config.load(path)
    else:
        data = {
            "gateway": {"topic_root": "panic/v1"},
            "mqtt": {"host": "127.0.0.1", "port": args.broker_port, "username": "gateway",
                     "password": new_password(), "client_id": "gateway-1", "group": "gateways"},
            "broker": {"dir": "broker", "device_port": args.broker_port, "tls_port": args.tls_port or 0},
            "store": {"kind": args.store, "path": "gateway.db", "dsn": args.dsn},
            "api": {"host": "127.0.0.1", "port": args.api_port},
            "webhooks": [{"url": u, "secret": new_webhook_secret(), "name": f"dispatch{i}"}
                         for i, u in enumerate(args.webhook or [])],
        }
        _backup_settings(data, args)
        if args.engine == "nats":
            _nats_settings(data, args)
        config.write(data, path)
        cfg = config.load(path)
    store = open_store(cfg)
    if cfg.mqtt.engine == "nats":
        cluster = natsconf.nodes(cfg) if path.exists() and not args.force else []
        if not cluster:
            hosts = [h for h in (args.hosts or "").split(",") if h]
            cluster = natsconf.hosted_nodes(hosts) if hosts else natsconf.loopback_nodes(args.nodes)
        for conf in natsconf.write_cluster(cfg, cluster, store.list_devices()):
            print(conf, file=sys.stderr)
    else:
        broker.write_all(cfg, store.list_devices())
    print(path)
    return 0


def _nats_settings(data: dict, args) -> None:
    """[mqtt] engine = nats and the [nats] section: the gateways reach every node."""
    hosts = [h for h in (args.hosts or "").split(",") if h]
    cluster = natsconf.hosted_nodes(hosts) if hosts else natsconf.loopback_nodes(args.nodes)
    data["mqtt"]["engine"] = "nats"
    data["nats"] = {"dir": "nats", "servers": [n.url for n in cluster], "replicas": min(3, len(cluster))}


def cmd_run(args) -> int:
    from .service import run
    cfg = config.load(args.config)
    logs.setup(cfg.log_format)
    run(cfg)
    return 0


def issue_password(d: Device) -> str:
    """A new MQTT password for `d`: its hash goes on the record, the plain one is returned,
    to be handed to the broker (`fresh`) and the button's config, and then forgotten."""
    password = new_password()
    d.mqtt_password = dynsec.stored_hash(password)
    return password


def reissue_configs(cfg: config.Config, store, devices: list[Device]) -> dict[str, dict]:
    """Configs for buttons already registered. Their MQTT password is kept only as a hash, so
    each gets a fresh one (the config it had before stops logging in); the secret is theirs still."""
    fresh = {}
    for d in devices:
        fresh[d.id] = issue_password(d)
        store.update_device(d.id, mqtt_password=d.mqtt_password)
    _sync_broker(cfg, store, fresh=fresh)
    return {d.id: firmware_config(cfg, d, store.boot_floor(d.id), mqtt_password=fresh[d.id]) for d in devices}


def _sync_broker(cfg, store, *, fresh: dict[str, str] | None = None) -> None:
    if cfg.mqtt.engine == "nats":
        missing = natsconf.sync(cfg, store.list_devices(), fresh=fresh)
        if missing:
            print(f"{len(missing)} device(s) without a NATS login (`device config` issues one): "
                  f"{', '.join(missing[:10])}", file=sys.stderr)
        print("NATS logins written and the running nodes told to reload", file=sys.stderr)
        return
    failed = []
    for r in broker.sync_all(cfg, store.list_devices(), fresh=fresh):
        if r.error:
            failed.append(r.broker)
            print(f"panic-gateway: warning: {r.broker} broker NOT updated: {r.error}; the other brokers were "
                  "(run `panic-gateway broker-sync` once it is fixed)", file=sys.stderr)
        else:
            print(f"{r.broker} broker " + ("reloaded" if r.told else "files written (no running broker)"),
                  file=sys.stderr)
    if failed:
        # The registry holds the change, but a broker does not: a suspended or removed button may
        # still log in there. A script must not read that as done.
        raise config.ConfigError(f"the {' and '.join(failed)} broker did not take the change (see above)")


def cmd_device_add(args) -> int:
    if not valid_device_id(args.id):
        return _fail(f"invalid device id {args.id!r}: [a-z0-9-]{{3,64}}, not a reserved name")
    cfg = config.load(args.config)
    store = open_store(cfg)
    if store.get_device(args.id):
        return _fail(f"device {args.id} exists")
    try:
        sim = _sim(store, args.sim)
    except ValueError as exc:
        return _fail(str(exc))
    d = Device(id=args.id, secret=new_secret(), mqtt_password="", kelurahan=args.kelurahan,
               kecamatan=args.kecamatan, rw=args.rw, rt=args.rt, lat6=args.lat6, lon6=args.lon6,
               holder=args.holder, phone=args.phone, address=args.address, created_ms=now_ms(), sim=sim)
    password = issue_password(d)
    store.add_device(d)
    _sync_broker(cfg, store, fresh={d.id: password})
    out = {"id": d.id, "secret": d.secret, "mqtt_username": d.id, "mqtt_password": password,
           "config": firmware_config(cfg, d, mqtt_password=password)}
    print(json.dumps(out) if args.json else f"added {d.id}")
    return 0


IMPORT_FIELDS = ("id", "kelurahan", "kecamatan", "rw", "rt", "lat6", "lon6", "holder", "phone", "address", "sim")


def _sim(store, number: str | None, taken: set[str] | frozenset[str] = frozenset(), *,
         dev: str | None = None) -> str | None:
    """The button's SIM in E.164 form (None when not given); ValueError when it is not a
    number or another button has it."""
    if not number:
        return None
    sim = paths.e164(number)
    if sim is None:
        raise ValueError(f"SIM {number!r} is not an E.164 number (+ and 8 to 15 digits, e.g. +6281234567890)")
    holder = store.device_by_sim(sim)
    if holder is not None and holder.id == dev:
        holder = None
    if holder is not None or sim in taken:
        raise ValueError(f"SIM {sim} is already registered for {holder.id if holder else 'another row'}")
    return sim


def cmd_device_import(args) -> int:
    """Register many buttons from a CSV (header: id,kelurahan,kecamatan,rw,rt,lat6,lon6[,holder,phone,address,sim])."""
    cfg = config.load(args.config)
    store = open_store(cfg)
    with open(args.file, newline="") as f:
        rows = list(csv.DictReader(f))
    devices: list[Device] = []
    errors: list[str] = []
    sims: set[str] = set()
    for n, row in enumerate(rows, start=2):
        try:
            if not valid_device_id(row["id"]):
                raise ValueError(f"invalid device id {row['id']!r}")
            if store.get_device(row["id"]):
                raise ValueError(f"device {row['id']} exists")
            sim = _sim(store, row.get("sim"), sims)
            if sim:
                sims.add(sim)
            devices.append(Device(
                id=row["id"], secret=new_secret(), mqtt_password="",
                kelurahan=row.get("kelurahan", ""), kecamatan=row.get("kecamatan") or "Klojen",
                rw=int(row.get("rw") or 0), rt=int(row.get("rt") or 0),
                lat6=int(row["lat6"]), lon6=int(row["lon6"]), holder=row.get("holder") or "",
                phone=row.get("phone") or "", address=row.get("address") or "", created_ms=now_ms(), sim=sim))
        except (KeyError, ValueError) as exc:
            errors.append(f"line {n}: {exc}")
    if errors:
        return _fail("import refused, nothing added:\n  " + "\n  ".join(errors))
    fresh = {d.id: issue_password(d) for d in devices}
    store.add_devices(devices)
    _sync_broker(cfg, store, fresh=fresh)
    if args.json:
        print(json.dumps([{"id": d.id, "secret": d.secret, "mqtt_username": d.id, "mqtt_password": fresh[d.id],
                           "config": firmware_config(cfg, d, mqtt_password=fresh[d.id])} for d in devices]))
    else:
        print(f"imported {len(devices)} devices", file=sys.stderr)
    return 0


def cmd_device_set_sim(args) -> int:
    store = open_store(config.load(args.config))
    if store.get_device(args.id) is None:
        return _fail(f"no device {args.id}")
    try:
        sim = _sim(store, args.sim, dev=args.id)
        store.set_device_sim(args.id, sim)
    except ValueError as exc:
        return _fail(str(exc))
    print(f"{args.id}: SIM {sim}" if sim else f"{args.id}: no SIM")
    return 0


def cmd_device_list(args) -> int:
    store = open_store(config.load(args.config))
    table = store.device_health()
    devices = [(d, table.get(d.id)) for d in store.list_devices()]
    if args.json:
        print(json.dumps([dict(d.public(), health=health_json(h)) for d, h in devices]))
    else:
        for d, h in devices:
            print(f"{d.id:40} {d.status:10} {describe(h):24} {d.kelurahan:16} "
                  f"RW{d.rw:02d} RT{d.rt:02d}{'  SIM ' + d.sim if d.sim else ''}"
                  f"{'  FLAG: ' + d.flag if d.flag else ''}")
    return 0


def cmd_device_show(args) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    d = store.get_device(args.id)
    if d is None:
        return _fail(f"no device {args.id}")
    window = cfg.false_alarm_window_s * 1000
    print(json.dumps({**d.public(), "health": health_json(store.device_health(d.id).get(d.id)),
                      "false_alarms": store.false_alarms(d.id, now_ms() - window),
                      "events": [e._asdict() for e in store.device_events(d.id, 10)]}, indent=2))
    return 0


def cmd_device_rotate(args) -> int:
    """New secret and broker password. The broker reload disconnects the device's current
    session (its old password no longer verifies) and the gateway rejects alerts signed
    with the old secret from its next batch on."""
    cfg = config.load(args.config)
    store = open_store(cfg)
    d = store.get_device(args.id)
    if d is None:
        return _fail(f"no device {args.id}")
    d.secret, d.secret_rotated_ms = new_secret(), now_ms()
    password = issue_password(d)
    store.update_device(d.id, secret=d.secret, mqtt_password=d.mqtt_password, secret_rotated_ms=d.secret_rotated_ms)
    _sync_broker(cfg, store, fresh={d.id: password})
    out = {"id": d.id, "secret": d.secret, "mqtt_username": d.id, "mqtt_password": password,
           "config": firmware_config(cfg, d, store.boot_floor(d.id), mqtt_password=password)}
    print(json.dumps(out) if args.json else f"rotated {d.id}: flash the new config (device config {d.id})")
    return 0


def _set_status(args, status: str, flag: str | None) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    changes: dict = {"status": status}
    if flag is not None:
        changes["flag"] = flag
    if not store.update_device(args.id, **changes):
        return _fail(f"no device {args.id}")
    _sync_broker(cfg, store)
    print(f"{args.id} {status}", file=sys.stderr)
    return 0


def cmd_device_suspend(args) -> int:
    """Refuse the device: broker login revoked (and disconnected), alerts rejected as `suspended`."""
    return _set_status(args, "suspended", f"suspended: {args.reason}" if args.reason else None)


def cmd_device_resume(args) -> int:
    """Back in service; clears the review flag (someone has looked at it)."""
    return _set_status(args, "active", "")


def cmd_device_unflag(args) -> int:
    store = open_store(config.load(args.config))
    if not store.update_device(args.id, flag=""):
        return _fail(f"no device {args.id}")
    return 0


def cmd_report(args) -> int:
    cfg = config.load(args.config)
    now = now_ms()
    try:
        since = report.parse_since(args.since, now)
        until = report.parse_since(args.until, now) if args.until else now + 1
    except ValueError as exc:
        return _fail(str(exc))
    kinds = tuple(args.kind.split(","))
    rep, rows = report.build(open_store(cfg), since_ms=since, until_ms=until, now_ms=now, sla_s=cfg.sla_s,
                             kinds=kinds)
    if args.format == "png":
        out = args.out or "report.png"
        report.to_png(rep, rows, out)
        print(out)
        return 0
    text = {"table": report.to_table, "csv": report.to_csv, "json": report.to_json}[args.format](rep)
    if args.out:
        Path(args.out).write_text(text)
        print(args.out)
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
    return 0


def cmd_device_config(args) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    d = store.get_device(args.id)
    if d is None:
        return _fail(f"no device {args.id}")
    fw = reissue_configs(cfg, store, [d])[d.id]
    print(f"{d.id}: a fresh MQTT password is in this config; the button's previous config no longer "
          "logs in (the gateway keeps only password hashes)", file=sys.stderr)
    if not args.out:
        print(json.dumps(fw, indent=2))
        return 0
    for path in flash_files(cfg, fw, Path(args.out)):
        print(path)
    return 0


def flash_files(cfg: config.Config, fw: dict, out: Path) -> list[Path]:
    """Write what goes on the button's flash into `out`: config.json (owner only: it holds the
    secret and login) and, when a broker entry uses TLS, the CA it verifies the broker with."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / "config.json"
    path.unlink(missing_ok=True)  # a new file, so it is created 0600 whoever made the old one
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(fw, f, indent=2)
    written = [path]
    cas = {b["ca"] for b in fw["brokers"] if b.get("tls") and b.get("ca")}
    for name in sorted(cas):
        ca = out / name
        shutil.copyfile(broker.tls_files(cfg)[0], ca)
        written.append(ca)
    if cfg.fleet.release_keys:
        # The keys the button trusts for over-the-air releases (docs/firmware.md): set only here,
        # at provisioning, and by a kept release that rotates them; never by a command.
        from .fleet import ReleaseRefused, trusted_keys
        try:
            keys = trusted_keys(cfg)
        except ReleaseRefused as exc:
            raise config.ConfigError(str(exc)) from None
        path = out / "release_keys.json"
        path.write_text(json.dumps(keys) + "\n")
        written.append(path)
    return written


def cmd_device_remove(args) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    if not store.remove_device(args.id):
        return _fail(f"no device {args.id}")
    _sync_broker(cfg, store)
    return 0


def cmd_token_create(args) -> int:
    store = open_store(config.load(args.config))
    if args.role == "responder" and not args.unit:
        # A field token acts only on its own unit's incidents: without one it reaches none.
        print("panic-gateway: warning: a responder token without --unit can act on and read no incident",
              file=sys.stderr)
    try:
        lifetime = token_rules.parse_expiry(args.expires)
    except token_rules.ExpiryError as exc:
        return _fail(str(exc))
    token, now = new_token(), now_ms()
    hashed = token_hash(token)
    store.add_token(hashed, args.role, args.name or args.role, now, unit=args.unit,
                    expires_ms=token_rules.expires_at(now, lifetime))
    print(token)
    print(f"token {token_rules.token_id(hashed)} ({args.role}) "
          f"expires {_when(token_rules.expires_at(now, lifetime), never='never')}", file=sys.stderr)
    return 0


def _when(ms: int | None, *, never: str = "-") -> str:
    return never if ms is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ms / 1000))


def cmd_token_list(args) -> int:
    now = now_ms()
    rows = []
    for t in open_store(config.load(args.config)).tokens():
        state = ("revoked" if t.revoked_ms is not None
                 else "active" if token_rules.usable(expires_ms=t.expires_ms, revoked_ms=None, now_ms=now)
                 else "expired")
        rows.append({**t._asdict(), "state": state})
    if args.json:
        print(json.dumps(rows))
        return 0
    print(f"{'id':14}{'role':11}{'name':20}{'state':9}{'expires':22}last used")
    for r in rows:
        print(f"{r['id']:14}{r['role']:11}{r['name'][:19]:20}{r['state']:9}"
              f"{_when(r['expires_ms'], never='never'):22}{_when(r['last_used_ms'])}")
    return 0


def cmd_token_revoke(args) -> int:
    matched = open_store(config.load(args.config)).revoke_token(args.id.lower(), now_ms())
    if not matched:
        return _fail(f"no token {args.id} (ids are listed by `token list`)")
    if len(matched) > 1:
        return _fail(f"{args.id} matches {len(matched)} tokens ({', '.join(matched)}): give more of the id")
    print(f"revoked {matched[0]}", file=sys.stderr)
    return 0


def cmd_broker_sync(args) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    if cfg.mqtt.engine == "nats":
        _sync_broker(cfg, store)
        return 0
    failed = [r for r in broker.sync_all(cfg, store.list_devices()) if r.error]
    for r in failed:
        print(f"panic-gateway: {r.broker} broker NOT updated: {r.error}", file=sys.stderr)
    return 1 if failed else 0


def cmd_broker_config(args) -> int:
    """Write mosquitto.conf and the broker's logins and ACLs. With --out, a broker for devices in the field:
    a TLS listener (port from the config, else --tls-port, else 8883) next to the loopback one."""
    cfg = config.load(args.config)
    if args.out:
        cfg.broker.dir = Path(args.out).resolve()
        cfg.broker.tls_port = args.tls_port or cfg.broker.tls_port or 8883
    elif args.tls_port:
        cfg.broker.tls_port = args.tls_port
    if args.tls_bind:
        cfg.broker.tls_bind = args.tls_bind
    try:
        devices = open_store(cfg).list_devices()
        # --out: one broker for the field; else every broker this gateway deploys.
        for conf in [broker.write_files(cfg, devices)] if args.out else broker.write_all(cfg, devices):
            print(conf)
    except certs.CertError as exc:
        return _fail(str(exc))
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
    c.add_argument("--tls-port", type=int, help="TLS listener for devices (0: none)")
    c.add_argument("--backup-broker-port", type=int,
                   help="deploy a backup mosquitto on this port (its own folder broker-backup/, the same logins); 0: none")
    c.add_argument("--backup-tls-port", type=int, help="the backup broker's TLS listener (needed beside --tls-port)")
    c.add_argument("--engine", choices=("mosquitto", "nats"), default="mosquitto",
                   help="mosquitto (one broker, the default) or a NATS JetStream cluster")
    c.add_argument("--nodes", type=int, default=3, help="NATS nodes on this machine (loopback ports)")
    c.add_argument("--hosts", help="NATS nodes on other machines: host names, comma-separated")

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
    c.add_argument("--sim", help="the button's SIM number, E.164 (+62...): SMS alerts are believed only from it")
    c.add_argument("--json", action="store_true")
    c = command(dev, "set-sim", cmd_device_set_sim, "register (or with '' clear) a button's SIM number")
    c.add_argument("id")
    c.add_argument("sim", help="E.164 number, e.g. +6281234567890; '' clears it")
    c = command(dev, "import", cmd_device_import, "register buttons from a CSV file")
    c.add_argument("file")
    c.add_argument("--json", action="store_true", help="print every new device's credentials and config")
    c = command(dev, "list", cmd_device_list, "list buttons")
    c.add_argument("--json", action="store_true")
    command(dev, "show", cmd_device_show, "one button, without credentials").add_argument("id")
    c = command(dev, "config", cmd_device_config, "the button's firmware config.json, with a fresh MQTT password")
    c.add_argument("id")
    c.add_argument("--out", help="write config.json (0600) and, for a TLS broker, its CA into this folder "
                                 "instead of printing the config (`make flash`)")
    command(dev, "remove", cmd_device_remove, "remove a button and revoke its broker login").add_argument("id")
    c = command(dev, "rotate-secret", cmd_device_rotate, "new secret and broker password; the old ones stop at once")
    c.add_argument("id")
    c.add_argument("--json", action="store_true", help="print the new credentials and config")
    c = command(dev, "suspend", cmd_device_suspend, "refuse a button (login revoked, alerts rejected)")
    c.add_argument("id")
    c.add_argument("--reason", default="")
    command(dev, "resume", cmd_device_resume, "put a suspended button back in service").add_argument("id")
    command(dev, "unflag", cmd_device_unflag, "clear a button's review flag").add_argument("id")

    c = command(sub, "report", cmd_report, "SLA report: p50/p90/p99 per step, share on scene within the promise")
    c.add_argument("--since", help="7d, 12h, 30m, Unix ms or ISO date (default: everything)")
    c.add_argument("--until", help="same forms (default: now)")
    c.add_argument("--format", choices=report.FORMATS, default="table")
    c.add_argument("--kind", default="panic", help="panic, test or panic,test")
    c.add_argument("--out", help="file to write (png: default report.png; others: stdout)")

    tok = sub.add_parser("token", help="API tokens").add_subparsers(dest="tcmd", required=True)
    c = command(tok, "create", cmd_token_create, "print a new bearer token")
    c.add_argument("--role", choices=ROLES, required=True)
    c.add_argument("--name", default="")
    c.add_argument("--unit", default="", help="a responder token's unit, e.g. sabhara-2 (required for responders)")
    c.add_argument("--expires", help=f"lifetime: 90d, 12h, 30m, or 0/none for never "
                                     f"(default {token_rules.DEFAULT_EXPIRY_DAYS}d)")
    c = command(tok, "list", cmd_token_list, "every token: id, role, name, state, expiry, last use")
    c.add_argument("--json", action="store_true")
    command(tok, "revoke", cmd_token_revoke, "refuse a token from now on").add_argument(
        "id", help="the token's id from `token list` (a prefix of its hash)")

    command(sub, "broker-sync", cmd_broker_sync, "bring every broker's logins in line with the registry "
                                                 "(after a broker was down or restored)")
    c = command(sub, "broker-config", cmd_broker_config, "write mosquitto.conf and the broker's logins and ACLs")
    c.add_argument("--out", help="folder (default: the config's [broker] dir)")
    c.add_argument("--tls-port", type=int, help="TLS listener port for devices")
    c.add_argument("--tls-bind", help="address of the TLS listener (default 127.0.0.1; 0.0.0.0 for every interface)")

    from .console.cli import add_commands as add_user_commands  # console accounts
    add_user_commands(sub, command)
    from .unit_cli import add_commands as add_unit_commands
    add_unit_commands(sub, command)
    from .sms.cli import add_commands as add_sms_commands  # the SMS path's daemon files and hook
    add_sms_commands(sub, command)
    from .fleet_cli import add_commands as add_fleet_commands  # releases, rollout, remote commands
    add_fleet_commands(sub, command)
    return p


def main(argv: list[str] | None = None) -> int:
    # Text until a command has read its config: `run` switches to the configured log_format.
    logs.setup("text")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except config.ConfigError as exc:
        return _fail(str(exc))


if __name__ == "__main__":
    sys.exit(main())
