"""The project's mosquitto: config, password file and ACL, kept current with the registry.

A device's MQTT username is its id, and the ACL lets it write only its own alert and
status and read only its own ack. Registry changes rewrite the files and send SIGHUP,
on which mosquitto reloads the password file and ACL without dropping anyone else.

Revocation is immediate: on SIGHUP mosquitto (2.0) checks every connected client
against the reloaded password file and disconnects those whose login no longer
verifies, so a suspended, removed or re-keyed device loses its connection at the
reload (tests/test_registry.py proves it); the gateway independently rejects alerts
under an old secret from its next batch on (the registry version, see ingest.Registry).

Listeners: plain MQTT on loopback (`device_port`, the gateway's own link, and devices
on the same host such as the simulator), and, when `tls_port` is set, TLS for devices
on `tls_bind`, with a CA and server certificate made by `certs.ensure` unless given.
"""
from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import signal
from pathlib import Path

from . import certs
from .config import Config, ConfigError, broker_file
from .models import Device

PBKDF2_ITERATIONS = 101  # mosquitto_passwd's default for $7$ (PBKDF2-SHA512)


def password_hash(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, PBKDF2_ITERATIONS)
    return f"$7${PBKDF2_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def acl_text(root: str, gateway_user: str) -> str:
    return "\n".join([
        f"user {gateway_user}",
        f"topic read {root}/+/alert",
        f"topic read {root}/+/status",
        f"topic write {root}/+/ack",
        f"topic readwrite {root}/incidents/#",
        f"topic readwrite {root}/ops/#",
        "",
        "# every other user is a device, named by its id",
        f"pattern write {root}/%u/alert",
        f"pattern write {root}/%u/status",
        f"pattern read {root}/%u/ack",
        "",
    ])


def mosquitto_conf(cfg: Config) -> str:
    d = cfg.broker.dir
    lines = [
        "# Written by panic-gateway; registry changes rewrite passwd and acl.",
        f"user {getpass.getuser()}",  # keep the user that owns the files (see DESIGN: root drops to mosquitto)
        "per_listener_settings false",
        "allow_anonymous false",
        f"password_file {d / 'passwd'}",
        f"acl_file {d / 'acl'}",
        "persistence true",
        f"persistence_location {d / 'data'}/",
        "autosave_interval 60",
        f"pid_file {d / 'mosquitto.pid'}",
        "log_dest stderr",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "connection_messages true",
        "max_queued_messages 100000",
        "max_inflight_messages 0",
        "max_packet_size 65536",
        "",
        "set_tcp_nodelay true",
        "",
        "# plain MQTT on loopback: the gateway (and devices on this host, e.g. the simulator)",
        f"listener {cfg.broker.device_port} 127.0.0.1",
    ]
    if cfg.broker.tls_port:
        ca, cert, key = tls_files(cfg)
        lines += [
            "",
            "# TLS for devices",
            f"listener {cfg.broker.tls_port} {cfg.broker.tls_bind}",
            f"cafile {ca}",
            f"certfile {cert}",
            f"keyfile {key}",
            "tls_version tlsv1.2",  # the minimum
            "require_certificate false",  # devices log in with username and password
        ]
    return "\n".join(lines) + "\n"


def tls_files(cfg: Config) -> tuple[Path, Path, Path]:
    """The TLS listener's CA, certificate and key: as configured, else made in <dir>/tls/."""
    given = [broker_file(cfg, v) for v in (cfg.broker.tls_cafile, cfg.broker.tls_certfile, cfg.broker.tls_keyfile)]
    if all(given):
        return given[0], given[1], given[2]  # type: ignore[return-value]
    if any(given):
        raise ConfigError("[broker] give all of tls_cafile, tls_certfile, tls_keyfile, or none")
    hosts = [cfg.broker.public_host, "localhost", "127.0.0.1"]
    return certs.ensure(cfg.broker.dir / "tls", hosts)


def _write(path: Path, text: str, mode: int = 0o600) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_files(cfg: Config, devices: list[Device]) -> Path:
    d = cfg.broker.dir
    (d / "data").mkdir(parents=True, exist_ok=True)
    _write(d / "mosquitto.conf", mosquitto_conf(cfg), 0o644)
    users = [(cfg.mqtt.username, cfg.mqtt.password)]
    users += [(dev.id, dev.mqtt_password) for dev in devices if dev.status == "active"]
    _write(d / "passwd", "".join(f"{u}:{password_hash(p)}\n" for u, p in users))
    _write(d / "acl", acl_text(cfg.topic_root, cfg.mqtt.username))
    return d / "mosquitto.conf"


def reload(cfg: Config) -> bool:
    """SIGHUP the running broker, if any; True when one was told."""
    pid_file = cfg.broker.dir / "mosquitto.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def sync(cfg: Config, devices: list[Device]) -> bool:
    write_files(cfg, devices)
    return reload(cfg)
