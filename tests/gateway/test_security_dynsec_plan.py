"""The broker's logins as dynamic-security commands: a registry that did not change costs a
running broker nothing, and each change is exactly the commands it needs (the plugin
rewrites its whole state file after every command)."""
from __future__ import annotations

from gateway import dynsec


def _wanted(devices: list[tuple[str, str]], fresh: frozenset[str] = frozenset()):
    """`devices` as (id, password); the registry keeps only hashes, and knows the plain
    password only of those just issued (`fresh`)."""
    logins = [dynsec.DeviceLogin(dev, stored=dynsec.stored_hash(pw), active=True,
                                 fresh=pw if dev in fresh else None) for dev, pw in devices]
    return dynsec.wanted("panic/v1", "gateways", ("gateway", "gw-pw"), "admin-pw", logins)


def _commands(old: dict, devices: list[tuple[str, str]],
              fresh: frozenset[str] = frozenset()) -> tuple[dict, list[tuple[str, str]]]:
    new, cmds = dynsec.plan(old, *_wanted(devices, fresh))
    return new, [(c["command"], c.get("username") or c.get("rolename") or "") for c in cmds]


BOTH = frozenset({"dev-a", "dev-b"})


def test_an_unchanged_registry_gives_no_commands_and_keeps_the_stored_hashes():
    first, _ = _commands({}, [("dev-a", "pw-a"), ("dev-b", "pw-b")], BOTH)
    again, cmds = _commands(first, [("dev-a", "pw-a"), ("dev-b", "pw-b")])
    assert cmds == [] and again == first


def test_each_change_is_the_commands_it_needs():
    state, _ = _commands({}, [("dev-a", "pw-a"), ("dev-b", "pw-b")], BOTH)
    _, added = _commands(state, [("dev-a", "pw-a"), ("dev-b", "pw-b"), ("dev-c", "pw-c")], frozenset({"dev-c"}))
    assert added == [("createRole", "device:dev-c"), ("createClient", "dev-c")]
    _, rotated = _commands(state, [("dev-a", "pw-a2"), ("dev-b", "pw-b")], frozenset({"dev-a"}))
    assert rotated == [("setClientPassword", "dev-a")]
    _, removed = _commands(state, [("dev-b", "pw-b")])
    assert removed == [("deleteClient", "dev-a"), ("deleteRole", "device:dev-a")]


def test_a_device_role_names_only_its_own_topics_and_binds_its_client_id():
    logins, roles = _wanted([("dev-a", "pw-a")], frozenset({"dev-a"}))
    login = next(x for x in logins if x.username == "dev-a")
    assert login.clientid == "dev-a"
    assert {(a["acltype"], a["topic"]) for a in roles["device:dev-a"]} == {
        ("publishClientSend", "panic/v1/dev-a/alert"), ("publishClientSend", "panic/v1/dev-a/status"),
        ("publishClientSend", "panic/v1/dev-a/result"),
        *((kind, f"panic/v1/dev-a/{leaf}") for leaf in ("ack", "cmd", "ota")
          for kind in ("subscribeLiteral", "publishClientReceive"))}
    state, _ = dynsec.plan({}, logins, roles)
    assert "pw-a" not in str(state) and dynsec.verifies(state["clients"][-1], "pw-a")
