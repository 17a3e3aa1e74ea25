"""The escalation ladder (sector -> Polresta -> Ngalam 112, each step after its own timeout and
timed in the timeline) and the kelurahan's Bhabinkamtibmas told of every incident, on the real
gateway with real webhook receivers as the 112 centre and the SMS gateway."""
from __future__ import annotations

import json
import tomllib

import pytest

from gateway.config import ConfigError, load, write
from gateway.domain import ladder
from tests.conftest import Webhook, wait_until
from tests.gateway.test_gateway_support import custom_stack, device


def test_ladder_parse_defaults_and_refusals():
    assert ladder.parse(None, 60) == (ladder.Step("polresta", 60),)
    steps = ladder.parse([{"to": "polresta", "after_s": 60}, {"to": "ngalam112", "after_s": 180}], 60)
    assert [(s.to, s.after_s, s.event) for s in steps] == [("polresta", 60, "escalated"),
                                                           ("ngalam112", 180, "escalated_112")]
    for bad in ([], [{"to": "polresta"}], [{"to": "mars", "after_s": 5}], [{"to": "polresta", "after_s": 0}],
                [{"to": "polresta", "after_s": 60}, {"to": "ngalam112", "after_s": 60}],
                [{"to": "polresta", "after_s": 6}, {"to": "polresta", "after_s": 9}], "polresta"):
        with pytest.raises(ladder.LadderError):
            ladder.parse(bad, 60)


def test_a_bad_ladder_is_a_config_error(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    data = tomllib.loads(s.config.read_text())
    data["escalation"] = [{"to": "ngalam112", "after_s": -1}]
    write(data, s.config)
    with pytest.raises(ConfigError, match="after_s"):
        load(s.config)


@pytest.fixture
def ladder_stack(tmp_path, webhook):
    hooks = {"112": Webhook(), "sms": Webhook()}
    s = custom_stack(tmp_path / "state", webhooks=[webhook.url], start=False, extra_webhooks=[
        {"url": hooks["112"].url, "secret": "ngalam-112-secret", "name": "ngalam112", "events": ["escalated_112"]},
        {"url": hooks["sms"].url, "secret": "sms-gateway-secret", "name": "sms", "events": ["bhabinkamtibmas"]}])
    data = tomllib.loads(s.config.read_text())
    data["escalation"] = [{"to": "polresta", "after_s": 1}, {"to": "ngalam112", "after_s": 3}]
    write(data, s.config)
    s.cli("bhabinkamtibmas", "set", "Kauman", "--name", "Aipda Sugeng Riyadi", "--phone", "0812-9000-1111")
    s.start_broker()
    s.start_gateway()
    s.token()
    yield s, hooks
    s.down()
    for h in hooks.values():
        h.server.shutdown()


def test_each_step_after_its_own_timeout_and_the_bhabinkamtibmas_told(ladder_stack, webhook):
    s, hooks = ladder_stack
    kauman, _ = device(s)
    samaan, _ = device(s, "klj-samaan-rw01-rt01", kelurahan="Samaan", rw=1, rt=1)
    try:
        kauman.send(seq=1)
        inc = kauman.ack()["inc"]
        samaan.send(seq=1)
        other = samaan.ack()["inc"]
        assert s.post(f"/api/incidents/{other}/acknowledge").status_code == 200

        # The Bhabinkamtibmas of Kauman hears of the Kauman press, with the officer's phone to text.
        sms = hooks["sms"].wait(1)
        assert [p["json"]["event"] for p in sms] == ["bhabinkamtibmas"]
        assert sms[0]["json"]["incident"]["id"] == inc
        assert sms[0]["json"]["officer"] == {"kelurahan": "Kauman", "name": "Aipda Sugeng Riyadi",
                                             "phone": "0812-9000-1111"}

        # Ngalam 112 hears of it only at the ladder's top, after the command centre did.
        top = hooks["112"].wait(1, timeout=15)
        assert [p["json"]["event"] for p in top] == ["escalated_112"]
        assert top[0]["json"]["incident"]["id"] == inc and top[0]["json"]["incident"]["escalated"] == 2
        got = s.get(f"/api/incidents/{inc}")
        stages = {e["stage"]: e for e in got["events"]}
        assert got["escalated"] == 2
        assert stages["bhabinkamtibmas"]["at_ms"] == got["received_ms"]
        first, second = stages["escalated"], stages["escalated_112"]
        assert 1000 <= first["at_ms"] - got["received_ms"] < 3000 <= second["at_ms"] - got["received_ms"]
        assert first["note"].startswith("to polresta") and second["note"].startswith("to ngalam112")
        # The acknowledged one climbed nothing; the other kelurahan has no officer: nobody texted.
        assert s.get(f"/api/incidents/{other}")["escalated"] == 0
        assert s.metrics()['panic_escalations_total{kind="panic"}'] == 2
        wait_until(lambda: all(x["pending"] == 0 for x in s.get("/api/forwards")["sinks"]), what="forwards drained")
        assert len(hooks["sms"].posts) == 1 and len(hooks["112"].posts) == 1
        # The dispatch webhook (every incident event) takes the desk's escalation, not the notices.
        events = [p["json"]["event"] for p in webhook.posts if p["json"]["incident"]["id"] == inc]
        assert "escalated" in events and "escalated_112" not in events and "bhabinkamtibmas" not in events
    finally:
        kauman.close()
        samaan.close()


def test_bhabinkamtibmas_registry_cli(tmp_path):
    s = custom_stack(tmp_path / "state", start=False)
    s.cli("bhabinkamtibmas", "set", "Kasin", "--name", "Bripka Dwi", "--phone", "0813-1")
    s.cli("bhabinkamtibmas", "set", "Kasin", "--name", "Bripka Eko", "--phone", "0813-2")
    assert json.loads(s.cli("bhabinkamtibmas", "list", "--json").stdout) == [
        {"kelurahan": "Kasin", "name": "Bripka Eko", "phone": "0813-2"}]
    s.cli("bhabinkamtibmas", "remove", "Kasin")
    assert s.cli("bhabinkamtibmas", "remove", "Kasin", check=False).returncode == 2
