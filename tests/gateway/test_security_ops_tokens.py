"""API tokens expire, can be listed and revoked, and record their last use (docs/security.md, row 11),
against the gateway as a process on the project's mosquitto and SQLite."""
from __future__ import annotations

import json

import httpx
import pytest

from gateway import config
from gateway.auth import new_token, token_hash
from gateway.domain import tokens as token_rules
from gateway.store import open_store
from gateway.timeutil import now_ms
from tests.gateway.test_gateway_support import custom_stack


@pytest.fixture
def stack(tmp_path):
    s = custom_stack(tmp_path / "state")
    yield s
    s.down()


def status(s, token: str) -> int:
    return httpx.get(f"{s.api}/api/incidents", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code


def listed(s) -> dict[str, dict]:
    return {t["name"]: t for t in json.loads(s.cli("token", "list", "--json").stdout)}


def test_a_revoked_token_is_refused_at_once_and_list_shows_its_use(stack):
    s = stack
    token = s.cli("token", "create", "--role", "viewer", "--name", "city-ops", "--expires", "90d").stdout.strip()
    assert status(s, token) == 200
    before = now_ms()
    row = listed(s)["city-ops"]
    assert row["id"] == token_hash(token)[:token_rules.ID_CHARS] and token not in json.dumps(row)
    assert row["state"] == "active" and row["last_used_ms"] is not None and row["last_used_ms"] <= before
    assert abs(row["expires_ms"] - (row["created_ms"] + 90 * token_rules.DAY_MS)) == 0
    s.cli("token", "revoke", row["id"])
    # The running gateway refuses it on the very next request: no cache to wait out.
    assert status(s, token) == 401
    assert listed(s)["city-ops"]["state"] == "revoked"


def test_an_expired_token_is_refused(stack):
    s = stack
    token, now = new_token(), now_ms()
    store = open_store(config.load(s.config))
    try:
        store.add_token(token_hash(token), "operator", "old-script", now - 2 * token_rules.DAY_MS,
                        expires_ms=now - 1000)
    finally:
        store.close()
    assert status(s, token) == 401
    assert listed(s)["old-script"]["state"] == "expired"


def test_tokens_get_an_expiry_unless_never_is_asked_for(stack):
    s = stack
    s.cli("token", "create", "--role", "viewer", "--name", "default")
    s.cli("token", "create", "--role", "viewer", "--name", "forever", "--expires", "none")
    rows = listed(s)
    assert rows["default"]["expires_ms"] == rows["default"]["created_ms"] + 365 * token_rules.DAY_MS
    assert rows["forever"]["expires_ms"] is None
    bad = s.cli("token", "create", "--role", "viewer", "--expires", "soon", check=False)
    assert bad.returncode == 2 and "expiry" in bad.stderr


def test_last_use_is_written_at_most_once_a_minute(tmp_path):
    from gateway.store.sqlite import SqliteStore
    store = SqliteStore(tmp_path / "t.db")
    try:
        store.add_token("a" * 64, "viewer", "v", 0, expires_ms=None)
        assert store.token("a" * 64, 1_000_000) is not None
        assert store.token("a" * 64, 1_030_000) is not None
        [info] = store.tokens()
        assert info.last_used_ms == 1_000_000
        store.token("a" * 64, 1_060_000)
        assert store.tokens()[0].last_used_ms == 1_060_000
        assert store.revoke_token("a" * 6, 1_070_000) == ["a" * 12]
        assert store.token("a" * 64, 1_080_000) is None
        assert store.revoke_token("zz", 1) == [] and store.revoke_token("", 1) == []
    finally:
        store.close()
