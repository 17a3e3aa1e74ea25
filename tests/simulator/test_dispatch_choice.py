"""The operator's choice of a unit (simulator/units.py): free text vs following the gateway's
recommendation, with and without overriding it, on the gateway's own ranking (pure)."""
from __future__ import annotations

import random

import pytest

from gateway.domain import dispatch as rules
from simulator.geo import offset
from simulator.people import PeopleConfig
from simulator.scenario import Post
from simulator.units import Unit, follow, make_units, pick_free_text, pick_recommended, post_sector

SCENE = (-7.9826, 112.6270)          # Kauman
CFG = rules.DispatchConfig()


def unit_at(name: str, sector: str, lat: float, lon: float, *, fix_at: float | None = 0.0) -> Unit:
    u = Unit(name, Post(f"post of {name}", lat, lon, 1), sector)
    if fix_at is not None:
        u.fix = (lat, lon, fix_at)
    return u


def nearest(units: list[Unit]) -> Unit:
    pick = pick_free_text(units, *SCENE, 60.0)
    assert pick is not None
    return pick.unit


def recommended(units, *, override=0.0, seed=1, now_s=60.0, sector="klojen"):
    return pick_recommended(units, lat=SCENE[0], lon=SCENE[1], sector=sector, press_s=0.0, now_s=now_s,
                            cfg=CFG, override=override, rng=random.Random(seed))


def test_free_text_sends_the_nearest_free_unit_whatever_its_sector():
    near_other = unit_at("skn-1", "sukun", *offset(*SCENE, 300, 0))
    far_own = unit_at("klj-1", "klojen", *offset(*SCENE, 3000, 0))
    assert nearest([far_own, near_other]) is near_other
    near_other.case = object()          # busy: the next nearest free one
    assert nearest([far_own, near_other]) is far_own
    far_own.case = object()
    assert pick_free_text([far_own, near_other], *SCENE, 60.0) is None


def test_the_recommendation_keeps_to_the_sector_and_polresta_while_they_can_arrive_in_time():
    near_other = unit_at("blm-1", "blimbing", *offset(*SCENE, 300, 0))
    own = unit_at("klj-1", "klojen", *offset(*SCENE, 1500, 0))
    polresta = unit_at("pr-1", "polresta", *offset(*SCENE, 1000, 0))
    pick = recommended([near_other, own, polresta])
    assert pick is not None and pick.unit is polresta and pick.rank == 0 and not pick.overridden
    assert pick.eta_s == pytest.approx(rules.eta_s(1000, "car", CFG), abs=1.5)
    # Free text would have sent the other sector's unit.
    assert nearest([near_other, own, polresta]) is near_other


def test_when_no_unit_of_the_sector_can_make_it_the_neighbours_are_offered_beside_them():
    own_far = unit_at("klj-1", "klojen", *offset(*SCENE, 9000, 0))       # ~24 min away
    neighbour = unit_at("skn-1", "sukun", *offset(*SCENE, 800, 0))
    assert recommended([own_far, neighbour]).unit is neighbour
    own_far.case = object()
    assert recommended([own_far, neighbour]).unit is neighbour
    neighbour.case = object()
    assert recommended([own_far, neighbour]) is None


def test_a_stale_fix_places_the_unit_at_its_home_post():
    # The unit's post is next to the scene but its last fix, 3 km out, is what it reported.
    moved = Unit("klj-1", Post("Pos Kauman", *offset(*SCENE, 100, 0), 1), "klojen")
    moved.fix = (*offset(*SCENE, 3000, 0), 0.0)
    other = unit_at("klj-2", "klojen", *offset(*SCENE, 1500, 0), fix_at=None)
    assert recommended([moved, other], now_s=60.0).unit is other, "a fresh fix counts"
    assert recommended([moved, other], now_s=CFG.stale_s + 1.0).unit is moved, "a stale one does not"


def test_override_sends_another_offered_unit_and_never_a_busy_or_unoffered_one():
    units = [unit_at(f"klj-{i}", "klojen", *offset(*SCENE, 500 * i, 0)) for i in range(1, 5)]
    picks = [recommended(units, override=1.0, seed=s) for s in range(40)]
    assert all(p is not None and p.overridden and p.unit.name in ("klj-2", "klj-3") for p in picks), \
        "the other offered units: ranks 2 and 3 (the console offers three)"
    assert {p.unit.name for p in picks if p} == {"klj-2", "klj-3"}
    assert all(not recommended(units, override=0.0, seed=s).overridden for s in range(40))
    # 20 %: about one in five decisions.
    share = sum(recommended(units, override=0.2, seed=s).overridden for s in range(2000)) / 2000
    assert 0.16 < share < 0.24


def test_follow_draws_the_same_stream_whatever_the_override():
    a, b = random.Random(5), random.Random(5)
    options = [rules.Candidate("x", "car", "klojen", "available", 10, 10, True, "fix")]
    follow(options, {"x": unit_at("x", "klojen", *SCENE)}, override=0.0, rng=a)
    follow(options, {"x": unit_at("x", "klojen", *SCENE)}, override=0.9, rng=b)
    assert a.random() == b.random()


def test_units_take_their_sector_from_the_post():
    posts = [Post("Polresta Malang Kota", 0, 0, 2), Post("Polsek Sukun", 0, 0, 1), Post("Pos Polisi Alun-alun", 0, 0, 1),
             Post("Pos Bareng", 0, 0, 1, "klojen")]
    units = make_units(posts, "Klojen")
    assert [(u.name, u.sector) for u in units] == [
        ("polresta-malang-1", "polresta"), ("polresta-malang-2", "polresta"), ("polsek-sukun-1", "sukun"),
        ("alun-alun-1", "klojen"), ("bareng-1", "klojen")]
    with pytest.raises(rules.DispatchError):
        post_sector(Post("Pos X", 0, 0, 1, "atlantis"), "Klojen")


def test_people_config_refuses_what_it_cannot_play():
    with pytest.raises(ValueError, match="dispatch"):
        PeopleConfig(dispatch="psychic")
    with pytest.raises(ValueError, match="override"):
        PeopleConfig(override=1.5)
    with pytest.raises(ValueError, match="fix_interval"):
        PeopleConfig(fix_interval_s=0)


def test_a_unit_is_placed_along_its_legs():
    u = unit_at("klj-1", "klojen", 0.0, 0.0)
    assert u.where(5.0) == (0.0, 0.0), "at its post before any move"
    u.move(1.0, 2.0, since=10.0, start=20.0, seconds=10.0)
    assert u.where(15.0) == (0.0, 0.0), "waits in place until it rolls"
    assert u.where(25.0) == pytest.approx((0.5, 1.0))
    assert u.where(99.0) == (1.0, 2.0)
    u.move(0.0, 0.0, since=100.0, start=100.0, seconds=100.0)
    assert u.where(25.0) == pytest.approx((0.5, 1.0)), "an earlier time still reads the earlier leg"
    assert u.where(150.0) == pytest.approx((0.5, 1.0))
