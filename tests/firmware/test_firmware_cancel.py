"""The cancel rules, with the real firmware against the real broker and gateway: a holder
can never withdraw a call the police have not received, cancelling takes a 5 s hold AND a
confirming press, and a new press during an active alert is a new alert."""
from __future__ import annotations

import time

from tests.conftest import wait_until


def _link_up(fw, timeout=15):
    return fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "up", timeout)


def _hold(fw, seconds):
    fw.send("down")
    time.sleep(seconds)
    fw.send("up")


def _alerts(fw, kind):
    return [e for e in fw.history if e["ev"] == "alert" and e["kind"] == kind]


def _press_delivered(fw):
    _hold(fw, 2.3)
    alert = fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "panic", 10)
    fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == alert["id"] and e["stage"] == "received", 10)
    return alert


def test_an_undelivered_alert_cannot_be_cancelled_even_after_a_reboot(stack, make_device):
    fw = make_device(retry_ms=500)
    _link_up(fw)
    stack.kill_gateway()                   # the broker takes it, nobody acks it
    _hold(fw, 2.3)
    first = fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "panic", 10)
    fw.power_cut()
    fw.start()
    _link_up(fw)
    # The old "5 s hold cancels" on an unacked alert: now a NEW alert, never a cancel.
    _hold(fw, 5.5)
    fw.send("cancel")                      # the console's cancel obeys the same rule
    time.sleep(1.5)
    assert _alerts(fw, "cancel") == []
    assert {e["id"] for e in _alerts(fw, "panic")} - {first["id"]}, "the hold raised a new alert"
    assert any(e["ev"] == "log" and "cancel refused" in e["msg"] for e in fw.history)
    stack.start_gateway()
    panics = {e["id"] for e in _alerts(fw, "panic")}
    wait_until(lambda: {i["alert_id"] for i in stack.incidents()} == panics, 20, what="every panic delivered")
    assert all(i["state"] != "cancelled" for i in stack.incidents())


def test_a_5s_hold_only_arms_the_cancel_a_confirming_press_sends_it(stack, make_device):
    fw = make_device()
    _link_up(fw)
    alert = _press_delivered(fw)
    _hold(fw, 5.5)                         # arms: beeps, fast LED
    fw.wait_for(lambda e: e["ev"] == "buzzer" and e["pattern"] == "cancel_confirm", 5)
    fw.wait_for(lambda e: e["ev"] == "led" and e["pattern"] == "cancel_confirm", 5)
    time.sleep(1.0)
    assert _alerts(fw, "cancel") == [], "the hold alone must not cancel"
    _hold(fw, 0.3)                         # the confirming press
    cancel = fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "cancel", 5)
    # The gateway holds the verified cancel (what it does with it is the gateway's rule:
    # a cancel request on the incident); the button has handed it over.
    fw.wait_for(lambda e: e["ev"] == "ack" and e["id"] == cancel["id"], 10)
    assert [e["pattern"] for e in fw.history if e["ev"] == "buzzer"][-1] == "cancelled"
    assert len(stack.incidents()) == 1 and stack.incidents()[0]["alert_id"] == alert["id"]


def test_an_unconfirmed_cancel_expires_and_a_new_hold_is_a_new_alert(stack, make_device):
    fw = make_device(cancel_confirm_ms=1500)
    _link_up(fw)
    first = _press_delivered(fw)
    _hold(fw, 5.5)
    fw.wait_for(lambda e: e["ev"] == "buzzer" and e["pattern"] == "cancel_confirm", 5)
    time.sleep(2.5)                        # the confirm window closes
    _hold(fw, 0.3)
    time.sleep(1.0)
    assert _alerts(fw, "cancel") == []
    # During a delivered, active alert, a 2-5 s hold is a NEW alert, not nothing.
    second = _press_delivered(fw)
    assert second["id"] != first["id"]
    assert _alerts(fw, "cancel") == []
    assert {i["alert_id"] for i in stack.incidents()} == {first["id"], second["id"]}


def test_the_cancel_window_closes_without_an_ack(stack, make_device):
    # cancel_window_s after the press, acked or not, the alert is no longer "active": the
    # LED goes back to normal instead of waiting forever for an ack that never comes.
    fw = make_device(cancel_window_s=2, retry_ms=500, fail_ms=60000)
    _link_up(fw)
    stack.kill_gateway()
    _hold(fw, 2.3)
    fw.wait_for(lambda e: e["ev"] == "alert" and e["kind"] == "panic", 10)
    fw.wait_for(lambda e: e["ev"] == "buzzer" and e["pattern"] == "off", 6)
    _hold(fw, 2.3)                         # still unacked: a new alert, as it always is
    time.sleep(1.0)
    assert len({e["id"] for e in _alerts(fw, "panic")}) == 2
