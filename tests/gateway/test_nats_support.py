"""A real three-node NATS cluster on loopback for the tests (no tests here): each node a
`nats-server` process on free ports, configured by gateway/natsconf.py."""
from __future__ import annotations

import asyncio
import subprocess
import time
from pathlib import Path

from gateway import natsconf
from gateway.config import Config
from simulator.stack import free_port, wait_port


class Cluster:
    def __init__(self, cfg: Config, count: int = 3) -> None:
        self.cfg = cfg
        self.nodes = [natsconf.Node(f"n{i + 1}", "127.0.0.1", free_port(), free_port(), free_port(), free_port(),
                                    bind="127.0.0.1") for i in range(count)]
        self.procs: dict[str, subprocess.Popen] = {}

    def write(self, devices: list, fresh: dict[str, str] | None = None) -> None:
        natsconf.write_cluster(self.cfg, self.nodes, devices, fresh=fresh)
        self.cfg.nats.servers = [n.url for n in self.nodes]

    def start(self, name: str | None = None) -> None:
        for n in self.nodes:
            if name not in (None, n.name) or n.name in self.procs:
                continue
            log = open(self.cfg.nats.dir / f"{n.name}.log", "ab")
            self.procs[n.name] = subprocess.Popen(["nats-server", "-c", str(self.cfg.nats.dir / f"{n.name}.conf")],
                                                  stdout=log, stderr=log)
        for n in self.nodes:
            if n.name in self.procs:
                wait_port(n.mqtt_port, timeout=20)

    def kill(self, name: str) -> None:
        p = self.procs.pop(name)
        p.kill()
        p.wait()

    def wait_jetstream(self, timeout: float = 30.0) -> None:
        """Until the cluster has a JetStream meta leader (streams can be made)."""
        import nats

        async def probe() -> bool:
            nc = await nats.connect(servers=self.cfg.nats.servers, user=self.cfg.mqtt.username,
                                    password=self.cfg.mqtt.password, connect_timeout=2, allow_reconnect=False)
            try:
                await nc.jetstream().account_info()
                return True
            except Exception:
                return False
            finally:
                await nc.close()

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if asyncio.run(probe()):
                    return
            except Exception:
                pass
            time.sleep(0.3)
        raise TimeoutError("no JetStream meta leader")

    def down(self) -> None:
        for name in list(self.procs):
            p = self.procs.pop(name)
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()


def nats_config(folder: Path, root: str = "panic/v1") -> Config:
    cfg = Config(path=folder / "gateway.toml")
    cfg.mqtt.engine = "nats"
    cfg.mqtt.password = "gateway-pass"
    cfg.nats.dir = folder / "nats"
    return cfg


def nats_stack(state: Path, dsn: str, *, ack_wait_s: int = 5):
    """A stack (PostgreSQL store) whose gateways use a fresh three-node cluster; returns
    (stack, cluster), the cluster running with a JetStream leader, no gateway started."""
    from gateway import config
    from simulator.stack import Stack
    s = Stack(state, store="postgres", dsn=dsn)
    s.init()
    s.set_config("mqtt", engine="nats")
    cfg = config.load(s.config)
    cluster = Cluster(cfg)
    s.set_config("nats", dir="nats", servers=[n.url for n in cluster.nodes], ack_wait_s=ack_wait_s)
    cluster.cfg = cfg = config.load(s.config)
    cluster.write([])
    try:
        cluster.start()
        cluster.wait_jetstream()
    except BaseException:
        cluster.down()  # a node that did come up must not outlive the test
        raise
    return s, cluster
