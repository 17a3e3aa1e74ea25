"""The broker's logins and ACLs through mosquitto's dynamic-security plugin.

mosquitto 2.0's `acl_file` grants every SUBSCRIBE (only delivery is checked), so a device
could join the gateways' shared subscription and take its share of every button's alerts;
nor can an ACL file bind a client id to a login. The dynamic-security plugin checks
subscriptions (denied unless a role allows them) and binds a client to one client id. It
has no `%u` patterns, so every device gets a role of its own naming its own topics.

The plugin keeps its state in a JSON file it reads at start and rewrites after every
change; a running broker is changed only through `$CONTROL/dynamic-security/v1` commands
from the admin login. `plan` compares the file (the broker's current state) with the
registry and returns the new file plus the commands that turn the one into the other.
"""
from __future__ import annotations

import base64
import glob
import hashlib
import hmac
import json
import queue
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from .config import ConfigError

PLUGIN_GLOBS = ("/usr/lib/*/mosquitto_dynamic_security.so", "/usr/lib/mosquitto_dynamic_security.so",
                "/usr/local/lib/mosquitto_dynamic_security.so", "/usr/local/lib/*/mosquitto_dynamic_security.so")
ADMIN = "panic-broker-admin"
ITERATIONS = 101  # the plugin's own default for PBKDF2-SHA512
CONTROL = "$CONTROL/dynamic-security/v1"
MAX_COMMANDS_BYTES = 48_000  # stay under the broker's max_packet_size (65536)
# Deny what no role allows; unsubscribing is harmless.
DEFAULT_ACCESS = {"publishClientSend": False, "publishClientReceive": False, "subscribe": False,
                  "unsubscribe": True}


class DynsecError(ConfigError):
    pass


# Not a plugin command: plan() marks logins a running broker lacks and only a plain password
# could create (the registry keeps hashes); send() refuses them with PasswordNeeded.
NEEDS_PASSWORD = "panic:needsPassword"


class PasswordNeeded(DynsecError):
    def __init__(self, usernames: list[str]) -> None:
        self.usernames = usernames
        super().__init__(f"the running broker has no login for {', '.join(usernames[:5])}"
                         f"{' …' if len(usernames) > 5 else ''}, and the registry keeps only password hashes: "
                         "issue fresh ones with `panic-gateway device config ID` (re-flash the button)")


def plugin_path() -> str:
    for pattern in PLUGIN_GLOBS:
        found = sorted(glob.glob(pattern))
        if found:
            return found[0]
    raise DynsecError("mosquitto_dynamic_security.so not found: install mosquitto 2.x (Debian package "
                      "`mosquitto` ships it)")


@dataclass(frozen=True)
class Login:
    username: str
    password: str  # plain text when known now (a fresh device password, the gateway's, the admin's), else ""
    role: str
    clientid: str | None = None  # set: the only client id this login may connect with
    stored: dict | None = None  # a device password's hash as the registry keeps it (`stored_hash`)
    disabled: bool = False  # a suspended device: its login stays, refused, so resuming needs no password


@dataclass(frozen=True)
class DeviceLogin:
    """A registered device as the broker should know it: `stored` is the registry's hash of
    its MQTT password (the plain one is never kept), `fresh` the plain one when it was just
    issued (a running broker can only be given a new password in plain text)."""
    dev: str
    stored: str
    active: bool
    fresh: str | None = None


def _acl(acltype: str, topic: str) -> dict:
    return {"acltype": acltype, "topic": topic, "priority": 0, "allow": True}


def gateway_acls(root: str, group: str) -> list[dict]:
    reads = [f"{root}/+/alert", f"{root}/+/status", f"{root}/+/result", f"{root}/incidents/#", f"{root}/ops/#"]
    subs = [*reads, f"$share/{group}/{root}/+/alert", f"$share/{group}/{root}/+/result"]
    sends = [f"{root}/+/ack", f"{root}/+/cmd", f"{root}/+/ota", f"{root}/incidents/#", f"{root}/ops/#"]
    return ([_acl("subscribePattern", t) for t in subs] + [_acl("publishClientReceive", t) for t in reads]
            + [_acl("publishClientSend", t) for t in sends])


def device_acls(root: str, dev: str) -> list[dict]:
    """Its own topics only: it sends alerts, statuses and command results (with OTA chunk
    requests), and reads its acks, commands and OTA chunks (docs/protocol.md "Fleet")."""
    sends = [_acl("publishClientSend", f"{root}/{dev}/{leaf}") for leaf in ("alert", "status", "result")]
    reads = [f"{root}/{dev}/{leaf}" for leaf in ("ack", "cmd", "ota")]
    return sends + [a for t in reads for a in (_acl("subscribeLiteral", t), _acl("publishClientReceive", t))]


def admin_acls() -> list[dict]:
    t = "$CONTROL/dynamic-security/#"
    return [_acl("publishClientSend", t), _acl("publishClientReceive", t), _acl("subscribePattern", t)]


def device_role(dev: str) -> str:
    return f"device:{dev}"


def wanted(root: str, group: str, gateway: tuple[str, str], admin_password: str,
           devices: Iterable[DeviceLogin]) -> tuple[list[Login], dict[str, list[dict]]]:
    """The logins and roles the broker should have: the gateway's, the admin's, and one per
    registered device, each device bound to its id as client id; a suspended device's login
    is kept disabled."""
    logins = [Login(gateway[0], gateway[1], "gateway"), Login(ADMIN, admin_password, "admin", clientid=ADMIN)]
    roles = {"gateway": gateway_acls(root, group), "admin": admin_acls()}
    for d in devices:
        stored = parse_stored(d.stored)
        # A registry row from before hashing still holds the plain password: use it as such.
        plain = d.fresh or ("" if stored is not None else d.stored)
        logins.append(Login(d.dev, plain, device_role(d.dev), clientid=d.dev, stored=stored, disabled=not d.active))
        roles[device_role(d.dev)] = device_acls(root, d.dev)
    return logins, roles


# --- passwords as the plugin stores them ------------------------------------------------
def hashed(password: str, salt: bytes | None = None, iterations: int = ITERATIONS) -> dict:
    salt = salt or secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return {"salt": base64.b64encode(salt).decode(), "password": base64.b64encode(digest).decode(),
            "iterations": iterations}


STORED_SCHEME = "pbkdf2-sha512"


def stored_hash(password: str) -> str:
    """A device's MQTT password as the registry keeps it: the plugin's PBKDF2 hash, in one string."""
    h = hashed(password)
    return f"{STORED_SCHEME}${h['iterations']}${h['salt']}${h['password']}"


def parse_stored(text: str) -> dict | None:
    """`stored_hash`'s string as the plugin's entry; None for anything else (a plain password
    of a registry from before hashing, which the store hashes at start)."""
    parts = text.split("$")
    if len(parts) != 4 or parts[0] != STORED_SCHEME or not parts[1].isdigit():
        return None
    return {"salt": parts[2], "password": parts[3], "iterations": int(parts[1])}


def verifies(entry: dict, password: str) -> bool:
    try:
        salt = base64.b64decode(entry["salt"])
        want = base64.b64decode(entry["password"])
        iterations = int(entry.get("iterations", ITERATIONS))
    except (KeyError, ValueError, TypeError):
        return False
    return hmac.compare_digest(hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations), want)


# --- the file and the commands -------------------------------------------------------------
def _acl_key(a: dict) -> tuple:
    return (a.get("acltype"), a.get("topic"), bool(a.get("allow", True)))


def _role_names(client: dict) -> set[str]:
    return {r.get("rolename") for r in client.get("roles", [])}


def plan(old: dict, logins: list[Login], roles: dict[str, list[dict]]) -> tuple[dict, list[dict]]:
    """(the new file, the commands that change a broker holding `old` into it). An unchanged
    login keeps its stored hash, so an unchanged registry gives no command at all."""
    old_clients = {c.get("username"): c for c in old.get("clients", [])}
    old_roles = {r.get("rolename"): r for r in old.get("roles", [])}
    creates: list[dict] = []
    changes: list[dict] = []
    deletes: list[dict] = []
    new_roles = []
    for name, acls in roles.items():
        new_roles.append({"rolename": name, "acls": acls})
        before = old_roles.get(name)
        if before is None:
            creates.append({"command": "createRole", "rolename": name, "acls": acls})
            continue
        have = {_acl_key(a) for a in before.get("acls", [])}
        want = {_acl_key(a) for a in acls}
        for a in before.get("acls", []):
            if _acl_key(a) not in want:
                changes.append({"command": "removeRoleACL", "rolename": name, "acltype": a["acltype"],
                                "topic": a["topic"]})
        for a in acls:
            if _acl_key(a) not in have:
                changes.append({"command": "addRoleACL", "rolename": name, **a})
    new_clients = []
    unset: list[str] = []
    for login in logins:
        before = old_clients.get(login.username)
        entry: dict = {"username": login.username, "roles": [{"rolename": login.role}]}
        if login.clientid:
            entry["clientid"] = login.clientid
        if login.disabled:
            entry["disabled"] = True
        keep = before is not None and (verifies(before, login.password) if login.password
                                       else login.stored is not None)
        if keep:
            # Unchanged, or a device whose plain password is not known here: the broker's hash
            # (its own salt) stays; only a freshly issued password replaces it.
            entry.update({k: before[k] for k in ("salt", "password", "iterations")})  # type: ignore[index]
        elif login.password:
            entry.update(hashed(login.password))
        elif login.stored is not None:
            entry.update(login.stored)  # a broker that never had it: the file takes the registry's hash
        new_clients.append(entry)
        if before is None:
            if not login.password:
                unset.append(login.username)  # a running broker can only be given it in plain text
                continue
            creates.append({"command": "createClient", "username": login.username, "password": login.password,
                            **({"clientid": login.clientid} if login.clientid else {}),
                            "roles": [{"rolename": login.role}]})
            if login.disabled:
                creates.append({"command": "disableClient", "username": login.username})
            continue
        if not keep and login.password:
            changes.append({"command": "setClientPassword", "username": login.username, "password": login.password})
        if bool(before.get("disabled")) != login.disabled:
            changes.append({"command": "disableClient" if login.disabled else "enableClient",
                            "username": login.username})
        if before.get("clientid") != login.clientid:
            changes.append({"command": "setClientId", "username": login.username,
                            **({"clientid": login.clientid} if login.clientid else {})})
        for r in _role_names(before) - {login.role}:
            changes.append({"command": "removeClientRole", "username": login.username, "rolename": r})
        if login.role not in _role_names(before):
            changes.append({"command": "addClientRole", "username": login.username, "rolename": login.role})
    wanted_users = {login.username for login in logins}
    for user in old_clients:
        if user not in wanted_users:
            deletes.append({"command": "deleteClient", "username": user})
    for name in old_roles:
        if name not in roles:
            deletes.append({"command": "deleteRole", "rolename": name})
    if old.get("defaultACLAccess") != DEFAULT_ACCESS:
        changes.append({"command": "setDefaultACLAccess",
                        "acls": [{"acltype": k, "allow": v} for k, v in DEFAULT_ACCESS.items()]})
    new = {"defaultACLAccess": dict(DEFAULT_ACCESS), "clients": new_clients, "groups": [], "roles": new_roles}
    if unset:
        # Tells send() these need a password it was not given: see PasswordNeeded.
        changes.append({"command": NEEDS_PASSWORD, "usernames": unset})
    return new, creates + changes + deletes


def _batches(commands: list[dict]) -> Iterable[list[dict]]:
    batch: list[dict] = []
    size = 0
    for c in commands:
        n = len(json.dumps(c))
        if batch and size + n > MAX_COMMANDS_BYTES:
            yield batch
            batch, size = [], 0
        batch.append(c)
        size += n
    if batch:
        yield batch


def send(host: str, port: int, admin_password: str, commands: list[dict], timeout_s: float = 30.0) -> None:
    """Apply `commands` to a running broker. Raises OSError when no broker listens, and
    DynsecError when it refuses the admin login or a command."""
    needing = [u for c in commands if c["command"] == NEEDS_PASSWORD for u in c["usernames"]]
    commands = [c for c in commands if c["command"] != NEEDS_PASSWORD]
    if not commands and not needing:
        return
    _send(host, port, admin_password, commands, timeout_s)  # OSError: no broker running, nothing missing
    if needing:
        raise PasswordNeeded(needing)


def _send(host: str, port: int, admin_password: str, commands: list[dict], timeout_s: float) -> None:
    got: queue.Queue = queue.Queue()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=ADMIN, protocol=mqtt.MQTTv5)
    c.username_pw_set(ADMIN, admin_password)
    c.on_connect = lambda cl, u, flags, reason, props: got.put(("connect", reason))
    c.on_subscribe = lambda cl, u, mid, codes, props: got.put(("subscribe", codes))
    c.on_message = lambda cl, u, m: got.put(("message", m.payload))
    c.connect(host, port, keepalive=30)
    c.loop_start()
    try:
        kind, reason = got.get(timeout=timeout_s)
        if kind != "connect" or reason.is_failure:
            raise DynsecError(f"the broker refused the admin login: {reason}")
        c.subscribe(CONTROL + "/response", qos=1)
        got.get(timeout=timeout_s)
        for batch in _batches(commands):
            tag = uuid.uuid4().hex
            for i, cmd in enumerate(batch):
                cmd.setdefault("correlationData", f"{tag}:{i}")
            c.publish(CONTROL, json.dumps({"commands": batch}), qos=1)
            pending = {cmd["correlationData"] for cmd in batch}
            errors = []
            while pending:
                kind, payload = got.get(timeout=timeout_s)
                if kind != "message":
                    continue
                for r in json.loads(payload).get("responses", []):
                    if r.get("correlationData") in pending:
                        pending.discard(r["correlationData"])
                        if r.get("error"):
                            errors.append(f"{r.get('command')}: {r['error']}")
            if errors:
                raise DynsecError("the broker refused: " + "; ".join(errors[:5]))
    except queue.Empty:
        raise DynsecError(f"no answer from the broker's dynamic-security plugin within {timeout_s}s") from None
    finally:
        c.disconnect()
        c.loop_stop()
