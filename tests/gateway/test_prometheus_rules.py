"""The Prometheus alerting rules (deploy/prometheus/) and the Grafana dashboard
(deploy/grafana/): checked and unit-tested by the real `promtool`, then loaded by a real
Prometheus server that scrapes a real gateway, so neither can drift from the metrics the
gateway exports. Debian's `prometheus` package ships both binaries (`make setup`); a
missing one fails the test, it is never skipped."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from gateway import config, fleet_gauges
from gateway.models import Device
from gateway.store import open_store
from gateway.timeutil import now_ms
from simulator.stack import Stack, free_port, wait_port
from tests.gateway.test_gateway_support import custom_stack, device, pg_schema

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "deploy" / "prometheus" / "panic-rules.yml"
RULE_TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.yml"))
DASHBOARD = ROOT / "deploy" / "grafana" / "panic-dashboard.json"
JOB = "panic-gateway"
# Synthesized by Prometheus itself for every target, not exported by the gateway.
PROMETHEUS_NAMES = {"up"}
# Grafana's variables, replaced by values Prometheus accepts.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": "1h", "$__interval": "1m", "$kelurahan": ".*"}


def tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} not found: install Debian's prometheus package (make setup)")
    return path


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def alert_names() -> list[str]:
    return re.findall(r"^\s*- alert:\s*(\S+)\s*$", RULES.read_text(), flags=re.M)


def rule_cases(text: str) -> list[tuple[str, bool]]:
    """(alert, fires) for every `alertname:` case of a promtool test file, which writes
    `exp_alerts:` on the next line (`[]`: must not fire)."""
    cases = re.findall(r"^\s*alertname:\s*(\S+)\s*\n\s*exp_alerts:(.*)$", text, flags=re.M)
    assert len(cases) == len(re.findall(r"^\s*alertname:", text, flags=re.M)), \
        "every alertname: line must be followed by exp_alerts:"
    return [(name, rest.strip() != "[]") for name, rest in cases]


_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_NOT_NAMES = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool",
              "offset", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects: identifiers left once strings, label
    matchers, ranges and grouping lists are removed, that are not functions or keywords."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\boffset\s+\S+", " ", e)
    e = _GROUPING.sub(" ", e)
    names = set()
    for m in re.finditer(r"(?<![\w.$])[A-Za-z_:][A-Za-z0-9_:]*", e):
        if e[m.end():].lstrip().startswith("(") or m.group(0).lower() in _NOT_NAMES:
            continue
        names.add(m.group(0))
    return names


def exported_names(metrics_text: str) -> set[str]:
    """Every series name a scrape of this /metrics can produce, including the families that
    have no labelled child yet (a sink that never failed still has `panic_forwards_total`)."""
    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_count", "_sum", "_created"),
                "summary": ("", "_count", "_sum", "_created"), "gauge": ("",), "unknown": ("",)}
    names: set[str] = set()
    for family in text_string_to_metric_families(metrics_text):
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {s.name for s in family.samples}
    return names


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"] if v.get("type") == "query"]
    return exprs


def as_query(expr: str) -> str:
    m = re.fullmatch(r"label_values\((.*),\s*\w+\)", expr, flags=re.S)
    if m:  # Grafana's own function: its selector is the PromQL part
        expr = m.group(1)
    for var, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(var, value)
    return expr


# --- promtool ------------------------------------------------------------------------------
def test_promtool_checks_the_rules():
    out = run(tool("promtool"), "check", "rules", str(RULES))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in out.stdout


def test_promtool_checks_the_example_config():
    out = run(tool("promtool"), "check", "config", str(RULES.parent / "prometheus.yml"))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(alert_names())} rules found" in out.stdout


def test_promtool_rule_unit_tests_pass():
    assert RULE_TESTS, "no promtool tests in deploy/prometheus/tests"
    out = run(tool("promtool"), "test", "rules", *map(str, RULE_TESTS))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


def test_every_rule_has_a_firing_and_a_quiet_case():
    cases = [c for path in RULE_TESTS for c in rule_cases(path.read_text())]
    for alert in alert_names():
        assert (alert, True) in cases, f"{alert}: no case where it fires"
        assert (alert, False) in cases, f"{alert}: no case where it stays quiet"
    assert {name for name, _ in cases} <= set(alert_names()), "a test names an alert the rules lack"


def test_promtool_fails_a_wrong_expectation(tmp_path):
    """The unit tests can fail: the same cases expecting the wrong label do."""
    (tmp_path / "tests").mkdir()
    shutil.copy(RULES, tmp_path / RULES.name)
    for path in RULE_TESTS:
        text = path.read_text().replace("severity: critical, sink: dispatch0", "severity: warning, sink: dispatch0")
        (tmp_path / "tests" / path.name).write_text(text)
    out = run(tool("promtool"), "test", "rules", *map(str, sorted((tmp_path / "tests").glob("*.yml"))))
    assert out.returncode != 0
    assert "PanicForwardsDeadLettered" in out.stdout + out.stderr


# --- the PromQL name reader ----------------------------------------------------------------
def test_metric_names_reads_selectors_only():
    expr = ('histogram_quantile(0.99, sum by (le, step) (rate(panic_latency_seconds_bucket{job="x", le=~"1.*"}'
            '[$__rate_interval]))) > 10 and on(instance) up offset 5m unless ignoring(a) panic_typo_total')
    assert metric_names(expr) == {"panic_latency_seconds_bucket", "up", "panic_typo_total"}
    assert metric_names('max by (kelurahan) (panic_kelurahan_devices{health="silent"}) / 1e3') == \
        {"panic_kelurahan_devices"}


# --- a real Prometheus on a real gateway ---------------------------------------------------
@pytest.fixture(scope="module")
def gateway(tmp_path_factory) -> Iterator[Stack]:
    # A short escalation time, so an unacknowledged incident shows within the test.
    s = custom_stack(tmp_path_factory.mktemp("prom") / "state", escalate_after_s=1)
    yield s
    s.down()


@pytest.fixture(scope="module")
def prometheus(gateway, tmp_path_factory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("prometheus")
    port = free_port()
    (home / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"rule_files: ['{RULES}']\n"
        "scrape_configs:\n"
        f"  - job_name: {JOB}\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{gateway.api_port}']}}]\n")
    with open(home / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([tool("prometheus"), f"--config.file={home / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={home / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=log, stderr=log)
        try:
            wait_port(port, timeout=30)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            proc.wait(15)


def query(prom: str, expr: str) -> list[dict]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=10)
    body = r.json()
    assert r.status_code == 200 and body["status"] == "success", f"{expr}: {body.get('error')}"
    return body["data"]["result"]


def wait_for(check, timeout: float = 30.0, what: str = ""):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.5)


def loaded_rules(prom: str) -> list[dict]:
    groups = httpx.get(f"{prom}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return [r for g in groups for r in g["rules"]]


def test_rules_use_only_metrics_the_gateway_exports(gateway, prometheus):
    exported = exported_names(httpx.get(gateway.api + "/metrics", timeout=5).text) | PROMETHEUS_NAMES
    rules = wait_for(lambda: [r for r in loaded_rules(prometheus) if r.get("lastEvaluation", "").startswith("20")]
                     if len(loaded_rules(prometheus)) == len(alert_names()) else None, what="rules evaluated")
    assert sorted(r["name"] for r in rules) == sorted(alert_names())
    for rule in rules:
        assert rule["health"] == "ok", f"{rule['name']}: {rule.get('lastError')}"
        missing = metric_names(rule["query"]) - exported
        assert not missing, f"{rule['name']} uses {sorted(missing)}, which the gateway does not export"


def test_dashboard_queries_run_and_use_only_exported_metrics(gateway, prometheus):
    exported = exported_names(httpx.get(gateway.api + "/metrics", timeout=5).text) | PROMETHEUS_NAMES
    exprs = dashboard_exprs()
    assert len(exprs) > 20
    for expr in map(as_query, exprs):
        missing = metric_names(expr) - exported
        assert not missing, f"dashboard query {expr!r} uses {sorted(missing)}, which the gateway does not export"
        query(prometheus, expr)  # Prometheus parses and evaluates it


def test_dashboard_covers_sla_fleet_ingest_and_forwards():
    used = set().union(*(metric_names(as_query(e)) for e in dashboard_exprs()))
    assert {"panic_latency_seconds_bucket", "panic_latency_seconds_count", "panic_kelurahan_devices",
            "panic_kelurahan_devices_flagged", "panic_ingest_queue", "panic_alerts_rejected_total",
            "panic_forwards_total", "panic_forwards_backlog", "panic_incidents_unacknowledged"} <= used
    text = DASHBOARD.read_text()
    for step in ("press_to_received", "received_to_acknowledged", "received_to_dispatched", "press_to_on_scene"):
        assert f'step=\\"{step}\\"' in text, f"no panel for {step}"


def test_fleet_gauges_and_unacknowledged_alert_follow_the_gateway(gateway, prometheus):
    """An unacknowledged press fires PanicIncidentsUnacknowledged in the real Prometheus;
    the per-kelurahan gauges count the registered button."""
    dev = "klj-bareng-rw01-rt01"
    button, _ = device(gateway, dev, kelurahan="Bareng", rw=1, rt=1)
    try:
        button.send(1)
        assert button.ack()["stage"] == "received"
        button.publish(json.dumps({"v": 1, "dev": dev, "state": "online", "batt": 10}).encode(),
                       topic=f"panic/v1/{dev}/status")
    finally:
        button.close()
    wait_for(lambda: query(prometheus, f'panic_kelurahan_devices{{job="{JOB}", kelurahan="Bareng", health="online"}}'
                                       " == 1"), what="the button online in Bareng")
    series = query(prometheus, f'panic_kelurahan_devices{{job="{JOB}", kelurahan="Bareng"}}')
    assert sum(float(s["value"][1]) for s in series) == 1
    assert query(prometheus, f'panic_kelurahan_devices_flagged{{job="{JOB}", kelurahan="Bareng", flag="low_battery"}}'
                             " == 1")
    wait_for(lambda: query(prometheus, f'panic_incidents_unacknowledged{{job="{JOB}", kind="panic"}} > 0'),
             what="the unacknowledged gauge")

    def firing() -> list[dict]:
        alerts = httpx.get(f"{prometheus}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        return [a for a in alerts if a["labels"]["alertname"] == "PanicIncidentsUnacknowledged"
                and a["state"] == "firing"]
    wait_for(firing, what="PanicIncidentsUnacknowledged firing")


def test_a_failing_store_costs_the_scrape_only_the_fleet_gauges(tmp_path):
    """Bad state at scrape time is counted, never a failed /metrics."""
    (tmp_path / "gateway.toml").write_text('[store]\nkind = "sqlite"\npath = "gateway.db"\n')
    store = open_store(config.load(tmp_path / "gateway.toml"))
    registry = CollectorRegistry()
    fleet_gauges.register(store, registry)
    assert "panic_incidents_unacknowledged{kind=\"panic\"} 0.0" in generate_latest(registry).decode()
    store.close()  # every read of a closed store raises

    def errors() -> float:
        return REGISTRY.get_sample_value("panic_store_errors_total", {"where": "metrics"}) or 0.0
    before = errors()
    assert "panic_kelurahan_devices" not in generate_latest(registry).decode()
    assert errors() == before + 1


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_fleet_gauges_count_each_kelurahan_in_one_query(kind, tmp_path):
    """Counts per kelurahan and health from the store (SQLite and PostgreSQL); a button
    registered without a kelurahan gets the label `none`."""
    with pg_schema() as dsn:
        store_section = f'kind = "postgres"\ndsn = "{dsn}"' if kind == "postgres" else 'kind = "sqlite"\npath = "g.db"'
        (tmp_path / "gateway.toml").write_text(f"[store]\n{store_section}\n")
        store = open_store(config.load(tmp_path / "gateway.toml"))
        try:
            store.add_devices([Device(id=f"klj-k{i}", secret="s", mqtt_password="p", kelurahan=k)
                               for i, k in enumerate(["Kauman", "Kauman", "Kauman", "Bareng", ""])])
            for dev, batt in (("klj-k0", 90), ("klj-k1", 5)):
                store.record_status(dev, {"state": "online", "batt": batt}, now_ms(), retained=False, heartbeat_s=60,
                                    silent_factor=2.5, low_battery_pct=20, backlog_min=1)
            registry = CollectorRegistry()
            fleet_gauges.register(store, registry)

            def value(name: str, **labels: str) -> float | None:
                return registry.get_sample_value(name, labels)
            assert value("panic_kelurahan_devices", kelurahan="Kauman", health="online") == 2
            assert value("panic_kelurahan_devices", kelurahan="Kauman", health="unknown") == 1
            assert value("panic_kelurahan_devices", kelurahan="Kauman", health="silent") == 0
            assert value("panic_kelurahan_devices_flagged", kelurahan="Kauman", flag="low_battery") == 1
            assert value("panic_kelurahan_devices", kelurahan="Bareng", health="unknown") == 1
            assert value("panic_kelurahan_devices", kelurahan="none", health="unknown") == 1
        finally:
            store.close()
