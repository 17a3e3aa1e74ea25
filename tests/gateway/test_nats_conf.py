"""The NATS cluster's configuration from the registry (gateway/natsconf.py): every node's
file is one nats-server accepts, a device's permissions are exactly its own subjects, and
the logins follow the registry (suspended or removed devices lose theirs)."""
from __future__ import annotations

import json
import subprocess
import threading
import tomllib

import bcrypt

from gateway import cli, config, natsconf
from gateway.models import Device
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)
from tests.gateway.test_nats_support import nats_config


def _device(dev: str, status: str = "active") -> Device:
    return Device(id=dev, secret="s", mqtt_password="pbkdf2-sha512$1$x$y", status=status)


def test_every_node_config_is_accepted_by_nats_server(tmp_path):
    cfg = nats_config(tmp_path)
    cluster = natsconf.loopback_nodes(3)
    paths = natsconf.write_cluster(cfg, cluster, [_device("klj-kauman-rw05-rt03")],
                                   fresh={"klj-kauman-rw05-rt03": "pw"})
    assert [p.name for p in paths] == ["n1.conf", "n2.conf", "n3.conf"]
    for path, node in zip(paths, cluster, strict=True):
        proc = subprocess.run(["nats-server", "-t", "-c", str(path)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, proc.stderr
        text = path.read_text()
        others = [n for n in cluster if n.name != node.name]
        assert all(f"nats://127.0.0.1:{n.cluster_port}" in text for n in others)
        assert f"127.0.0.1:{node.cluster_port}\"" in text and f"127.0.0.1:{node.mqtt_port}" in text
    assert [n.mqtt_port for n in natsconf.nodes(cfg)] == [11883, 11884, 11885]


def test_device_permissions_are_its_own_subjects_only():
    perms = natsconf.device_permissions("panic/v1", "klj-kauman-rw05-rt03")
    assert perms == {"publish": {"allow": ["panic.v1.klj-kauman-rw05-rt03.alert",
                                           "panic.v1.klj-kauman-rw05-rt03.status",
                                           "panic.v1.klj-kauman-rw05-rt03.result"]},
                     "subscribe": {"allow": ["panic.v1.klj-kauman-rw05-rt03.ack", "panic.v1.klj-kauman-rw05-rt03.cmd",
                                             "panic.v1.klj-kauman-rw05-rt03.ota", "$MQTT.sub.>"]}}


def test_logins_follow_the_registry(tmp_path):
    cfg = nats_config(tmp_path)
    a, b, c = "klj-kasin-rw01-rt01", "klj-kasin-rw01-rt02", "klj-kasin-rw01-rt03"
    missing = natsconf.write_logins(cfg, [_device(a), _device(b), _device(c)], fresh={a: "pa", b: "pb"})
    assert missing == [c]  # no plain password was ever given for it: no login
    logins = json.loads((cfg.nats.dir / natsconf.LOGINS_FILE).read_text())
    assert bcrypt.checkpw(b"pa", logins[a].encode()) and bcrypt.checkpw(b"pb", logins[b].encode())
    assert bcrypt.checkpw(cfg.mqtt.password.encode(), logins[""].encode())
    # b suspended, a removed: both logins go; c's still missing; nothing else re-hashed.
    natsconf.write_logins(cfg, [_device(b, status="suspended"), _device(c)])
    after = json.loads((cfg.nats.dir / natsconf.LOGINS_FILE).read_text())
    assert set(after) == {""} and after[""] == logins[""]
    accounts = (cfg.nats.dir / natsconf.ACCOUNTS_FILE).read_text()
    assert a not in accounts and b not in accounts
    # The gateway's plain password never reaches the files, only its hash.
    for name in (natsconf.LOGINS_FILE, natsconf.ACCOUNTS_FILE):
        assert cfg.mqtt.password not in (cfg.nats.dir / name).read_text()


def test_init_engine_nats_on_hosts_lists_every_node(tmp_path, pg_dsn):  # noqa: F811
    state = tmp_path / "state"
    assert cli.main(["init", "--state", str(state), "--engine", "nats", "--hosts", "nats1.example,nats2.example,"
                     "nats3.example", "--store", "postgres", "--dsn", pg_dsn, "--api-port", "0"]) == 0
    data = tomllib.loads((state / "gateway.toml").read_text())
    assert data["mqtt"]["engine"] == "nats"
    assert data["nats"]["servers"] == [f"nats://nats{i}.example:4222" for i in (1, 2, 3)]
    cfg = config.load(state / "gateway.toml")
    d = _device("klj-kauman-rw05-rt03")
    brokers = cli.firmware_config(cfg, d, mqtt_password="x")["brokers"]
    assert brokers == [{"host": f"nats{i}.example", "port": 1883, "tls": False} for i in (1, 2, 3)]
    n1 = (state / "nats" / "n1.conf").read_text()
    assert "nats://nats2.example:6222" in n1 and "nats://nats3.example:6222" in n1



def test_init_engine_nats_over_a_single_broker_state_moves_it_to_the_cluster(tmp_path):
    state = tmp_path / "state"
    assert cli.main(["init", "--state", str(state), "--api-port", "0"]) == 0
    assert cli.main(["init", "--state", str(state), "--api-port", "0", "--engine", "nats", "--nodes", "3"]) == 0
    cfg = config.load(state / "gateway.toml")
    assert cfg.mqtt.engine == "nats" and len(cfg.nats.servers) == 3
    assert [n.name for n in natsconf.nodes(cfg)] == ["n1", "n2", "n3"]


def test_a_node_reloading_while_the_logins_are_rewritten_reads_a_whole_file(tmp_path):
    """nats-server re-reads accounts.conf on SIGHUP, whenever that lands: a file rewritten in
    place can be read empty or cut short, and reloads as devices without a login."""
    cfg = nats_config(tmp_path)
    devices = [_device(f"klj-kasin-rw01-rt{n:02d}") for n in range(1, 40)]
    fresh = {d.id: "pw" for d in devices}
    natsconf.write_logins(cfg, devices, fresh=fresh)
    path = cfg.nats.dir / natsconf.ACCOUNTS_FILE
    whole = path.read_text()
    seen: list[str] = []
    done = threading.Event()

    def node() -> None:
        while not done.is_set():
            seen.append(path.read_text())

    reader = threading.Thread(target=node)
    reader.start()
    try:
        for _ in range(300):
            natsconf.write_logins(cfg, devices)  # unchanged logins, rewritten as a device add does
    finally:
        done.set()
        reader.join()
    assert len(seen) > 100
    assert all(text == whole for text in seen), f"{sum(text != whole for text in seen)} of {len(seen)} reads partial"
