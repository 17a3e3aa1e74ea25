"""domain/rollout.py: the wave, where a device stands, who may be sent the release now,
and the halt rule with its reason."""
from __future__ import annotations

import pytest

from gateway.domain import rollout as r

RULES = r.Rules(halt_pct=10, halt_min=3, trial_s=600, retry_s=600)
DEVS = [f"klj-d{i:03d}" for i in range(200)]


def fw(dev="d", **kw):
    return {"dev": dev, "fw": "1.2.0", "seq": None, "slot": "factory", "rel": 13, "stage": "sent", "err": None,
            "updated_ms": 0, **kw}


def test_pct_parsing():
    assert r.parse_pct("5%") == 5 and r.parse_pct(" 100 % ") == 100 and r.parse_pct(2.5) == 2.5
    for bad in ("0%", "101%", "five", "-5%", ""):
        with pytest.raises(r.RolloutError):
            r.parse_pct(bad)


def test_wave_is_deterministic_widens_and_differs_per_release():
    five = r.wave(DEVS, 13, 5)
    assert len(five) == 10 and five == r.wave(list(reversed(DEVS)), 13, 5)
    assert r.wave(DEVS, 13, 50)[:10] == five  # widening keeps the canaries
    assert set(r.wave(DEVS, 14, 5)) != set(five)
    assert r.wave(DEVS[:10], 13, 5) == r.wave(DEVS[:10], 13, 1)[:1] and len(r.wave(DEVS[:10], 13, 5)) == 1
    assert r.wave([], 13, 100) == [] and r.wave(DEVS, 13, 100) == r.order(DEVS, 13)


@pytest.mark.parametrize("rec,health,now,state,why", [
    (None, "online", 0, "waiting", ""),
    (fw(rel=12, stage="kept"), "online", 0, "waiting", ""),
    (fw(seq=13, rel=None, stage=None), "online", 0, "ok", "runs it"),
    (fw(seq=14, rel=14), "online", 0, "ok", "runs a newer release"),
    (fw(seq=13, stage="trial"), "online", 0, "sent", "trial"),  # running it on trial is not yet an outcome
    (fw(stage="kept"), "online", 0, "ok", "kept"),
    (fw(stage="rolled_back", err="crash"), "online", 0, "failed", "rolled_back:crash"),
    (fw(stage="refused", err="sig"), "online", 0, "failed", "sig"),
    (fw(stage="refused", err="hash"), "online", 0, "failed", "hash"),
    (fw(stage="refused", err="battery"), "online", 0, "later", "battery"),
    (fw(stage="refused", err="old"), "online", 0, "skipped", "old"),
    (fw(stage="trial", updated_ms=0), "offline", 600_000, "sent", "trial"),  # a reset's will, not yet a failure
    (fw(stage="trial", updated_ms=0), "offline", 600_001, "failed", "offline"),
    (fw(stage="downloaded", updated_ms=0), "silent", 700_000, "failed", "offline"),
    (fw(stage="accepted", updated_ms=0), "offline", 10**9, "sent", "accepted"),  # downloading resumes later
])
def test_outcome(rec, health, now, state, why):
    o = r.outcome(rec, 13, health, now, RULES)
    assert (o.state, o.why) == (state, why)


def test_may_send():
    waiting = r.Outcome("d", "waiting")
    assert r.may_send(waiting, None, "online", True, 0, RULES)
    assert not r.may_send(waiting, None, "offline", True, 0, RULES)  # gets it when it is back
    assert not r.may_send(waiting, None, "online", False, 0, RULES)  # suspended
    later = r.Outcome("d", "later", "busy_alert")
    assert not r.may_send(later, fw(updated_ms=0), "online", True, 599_999, RULES)
    assert r.may_send(later, fw(updated_ms=0), "online", True, 600_000, RULES)
    unanswered = r.Outcome("d", "sent", "sent")
    assert r.may_send(unanswered, fw(updated_ms=0), "sleeping", True, 600_000, RULES)
    assert not r.may_send(r.Outcome("d", "sent", "accepted"), fw(), "online", True, 10**9, RULES)


def test_halt_rule_needs_a_sample_and_a_share():
    ok = [r.Outcome(f"ok{i}", "ok") for i in range(30)]
    bad = [r.Outcome("b1", "failed", "rolled_back:crash")]
    assert r.halt_reason(r.tally(bad), RULES) is None  # 1 outcome: below the minimum
    assert r.halt_reason(r.tally(ok[:9] + bad), RULES) is None  # 1 of 10 = 10 %: not above
    assert r.halt_reason(r.tally(ok[:8] + bad), RULES)  # 1 of 9
    fails = [r.Outcome("b1", "failed", "rolled_back:crash"), r.Outcome("b2", "failed", "rolled_back:no_ack"),
             r.Outcome("b3", "failed", "offline"), r.Outcome("s", "sent", "trial")]
    why = r.halt_reason(r.tally(fails), RULES)
    assert why.startswith("3 of 3 devices with an outcome failed the trial (100 % > 10 %): 2 rolled back, "
                          "1 offline during trial (causes: crash, no_ack); e.g. b1, b2, b3")
    assert r.halt_reason(r.tally(fails), r.Rules(halt_pct=100)) is None


def test_finished_only_at_100_with_nothing_pending():
    done = r.tally([r.Outcome("a", "ok"), r.Outcome("b", "skipped", "old")])
    assert r.finished(done, 100) and not r.finished(done, 50)
    assert not r.finished(r.tally([r.Outcome("a", "ok"), r.Outcome("b", "later", "battery")]), 100)
    assert not r.finished(r.tally([]), 100)
