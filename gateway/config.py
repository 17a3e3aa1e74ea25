"""Gateway configuration, read from one TOML file.

Relative paths in the file are taken relative to the file's own folder, so a
state folder can be moved as a whole.
"""
from __future__ import annotations

import ipaddress
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import tomli_w

if TYPE_CHECKING:
    from .sinks.base import SinkEntry

from .domain import ladder
from .domain.dispatch import DispatchConfig, DispatchError
from .logs import FORMATS as LOG_FORMATS

DEFAULT_PATH = Path("var/gateway.toml")


class ConfigError(Exception):
    pass


@dataclass
class MqttConfig:
    host: str = "127.0.0.1"
    port: int = 18830
    username: str = "gateway"
    password: str = ""
    client_id: str = "gateway-1"
    group: str = "gateways"
    engine: str = "mosquitto"  # or "nats": a NATS JetStream cluster ([nats], gateway/transport/nats.py)
    # Where the gateway reaches the backup broker ([broker] backup_port set); port 0: that port.
    backup_host: str = "127.0.0.1"
    backup_port: int = 0


@dataclass
class NatsConfig:
    dir: Path = Path("nats")  # node configs, logins, data and pids (gateway/natsconf.py)
    servers: list[str] = field(default_factory=list)  # the gateways' nats:// URLs, every node
    stream: str = "PANIC_ALERTS"
    consumer: str = "gateways"  # the one durable pull consumer every gateway shares
    replicas: int = 3
    ack_wait_s: int = 30  # an alert a gateway took and never settled goes to another after this


@dataclass
class BrokerConfig:
    dir: Path = Path("broker")
    device_port: int = 18830
    tls_port: int = 0  # 0: no TLS listener
    public_host: str = "127.0.0.1"  # the host name devices are given in their config
    tls_bind: str = "127.0.0.1"  # where the TLS listener for devices listens; exposing it is a choice
    # CA, certificate and key of the TLS listener; empty: made with `openssl` in <dir>/tls/
    tls_cafile: str = ""
    tls_certfile: str = ""
    tls_keyfile: str = ""
    # A second mosquitto, the buttons' second address (docs/gateway.md "Backup broker"): its own
    # folder, listeners and persistence, the same logins and ACLs. 0: none.
    backup_port: int = 0
    backup_dir: Path = Path("broker-backup")
    backup_tls_port: int = 0
    backup_public_host: str = ""  # empty: public_host


@dataclass(frozen=True)
class BrokerLink:
    """One broker the gateway consumes from: `backup` marks the second path's."""
    name: str  # "primary" | "backup"
    host: str
    port: int
    backup: bool


@dataclass
class StoreConfig:
    kind: str = "sqlite"
    path: Path = Path("gateway.db")
    dsn: str = ""
    key_file: str = ""  # the key sealing device secrets at rest; empty: secret.key beside the config


@dataclass
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    # Reverse proxies whose X-Forwarded-For / X-Forwarded-Proto are believed (addresses or
    # networks). Empty: those headers are ignored, since any client could send them.
    trusted_proxies: list[str] = field(default_factory=list)


@dataclass
class FleetConfig:
    """`[fleet]`: releases, staged rollouts and remote commands (docs/gateway.md "Fleet updates")."""
    # The release manager's public key(s) (protocol/release.py reads them): a release is stored only
    # when its signature verifies with one, and `device config` gives buttons the same set.
    release_keys: str = ""
    halt_pct: float = 10.0  # a rollout halts when more of its trial group failed than this share
    halt_min: int = 3  # ... once at least this many devices have an outcome
    trial_s: int = 600  # a device silent this long after downloading or on trial failed its trial
    retry_s: int = 600  # a device that could not take a release now is asked again after this
    parallel: int = 20  # devices sent a release at once
    chunk_rate: int = 20  # OTA chunks per second to one device
    chunk_rate_total: int = 200  # OTA chunks per second in all (1 KB each)
    workers: bool = True  # false: this gateway runs no fleet worker (another one does)


@dataclass
class Config:
    path: Path
    topic_root: str = "panic/v1"
    max_payload: int = 1024
    stale_past_s: int = 24 * 3600
    stale_future_s: int = 300
    escalate_after_s: int = 60
    forward_dead_after_s: int = 24 * 3600
    forward_backoff_ms: int = 1000  # first retry delay; doubles per attempt
    forward_backoff_max_s: int = 300
    forward_lease_s: int = 60  # a claimed forward another gateway may take over after this
    forward_retention_days: int = 30  # delivered forwards are deleted after this
    forward_dead_retention_days: int = 0  # dead letters too, after this; 0: kept until retried
    heartbeat_s: int = 60  # devices' status interval (a status may carry its own "hb")
    silent_factor: float = 2.5  # silent after this many heartbeats without a status
    low_battery_pct: int = 20
    backlog_min: int = 1  # outbox entries in a status that count as a backlog
    # Past it a button's further alerts join its newest open incident; 0: no cap. Above any real
    # use (a holder pressing again and again while offline queues a press each time).
    open_incidents_per_device: int = 20
    false_alarm_limit: int = 3  # 0: no policy
    false_alarm_window_s: int = 30 * 86400
    false_alarm_action: str = "flag"  # flag | suspend
    sla_s: int = 600  # the promise: on scene within 10 minutes of the press
    cap_sender: str = "panic-gateway@polresta-malang-kota"
    utc_offset_min: int = 420  # WIB, for CAP times and reports
    log_format: str = "text"  # text | json (one object per line, for a log stack)
    mqtt: MqttConfig = field(default_factory=MqttConfig)
    nats: NatsConfig = field(default_factory=NatsConfig)
    broker: BrokerConfig = field(default_factory=BrokerConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    fleet: FleetConfig = field(default_factory=FleetConfig)
    dispatch: DispatchConfig = field(default_factory=DispatchConfig)  # the ETA approximation's knobs
    # `[[escalation]]`: the ladder's steps; the one step to Polresta after escalate_after_s without it.
    escalation: tuple[ladder.Step, ...] = ()
    # Every dispatch sink: the built-in ones, `[[webhooks]]` and `[[sinks]]` (gateway/sinks/registry.py).
    sinks: list[SinkEntry] = field(default_factory=list)

    @property
    def webhooks(self) -> list[Any]:
        """The options (url, secret, format) of every webhook sink."""
        return [e.options for e in self.sinks if e.module == "gateway.sinks.webhook"]


def _section(cls, data: dict, base: Path, name: str):
    known = cls.__dataclass_fields__
    unknown = set(data) - set(known)
    if unknown:
        raise ConfigError(f"[{name}]: unknown keys {sorted(unknown)}")
    values = {}
    for key, value in data.items():
        default = known[key].default
        if isinstance(default, Path):
            value = Path(value)
            value = value if value.is_absolute() else base / value
        elif isinstance(default, int) and not isinstance(value, int):
            raise ConfigError(f"[{name}] {key}: expected an integer, got {value!r}")
        values[key] = value
    return cls(**values)


def _check_proxies(proxies: object) -> None:
    if not isinstance(proxies, list) or not all(isinstance(p, str) for p in proxies):
        raise ConfigError("[api] trusted_proxies: a list of addresses or networks")
    for p in proxies:
        try:
            ipaddress.ip_network(p, strict=False)
        except ValueError:
            raise ConfigError(f"[api] trusted_proxies: {p!r} is not an address or network") from None


def load(path: str | os.PathLike | None = None) -> Config:
    path = Path(path or os.environ.get("PANIC_CONFIG") or DEFAULT_PATH).resolve()
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"no config at {path}: run `panic-gateway init` or pass --config") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = path.parent
    gw = dict(raw.get("gateway", {}))
    cfg = Config(path=path)
    for key, value in gw.items():
        if key not in Config.__dataclass_fields__ or key in ("path", "mqtt", "nats", "broker", "store", "api", "fleet",
                                                             "sinks", "dispatch", "escalation"):
            raise ConfigError(f"[gateway]: unknown key {key!r}")
        default = Config.__dataclass_fields__[key].default
        ok = isinstance(value, (int, float)) if isinstance(default, float) else type(value) is type(default)
        if not ok:
            raise ConfigError(f"[gateway] {key}: expected {type(default).__name__}, got {value!r}")
        setattr(cfg, key, value)
    cfg.mqtt = _section(MqttConfig, raw.get("mqtt", {}), base, "mqtt")
    cfg.nats = _section(NatsConfig, raw.get("nats", {}), base, "nats")
    if cfg.mqtt.engine not in ("mosquitto", "nats"):
        raise ConfigError(f"[mqtt] engine must be mosquitto or nats, not {cfg.mqtt.engine!r}")
    cfg.broker = _section(BrokerConfig, raw.get("broker", {}), base, "broker")
    if cfg.broker.backup_port and cfg.broker.backup_port in (cfg.broker.device_port, cfg.broker.tls_port):
        raise ConfigError("[broker] backup_port must differ from device_port and tls_port")
    if cfg.broker.backup_port and cfg.broker.backup_dir.resolve() == cfg.broker.dir.resolve():
        raise ConfigError("[broker] backup_dir must differ from dir: each broker keeps its own state")
    if cfg.broker.backup_port and cfg.broker.tls_port and not cfg.broker.backup_tls_port:
        # Buttons of a TLS broker get no plaintext address to fall back to, the backup's included.
        raise ConfigError("[broker] a backup broker beside a TLS listener needs backup_tls_port")
    cfg.store = _section(StoreConfig, raw.get("store", {}), base, "store")
    cfg.api = _section(ApiConfig, raw.get("api", {}), base, "api")
    _check_proxies(cfg.api.trusted_proxies)
    cfg.fleet = _section(FleetConfig, raw.get("fleet", {}), base, "fleet")
    f = cfg.fleet
    if not isinstance(f.halt_pct, (int, float)) or isinstance(f.halt_pct, bool):
        raise ConfigError(f"[fleet] halt_pct: expected a number, got {f.halt_pct!r}")
    f.halt_pct = float(f.halt_pct)
    if not (0 <= f.halt_pct <= 100) or min(f.halt_min, f.trial_s, f.retry_s, f.parallel, f.chunk_rate,
                                           f.chunk_rate_total) <= 0:
        raise ConfigError("[fleet] halt_pct must be 0..100 and halt_min, trial_s, retry_s, parallel, chunk_rate, "
                          "chunk_rate_total positive")
    try:
        cfg.dispatch = DispatchConfig.from_toml(raw.get("dispatch", {}))
    except DispatchError as exc:
        raise ConfigError(str(exc)) from None
    # Sink modules import this one: load the registry only once the module is whole.
    from .sinks.registry import parse as parse_sinks
    cfg.sinks = parse_sinks(raw.get("sinks"), raw.get("webhooks"), base)
    if cfg.store.kind not in ("sqlite", "postgres"):
        raise ConfigError(f"[store] kind must be sqlite or postgres, not {cfg.store.kind!r}")
    if cfg.log_format not in LOG_FORMATS:
        raise ConfigError(f"[gateway] log_format must be one of {', '.join(LOG_FORMATS)}, not {cfg.log_format!r}")
    if cfg.false_alarm_action not in ("flag", "suspend"):
        raise ConfigError(f"[gateway] false_alarm_action must be flag or suspend, not {cfg.false_alarm_action!r}")
    if cfg.forward_retention_days <= 0 or cfg.forward_dead_retention_days < 0:
        raise ConfigError("[gateway] forward_retention_days must be positive, forward_dead_retention_days "
                          "0 (keep until retried) or positive")
    if cfg.forward_backoff_ms <= 0 or cfg.escalate_after_s <= 0 or cfg.heartbeat_s <= 0:
        raise ConfigError("[gateway] forward_backoff_ms, escalate_after_s and heartbeat_s must be positive")
    try:
        cfg.escalation = ladder.parse(raw.get("escalation"), cfg.escalate_after_s)
    except ladder.LadderError as exc:
        raise ConfigError(str(exc)) from None
    return cfg


def broker_links(cfg: Config) -> list[BrokerLink]:
    """Every mosquitto the gateway consumes from, the primary first (NATS: the one cluster)."""
    links = [BrokerLink("primary", cfg.mqtt.host, cfg.mqtt.port, backup=False)]
    if cfg.mqtt.engine == "mosquitto" and cfg.broker.backup_port:
        links.append(BrokerLink("backup", cfg.mqtt.backup_host, cfg.mqtt.backup_port or cfg.broker.backup_port,
                                backup=True))
    return links


def broker_file(cfg: Config, value: str) -> Path | None:
    """A [broker] tls_* path, relative to the config's folder; None when not set."""
    if not value:
        return None
    p = Path(value)
    return p if p.is_absolute() else cfg.path.parent / p


def secret_key_file(cfg: Config) -> Path:
    """[store] key_file, relative to the config's folder; `<config folder>/secret.key` when not set."""
    return broker_file(cfg, cfg.store.key_file) or cfg.path.parent / "secret.key"


def write(data: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # The file holds the gateway's broker password: owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        tomli_w.dump(data, f)
