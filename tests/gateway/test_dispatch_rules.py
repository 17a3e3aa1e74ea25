"""domain/dispatch.py: sectors, the ETA approximation, the ranking and the "no free unit in time" answer."""
from __future__ import annotations

import pytest

from gateway.domain.dispatch import (
    COMMAND_CENTRE,
    DispatchConfig,
    DispatchError,
    UnitView,
    check_position,
    eta_s,
    haversine_m,
    recommend,
    sector_of,
)

KAUMAN = (-7982600, 112627000)
POLSEK_KLOJEN = (-7979000, 112633000)
NOW = 1_800_000_000_000
CFG = DispatchConfig()


def unit(call: str, *, kind: str = "car", sector: str = "klojen", status: str = "available",
         post=POLSEK_KLOJEN, fix=None, fix_age_s: float = 5) -> UnitView:
    lat6, lon6 = fix if fix else (None, None)
    return UnitView(call, kind, sector, status, post[0], post[1], lat6, lon6,
                    NOW - int(fix_age_s * 1000) if fix else None)


def rec(units, *, pressed_s_ago: float = 10, sector: str = "klojen", sla_s: int = 600, cfg=CFG):
    return recommend(units, lat6=KAUMAN[0], lon6=KAUMAN[1], sector=sector, press_ms=NOW - int(pressed_s_ago * 1000),
                     now_ms=NOW, sla_s=sla_s, cfg=cfg)


def test_haversine_and_eta_are_the_stated_approximation():
    # One degree of latitude is about 111.2 km.
    assert haversine_m(0, 0, 1, 0) == pytest.approx(111_195, rel=1e-3)
    d = haversine_m(-7.9826, 112.627, -7.979, 112.633)
    assert 700 < d < 800
    # 1 km at 36 km/h is 100 s of straight line, times the road factor.
    cfg = DispatchConfig(road_factor=1.5, car_kmh=36)
    assert eta_s(1000, "car", cfg) == pytest.approx(150)
    assert eta_s(1000, "foot", cfg) > eta_s(1000, "motorbike", cfg) > 0


def test_sectors_follow_the_kecamatan_and_unknown_goes_to_the_command_centre():
    assert sector_of("Klojen") == "klojen"
    assert sector_of(" KEDUNGKANDANG ") == "kedungkandang"
    assert sector_of("Batu") == COMMAND_CENTRE
    assert sector_of("") == COMMAND_CENTRE


def test_nearest_by_eta_not_by_list_order_and_a_fresh_fix_beats_the_post():
    far_post = (-7930000, 112660000)  # about 7 km north-east
    units = [
        unit("A-far", post=far_post),
        unit("B-near-fix", post=far_post, fix=(-7982000, 112627500)),  # its phone says it is round the corner
        unit("C-post", kind="foot"),  # at Polsek Klojen, but on foot
        unit("D-moto", kind="motorbike"),  # at Polsek Klojen on a motorbike: faster than a car
        unit("E-busy", status="en_route", fix=KAUMAN),
        unit("F-off", status="off_duty", fix=KAUMAN),
    ]
    r = rec(units)
    assert [c.call_sign for c in r.candidates] == ["B-near-fix", "D-moto", "C-post"]
    assert r.candidates[1].eta_s < rec([unit("D-car")]).candidates[0].eta_s
    assert r.candidates[0].placed_by == "fix" and r.candidates[0].in_time
    assert r.in_time and not r.busy and not r.neighbours
    assert all(c.call_sign not in ("E-busy", "F-off") for c in r.candidates)
    assert len(r.candidates) == CFG.top


def test_a_stale_fix_places_the_unit_at_its_post():
    stale = unit("S", fix=KAUMAN, fix_age_s=CFG.stale_s + 1)
    fresh = unit("F", fix=KAUMAN, fix_age_s=1)
    r = rec([stale, fresh])
    by = {c.call_sign: c for c in r.candidates}
    assert by["S"].placed_by == "post" and by["F"].placed_by == "fix"
    assert by["F"].eta_s < by["S"].eta_s


def test_polresta_units_serve_every_sector_but_other_sectors_wait_for_the_neighbour_list():
    units = [unit("P-1", sector=COMMAND_CENTRE), unit("BLM-1", sector="blimbing", fix=KAUMAN)]
    r = rec(units)
    assert [c.call_sign for c in r.candidates] == ["P-1"]


def test_no_free_unit_in_time_names_the_busy_and_the_neighbours():
    far = (-7900000, 112700000)  # about 12 km away: more than 10 minutes by car
    units = [unit("KLJ-far", post=far), unit("KLJ-busy", status="on_scene", fix=(-7982000, 112628000)),
             unit("BLM-1", sector="blimbing", fix=(-7975000, 112640000)),
             unit("SKN-1", sector="sukun", fix=(-7990000, 112620000))]
    r = rec(units)
    assert [c.call_sign for c in r.candidates] == ["KLJ-far"]
    assert not r.in_time and not r.candidates[0].in_time
    assert [c.call_sign for c in r.busy] == ["KLJ-busy"]
    assert {c.call_sign for c in r.neighbours} == {"BLM-1", "SKN-1"}
    # The same units are in time for a fresh press when the promise is long enough...
    assert rec(units, sla_s=3600).in_time
    # ...and nobody is in time once the promise is already spent.
    late = rec([unit("KLJ-near", fix=KAUMAN)], pressed_s_ago=700)
    assert late.remaining_s < 0 and not late.in_time and late.candidates[0].call_sign == "KLJ-near"


def test_no_unit_at_all_is_an_answer_not_a_crash():
    r = rec([])
    assert r.candidates == () and not r.in_time
    assert r.to_json()["candidates"] == [] and "approximation" in r.to_json()


@pytest.mark.parametrize("lat, lon, acc", [(200, 112.6, 0), ("x", 112.6, 0), (None, 112.6, 0), (-7.9, float("nan"), 0),
                                           (0, 0, 0), (-7.9, 112.6, -1), (True, 112.6, 0), (-7.9, 112.6, "5")])
def test_bad_positions_are_refused_with_a_reason(lat, lon, acc):
    with pytest.raises(DispatchError):
        check_position(lat, lon, acc)


def test_positions_in_micro_degrees():
    assert check_position(-7.9826, 112.627, 12.7) == (-7982600, 112627000, 12)


@pytest.mark.parametrize("data", [{"road_factor": 0.5}, {"car_kmh": 0}, {"car_kmh": "fast"}, {"stale_s": 1.5},
                                  {"top": True}, {"warp": 9}])
def test_dispatch_config_refuses_nonsense(data):
    with pytest.raises(DispatchError):
        DispatchConfig.from_toml(data)


def test_dispatch_config_reads_numbers():
    cfg = DispatchConfig.from_toml({"road_factor": 1.5, "car_kmh": 40, "top": 5})
    assert cfg.road_factor == 1.5 and cfg.kmh("car") == 40 and cfg.top == 5 and cfg.kmh("foot") == 5.0
