"""A refused ack subscription on the real broker: mosquitto's dynamic-security plugin
answers the firmware's SUBSCRIBE with 0x80 when the device's role lacks its ack topic.
Acks could then never arrive, so the button must treat it as a link error (`auth`), back
off instead of reconnecting at once and resending every alert each time, and deliver as
soon as the ACL is put right."""
from __future__ import annotations

import time

from gateway import dynsec
from gateway.broker import ADMIN_FILE
from tests.conftest import wait_until

DEV = "klj-kauman-rw05-rt03"


def _acl(stack, command: str) -> None:
    admin = (stack.state / "broker" / ADMIN_FILE).read_text().strip()
    dynsec.send("127.0.0.1", stack.broker_port, admin,
                [{"command": command, "rolename": dynsec.device_role(DEV), "acltype": "subscribeLiteral",
                  "topic": f"panic/v1/{DEV}/ack", **({"allow": True} if command == "addRoleACL" else {})}])


def test_a_refused_ack_subscription_is_a_link_error_backed_off_until_the_acl_is_fixed(stack, make_device):
    fw = make_device(DEV, start=False, reconnect_min_ms=200, reconnect_max_ms=4000)
    _acl(stack, "removeRoleACL")
    fw.start()
    fw.wait_for(lambda e: e["ev"] == "link" and e["state"] == "down" and e.get("reason") == "suback refused", 15)
    fw.send("trigger")
    time.sleep(6)
    ups = [e for e in fw.seen("link") if e["state"] == "up"]
    # Reconnecting at the 200 ms minimum would be ~30 links in 6 s; the backoff doubles to 4 s.
    assert len(ups) <= 8, f"{len(ups)} reconnects in ~6 s: the refusal is not backed off"
    assert not [e for e in fw.seen("ack") if e["stage"] == "received"], "no ack can arrive without the subscription"
    _acl(stack, "addRoleACL")
    wait_until(lambda: [e for e in fw.seen("ack") if e["stage"] == "received"], 20,
               what="the alert acked once the ACL allows the ack topic")
    assert len(stack.incidents()) == 1, "resends while refused are one incident"
