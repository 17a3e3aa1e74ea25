"""End to end: a press on the real firmware under `micropython` (simulator.firmware.DEFAULT_HEAP)
reaches the gateway, dispatch's webhook, and comes back to the button as a signed ack."""
from __future__ import annotations

from tests.conftest import KAUMAN, wait_until


def test_press_reaches_dispatch_and_comes_back_acked(stack, make_device):
    fw = make_device("klj-kauman-rw05-rt03")
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
    fw.send("trigger")
    sent = fw.wait_for(lambda e: e["ev"] == "alert", 5)
    # The firmware only reports an ack whose MAC verified under its own secret.
    ack = fw.wait_for(lambda e: e["ev"] == "ack", 5)
    assert ack["id"] == sent["id"] and ack["stage"] == "received"
    assert sent["id"].startswith("klj-kauman-rw05-rt03:")

    incidents = stack.incidents()
    assert len(incidents) == 1
    inc = incidents[0]
    assert inc["id"] == ack["inc"] and inc["alert_id"] == sent["id"]
    assert (inc["lat6"], inc["lon6"]) == KAUMAN and inc["src"] == "fixed"
    assert 0 <= inc["latency_ms"]["press_to_received"] < 5000

    posts = stack.webhook.wait(1)
    assert len(posts) == 1
    assert posts[0]["json"]["incident"]["alert_id"] == sent["id"]
    assert (posts[0]["json"]["incident"]["lat6"], posts[0]["json"]["incident"]["lon6"]) == KAUMAN

    # Acked alerts leave the outbox: nothing is retransmitted afterwards.
    fw.send("status")
    wait_until(lambda: fw.seen("heap"), 5)
    assert len(fw.seen("alert")) == 1


def test_retransmission_keeps_the_id_until_the_gateway_answers(stack, make_device):
    fw = make_device("klj-kauman-rw05-rt03", retry_ms=300)
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", 10)
    stack.kill_gateway()
    fw.send("trigger")
    first = fw.wait_for(lambda e: e["ev"] == "alert", 5)
    again = fw.wait_for(lambda e: e["ev"] == "alert" and e["try"] > 1, 10)
    assert again["id"] == first["id"]
    stack.start_gateway()
    ack = fw.wait_for(lambda e: e["ev"] == "ack", 15)
    assert ack["id"] == first["id"]
    assert [i["alert_id"] for i in stack.incidents()] == [first["id"]]
