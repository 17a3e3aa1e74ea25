"""The units' phones and the recommendation-following operator against a real gateway:
units enrolled with the gateway's CLI, positions and statuses through its HTTP API with each
unit's own responder token, the operator reading the recommendation the API serves."""
from __future__ import annotations

import threading
import time
import tomllib

import httpx
import pytest

from simulator.feed import WebhookFeed
from simulator.geo import offset
from simulator.people import Api, People, PeopleConfig
from simulator.scenario import Post
from simulator.sched import Scheduler
from simulator.stack import Stack
from simulator.unit_phones import PositionReporter, enrol
from tests.conftest import KAUMAN, assert_no_secrets_in_logs, wait_until
from tests.devices import RawDevice

SPEED = 100.0
SCENE = (KAUMAN[0] / 1e6, KAUMAN[1] / 1e6)
NEAR = Post("Pos Polisi Kauman", *offset(*SCENE, 250, 0), 1)        # klojen sector, 250 m
POLRESTA = Post("Polresta Malang Kota", *offset(*SCENE, 2500, 0), 1)  # serves every sector, 2.5 km
OTHER = Post("Polsek Blimbing", *offset(*SCENE, 0, 150), 1)         # another sector's, 150 m


@pytest.fixture(scope="module")
def feed():
    f = WebhookFeed(lambda event, inc: None)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, feed):
    s = Stack(tmp_path_factory.mktemp("units") / "state", webhooks=[feed.url])
    s.up()
    feed.secret = tomllib.loads(s.config.read_text())["webhooks"][0]["secret"]
    yield s
    s.down()
    assert_no_secrets_in_logs(s)


class Desk:
    """People and the units' phones wired to the stack as simulator/run.py wires them."""

    def __init__(self, stack: Stack, feed: WebhookFeed, posts: list[Post], cfg: PeopleConfig) -> None:
        self.stack = stack
        self.sched = Scheduler()
        self.api = Api(stack.api, stack.token("operator"))
        self.people = People(self.api, posts, cfg, SPEED, self.sched, seed=1, kecamatan="Klojen",
                             sector_of=lambda dev: "klojen")
        self.api.unit_tokens.update(enrol(stack, self.people.units))
        self.phones = PositionReporter(self.api, self.people.units, self.people.sim_now, speed=SPEED,
                                       fix_interval_s=cfg.fix_interval_s, lock=self.people.lock)
        feed.handler = self.people.on_event
        self.devices: list[RawDevice] = []

    def unit(self, call_sign: str) -> dict:
        return self.stack.get(f"/api/units/{call_sign}")

    def press(self, dev: str) -> str:
        creds = self.stack.add_device(dev, *KAUMAN, kelurahan="Kauman", rw=5, rt=3)
        d = RawDevice(creds, self.stack.broker_port)
        self.devices.append(d)
        d.send(1)
        assert d.ack()["stage"] == "received"
        return f"{dev}:1:1"

    def dispatched(self, alert_id: str):
        def found():
            with self.people.lock:
                c = next((c for c in self.people.cases.values() if c.alert_id == alert_id), None)
                return c if c is not None and c.unit and "dispatch" in c.steps else None
        return wait_until(found, 30, what=f"{alert_id} dispatched")

    def close(self) -> None:
        self.phones.stop()
        self.sched.stop()
        self.api.client.close()
        for d in self.devices:
            d.close()
        assert not self.sched.errors, self.sched.errors


@pytest.fixture
def desk(stack, feed):
    made: list[Desk] = []

    def make(posts: list[Post], cfg: PeopleConfig) -> Desk:
        made.append(Desk(stack, feed, posts, cfg))
        return made[-1]
    yield make
    for d in made:
        d.close()


def test_each_unit_reports_its_moving_position_and_status_with_its_own_token(desk):
    d = desk([NEAR, POLRESTA], PeopleConfig(fix_interval_s=50.0))      # a report every 0.5 s wall
    near = d.people.by_unit["kauman-1"]
    # On its way 1 km north over 100 simulated seconds (1 s wall).
    now = d.people.sim_now()
    near.move(*offset(*SCENE, 1250, 0), since=now, start=now, seconds=100.0)
    d.phones.start()
    assert d.unit("kauman-1")["status"] == "available"
    first = d.unit("kauman-1")
    wait_until(lambda: d.unit("kauman-1")["lat6"] != first["lat6"], 10, what="a newer fix")
    end = round(offset(*SCENE, 1250, 0)[0] * 1e6)
    got = wait_until(lambda: (lambda u: u if abs(u["lat6"] - end) <= 2 else None)(d.unit("kauman-1")), 10,
                     what="the fix at the end of its leg")
    assert got["lon6"] == pytest.approx(round(SCENE[1] * 1e6), abs=2)
    assert d.phones.refused == 0 and d.phones.sent >= 4
    # A phone speaks only for its own unit: kauman-1's token cannot move polresta's unit.
    r = httpx.post(f"{d.stack.api}/api/units/polresta-malang-1/position", json={"lat": SCENE[0], "lon": SCENE[1]},
                   headers={"Authorization": f"Bearer {d.api.unit_tokens['kauman-1']}"}, timeout=10)
    assert r.status_code == 403
    d.phones.stop()
    assert d.unit("kauman-1")["status"] == "off_duty"


def test_the_phones_keep_to_their_rate_cap():
    calls: list[float] = []

    class CountingApi:
        def position(self, unit, lat, lon, acc=10):
            calls.append(time.monotonic())
            return httpx.Response(200)

        def status(self, unit, status):
            return httpx.Response(200)

    from simulator.units import make_units
    units = make_units([Post("Polsek Klojen", *SCENE, 10)], "Klojen")
    # 10 units every 0.01 wall s would be 1000/s; the cap is 20/s.
    phones = PositionReporter(CountingApi(), units, lambda: 0.0, speed=100.0, fix_interval_s=1.0, max_per_s=20.0,
                              lock=threading.RLock())
    phones.start()
    time.sleep(1.5)
    phones.stop(off_duty=False)
    rate = (len(calls) - 1) / (calls[-1] - calls[0])
    assert len(calls) >= 10 and rate <= 21


def test_the_operator_follows_the_gateways_recommendation_not_the_nearest_unit(desk):
    # The other sector's unit is nearest; the gateway offers the incident's sector and
    # Polresta first (both can arrive in time), so the operator sends Polresta's.
    d = desk([OTHER, POLRESTA], PeopleConfig(operators=1, dispatch="recommend"))
    d.phones.start()
    case = d.dispatched(d.press("klj-kauman-rw05-rt41"))
    assert case.unit == "polresta-malang-1"
    assert case.pick is not None and case.pick.rank == 0 and not case.pick.overridden
    assert d.api.failures == []


def test_free_text_sends_the_nearest_unit_whatever_its_sector(desk):
    d = desk([OTHER, POLRESTA], PeopleConfig(operators=1, dispatch="free"))
    d.phones.start()
    case = d.dispatched(d.press("klj-kauman-rw05-rt42"))
    assert case.unit == "polsek-blimbing-1"


def test_the_recommendation_ranks_units_where_their_phones_say_they_are(desk):
    # The near post's unit is 4 km away (its phone says so); the gateway ranks Polresta's first.
    d = desk([NEAR, POLRESTA], PeopleConfig(operators=1, dispatch="recommend"))
    near = d.people.by_unit["kauman-1"]
    now = d.people.sim_now()
    near.move(*offset(*SCENE, -4000, 0), since=now, start=now, seconds=0.0)
    d.phones.start()
    case = d.dispatched(d.press("klj-kauman-rw05-rt43"))
    assert case.unit == "polresta-malang-1"
    assert d.unit("kauman-1")["lat6"] == pytest.approx(round(offset(*SCENE, -4000, 0)[0] * 1e6), abs=2)


def test_an_operator_whose_offered_units_were_all_just_taken_reads_the_recommendation_again(desk):
    # Another operator has just sent the only offered unit; the gateway does not know yet.
    # The operator must look again once it is free rather than leave the call waiting.
    # OTHER's unit is free but never offered (another sector, and NEAR's can arrive in time).
    d = desk([NEAR, OTHER], PeopleConfig(operators=1, dispatch="recommend", ack_sigma=0.0, dispatch_sigma=0.0))
    d.phones.start()
    near = d.people.by_unit["kauman-1"]
    near.case = "another operator's call"
    aid = d.press("klj-kauman-rw05-rt44")

    def taken_elsewhere_then_free():
        with d.people.lock:
            near.case = None
    # The decision is due ~40 simulated s (0.4 s wall) after the alert; free the unit shortly after.
    d.sched.after(0.6, taken_elsewhere_then_free)
    case = d.dispatched(aid)
    assert case.unit == "kauman-1"
    assert "queued" not in case.steps
