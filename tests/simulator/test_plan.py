"""The staffing model (simulator/model.py) and `panic-sim plan`'s search (simulator/plan.py):
seeded, no firmware, no broker."""
from __future__ import annotations

import json
from typing import Any

import pytest

from simulator import cli, model, plan, scenario
from simulator.geo import haversine_m, offset
from simulator.people import PeopleConfig
from simulator.scenario import Button, Post

# Every delay its median: the model's arithmetic can be named.
EXACT = PeopleConfig(operators=1, ack_sigma=0.0, dispatch_sigma=0.0, turnout_sigma=0.0, traffic_sigma=0.0,
                     on_scene_sigma=0.0)
HOME = (-7.9790, 112.6330)


def button(name: str, lat: float, lon: float, kecamatan: str = "Klojen") -> Button:
    return Button(name, "Kauman", kecamatan, 1, 1, round(lat * 1e6), round(lon * 1e6))


def call(n: int, t: float, lat: float, lon: float, sector: str = "klojen") -> model.Call:
    return model.Call(n, t, lat, lon, sector, "Kauman")


def fixed_point(cfg: PeopleConfig, distance_m: float) -> float:
    return (cfg.ack_median_s + cfg.dispatch_median_s + cfg.turnout_median_s
            + distance_m * cfg.road_factor / (cfg.speed_kmh / 3.6))


def test_one_press_takes_the_operator_turnout_and_drive_delays_of_people_py():
    scene = offset(*HOME, 2000, 0)
    out = model.simulate([call(0, 100.0, *scene)], [Post("Polsek Klojen", *HOME, 1)], EXACT, seed=1)
    d = haversine_m(*HOME, *scene)
    assert out[0].on_scene_s == pytest.approx(fixed_point(EXACT, d), abs=0.01)
    assert out[0].unit == "polsek-klojen-1" and not out[0].waited_for_unit


def test_a_second_press_waits_for_the_operator_and_then_for_the_one_unit():
    scene = offset(*HOME, 1000, 0)
    out = model.simulate([call(0, 0.0, *scene), call(1, 0.0, *scene)], [Post("Polsek Klojen", *HOME, 1)],
                         EXACT, seed=1)
    c, d = EXACT, haversine_m(*HOME, *scene)
    first = fixed_point(c, d)
    assert out[0].on_scene_s == pytest.approx(first, abs=0.01)
    # Freed on the first scene after handling, it drives from there (0 m) to the same place.
    assert out[1].waited_for_unit
    assert out[1].on_scene_s == pytest.approx(first + c.on_scene_median_s + c.turnout_median_s, abs=0.01)


def test_no_unit_means_no_one_on_scene():
    out = model.simulate([call(0, 0.0, *HOME)], [], EXACT, seed=1)
    assert out[0].on_scene_s is None
    s = model.summary(out)
    assert s.within == 0 and s.p90_s is None


def test_both_dispatch_rules_see_the_same_presses_and_delays():
    # One unit: nothing to choose, so free text and the recommendation must agree to the second.
    buttons = [button(f"klj-b{i}", *offset(*HOME, 300 * i, 200)) for i in range(10)]
    calls = model.calls(buttons, rate_per_h=6.0, n=50, seed=3)
    posts = [Post("Polsek Klojen", *HOME, 1)]
    free = model.simulate(calls, posts, PeopleConfig(dispatch="free"), seed=3)
    rec = model.simulate(calls, posts, PeopleConfig(dispatch="recommend"), seed=3)
    assert [o.on_scene_s for o in free] == [o.on_scene_s for o in rec]


def test_the_recommendation_keeps_a_press_in_its_sector_where_free_text_does_not():
    scene = offset(*HOME, 0, 400)
    posts = [Post("Polsek Sukun", *offset(*scene, 200, 0), 1), Post("Polsek Blimbing", *offset(*scene, 2500, 0), 1)]
    c = [call(0, 0.0, *scene, sector="blimbing")]
    assert model.simulate(c, posts, EXACT, seed=1)[0].unit == "polsek-sukun-1"
    assert model.simulate(c, posts, PeopleConfig(dispatch="recommend", operators=1), seed=1)[0].unit == \
        "polsek-blimbing-1"


def test_calls_are_seeded_poisson_over_the_buttons():
    buttons = [button(f"klj-b{i}", *offset(*HOME, 100 * i, 0)) for i in range(20)]
    a = model.calls(buttons, rate_per_h=2.0, n=2000, seed=7)
    assert a == model.calls(buttons, rate_per_h=2.0, n=2000, seed=7)
    assert a != model.calls(buttons, rate_per_h=2.0, n=2000, seed=8)
    assert a[-1].t / 3600 == pytest.approx(1000, rel=0.08), "2 an hour: 2000 presses in about 1000 hours"
    with pytest.raises(ValueError):
        model.calls(buttons, rate_per_h=0.0, n=1, seed=1)


def test_the_realistic_rate_is_the_app_era_rate_per_holder():
    assert plan.realistic_rate_per_h(675) * 24 == pytest.approx(0.305, abs=0.005)
    assert plan.realistic_rate_per_h(4278) * 24 == pytest.approx(1.93, abs=0.01)


def test_wilson_interval():
    lo, hi = plan.wilson(90, 100)
    assert lo == pytest.approx(0.8256, abs=1e-3) and hi == pytest.approx(0.9448, abs=1e-3)


# A two-kelurahan town: one near the existing Polsek, one 6 km out (too far to keep 90 %).
TOWN = {
    "name": "town", "title": "a test town", "kecamatan": "Klojen", "prefix": "twn", "spread_m": 150,
    "kelurahan": [
        {"name": "Near", "lat": HOME[0] - 0.004, "lon": HOME[1], "rw": 2, "rt": 20},
        {"name": "Far", "lat": HOME[0] + 0.054, "lon": HOME[1], "rw": 2, "rt": 20},
    ],
    "posts": [{"name": "Polsek Klojen", "lat": HOME[0], "lon": HOME[1], "units": 3}],
}
FAST: dict[str, Any] = dict(seeds=2, calls=60)


def test_plan_puts_a_unit_where_the_existing_post_cannot_reach_in_time():
    only_posts = plan.search(TOWN, plan.PlanSettings(sites="posts", max_units=4, **FAST), PeopleConfig())
    assert not only_posts.met, "half the presses are ~13 min from the only post"
    p = plan.search(TOWN, plan.PlanSettings(**FAST), PeopleConfig(dispatch="recommend"))
    assert p.met
    assert {s["post"] for s in p.stations()} == {"Pos Far", "Pos Near"} or \
        {s["post"] for s in p.stations()} == {"Pos Far", "Polsek Klojen"}
    assert p.units == 2
    assert p.searched.meets(0.9)
    assert p.by_sector_units() == {"klojen": 2}


def test_the_answer_is_minimal_every_unit_is_needed():
    p = plan.search(TOWN, plan.PlanSettings(target=0.95, **FAST), PeopleConfig())
    ev = plan.Evaluator(TOWN, p.sites, PeopleConfig(), seeds=range(1, 3), calls=60,
                        rate_per_h=plan.realistic_rate_per_h(40))
    assert ev(p.counts).meets(0.95)
    for i, n in enumerate(p.counts):
        if n:
            assert not ev([m - (j == i) for j, m in enumerate(p.counts)]).meets(0.95)


def test_plan_is_seeded():
    a = plan.search(TOWN, plan.PlanSettings(**FAST), PeopleConfig()).to_json()
    b = plan.search(TOWN, plan.PlanSettings(**FAST), PeopleConfig()).to_json()
    assert a == b


def test_plan_settings_refuse_nonsense():
    for bad in (dict(target=1.0), dict(seeds=0), dict(sites="moon"), dict(rate_per_h=-1.0)):
        with pytest.raises(ValueError):
            plan.PlanSettings(**bad)


def test_the_plan_command_prints_writes_json_and_plots(tmp_path, capsys, monkeypatch):
    path = tmp_path / "town.json"
    path.write_text(json.dumps(TOWN))
    out = tmp_path / "out"
    rc = cli.main(["plan", str(path), "--seeds", "2", "--calls", "60", "--out", str(out)])
    printed = capsys.readouterr().out
    assert rc == 0
    assert "plan for town: fewest 2 units" in printed and "a day (618 reports" in printed
    rep = json.loads((out / "plan.json").read_text())
    assert rep["met"] and rep["units"] == 2 and rep["checked_on_fresh_seeds"]["overall"]["n"] == 120
    assert (out / "plan.png").stat().st_size > 10_000
    assert cli.main(["plan", str(path), "--seeds", "2", "--calls", "5"]) == 2


def test_scenarios_posts_know_their_sectors():
    posts = scenario.posts(scenario.load("malang"))
    sites = plan.candidate_sites(scenario.load("malang"), "all")
    assert {s.sector for s in sites} == {"polresta", "klojen", "blimbing", "lowokwaru", "sukun", "kedungkandang"}
    assert len(sites) == len(posts) + 57


def test_an_answer_fresh_seeds_disprove_is_searched_again_on_both():
    # Seeded so that one search seed of 20 presses fits a staffing its fresh seed refutes.
    narrow: dict[str, Any] = dict(target=0.9, seeds=1, calls=20, seed=2, rate_per_h=20.0)
    once = plan.search(TOWN, plan.PlanSettings(rounds=1, **narrow), PeopleConfig())
    assert once.met and not once.checked.meets(0.9) and once.rounds == 1
    again = plan.search(TOWN, plan.PlanSettings(**narrow), PeopleConfig())
    assert again.rounds == 2 and again.seeds_searched == 2
    assert again.checked.meets(0.9) and again.units > once.units
    assert "fresh seeds fell short before" in plan.text(again)
    assert "WARNING" in plan.text(once)
