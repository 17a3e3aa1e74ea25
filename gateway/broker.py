"""The project's mosquitto: its config, its logins and ACLs, kept current with the registry.

A device's MQTT username is its id. Logins and ACLs live in mosquitto's dynamic-security
plugin (gateway/dynsec.py): a device may publish only its own alert, status and result, subscribe
to and receive only its own ack, cmd and ota, and connect only with its id as client id, so it can
neither join the gateways' shared subscription nor take over another client's session.
The gateway's login and the broker admin's are never a device's.

Registry changes are applied to a running broker at once as dynamic-security commands:
a suspended, removed or re-keyed device is disconnected as its login goes (the plugin
kicks the clients of a changed login); the gateway independently rejects alerts under an
old secret from its next batch on (the registry version, see ingest.Registry).

Listeners: plain MQTT on loopback (`device_port`, the gateway's own link, and devices on
the same host such as the simulator), and, when `tls_port` is set, TLS for devices on
`tls_bind` (loopback unless configured: exposing the broker is a decision, not a default),
with a CA and server certificate made by `certs.ensure` unless given.

A backup broker ([broker] backup_port) is a second mosquitto with its own folder, listeners
and persistence and the same logins and ACLs: `instances` gives each broker's view of the
config, and `write_all` / `sync_all` apply a registry change to every one of them, each on
its own (a broker that is down gets its state file, and the others are told regardless).

Privileges: started as root, mosquitto runs as `mosquitto` when that account exists and can
reach the broker's folder; else as the user that wrote the config, which says why. What it
writes (its plugin state and pid in `run/`, its persistence in `data/`) is that user's; the
folder and mosquitto.conf stay root's, so the broker's account cannot change how it is
started next time.
"""
from __future__ import annotations

import getpass
import json
import os
import pwd
import secrets
import signal
import stat
from dataclasses import dataclass, replace
from pathlib import Path

from . import atomic_file, certs, dynsec
from .config import Config, ConfigError, broker_file
from .models import Device

DROP_TO = "mosquitto"
STATE_FILE = "run/dynamic-security.json"
PID_FILE = "run/mosquitto.pid"
ADMIN_FILE = "broker-admin.secret"


def run_as(cfg: Config) -> tuple[str, str | None]:
    """(the user mosquitto runs as, why it keeps root or None). Only root can switch users."""
    me = getpass.getuser()
    if os.geteuid() != 0:
        return me, None
    try:
        account = pwd.getpwnam(DROP_TO)
    except KeyError:
        return me, f"no `{DROP_TO}` account on this host"
    blocked = _unreachable(cfg.broker.dir, account.pw_uid, account.pw_gid)
    if blocked is not None:
        return me, f"{blocked} is not reachable by `{DROP_TO}` (put the state folder where it is, e.g. /var/lib)"
    return DROP_TO, None


def _unreachable(path: Path, uid: int, gid: int) -> Path | None:
    """The first folder above `path` that user uid/gid cannot enter, if any."""
    for folder in reversed(path.resolve().parents):
        st = folder.stat()
        mode = st.st_mode
        if st.st_uid == uid:
            ok = mode & stat.S_IXUSR
        elif st.st_gid == gid:
            ok = mode & stat.S_IXGRP
        else:
            ok = mode & stat.S_IXOTH
        if not ok:
            return folder
    return None


def mosquitto_conf(cfg: Config) -> str:
    d = cfg.broker.dir
    user, why = run_as(cfg)
    lines = [
        "# Written by panic-gateway; logins and ACLs are the dynamic-security plugin's.",
        *([f"# runs as {user}: {why}"] if why else []),
        f"user {user}",
        "per_listener_settings false",
        "allow_anonymous false",
        f"plugin {dynsec.plugin_path()}",
        f"plugin_opt_config_file {d / STATE_FILE}",
        "persistence true",
        f"persistence_location {d / 'data'}/",
        "autosave_interval 60",
        f"pid_file {d / PID_FILE}",
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
    if cfg.broker.backup_public_host and cfg.broker.backup_public_host not in hosts:
        hosts.insert(1, cfg.broker.backup_public_host)  # the backup serves the same certificate
    return certs.ensure(cfg.broker.dir / "tls", hosts)


def _admin_password(d: Path) -> str:
    path = d / ADMIN_FILE
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        password = secrets.token_urlsafe(24)
        atomic_file.write(path, password + "\n")
        return password


def _plan(cfg: Config, devices: list[Device], fresh: dict[str, str]) -> tuple[Path, dict, list[dict], str]:
    d = cfg.broker.dir
    # The plugin rewrites its state with the broker's umask: the folder keeps it private.
    (d / "run").mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(d / "run", 0o700)
    admin = _admin_password(d)
    logins, roles = dynsec.wanted(cfg.topic_root, cfg.mqtt.group, (cfg.mqtt.username, cfg.mqtt.password), admin,
                                  [dynsec.DeviceLogin(dev.id, dev.mqtt_password, active=dev.status == "active",
                                                      fresh=fresh.get(dev.id)) for dev in devices])
    state = d / STATE_FILE
    try:
        old = json.loads(state.read_text())
    except FileNotFoundError:
        old = {}
    except ValueError as exc:
        raise ConfigError(f"{state} is not JSON ({exc}); remove it and run `panic-gateway broker-config`") from None
    new, commands = dynsec.plan(old, logins, roles)
    return state, new, commands, admin


def _hand_over(cfg: Config, paths: list[Path]) -> None:
    """Give the files mosquitto writes (its state, persistence, pid) to the user it runs as."""
    user, _ = run_as(cfg)
    if os.geteuid() != 0 or user == getpass.getuser():
        return
    account = pwd.getpwnam(user)
    for path in paths:
        if path.exists():
            os.chown(path, account.pw_uid, account.pw_gid)


def write_files(cfg: Config, devices: list[Device], *, fresh: dict[str, str] | None = None) -> Path:
    """`fresh`: device id -> a plain MQTT password just issued (the registry keeps hashes only)."""
    d = cfg.broker.dir
    for sub in ("data", "run"):
        (d / sub).mkdir(parents=True, exist_ok=True)
    # Where `make down` and reload() have always looked for the pid.
    pid_link = d / "mosquitto.pid"
    if not pid_link.is_symlink():
        pid_link.unlink(missing_ok=True)
        pid_link.symlink_to(PID_FILE)
    atomic_file.write(d / "mosquitto.conf", mosquitto_conf(cfg), 0o644)
    state, new, _, _ = _plan(cfg, devices, fresh or {})
    atomic_file.write(state, json.dumps(new, indent=1))
    _hand_over(cfg, [d / "data", d / "run", state, *(d / "data").iterdir(), *(d / "tls").glob("server.*")])
    return d / "mosquitto.conf"


def reload(cfg: Config) -> bool:
    """SIGHUP the running broker, if any (it re-reads its config); True when one was told."""
    pid_file = cfg.broker.dir / "mosquitto.pid"
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, signal.SIGHUP)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return False
    return True


def sync(cfg: Config, devices: list[Device], *, fresh: dict[str, str] | None = None) -> bool:
    """Bring the broker's logins in line with the registry: a running broker through
    dynamic-security commands (it rewrites its state file itself), else the file.
    `fresh`: device id -> a plain MQTT password just issued, the only way a running broker
    can be given one. True when a running broker was told."""
    state, new, commands, admin = _plan(cfg, devices, fresh or {})
    told = False
    try:
        dynsec.send("127.0.0.1", cfg.broker.device_port, admin, commands)
        told = bool(commands)
    except OSError:
        pass  # no broker running: it reads the file at start
    if not told:
        atomic_file.write(state, json.dumps(new, indent=1))
        _hand_over(cfg, [state])
    return told


# --- every broker: the primary and the backup ------------------------------------------------
def instances(cfg: Config) -> list[tuple[str, Config]]:
    """(name, that broker's view of the config) for every mosquitto, the primary first. The
    backup's view puts its folder, ports and public host in [broker]; with TLS it serves the
    primary's certificate, so a button verifies both against the one CA on its flash."""
    out = [("primary", cfg)]
    b = cfg.broker
    if cfg.mqtt.engine != "mosquitto" or not b.backup_port:
        return out
    backup = replace(b, dir=b.backup_dir, device_port=b.backup_port, tls_port=b.backup_tls_port,
                     public_host=b.backup_public_host or b.public_host, backup_port=0, backup_tls_port=0)
    if b.backup_tls_port:
        ca, cert, key = tls_files(cfg)
        backup.tls_cafile, backup.tls_certfile, backup.tls_keyfile = str(ca), str(cert), str(key)
    out.append(("backup", replace(cfg, broker=backup)))
    return out


def write_all(cfg: Config, devices: list[Device], *, fresh: dict[str, str] | None = None) -> list[Path]:
    """`write_files` for every broker: each one's mosquitto.conf."""
    return [write_files(view, devices, fresh=fresh) for _, view in instances(cfg)]


@dataclass(frozen=True)
class SyncResult:
    broker: str
    told: bool  # a running broker took the commands; False: its state file was written
    error: str | None = None  # this broker's sync failed (the others' went on)


def sync_all(cfg: Config, devices: list[Device], *, fresh: dict[str, str] | None = None) -> list[SyncResult]:
    """`sync` every broker, each on its own: one that fails (its folder unwritable, a login
    it lacks and only a fresh password could make) does not keep the others from the change."""
    results = []
    for name, view in instances(cfg):
        try:
            results.append(SyncResult(name, sync(view, devices, fresh=fresh)))
        except (OSError, ConfigError) as exc:
            results.append(SyncResult(name, False, f"{type(exc).__name__}: {exc}"))
    return results

