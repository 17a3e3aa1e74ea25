"""The backup broker's configuration: what `init --backup-broker-port` writes, the two
brokers in a button's config, and the settings refused (no running broker needed)."""
from __future__ import annotations

import json
import tomllib

import pytest

from gateway import broker, cli, config, dynsec
from gateway.config import ConfigError, broker_links
from gateway.store import open_store


def _init(tmp_path, *extra: str) -> config.Config:
    state = tmp_path / "state"
    assert cli.main(["init", "--state", str(state), "--api-port", "0", "--broker-port", "18930", *extra]) == 0
    return config.load(state / "gateway.toml")


def _clients(state_file) -> dict[str, dict]:
    return {c["username"]: c for c in json.loads(state_file.read_text())["clients"]}


def test_init_writes_a_second_broker_with_its_own_folder_and_the_same_logins(tmp_path, capsys):
    cfg = _init(tmp_path, "--backup-broker-port", "18931")
    assert (cfg.broker.backup_port, cfg.broker.backup_dir.name) == (18931, "broker-backup")
    assert [(link.name, link.port, link.backup) for link in broker_links(cfg)] == [
        ("primary", 18930, False), ("backup", 18931, True)]
    primary = (cfg.broker.dir / "mosquitto.conf").read_text()
    backup = (cfg.broker.backup_dir / "mosquitto.conf").read_text()
    assert "listener 18931 127.0.0.1" in backup and "18930" not in backup
    for key in ("persistence_location", "pid_file", "plugin_opt_config_file"):
        line = next(x for x in backup.splitlines() if x.startswith(key))
        assert str(cfg.broker.backup_dir) in line and line not in primary
    capsys.readouterr()
    assert cli.main(["device", "add", "klj-a", "--lat6", "1", "--lon6", "2", "--json",
                     "--config", str(cfg.path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["brokers"] == [{"host": "127.0.0.1", "port": 18930, "tls": False},
                                        {"host": "127.0.0.1", "port": 18931, "tls": False}]
    # Neither broker runs: both state files got the new login, each with the button's password.
    a = _clients(cfg.broker.dir / broker.STATE_FILE)
    b = _clients(cfg.broker.backup_dir / broker.STATE_FILE)
    assert dynsec.verifies(a["klj-a"], out["mqtt_password"]) and dynsec.verifies(b["klj-a"], out["mqtt_password"])
    assert set(a) == set(b)
    assert cli.main(["device", "remove", "klj-a", "--config", str(cfg.path)]) == 0
    assert "klj-a" not in _clients(cfg.broker.backup_dir / broker.STATE_FILE)
    assert cli.main(["broker-sync", "--config", str(cfg.path)]) == 0


def test_init_over_an_existing_state_adds_the_backup(tmp_path):
    cfg = _init(tmp_path)
    assert len(broker_links(cfg)) == 1 and not (cfg.path.parent / "broker-backup").exists()
    store = open_store(cfg)
    store.close()
    cfg = _init(tmp_path, "--backup-broker-port", "18932")
    assert cfg.broker.backup_port == 18932 and (cfg.broker.backup_dir / "mosquitto.conf").exists()
    assert _clients(cfg.broker.backup_dir / broker.STATE_FILE).keys() == \
        _clients(cfg.broker.dir / broker.STATE_FILE).keys()


def test_tls_buttons_get_both_brokers_over_tls_and_one_ca(tmp_path):
    cfg = _init(tmp_path, "--tls-port", "18933", "--backup-broker-port", "18934", "--backup-tls-port", "18935")
    brokers = [b for _, view in broker.instances(cfg) for b in [cli._broker_entry(view.broker)]]
    assert [(b["port"], b["tls"], b["ca"]) for b in brokers] == [(18933, True, "ca.crt"), (18935, True, "ca.crt")]
    backup = (cfg.broker.backup_dir / "mosquitto.conf").read_text()
    ca, cert, _ = broker.tls_files(cfg)
    assert f"cafile {ca}" in backup and f"certfile {cert}" in backup and "listener 18935" in backup


@pytest.mark.parametrize(("broker_values", "message"), [
    ({"backup_port": 18930}, "differ from device_port"),
    ({"backup_port": 18940, "backup_dir": "broker"}, "backup_dir must differ"),
    ({"backup_port": 18940, "tls_port": 18941}, "needs backup_tls_port"),
])
def test_refused_backup_settings(tmp_path, broker_values, message):
    cfg = _init(tmp_path)
    data = tomllib.loads(cfg.path.read_text())
    data["broker"].update(broker_values)
    config.write(data, cfg.path)
    with pytest.raises(ConfigError, match=message):
        config.load(cfg.path)


def test_nats_has_no_backup_broker(tmp_path):
    cfg = _init(tmp_path, "--engine", "nats", "--nodes", "3")
    cfg.broker.backup_port = 18950  # ignored: the cluster is the redundancy
    assert len(broker_links(cfg)) == 1 and len(broker.instances(cfg)) == 1
