"""The NATS cluster's configuration: one file per node, and the logins and permissions of
the gateways and of every device, generated from the registry.

Devices speak MQTT 3.1.1 to the MQTT listener every node has; NATS maps the topic
`panic/v1/<dev>/alert` to the subject `panic.v1.<dev>.alert`, and an MQTT session keeps
its state in JetStream (`$MQTT_*` streams). A device's permissions are the mosquitto ACL's
(publish its own alert, status and result, receive only its own ack, cmd and ota) plus the one internal subject
NATS's MQTT layer delivers QoS 1 subscriptions on (`$MQTT.sub.>`, subscribe only: the
server names those subjects itself, so a client can reach no other device's messages
through them). A device login is MQTT only (`allowed_connection_types`): it can never speak
the NATS protocol, so it sees no subject the MQTT layer does not give it.

NATS checks only bcrypt for hashed passwords, and the registry keeps PBKDF2 hashes: the
bcrypt hash of each device's password is made when the password is issued (`fresh`) and
kept in `<dir>/logins.json`. A device suspended or removed loses its entry; the nodes
re-read the logins on SIGHUP (`nats-server --signal reload`) and close the connections of
logins that no longer exist, so revocation applies at once, without a restart.
"""
from __future__ import annotations

import json
import os
import signal
from dataclasses import asdict, dataclass
from pathlib import Path

import bcrypt

from . import atomic_file
from .config import Config
from .models import Device

CLUSTER = "panic"
ACCOUNT = "PANIC"
NODES_FILE = "nodes.json"
LOGINS_FILE = "logins.json"
ACCOUNTS_FILE = "accounts.conf"
# bcrypt's cost: every MQTT CONNECT pays it, and after a node dies all its devices reconnect
# to the others at once (docs/scale.md). A device password is 192 random bits
# (ids.new_password), out of reach of guessing at any cost, so the cost buys nothing and a
# low one keeps a reconnect storm of a city's buttons to seconds of CPU.
BCRYPT_COST = 6
# Where the defaults put a node on one machine: node i takes base + i.
LOOPBACK_BASE = {"client": 14222, "cluster": 16222, "mqtt": 11883, "monitor": 18222}
STANDARD_PORTS = {"client": 4222, "cluster": 6222, "mqtt": 1883, "monitor": 8222}


@dataclass(frozen=True)
class Node:
    name: str
    host: str  # how devices, gateways and the other nodes reach it
    client_port: int
    cluster_port: int
    mqtt_port: int
    monitor_port: int
    bind: str = "0.0.0.0"

    @property
    def url(self) -> str:
        return f"nats://{self.host}:{self.client_port}"


def loopback_nodes(count: int, base: dict[str, int] | None = None) -> list[Node]:
    """`count` nodes on this machine, each on ports of its own."""
    b = base or LOOPBACK_BASE
    return [Node(f"n{i + 1}", "127.0.0.1", b["client"] + i, b["cluster"] + i, b["mqtt"] + i, b["monitor"] + i,
                 bind="127.0.0.1") for i in range(count)]


def hosted_nodes(hosts: list[str]) -> list[Node]:
    """One node per host, each on the standard ports."""
    p = STANDARD_PORTS
    return [Node(f"n{i + 1}", h, p["client"], p["cluster"], p["mqtt"], p["monitor"]) for i, h in enumerate(hosts)]


def device_permissions(root: str, dev: str) -> dict:
    base = root.replace("/", ".")
    return {"publish": {"allow": [f"{base}.{dev}.alert", f"{base}.{dev}.status", f"{base}.{dev}.result"]},
            "subscribe": {"allow": [f"{base}.{dev}.ack", f"{base}.{dev}.cmd", f"{base}.{dev}.ota", "$MQTT.sub.>"]}}


def _q(text: str) -> str:
    return json.dumps(text)


def _perm_block(perms: dict) -> str:
    parts = []
    for kind, rule in perms.items():
        parts.append(f"{kind}: {{ allow: [{', '.join(_q(s) for s in rule['allow'])}] }}")
    return "{ " + ", ".join(parts) + " }"


def accounts_conf(root: str, gateway_user: str, gateway_hash: str, logins: dict[str, str]) -> str:
    """The `accounts` block: the gateway (every subject of the account) and each device."""
    users = [f"      {{ user: {_q(gateway_user)}, password: {_q(gateway_hash)} }}"]
    for dev in sorted(logins):
        users.append(f"      {{ user: {_q(dev)}, password: {_q(logins[dev])}, allowed_connection_types: [\"MQTT\"], "
                     f"permissions: {_perm_block(device_permissions(root, dev))} }}")
    return ("accounts {\n"
            f"  {ACCOUNT} {{\n    jetstream: enabled\n    users: [\n" + "\n".join(users) + "\n    ]\n  }\n}\n")


def node_conf(node: Node, nodes: list[Node], folder: Path) -> str:
    routes = ", ".join(_q(f"nats://{n.host}:{n.cluster_port}") for n in nodes if n.name != node.name)
    data = folder / "data" / node.name
    return "\n".join([
        f"server_name: {_q(node.name)}",
        f"listen: {_q(f'{node.bind}:{node.client_port}')}",
        f"http: {_q(f'{node.bind}:{node.monitor_port}')}",
        f"pid_file: {_q(str(folder / 'run' / f'{node.name}.pid'))}",
        "max_payload: 65536",
        f"jetstream {{ store_dir: {_q(str(data))} }}",
        f"cluster {{ name: {_q(CLUSTER)}, listen: {_q(f'{node.bind}:{node.cluster_port}')}, routes: [{routes}] }}",
        # NODELAY is NATS's default on every socket; an ack wait long enough for a device
        # that reconnects to another node. Each device's QoS 1 subscription is a JetStream
        # consumer: replicated on three nodes, the cluster admitted about two new sessions a
        # second on 2 cores (35 min for the city after a restart). One in-memory replica is
        # enough: what it could lose is an ack the button has not verified, and the button
        # sends that alert again until it holds one. Sessions and queued messages stay R3.
        f"mqtt {{ listen: {_q(f'{node.bind}:{node.mqtt_port}')}, ack_wait: \"30s\", max_ack_pending: 1024, "
        "consumer_replicas: 1, consumer_memory_storage: true }",
        f"include {_q(ACCOUNTS_FILE)}",
        "",
    ])


def hash_password(password: str) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(BCRYPT_COST)).decode()


def nodes(cfg: Config) -> list[Node]:
    try:
        return [Node(**n) for n in json.loads((cfg.nats.dir / NODES_FILE).read_text())]
    except FileNotFoundError:
        return []


def write_cluster(cfg: Config, cluster: list[Node], devices: list[Device], *,
                  fresh: dict[str, str] | None = None) -> list[Path]:
    """Every node's config, the node list and the logins; returns the node configs."""
    d = cfg.nats.dir
    for sub in ("data", "run"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    atomic_file.write(d / NODES_FILE, json.dumps([asdict(n) for n in cluster], indent=1), 0o644)
    paths = []
    for n in cluster:
        path = d / f"{n.name}.conf"
        atomic_file.write(path, node_conf(n, cluster, d), 0o644)
        paths.append(path)
    write_logins(cfg, devices, fresh=fresh)
    return paths


def write_logins(cfg: Config, devices: list[Device], *, fresh: dict[str, str] | None = None) -> list[str]:
    """Bring the logins in line with the registry; returns the active devices that have no
    NATS login (issued before the cluster existed: `device config` gives them one)."""
    d = cfg.nats.dir
    fresh = fresh or {}
    try:
        old: dict[str, str] = json.loads((d / LOGINS_FILE).read_text())
    except FileNotFoundError:
        old = {}
    logins: dict[str, str] = {}
    missing = []
    for dev in devices:
        if dev.status != "active":
            continue
        if dev.id in fresh:
            logins[dev.id] = hash_password(fresh[dev.id])
        elif dev.id in old:
            logins[dev.id] = old[dev.id]
        else:
            missing.append(dev.id)
    gateway = old.get("", "")
    if not gateway or not bcrypt.checkpw(cfg.mqtt.password.encode(), gateway.encode()):
        gateway = hash_password(cfg.mqtt.password)
    atomic_file.write(d / LOGINS_FILE, json.dumps({"": gateway, **logins}, indent=0))
    atomic_file.write(d / ACCOUNTS_FILE, accounts_conf(cfg.topic_root, cfg.mqtt.username, gateway, logins))
    return missing


def reload(cfg: Config) -> int:
    """SIGHUP every running node (what `nats-server --signal reload` sends); how many were told."""
    told = 0
    for n in nodes(cfg):
        try:
            pid = int((cfg.nats.dir / "run" / f"{n.name}.pid").read_text().strip())
            os.kill(pid, signal.SIGHUP)
            told += 1
        except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
            continue
    return told


def sync(cfg: Config, devices: list[Device], *, fresh: dict[str, str] | None = None) -> list[str]:
    """Rewrite the logins and tell the running nodes; returns devices without a NATS login."""
    missing = write_logins(cfg, devices, fresh=fresh)
    reload(cfg)
    return missing
