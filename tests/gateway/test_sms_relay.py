"""The SMS path end to end on real parts: mosquitto, the gateway, gammu-smsd on Gammu's dummy
phone running the real hook (`panic-gateway sms receive`), and the carrier between the
daemon and the button's side of the spool."""
from __future__ import annotations

import json
import stat
import time
from typing import Any

import httpx
import pytest

from gateway import config
from gateway.store import open_store
from protocol import sms as sms_format
from simulator.carrier import CENTRE
from simulator.stack import Stack
from tests.devices import RawDevice
from tests.gateway.test_sms_support import Phone, alert_sms, assert_no_secrets_in_sms_logs, start_sms, wait_for

PER_HOUR = 3  # [sms] per_number_per_hour here: the burst test goes over it
KAUMAN = (-7982600, 112627000)


@pytest.fixture(scope="module")
def sms(tmp_path_factory):
    # One incident per alert: the rate test sends several alerts from one button.
    stack = Stack(tmp_path_factory.mktemp("sms") / "state", gateway={"open_incidents_per_device": 0}).up()
    smsd, centre = start_sms(stack, per_number_per_hour=PER_HOUR)
    try:
        yield stack, smsd, centre.carrier
    finally:
        centre.stop()
        stack.down()
    assert_no_secrets_in_sms_logs(stack, smsd.dir)


_numbers = iter(range(100, 999))


def button(stack: Stack, name: str, *, sim: bool = True) -> tuple[dict, Phone]:
    msisdn = f"+628123456{next(_numbers)}"
    fields: dict[str, Any] = {"kelurahan": "Kauman", "rw": 5, "rt": 3, **({"sim": msisdn} if sim else {})}
    creds = stack.add_device(name, *KAUMAN, **fields)
    return creds, Phone(stack.state / "carrier", msisdn, CENTRE)


def incidents_of(stack: Stack, dev: str) -> list[dict]:
    return [i for i in stack.incidents() if i["dev"] == dev]


def refused(stack: Stack, reason: str) -> float:
    return stack.metrics().get(f'panic_sms_rejected_total{{reason="{reason}"}}', 0.0)


def handed_over(smsd, phone: Phone, count: int = 1) -> None:
    """The hook has handed `count` messages of this number to the gateway (and queued any reply)."""
    wait_for(f"{count} SMS from {phone.msisdn} handed over", lambda: len(smsd.done(phone.msisdn)) >= count)


def replies(phone: Phone, secret: str) -> list[dict]:
    out = []
    for msg in phone.received():
        reason, ack = sms_format.parse_ack(msg["text"], secret)
        assert ack is not None, f"the reply does not verify as the button checks it: {reason}"
        out.append(ack)
    return out


def no_reply(smsd, carrier, phone: Phone) -> bool:
    return (not smsd.queued_replies(phone.msisdn) and not phone.received()
            and not [g for g in carrier.stats.legs if g.direction == "mt" and g.msisdn == phone.msisdn])


def test_an_sms_alert_from_the_registered_sim_is_one_incident_by_sms_and_a_signed_received_reply(sms):
    stack, smsd, _carrier = sms
    creds, phone = button(stack, "klj-kauman-rw05-rt31")
    phone.send(alert_sms(creds, boot=4, seq=7))
    acks = wait_for("the SMS ack at the button", lambda: replies(phone, creds["secret"]))
    assert [(a["boot"], a["seq"], a["stage"]) for a in acks] == [(4, 7, "received")]
    (inc,) = incidents_of(stack, creds["id"])
    assert inc["path"] == "sms" and inc["alert_id"] == f"{creds['id']}:4:7" and inc["kind"] == "panic"
    assert (inc["lat6"], inc["lon6"], inc["acc"], inc["src"]) == (-7982600, 112627000, 12, "gps")
    assert smsd.inbox(phone.msisdn) == [], "a handed-over message leaves the inbox"


def test_the_same_alert_over_mqtt_then_sms_is_one_incident_with_an_sms_delivery_added_and_a_reply(sms):
    stack, _smsd, _carrier = sms
    creds, phone = button(stack, "klj-kauman-rw05-rt32")
    raw = RawDevice(creds, stack.broker_port)
    try:
        raw.send(seq=2)
        assert raw.ack()["stage"] == "received"
        phone.send(alert_sms(creds, boot=1, seq=2))
        acks = wait_for("the SMS ack at the button", lambda: replies(phone, creds["secret"]))
    finally:
        raw.close()
    assert [(a["boot"], a["seq"], a["stage"]) for a in acks] == [(1, 2, "received")]
    (inc,) = incidents_of(stack, creds["id"])
    assert inc["path"] == "wifi", "the incident keeps the path of its first delivery"
    store = open_store(config.load(stack.config))
    try:
        assert sorted(d.path for d in store.deliveries(inc["id"])) == ["sms", "wifi"]
    finally:
        store.close()


def test_after_an_sms_the_same_press_over_mqtt_is_one_incident_and_a_new_press_under_its_id_is_id_reuse(sms):
    stack, _smsd, _carrier = sms
    creds, phone = button(stack, "klj-kauman-rw05-rt36")
    t_s = int(time.time())
    phone.send(alert_sms(creds, seq=6, t_s=t_s))
    wait_for("the SMS ack at the button", lambda: replies(phone, creds["secret"]))
    raw = RawDevice(creds, stack.broker_port)
    try:
        raw.send(seq=6, t=t_s * 1000 + 400)  # the same press: the SMS carries it to the second
        same = raw.ack()
        raw.send(seq=6, t=t_s * 1000 - 60_000)  # a new press under the SMS's id
        reused = raw.ack()
    finally:
        raw.close()
    assert same["stage"] == "received"
    assert (reused["stage"], reused["reason"]) == ("rejected", "id_reuse")
    first = [i for i in incidents_of(stack, creds["id"]) if i["alert_id"].endswith(":1:6")]
    assert len(first) == 1 and first[0]["path"] == "sms"
    store = open_store(config.load(stack.config))
    try:
        assert sorted(d.path for d in store.deliveries(first[0]["id"])) == ["sms", "wifi"]
    finally:
        store.close()


def test_a_replayed_sms_is_counted_as_replay_with_no_second_incident_and_answered_with_the_stage(sms):
    stack, smsd, _carrier = sms
    creds, phone = button(stack, "klj-kauman-rw05-rt33")
    text = alert_sms(creds, seq=3)
    phone.send(text)
    wait_for("the first SMS's ack", lambda: replies(phone, creds["secret"]))
    before = refused(stack, "replay")
    (inc,) = incidents_of(stack, creds["id"])
    assert stack.post(f"/api/incidents/{inc['id']}/acknowledge").status_code == 200
    phone.send(text)  # the button's own retry after its ack SMS was lost, or a captured copy
    handed_over(smsd, phone, 2)
    assert refused(stack, "replay") == before + 1
    assert len(incidents_of(stack, creds["id"])) == 1
    acks = wait_for("the answer to the replay", lambda: (lambda a: a if len(a) == 2 else None)(
        replies(phone, creds["secret"])))
    assert [a["stage"] for a in acks] == ["received", "acknowledged"], "the replay learns where the call is"


@pytest.mark.parametrize("case", ["mac", "unknown_number", "format", "number_mismatch", "unknown_device"])
def test_a_bad_sms_is_counted_by_reason_with_no_incident_and_no_reply(sms, case):
    stack, smsd, carrier = sms
    creds, phone = button(stack, f"klj-kauman-rw06-{case.replace('_', '-')}", sim=case != "unknown_number")
    text = alert_sms(creds, seq=5)
    if case == "mac":
        text = alert_sms(creds, seq=5, secret="f" * 64)  # signed with a key that is not the device's
    elif case == "format":
        text = text.replace(" P ", " X ")
    elif case == "number_mismatch":
        other, _ = button(stack, f"klj-kauman-rw06-other-{case.replace('_', '-')}")
        text = alert_sms(other, seq=5)  # a valid SMS of another button, from this button's SIM
    elif case == "unknown_device":
        text = alert_sms({**creds, "id": "klj-nobody-rw01-rt01"}, seq=5)
    before = refused(stack, case)
    phone.send(text)
    handed_over(smsd, phone)
    assert refused(stack, case) == before + 1
    assert incidents_of(stack, creds["id"]) == []
    assert no_reply(smsd, carrier, phone)


def test_a_burst_over_the_hourly_limit_is_refused_as_rate(sms):
    stack, smsd, carrier = sms
    creds, phone = button(stack, "klj-kauman-rw05-rt34")
    before = refused(stack, "rate")
    for seq in range(1, PER_HOUR + 3):
        phone.send(alert_sms(creds, seq=seq))
    handed_over(smsd, phone, PER_HOUR + 2)
    assert refused(stack, "rate") == before + 2
    assert len(incidents_of(stack, creds["id"])) == PER_HOUR
    wait_for(f"{PER_HOUR} replies", lambda: len(phone.received()) >= PER_HOUR)
    acks = replies(phone, creds["secret"])
    assert len([g for g in carrier.stats.legs if g.direction == "mt" and g.msisdn == phone.msisdn]) == PER_HOUR
    assert len(acks) == PER_HOUR and {a["stage"] for a in acks} == {"received"}


def test_the_relay_token_reaches_only_the_relay_and_no_other_token_relays(sms):
    stack, smsd, _carrier = sms
    token_file = smsd.dir / "relay.token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    relay = {"Authorization": f"Bearer {token_file.read_text().strip()}"}
    assert httpx.get(f"{stack.api}/api/incidents", headers=relay, timeout=10).status_code == 403
    assert httpx.get(f"{stack.api}/api/devices", headers=relay, timeout=10).status_code == 403
    body = {"from": "+6281234500001", "text": "PB1 x"}
    for role in ("viewer", "operator", "admin"):
        assert stack.post("/api/sms/inbound", role=role, **body).status_code == 403
    assert httpx.post(f"{stack.api}/api/sms/inbound", json=body, timeout=10).status_code == 401
    assert httpx.post(f"{stack.api}/api/sms/inbound", content=b"[1]", headers=relay, timeout=10).status_code == 400


def test_gateway_down_the_message_stays_in_the_inbox_and_replay_inbox_delivers_it_later(sms):
    stack, smsd, _carrier = sms
    creds, phone = button(stack, "klj-kauman-rw05-rt35")
    stack.kill_gateway()
    try:
        phone.send(alert_sms(creds, seq=9))
        wait_for("the message in the daemon's inbox", lambda: smsd.inbox(phone.msisdn))
        wait_for("the hook's failure", lambda: "exit status 1" in smsd.log())
    finally:
        stack.start_gateway()
    assert smsd.inbox(phone.msisdn) and smsd.done(phone.msisdn) == []
    out = stack.cli("sms", "replay-inbox")
    assert json.loads(out.stdout) == {"handed_over": 1, "left": 0}
    (inc,) = incidents_of(stack, creds["id"])
    assert inc["path"] == "sms"
    acks = wait_for("the SMS ack at the button", lambda: replies(phone, creds["secret"]))
    assert [(a["seq"], a["stage"]) for a in acks] == [(9, "received")]
    assert json.loads(stack.cli("sms", "replay-inbox").stdout) == {"handed_over": 0, "left": 0}
