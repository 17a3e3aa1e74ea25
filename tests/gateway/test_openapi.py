"""The OpenAPI 3.1 document: every route under /api described, the committed docs copy the
served one, and schemathesis against the live API (operator token) finding no server error
and no undocumented response."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from gateway import openapi
from gateway.auth import new_token, token_hash
from gateway.config import Config
from gateway.console.hub import Hub
from gateway.console.settings import ConsoleSettings
from gateway.store.sqlite import SqliteStore
from gateway.web import build_app
from tests.gateway.test_gateway_support import custom_stack, device

ROOT = Path(__file__).resolve().parents[2]
SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"


@pytest.fixture(scope="module")
def web(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("openapi")
    store = SqliteStore(tmp / "g.db")
    app = build_app(store=store, cfg=Config(path=tmp / "gateway.toml"), console_settings=ConsoleSettings(),
                    hub=Hub(), health=lambda: {"ok": True})
    token = new_token()
    store.add_token(token_hash(token), "operator", "openapi-test", time.time_ns() // 1_000_000)
    client = TestClient(app, base_url="http://testserver", raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {token}"
    yield app, client
    store.close()


def test_every_api_route_is_described_and_every_description_served(web):
    app, _ = web
    missing, stale = openapi.undocumented(app.routes)
    assert missing == [], f"routes without a description in gateway/openapi.py: {missing}"
    assert stale == [], f"descriptions of routes that do not exist: {stale}"


def test_the_committed_document_is_the_served_one(web):
    _, client = web
    served = TestClient(client.app).get("/api/openapi.json")  # no token: it describes, shows no data
    assert served.status_code == 200
    committed = (ROOT / "docs" / "openapi.json").read_text()
    assert committed == openapi.text(), "docs/openapi.json is stale: python -m gateway.openapi > docs/openapi.json"
    assert served.json() == json.loads(committed)
    assert served.json()["openapi"] == "3.1.0"


@pytest.mark.parametrize("path", [
    "/api/incidents?since=-9223372036854775809",
    "/api/incidents?since=9223372036854775808",
    "/api/incidents?limit=-1",
    "/api/forwards/dead?limit=-1",
    "/api/units/sabhara-2/track?since=-1038651721329596922220322488320",
])
def test_integers_out_of_the_stores_range_are_400_not_500(web, path):
    _, client = web
    r = client.get(path)
    assert r.status_code == 400 and "is an integer from" in r.json()["error"]


def test_schemathesis_finds_no_server_error_and_no_undocumented_response(tmp_path):
    s = custom_stack(tmp_path / "state")
    raw, _ = device(s)
    try:
        raw.send(seq=1)
        raw.ack()
        token = s.token("operator")
        run = subprocess.run(
            [str(SCHEMATHESIS), "run", f"{s.api}/api/openapi.json", "-H", f"Authorization: Bearer {token}",
             "--checks", CHECKS, "--max-examples", "10", "--phases", "examples,coverage,fuzzing", "--workers", "1",
             "--request-timeout", "10", "--output-truncate", "false"],
            capture_output=True, text=True, timeout=280, cwd=tmp_path)  # its cache folder goes there
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        # Every operation of the document was run, none filtered out.
        counts = re.search(r"Selected: (\d+)/(\d+)\s+Tested: (\d+)", run.stdout)
        assert counts and counts[1] == counts[2] == counts[3], run.stdout[-3000:]
    finally:
        raw.close()
        s.down()
