"""A short chaos run in `make test`; `make chaos` runs the full one (10,000 alerts)."""
from __future__ import annotations

from tools.chaos import Plan, run


def test_short_chaos_run_loses_and_doubles_nothing(tmp_path):
    plan = Plan(devices=16, alerts=240, gateway_kills=2, broker_restarts=1, power_cuts=6, wifi_flaps=4,
                duration_s=20)
    r = run(plan, tmp_path, progress=False)
    print(r)
    assert r["gateway_kills"] == 2 and r["broker_restarts"] == 1 and r["power_cuts"] == 6
    assert r["power_cuts_with_unacked_alert"] == 6
    assert r["pressed"] == r["alert_ids"] >= 240
    assert r["lost"] == 0 and r["duplicates"] == 0 and r["unacked_at_end"] == 0
    assert r["incidents"] == r["alert_ids"]
    assert r["incidents_not_forwarded"] == 0 and r["forwarded_unique"] == r["incidents"]
