"""Deliveries and paths in the store (both databases): one row per (alert, path), the
incident's first path, the button's SIM; and the CLI's --sim and CSV `sim` column."""
from __future__ import annotations

import dataclasses
import json
import time

import pytest

from gateway import cli
from gateway.models import Device
from protocol import v1
from tests.gateway.test_gateway_support import pg_dsn  # noqa: F401 (fixture)
from tests.gateway.test_store import DEV, alert


def over(a, path: str, received_ms: int):
    return dataclasses.replace(a, path=path, received_ms=received_ms)


def test_one_incident_a_row_per_path_and_the_first_path_kept(store):
    now = time.time_ns() // 1_000_000
    first = over(alert(1, now=now), "backup_broker", now)
    [o] = store.ingest([first])
    assert o.created and o.new_path and o.incident.path == "backup_broker"
    [o2] = store.ingest([over(first, "wifi", now + 700)])
    assert o2.duplicate and o2.new_path and o2.incident.id == o.incident.id
    [o3] = store.ingest([over(first, "wifi", now + 900)])  # a retransmission on a known path
    assert o3.duplicate and not o3.new_path
    [o4] = store.ingest([over(first, "sms", now + 20_000)])
    assert o4.new_path
    rows = store.deliveries(o.incident.id)
    assert [(r.path, r.received_ms, r.latency_ms) for r in rows] == [
        ("backup_broker", now, 50), ("wifi", now + 700, 750), ("sms", now + 20_000, 20_050)]
    assert {r.alert_id for r in rows} == {first.id} and {r.dev for r in rows} == {DEV}
    assert store.get_incident(o.incident.id).path == "backup_broker"
    assert store.list_incidents()[0].path == "backup_broker"
    assert store.last_deliveries([DEV]) == {DEV: {"backup_broker": now, "wifi": now + 700, "sms": now + 20_000}}
    assert store.last_deliveries([]) == {}


def test_two_copies_in_one_batch_on_two_paths(store):
    now = time.time_ns() // 1_000_000
    a = alert(2, now=now)
    outs = store.ingest([over(a, "wifi", now), over(a, "backup_broker", now + 1)])
    assert [o.created for o in outs] == [True, False] and all(o.new_path for o in outs)
    assert len(store.deliveries(outs[0].incident.id)) == 2


def test_a_refused_reused_id_is_no_delivery(store):
    now = time.time_ns() // 1_000_000
    first = alert(3, now=now)
    store.ingest([dataclasses.replace(first, body=json.dumps({"t": first.t}))])
    [o] = store.ingest([over(alert(3, now=now + 60_000), "cellular", now + 60_000)])
    assert o.reason == "id_reuse" and not o.new_path
    assert [r.path for r in store.deliveries(store.list_incidents()[0].id)] == ["wifi"]


def test_cancel_delivery_is_on_its_incident(store):
    now = time.time_ns() // 1_000_000
    [o] = store.ingest([alert(4, now=now)])
    [c] = store.ingest([over(alert(5, kind="cancel", ref=f"{DEV}:1:4", now=now + 10), "cellular", now + 10)])
    assert c.new_path
    assert [(r.alert_id, r.path) for r in store.deliveries(o.incident.id)] == [
        (f"{DEV}:1:4", "wifi"), (f"{DEV}:1:5", "cellular")]


def test_sim_is_unique_and_found(store):
    store.add_device(Device(id="klj-other", secret="t" * 64, mqtt_password="p", created_ms=1, sim="+6281200000001"))
    assert store.device_by_sim("+6281200000001").id == "klj-other"
    assert store.device_by_sim("+6281200000002") is None
    assert store.set_device_sim(DEV, "+6281200000002")
    assert store.get_device(DEV).sim == "+6281200000002"
    with pytest.raises(ValueError, match="klj-other"):
        store.set_device_sim(DEV, "+6281200000001")
    assert store.set_device_sim(DEV, None) and store.get_device(DEV).sim is None
    # Many devices without a SIM: NULLs do not collide in the unique index.
    store.add_device(Device(id="klj-third", secret="u" * 64, mqtt_password="p", created_ms=1))
    assert store.device_by_sim("") is None


def test_via_is_optional_and_checked():
    body = json.loads(v1.alert_body(dev=DEV, boot=1, seq=1, kind="panic", t=None, age=0, lat6=0, lon6=0, acc=5,
                                    src="gps", batt=None, rssi=None))
    assert v1.check_alert_fields(body, DEV)["via"] is None
    assert v1.check_alert_fields({**body, "via": "cellular"}, DEV)["via"] == "cellular"
    assert v1.check_alert_fields({**body, "via": "wifi"}, DEV)["via"] == "wifi"
    for bad in ("sms", "", 1, ["cellular"]):
        with pytest.raises(ValueError, match="via"):
            v1.check_alert_fields({**body, "via": bad}, DEV)


def test_cli_sim_on_add_import_set_and_list(tmp_path, capsys):
    state = tmp_path / "state"
    assert cli.main(["init", "--state", str(state), "--api-port", "0"]) == 0
    cfg = str(state / "gateway.toml")
    assert cli.main(["device", "add", "klj-a", "--lat6", "1", "--lon6", "2", "--sim", "+62 812 0000 0001",
                     "--config", cfg]) == 0
    assert cli.main(["device", "add", "klj-b", "--lat6", "1", "--lon6", "2", "--sim", "+6281200000001",
                     "--config", cfg]) == 2  # taken
    assert cli.main(["device", "add", "klj-b", "--lat6", "1", "--lon6", "2", "--sim", "0812",
                     "--config", cfg]) == 2  # not E.164
    csv = tmp_path / "d.csv"
    csv.write_text("id,kelurahan,lat6,lon6,sim\nklj-c,Kauman,1,2,+6281200000003\nklj-d,Kauman,1,2,\n")
    assert cli.main(["device", "import", str(csv), "--config", cfg]) == 0
    dup = tmp_path / "dup.csv"
    dup.write_text("id,lat6,lon6,sim\nklj-e,1,2,+6281200000009\nklj-f,1,2,+6281200000009\n")
    assert cli.main(["device", "import", str(dup), "--config", cfg]) == 2  # twice in one file: nothing added
    assert cli.main(["device", "set-sim", "klj-d", "+6281200000004", "--config", cfg]) == 0
    assert cli.main(["device", "set-sim", "klj-d", "+6281200000004", "--config", cfg]) == 0  # its own number
    assert cli.main(["device", "set-sim", "klj-a", "+6281200000004", "--config", cfg]) == 2
    capsys.readouterr()
    assert cli.main(["device", "list", "--json", "--config", cfg]) == 0
    listed = {d["id"]: d["sim"] for d in json.loads(capsys.readouterr().out)}
    assert listed == {"klj-a": "+6281200000001", "klj-c": "+6281200000003", "klj-d": "+6281200000004"}
    assert cli.main(["device", "show", "klj-c", "--config", cfg]) == 0
    assert json.loads(capsys.readouterr().out)["sim"] == "+6281200000003"
    assert cli.main(["device", "set-sim", "klj-d", "", "--config", cfg]) == 0
    assert cli.main(["device", "list", "--config", cfg]) == 0
    out = capsys.readouterr().out
    assert "SIM +6281200000001" in out and "+6281200000004" not in out


def test_the_sim_number_is_personal_data():
    from gateway.domain.visibility import redact, redact_registry, view_for
    d = Device(id=DEV, secret="s", mqtt_password="p", phone="0812", sim="+6281200000001").public()
    assert redact(view_for("viewer", ""), d)["sim"] == "" and redact_registry(view_for("viewer", ""), d)["sim"] == ""
    assert redact(view_for("operator", ""), d)["sim"] == "+6281200000001"
