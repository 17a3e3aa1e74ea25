"""Sink config entries: `[[webhooks]]` as before, `[[sinks]]` of any type, clear errors for
bad entries, and the routing the store is given."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway import config
from gateway.config import ConfigError
from gateway.sinks import SinkContext, build


def load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "gateway.toml"
    path.write_text(text)
    return config.load(path)


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(ConfigError) as exc:
        load(tmp_path, text)
    return str(exc.value)


def test_webhooks_tables_keep_their_names_and_meaning(tmp_path):
    cfg = load(tmp_path, """
[[webhooks]]
url = "http://127.0.0.1:9/a"
secret = "s3cret"
name = "dispatch0"

[[webhooks]]
url = "http://127.0.0.1:9/b"
secret = "s3cret-b"
events = []
format = "cap"
""")
    assert [(e.name, e.type, e.events) for e in cfg.sinks] == [
        ("mqtt", "mqtt_incident", None), ("ops", "ops", frozenset({"health", "policy"})),
        ("webhook:dispatch0", "webhook", None), ("webhook:1", "webhook", None)]
    assert [(w.url, w.secret, w.format) for w in cfg.webhooks] == [
        ("http://127.0.0.1:9/a", "s3cret", "json"), ("http://127.0.0.1:9/b", "s3cret-b", "cap")]
    assert "s3cret" not in repr(cfg.sinks)


def test_sinks_tables_any_type_with_its_options(tmp_path):
    cfg = load(tmp_path, """
[[sinks]]
type = "webhook"
name = "polsek-klojen"
url = "https://dispatch.example/klojen"
secret = "k"
events = ["new", "escalated"]
timeout_s = 2

[[sinks]]
type = "tests.gateway.sample_sink"
name = "journal"
path = "events.jsonl"
""")
    klojen, journal = cfg.sinks[2:]
    assert klojen.module == "gateway.sinks.webhook" and klojen.events == frozenset({"new", "escalated"})
    assert klojen.options.timeout_s == 2.0 and klojen.options.format == "json"
    assert journal.module == "tests.gateway.sample_sink" and journal.events is None
    assert journal.options.path == tmp_path / "events.jsonl"  # relative to the config's folder
    assert cfg.webhooks == [klojen.options]


def test_routing_follows_each_sinks_events(tmp_path):
    cfg = load(tmp_path, """
[[webhooks]]
url = "http://127.0.0.1:9/all"
secret = "a"
name = "dispatch0"

[[webhooks]]
url = "http://127.0.0.1:9/esc"
secret = "e"
name = "escalation"
events = ["escalated"]

[[sinks]]
type = "tests.gateway.sample_sink"
name = "fleet"
path = "fleet.jsonl"
events = ["health"]
""")
    sinks = build(cfg.sinks, SinkContext(cfg))
    assert sinks.names == ["mqtt", "ops", "webhook:dispatch0", "webhook:escalation", "fleet"]
    assert sinks.route("new") == ("mqtt", "webhook:dispatch0")
    assert sinks.route("escalated") == ("mqtt", "webhook:dispatch0", "webhook:escalation")
    assert sinks.route("health") == ("ops", "fleet")
    assert sinks.route("policy") == ("ops",)


@pytest.mark.parametrize("table, message", [
    ('type = "smoke_signal"\nname = "x"', "unknown sink type 'smoke_signal' (no module gateway.sinks.smoke_signal)"),
    ('type = "tests.gateway.no_such_sink"\nname = "x"', "unknown sink type 'tests.gateway.no_such_sink'"),
    ('type = "gateway.cap"\nname = "x"', "gateway.cap is not a sink module (it has no from_config)"),
    ('type = "webhook; rm"\nname = "x"', "type must be a sink module name"),
    ('name = "x"\nurl = "http://h/"', "[[sinks]] x: missing type"),
    ('type = "webhook"\nurl = "http://h/"', "[[sinks]] 0: name must be"),
    ('type = "webhook"\nname = "a b"\nurl = "http://h/"', "name must be"),
    ('type = "webhook"\nname = "x"\nulr = "http://h/"', "[[sinks]] x: unknown keys ['ulr']"),
    ('type = "webhook"\nname = "x"', "[[sinks]] x: missing ['url']"),
    ('type = "webhook"\nname = "x"\nurl = "ftp://h/"', "url must be an http:// or https:// URL"),
    ('type = "webhook"\nname = "x"\nurl = "http://h/"\nformat = "xml"', "format must be json or cap"),
    ('type = "webhook"\nname = "x"\nurl = "http://h/"\ntimeout_s = "5"', "timeout_s: expected a number"),
    ('type = "webhook"\nname = "x"\nurl = "http://h/"\nevents = ["new", "arrived"]', "unknown events ['arrived']"),
    ('type = "webhook"\nname = "x"\nurl = "http://h/"\nevents = "new"', "events must be a list of event names"),
    ('type = "webhook"\nname = "x"\nurl = "http://h/"\nevents = []', "events is empty"),
    ('type = "webhook"\nname = "mqtt"\nurl = "http://h/"\nsecret = "s"', "[[sinks]] mqtt: the name is taken"),
    ('type = "ops"\nname = "x"\ntopic = "y"', "this sink takes only type, name and events"),
])
def test_bad_sink_entries_are_clear_errors(tmp_path, table, message):
    assert message in error_of(tmp_path, f"[[sinks]]\n{table}\n")


def test_bad_webhooks_entries_are_clear_errors(tmp_path):
    assert "[[webhooks]] esc: unknown events ['escalate']" in error_of(
        tmp_path, '[[webhooks]]\nurl = "http://h/"\nname = "esc"\nevents = ["escalate"]\n')
    assert "[[webhooks]] 0: unknown keys ['type']" in error_of(
        tmp_path, '[[webhooks]]\nurl = "http://h/"\ntype = "ops"\n')
    assert "webhook:dup: the name is taken" in error_of(
        tmp_path, '[[webhooks]]\nurl = "http://h/"\nsecret = "s"\nname = "dup"\n[[webhooks]]\nurl = "http://h/"\nsecret = "s"\nname = "dup"\n')
    assert "[[sinks]] must be an array of tables" in error_of(tmp_path, 'sinks = ["webhook"]\n')


def test_a_sink_module_that_fails_to_load_is_named(tmp_path, monkeypatch):
    pkg = tmp_path / "site_sinks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "needs_lib.py").write_text("import not_installed_anywhere\n")
    (pkg / "typo.py").write_text("def from_config(entry, ctx):\n    return (\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert "sink type 'site_sinks.needs_lib' needs the module 'not_installed_anywhere', which is not installed" \
        in error_of(tmp_path, '[[sinks]]\ntype = "site_sinks.needs_lib"\nname = "x"\n')
    assert "sink type 'site_sinks.typo' failed to load: SyntaxError" in error_of(
        tmp_path, '[[sinks]]\ntype = "site_sinks.typo"\nname = "x"\n')
