"""`panic-gateway fleet release|status|halt|command|log`: releases, the staged rollout and
remote commands from the command line (docs/gateway.md "Fleet updates and remote commands").

A command from here goes straight to the broker under the gateway's login (a short
connection of its own) after its audit row is written; the running gateway's fleet worker
records the device's signed result, which this command waits for and prints.
"""
from __future__ import annotations

import json
import queue
import sys
import time
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from . import config
from . import fleet as service
from .domain import rollout
from .store import open_store
from .timeutil import now_ms


def _fail(msg: str) -> int:
    print(f"panic-gateway: {msg}", file=sys.stderr)
    return 2


def cmd_release(args) -> int:
    cfg = config.load(args.config)
    try:
        pct = rollout.parse_pct(args.to)
    except rollout.RolloutError as exc:
        return _fail(str(exc))
    store = open_store(cfg)
    try:
        if args.file:
            try:
                rel = service.store_release(cfg, store, Path(args.file).read_bytes(), by=args.by)
            except OSError as exc:
                return _fail(f"{args.file}: {exc.strerror}")
            except service.ReleaseRefused as exc:
                return _fail(str(exc))
            seq = rel.seq
            print(f"release {seq} (firmware {rel.manifest['fw']}, {len(rel.bundle)} bytes) verified and stored",
                  file=sys.stderr)
        else:
            current = store.current_rollout()
            if current is None:
                return _fail("no rollout to widen: give a release FILE")
            seq = current.seq
            if current.state == "halted" and not args.resume:
                return _fail(f"rollout of release {seq} is halted: {current.why}\n"
                             "look at the failed devices (`fleet status`); --resume goes on regardless")
            if current.state == "done" and pct <= current.pct:
                return _fail(f"rollout of release {seq} is done")
            if pct < current.pct:
                return _fail(f"a rollout only widens: release {seq} is at {current.pct:g} %")
        r = store.start_rollout(seq, pct, by=args.by, at_ms=now_ms())
        print(f"rollout of release {r.seq} at {r.pct:g} %: {r.state}", file=sys.stderr)
        return 0
    finally:
        store.close()


def cmd_status(args) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    try:
        st = service.status(store, cfg)
    finally:
        store.close()
    if args.json:
        print(json.dumps(st, indent=1))
        return 0
    r = st["rollout"]
    if r is None:
        print("no rollout")
    else:
        counts = ", ".join(f"{n} {k}" for k, n in r["counts"].items()) or "nobody yet"
        print(f"release {r['seq']} (firmware {r['fw']}) to {r['pct']:g} % ({r['wave']} of {r['devices']} devices): "
              f"{r['state'].upper()}; {counts}")
        if r["why"]:
            print(f"  why: {r['why']}")
    print(f"{'device':28} {'fw':12} {'slot':8} {'health':9} {'rollout':10} last result")
    for d in st["devices"]:
        last = "" if d["last_op"] is None else f"{d['last_op']} {'ok' if d['last_ok'] else 'failed'}" + (
            f" ({d['last_err']})" if d["last_err"] else "")
        place = d["rollout"] or "-"
        if d["rollout_why"] and place not in ("ok",):
            place += f":{d['rollout_why']}"
        print(f"{d['dev']:28} {d['fw'] or '?':12} {d['slot'] or '?':8} {d['health']:9} {place:10} {last}")
    return 0


def cmd_halt(args) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    try:
        r = store.current_rollout()
        if r is None or r.state != "active":
            return _fail("no active rollout")
        why = f"halted by {args.by}" + (f": {args.why}" if args.why else "")
        store.set_rollout_state(r.seq, "halted", why, at_ms=now_ms())
        print(f"rollout of release {r.seq} halted", file=sys.stderr)
        return 0
    finally:
        store.close()


def parse_settings(pairs: list[str]) -> dict:
    """`key=value` words: a value that reads as JSON is taken as such (60, true, a WiFi list),
    anything else as text."""
    out: dict = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise service.CommandError(f"not key=value: {p!r}")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _publish(cfg: config.Config, topic: str, payload: bytes, timeout_s: float = 10.0) -> None:
    done: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"{cfg.mqtt.client_id}-cli-{now_ms() % 10**9}",
                    protocol=mqtt.MQTTv311)
    c.username_pw_set(cfg.mqtt.username, cfg.mqtt.password)
    c.on_connect = lambda cl, u, flags, reason, props: done.put(("connect", reason))
    c.on_publish = lambda cl, u, mid, reason, props: done.put(("published", reason))
    c.connect(cfg.mqtt.host, cfg.mqtt.port, keepalive=30)
    c.loop_start()
    try:
        kind, reason = done.get(timeout=timeout_s)
        if kind != "connect" or reason.is_failure:
            raise OSError(f"the broker refused the gateway's login: {reason}")
        c.publish(topic, payload, qos=1)
        done.get(timeout=timeout_s)  # PUBACK: the broker holds it for the device's session
    except queue.Empty:
        raise OSError(f"no answer from the broker at {cfg.mqtt.host}:{cfg.mqtt.port}") from None
    finally:
        c.disconnect()
        c.loop_stop()


def cmd_command(args) -> int:
    cfg = config.load(args.config)
    if cfg.mqtt.engine != "mosquitto":
        return _fail("fleet commands need the mosquitto engine for now")
    store = open_store(cfg)
    try:
        try:
            cmd_args = parse_settings(args.settings) if args.op == "set" else {}
            if args.op != "set" and args.settings:
                raise service.CommandError(f"{args.op} takes no arguments")
            service.check_command(args.op, cmd_args)
            device = store.get_device(args.dev)
            if device is None:
                raise service.CommandError(f"no device {args.dev}")
            topic, payload, n = service.new_command(store, device, args.op, cmd_args, args.by, cfg.topic_root)
        except (service.CommandError, ValueError) as exc:
            return _fail(str(exc))
        try:
            _publish(cfg, topic, payload)
        except OSError as exc:
            return _fail(f"command {n} logged but not sent: {exc}")
        print(f"command {n} ({args.op}) sent to {args.dev}", file=sys.stderr)
        deadline = time.monotonic() + args.wait
        row = store.command(args.dev, n)
        while row is not None and row["result"] is None and time.monotonic() < deadline:
            time.sleep(0.2)
            row = store.command(args.dev, n)
        print(json.dumps(row, indent=1))
        if row is None or row["result"] is None:
            print(f"no result within {args.wait:g} s: the button gets the command when it is back "
                  "(`fleet log` shows the result then)", file=sys.stderr)
            return 1
        return 0 if row["ok"] else 1
    finally:
        store.close()


def cmd_log(args) -> int:
    cfg = config.load(args.config)
    store = open_store(cfg)
    try:
        if store.get_device(args.dev) is None:
            return _fail(f"no device {args.dev}")
        rows = store.commands(args.dev, limit=args.limit)
    finally:
        store.close()
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    for c in rows:
        sent = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(c["sent_ms"] / 1000))
        if c["result"] is None:
            outcome = "no result yet"
        else:
            outcome = ("ok" if c["ok"] else f"failed ({c['err']})") + (
                f" stage {c['result']['stage']}" if c["result"].get("stage") else "")
        args_text = json.dumps(c["args"]) if c["op"] == "set" else ""
        print(f"{c['n']:>5} {sent}Z {c['op']:9} by {c['by']:16} {outcome} {args_text}".rstrip())
    return 0


def add_commands(sub, command) -> None:
    """Hook for gateway/cli.py: `command` is its helper that adds --config."""
    fl = sub.add_parser("fleet", help="firmware releases, staged rollout, remote commands"
                        ).add_subparsers(dest="fcmd", required=True)
    c = command(fl, "release", cmd_release, "store a signed release and roll it out, or widen the current rollout")
    c.add_argument("file", nargs="?", help="a .pbr release (python -m protocol.release build); none: widen the "
                                           "current one")
    c.add_argument("--to", required=True, help="the share of the fleet, e.g. 5%% first, then 100%%")
    c.add_argument("--by", default="admin", help="who releases (kept with the rollout)")
    c.add_argument("--resume", action="store_true", help="widen a halted rollout (after looking at why)")
    c = command(fl, "status", cmd_status, "the rollout and every device's version, slot and last result")
    c.add_argument("--json", action="store_true")
    c = command(fl, "halt", cmd_halt, "stop the current rollout (devices already updating finish)")
    c.add_argument("--by", default="admin")
    c.add_argument("--why", default="")
    c = command(fl, "command", cmd_command, "send a button a signed command and wait for its result (audited)")
    c.add_argument("dev")
    c.add_argument("op", choices=("locate", "selftest", "reboot", "set"))
    c.add_argument("settings", nargs="*", help="for set: key=value ... (heartbeat_s=300 silent=true "
                                               "wifi='[{\"ssid\":\"x\",\"psk\":\"y\"}]')")
    c.add_argument("--by", required=True, help="who sends it (kept in the audit log)")
    c.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the result (default 30)")
    c = command(fl, "log", cmd_log, "a button's commands and results, newest first (the audit log)")
    c.add_argument("dev")
    c.add_argument("--json", action="store_true")
    c.add_argument("--limit", type=int, default=50)
