"""The standard timers beside the promise (domain/sla.py): answer <= 15 s and dispatch <= 60 s for 90 %."""
from __future__ import annotations

from gateway.domain.sla import TIMERS, Times, summarize, timer_verdict

T0 = 1_800_000_000_000
S = 1000
ANSWER, DISPATCH = TIMERS


def inc(ack_s: float | None = None, disp_s: float | None = None, *, state: str = "dispatched",
        scene_s: float | None = None) -> Times:
    return Times(kind="panic", state=state, press_ms=T0 - 2 * S, received_ms=T0,
                 acknowledged_ms=None if ack_s is None else T0 + int(ack_s * S),
                 dispatched_ms=None if disp_s is None else T0 + int(disp_s * S),
                 on_scene_ms=None if scene_s is None else T0 + int(scene_s * S))


def test_the_standards_as_stated():
    assert (ANSWER.name, ANSWER.step, ANSWER.limit_s, ANSWER.target) == ("answer", "received_to_acknowledged", 15, 0.9)
    assert (DISPATCH.name, DISPATCH.step, DISPATCH.limit_s, DISPATCH.target) == \
        ("dispatch", "received_to_dispatched", 60, 0.9)


def test_verdicts_at_the_limit_late_waiting_and_closed_without_the_step():
    now = T0 + 3600 * S
    assert timer_verdict(inc(15, 60), ANSWER, now_ms=now) == "within"      # exactly at the limit
    assert timer_verdict(inc(15.001, 60), ANSWER, now_ms=now) == "missed"
    assert timer_verdict(inc(15, 60), DISPATCH, now_ms=now) == "within"
    assert timer_verdict(inc(15, 61), DISPATCH, now_ms=now) == "missed"
    waiting = inc(state="new")
    assert timer_verdict(waiting, ANSWER, now_ms=T0 + 10 * S) == "pending"
    assert timer_verdict(waiting, ANSWER, now_ms=T0 + 16 * S) == "missed"   # nobody answered in time
    assert timer_verdict(waiting, DISPATCH, now_ms=T0 + 16 * S) == "pending"
    # Reached by a unit nobody dispatched through the desk, then resolved: dispatch never timed.
    assert timer_verdict(inc(5, state="resolved", scene_s=300), DISPATCH, now_ms=T0 + 20 * S) == "missed"


def test_summary_share_and_met_per_timer():
    now = T0 + 3600 * S
    nine_fast = [inc(5, 30, state="on_scene", scene_s=300) for _ in range(9)]
    one_slow = [inc(40, 200, state="on_scene", scene_s=500)]
    s = summarize(nine_fast + one_slow, now_ms=now)
    a, d = s.timers["answer"], s.timers["dispatch"]
    assert (a.within, a.missed, a.pending, a.share, a.met) == (9, 1, 0, 0.9, True)
    assert (d.within, d.missed, d.share, d.met) == (9, 1, 0.9, True)
    s = summarize(nine_fast + one_slow * 2, now_ms=now)
    assert s.timers["answer"].share == 9 / 11 and s.timers["answer"].met is False
    # Incidents cancelled before anyone arrived do not count, for the timers as for the promise.
    cancelled = Times(kind="panic", state="cancelled", press_ms=T0, received_ms=T0)
    assert summarize([cancelled], now_ms=now).timers["answer"].met is None


def test_report_gives_the_timers_per_sector_and_kelurahan(tmp_path):
    from gateway import report
    from gateway.models import Alert, Device
    from gateway.store.sqlite import SqliteStore

    store = SqliteStore(tmp_path / "g.db")
    store.migrate()
    store.add_devices([Device(id="klj-1", secret="s" * 64, mqtt_password="p", kelurahan="Kauman", kecamatan="Klojen"),
                       Device(id="blm-1", secret="s" * 64, mqtt_password="p", kelurahan="Polehan",
                              kecamatan="Blimbing")])
    for seq, (dev, ack_s, disp_s) in enumerate([("klj-1", 5, 30), ("klj-1", 10, 50), ("blm-1", 40, 200)], start=1):
        received = T0 + seq * 60 * S
        a = Alert(id=f"{dev}:1:{seq}", dev=dev, boot=1, seq=seq, kind="panic", t=received - 100, age=0, lat6=1,
                  lon6=1, acc=5, src="fixed", batt=None, rssi=None, ref=None, received_ms=received, body="{}")
        inc = store.ingest([a])[0].incident
        assert inc is not None
        store.transition(inc.id, "acknowledge", "operator:a", received + ack_s * S, role="operator")
        store.transition(inc.id, "dispatch", "operator:a", received + disp_s * S, role="operator", unit="u")
    rep, _ = report.build(store, since_ms=T0, until_ms=T0 + 3600 * S, now_ms=T0 + 3600 * S)
    sectors = {s["sector"]: s["timers"] for s in rep["sectors"]}
    assert sectors["klojen"]["answer"]["share"] == 1.0 and sectors["klojen"]["dispatch"]["met"] is True
    assert sectors["blimbing"]["answer"]["share"] == 0.0 and sectors["blimbing"]["dispatch"]["met"] is False
    kel = {k["kelurahan"]: k["timers"] for k in rep["kelurahan"]}
    assert kel["Kauman"]["answer"]["within"] == 2 and kel["Polehan"]["dispatch"]["missed"] == 1
    assert rep["overall"]["timers"]["answer"]["share"] == round(2 / 3, 4)
    table = report.to_table(rep)
    assert "sector klojen" in table and "answer <= 15 s (90%)" in table and "(missed)" in table
    store.close()
