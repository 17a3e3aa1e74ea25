"""Operators and police units against the real gateway (its webhook feeds them, its API
takes their actions): each acts after its own delay, units go to the nearest post's
free unit, drive there in distance / speed, and every wait is divided by --speed."""
from __future__ import annotations

import tomllib

import pytest

from simulator.feed import WebhookFeed
from simulator.geo import haversine_m
from simulator.people import Api, People, PeopleConfig
from simulator.scenario import Post
from simulator.sched import Scheduler
from simulator.stack import Stack
from simulator.unit_phones import enrol
from tests.conftest import KAUMAN, assert_no_secrets_in_logs, wait_until
from tests.devices import RawDevice

SPEED = 200.0
# No spread: every delay is its median, so the test can name it.
EXACT = PeopleConfig(operators=1, ack_sigma=0.0, dispatch_sigma=0.0, callback_sigma=0.0, turnout_sigma=0.0,
                     traffic_sigma=0.0, on_scene_sigma=0.0)
NEAR = Post("Pos Polisi Kauman", -7.9800, 112.6280, 1)      # ~300 m from KAUMAN
FAR = Post("Polresta Malang Kota", -7.9500, 112.6500, 1)    # ~4.4 km
SLACK = 0.005   # seconds: the monotonic clock read before and after the same instant


class World:
    """A stack, the webhook feed and People wired as simulator/run.py wires them."""

    def __init__(self, stack: Stack, feed: WebhookFeed, posts: list[Post], cfg: PeopleConfig = EXACT,
                 operator_false: set[str] | None = None) -> None:
        self.stack = stack
        self.sched = Scheduler()
        self.api = Api(stack.api, stack.token("operator"))
        self.people = People(self.api, posts, cfg, SPEED, self.sched, seed=1, operator_false=operator_false,
                             kecamatan="Klojen")
        self.api.unit_tokens.update(enrol(stack, self.people.units))
        feed.handler = self.people.on_event
        self.devices: list[RawDevice] = []

    def press(self, dev: str, *, kind: str = "panic") -> str:
        creds = self.stack.add_device(dev, *KAUMAN, kelurahan="Kauman", rw=5, rt=3)
        d = RawDevice(creds, self.stack.broker_port)
        self.devices.append(d)
        d.send(1, kind=kind)
        assert d.ack()["stage"] == "received"
        return f"{dev}:1:1"

    def case(self, alert_id: str, state: str, *, step: str, timeout: float = 30.0):
        """The case once it is in `state` and the people have recorded `step` (the feed's
        event can arrive before the API call that caused it returns)."""
        def reached():
            with self.people.lock:
                c = next((c for c in self.people.cases.values() if c.alert_id == alert_id), None)
                return c if c is not None and c.state == state and step in c.steps else None
        return wait_until(reached, timeout, what=f"{alert_id} {state} after {step}")

    def close(self) -> None:
        self.sched.stop()
        self.api.client.close()
        for d in self.devices:
            d.close()
        assert not self.sched.errors and not self.api.failures, (self.sched.errors, self.api.failures)


@pytest.fixture(scope="module")
def feed():
    """The gateway's dispatch webhook, as the simulator receives it; each test's People listen."""
    f = WebhookFeed(lambda event, inc: None)
    yield f
    f.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory, feed):
    s = Stack(tmp_path_factory.mktemp("people") / "state", webhooks=[feed.url])
    s.up()
    feed.secret = tomllib.loads(s.config.read_text())["webhooks"][0]["secret"]
    yield s
    s.down()
    assert_no_secrets_in_logs(s)


@pytest.fixture
def world(stack, feed):
    made: list[World] = []

    def make(*args, **kw) -> World:
        made.append(World(stack, feed, *args, **kw))
        return made[-1]
    yield make
    for w in made:
        w.close()


def test_a_panic_goes_to_the_nearest_unit_which_drives_there_at_the_set_speed(world):
    w = world([FAR, NEAR])
    aid = w.press("klj-kauman-rw05-rt31")
    case = w.case(aid, "resolved", step="resolve")
    c = EXACT
    assert case.unit == "kauman-1", "the nearest free unit"
    lat, lon = KAUMAN[0] / 1e6, KAUMAN[1] / 1e6
    assert case.distance_m == pytest.approx(haversine_m(NEAR.lat, NEAR.lon, lat, lon))
    assert case.drive_sim_s == pytest.approx(case.distance_m * c.road_factor / (c.speed_kmh / 3.6))
    s = case.steps
    # Each step waits its simulated delay divided by the speed (lower bounds: a busy
    # machine may add, never remove, time).
    assert s["acknowledge"] - case.seen_t >= c.ack_median_s / SPEED - SLACK
    assert s["dispatch"] - s["acknowledge"] >= c.dispatch_median_s / SPEED - SLACK
    assert s["en_route"] - s["heard"] >= c.turnout_median_s / SPEED - SLACK
    assert s["on_scene"] - s["en_route"] >= case.drive_sim_s / SPEED - SLACK
    assert s["resolve"] - s["on_scene"] >= c.on_scene_median_s / SPEED - SLACK
    # What the report scales back: at least every compressed wait, in wall seconds.
    waits = c.ack_median_s + c.dispatch_median_s + c.turnout_median_s + case.drive_sim_s
    assert case.comp_at["on_scene"] >= waits / SPEED - 4 * SLACK
    inc = w.stack.get(f"/api/incidents/{case.inc}")
    inc = inc.get("incident", inc)
    assert inc["state"] == "resolved" and inc["unit"] == "kauman-1"
    assert inc["on_scene_ms"] >= inc["dispatched_ms"] >= inc["acknowledged_ms"] >= inc["received_ms"]


def test_one_operator_takes_alerts_in_turn_and_a_busy_unit_is_waited_for(world):
    w = world([NEAR])
    first = w.press("klj-kauman-rw05-rt32")
    second = w.press("klj-kauman-rw05-rt33")
    a, b = w.case(first, "resolved", step="resolve"), w.case(second, "resolved", step="resolve")
    c = EXACT
    # The one operator is busy until the first dispatch decision, then needs its delay.
    assert b.steps["acknowledge"] - a.steps["acknowledge"] >= (c.dispatch_median_s + c.ack_median_s) / SPEED - SLACK
    # The one unit handles the first case before it takes the second.
    assert a.unit == b.unit == "kauman-1"
    assert b.steps["dispatch"] >= a.steps["resolve"]
    assert b.waited_for_unit_s > 0


def test_drills_are_closed_and_false_alarms_called_back_never_dispatched(world):
    drill_id = "klj-kauman-rw05-rt34:1:1"
    false_id = "klj-kauman-rw05-rt35:1:1"
    w = world([NEAR], operator_false={false_id})
    w.press("klj-kauman-rw05-rt34", kind="test")
    w.press("klj-kauman-rw05-rt35")
    drill = w.case(drill_id, "resolved", step="resolve")
    false = w.case(false_id, "cancelled", step="false_alarm")
    c = EXACT
    assert "dispatch" not in drill.steps and drill.unit is None
    assert drill.steps["resolve"] - drill.steps["acknowledge"] >= c.drill_close_s / SPEED - SLACK
    assert "dispatch" not in false.steps and false.false_alarm
    assert false.steps["false_alarm"] - false.steps["acknowledge"] >= c.callback_median_s / SPEED - SLACK
    assert w.people.busy_units() == 0 and w.people.open_cases() == 0


def test_a_holders_cancel_is_called_back_confirmed_and_frees_the_unit(world):
    w = world([FAR])
    dev = "klj-kauman-rw05-rt36"
    aid = w.press(dev)
    w.case(aid, "dispatched", step="dispatch")
    w.devices[-1].send(2, kind="cancel", ref=aid)
    case = w.case(aid, "cancelled", step="confirm_cancel")
    c = EXACT
    assert case.steps["verify"] - case.steps["cancel_requested"] >= c.callback_median_s / SPEED - SLACK
    inc = w.stack.get(f"/api/incidents/{case.inc}")
    inc = inc.get("incident", inc)
    assert inc["state"] == "cancelled" and inc["cancel_requested_ms"] is not None
    wait_until(lambda: w.people.busy_units() == 0, 10, what="the unit freed")
