"""The system under test or demo: the project's own mosquitto and gateway as processes.

Used by the tests, `make up`, the demo and `panic-sim`: everything goes through the
gateway's own CLI and config, exactly as an operator would run it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout}s")


class Stack:
    def __init__(self, state: Path, broker_port: int | None = None, api_port: int | None = None,
                 webhooks: list[str] | None = None, store: str = "sqlite", dsn: str = "",
                 gateway: dict | None = None, backup: bool = False) -> None:
        """gateway: [gateway] settings written into the config at init (e.g. a cap off).
        backup: deploy a backup broker too (`init --backup-broker-port`)."""
        self.state = Path(state).resolve()
        self.broker_port = broker_port or free_port()
        self.backup_port = free_port() if backup else 0
        self.backup_broker: subprocess.Popen | None = None
        self.api_port = api_port or free_port()
        self.webhooks = webhooks or []
        self.store, self.dsn = store, dsn
        self.gateway_values = dict(gateway or {})
        self.config = self.state / "gateway.toml"
        self.broker: subprocess.Popen | None = None
        self.gateways: list[subprocess.Popen] = []
        self._tokens: dict[str, str] = {}
        self.issued: list[dict] = []  # credentials handed out by add_device (the registry keeps hashes)

    # --- CLI -----------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        env = dict(os.environ, PANIC_CONFIG=str(self.config))
        proc = subprocess.run([str(BIN / "panic-gateway"), *args], capture_output=True, text=True, env=env)
        if check and proc.returncode != 0:
            raise RuntimeError(f"panic-gateway {' '.join(args)} failed: {proc.stderr}")
        return proc

    def init(self) -> None:
        args = ["init", "--state", str(self.state), "--broker-port", str(self.broker_port),
                "--api-port", str(self.api_port), "--store", self.store, "--dsn", self.dsn]
        for url in self.webhooks:
            args += ["--webhook", url]
        if self.backup_port:
            args += ["--backup-broker-port", str(self.backup_port)]
        self.cli(*args)
        if self.gateway_values:
            self.set_config("gateway", **self.gateway_values)

    def add_device(self, dev: str, lat6: int, lon6: int, **fields) -> dict:
        args = ["device", "add", dev, "--lat6", str(lat6), "--lon6", str(lon6), "--json"]
        for key, value in fields.items():
            args += [f"--{key}", str(value)]
        creds = json.loads(self.cli(*args).stdout)
        self.issued.append(creds)
        return creds

    def token(self, role: str = "operator") -> str:
        if role not in self._tokens:
            self._tokens[role] = self.cli("token", "create", "--role", role).stdout.strip()
        return self._tokens[role]

    # --- processes -----------------------------------------------------------------
    def _mosquitto(self, folder: str, log_name: str, port: int) -> subprocess.Popen:
        log = open(self.state / log_name, "ab")
        proc = subprocess.Popen(["mosquitto", "-c", str(self.state / folder / "mosquitto.conf")], stdout=log, stderr=log)
        wait_port(port)
        return proc

    @staticmethod
    def _terminate(proc: subprocess.Popen | None) -> None:
        if proc and proc.poll() is None:
            proc.terminate()
            proc.wait(10)

    def start_broker(self) -> None:
        self.broker = self._mosquitto("broker", "mosquitto.log", self.broker_port)

    def stop_broker(self) -> None:
        self._terminate(self.broker)
        self.broker = None

    def start_backup_broker(self) -> None:
        self.backup_broker = self._mosquitto("broker-backup", "mosquitto-backup.log", self.backup_port)

    def stop_backup_broker(self) -> None:
        self._terminate(self.backup_broker)
        self.backup_broker = None

    def kill_broker(self, which: str = "primary") -> None:
        """SIGKILL a broker (a crash or power loss: no clean shutdown, no wills flushed)."""
        proc = self.broker if which == "primary" else self.backup_broker
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
        if which == "primary":
            self.broker = None
        else:
            self.backup_broker = None

    def start_gateway(self, config: Path | None = None, wait: bool = True,
                      env: dict[str, str] | None = None) -> subprocess.Popen:
        log = open(self.state / f"gateway{len(self.gateways)}.log", "ab")
        gw = subprocess.Popen([str(BIN / "panic-gateway"), "run", "--config", str(config or self.config)],
                              stdout=log, stderr=log, env={**os.environ, **(env or {})})
        self.gateways.append(gw)
        if wait:
            self.wait_healthy()
        return gw

    def kill_gateway(self, gw: subprocess.Popen | None = None) -> None:
        gw = gw or self.gateways[-1]
        gw.send_signal(signal.SIGKILL)
        gw.wait()
        self.gateways.remove(gw)

    def wait_healthy(self, timeout: float = 30.0) -> None:
        # A liveness bound: a fresh NATS cluster elects its JetStream leader first (up to 30 s
        # on a loaded machine, as `make up` allows), and the gateway serves once it has a stream.
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.api}/healthz", timeout=1)
                if r.status_code == 200:
                    return
                last = r.text
            except httpx.HTTPError as exc:
                last = str(exc)
            time.sleep(0.05)
        raise TimeoutError(f"gateway not healthy after {timeout}s: {last}")

    def up(self) -> Stack:
        self.init()
        self.start_broker()
        if self.backup_port:
            self.start_backup_broker()
        self.start_gateway()
        return self

    def down(self) -> None:
        for gw in list(self.gateways):
            if gw.poll() is None:
                gw.terminate()
                try:
                    gw.wait(10)
                except subprocess.TimeoutExpired:
                    gw.kill()
            self.gateways.remove(gw)
        self.stop_broker()
        self.stop_backup_broker()

    # --- API -----------------------------------------------------------------------
    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def get(self, path: str, role: str = "operator", **params) -> dict:
        r = httpx.get(self.api + path, params=params, headers={"Authorization": f"Bearer {self.token(role)}"},
                      timeout=10)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, role: str = "operator", **body) -> httpx.Response:
        return httpx.post(self.api + path, json=body, headers={"Authorization": f"Bearer {self.token(role)}"},
                          timeout=10)

    def incidents(self, **params) -> list[dict]:
        return self.get("/api/incidents", limit=5000, **params)["incidents"]

    def metrics(self) -> dict[str, float]:
        """Counters and gauges as {'name{label="v"}': value}, from the live /metrics."""
        text = httpx.get(self.api + "/metrics", timeout=5).text
        out: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(s.labels.items()))
                out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        return out

    def rejected(self, reason: str) -> float:
        return self.metrics().get(f'panic_alerts_rejected_total{{reason="{reason}"}}', 0.0)

    # --- configuration and more gateways (tests of policies and scale-out) ------------
    def set_config(self, section: str = "gateway", config: Path | None = None, **values) -> None:
        """Change keys of one section of a gateway.toml (default: this stack's own).
        Takes effect for gateways started afterwards."""
        import tomllib

        from gateway.config import write
        path = config or self.config
        data = tomllib.loads(path.read_text())
        data.setdefault(section, {}).update(values)
        write(data, path)

    def gateway_config(self, name: str, api_port: int | None = None, **gateway_values) -> tuple[Path, int]:
        """A copy of the config for one more gateway on the same broker and store: its own
        MQTT client id (so its own session and leases) and API port. Returns (path, api port)."""
        import tomllib

        from gateway.config import write
        data = tomllib.loads(self.config.read_text())
        port = api_port or free_port()
        data["mqtt"]["client_id"] = name
        data["api"]["port"] = port
        data.setdefault("gateway", {}).update(gateway_values)
        path = self.state / f"{name}.toml"
        write(data, path)
        return path, port

    def broker_tls_port(self) -> int:
        """Give the broker a TLS listener on a free port (call before start_broker)."""
        port = free_port()
        self.set_config("broker", tls_port=port, tls_bind="127.0.0.1")
        self.cli("broker-config")
        return port
