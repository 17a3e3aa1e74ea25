"""One simulation run: the stack (own or given), the buttons, the world's plan, the
people, and the ground truth the report is computed from.

Ground truth: the simulator knows every press it made. A press is linked to the alert
id its button sent (the firmware's `alert` event); at the end every linked id is looked
up among the gateway's incidents. A press never linked, or linked to an id without an
incident, is lost; an incident for an id no press explains, or a press that produced two
ids, is a duplicate.
"""
from __future__ import annotations

import functools
import json
import logging
import random
import threading
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from gateway.domain import dispatch as rules

from . import fleet, geo, scenario, second_path
from .carrier import SmsCentre
from .feed import PollFeed, WebhookFeed
from .firmware import MODEM_HEAP, FirmwareDevice
from .measure import Sampler
from .people import Api, People, PeopleConfig
from .progress import Progress
from .protodev import ProtocolDevice
from .rollout import Rollout
from .sched import Scheduler
from .stack import Stack
from .unit_phones import PositionReporter, enrol
from .world import Happening, Profile, WorldConfig, plan, profiles

log = logging.getLogger("panic-sim")
FINAL_STAGES = ("resolved", "cancelled", "rejected")


@dataclass
class Press:
    n: int
    dev: str
    kelurahan: str
    kind: str                       # panic | test
    method: str                     # long | triple | command
    host_ms: int                    # wall clock when the gesture began
    burst: bool = False
    false: str | None = None        # None | holder | operator
    gps: str | None = None          # None | fix | nofix
    offline: str | None = None      # wifi | broker, when pressed without a link
    power_cut: bool = False
    cut: int | None = None          # made in the dark: the number of the neighbourhood cut
    alert_id: str | None = None
    ids: list = field(default_factory=list)   # every panic/test id the button sent for it
    tries: int = 0


@dataclass
class DevState:
    button: scenario.Button
    profile: Profile
    device: FirmwareDevice | ProtocolDevice
    firmware: bool
    busy: bool = False
    off: bool = False
    link: bool = False
    boots: int = 0
    pending: list = field(default_factory=list)   # presses not yet linked to an id
    active: Press | None = None
    last_bump_t: float = -1e9
    dark: int | None = None         # its kelurahan's routers are down: this neighbourhood cut


@dataclass
class RunOptions:
    scenario: str = "klojen"
    devices: int | None = None
    duration: float = 180.0
    speed: float = 10.0
    seed: int = 1
    state: Path = Path("var/sim")
    api: str | None = None
    token: str | None = None
    config: Path | None = None
    firmware_max: int = 1000
    drain: float = 180.0
    long_press_ms: int = 2000
    progress: bool = True
    idle_probe_s: float = 5.0
    backup_broker: bool = False      # own stack: a second broker, listed second in every config
    release_at: float | None = None  # own stack: roll a new firmware release out at this share of the world
    canary_pct: float = 5.0          # ... to this share of the buttons first, then to all
    world: WorldConfig = field(default_factory=WorldConfig)
    people: PeopleConfig = field(default_factory=PeopleConfig)


class Run:
    def __init__(self, opts: RunOptions) -> None:
        self.o = opts
        self.scn = scenario.load(opts.scenario)
        buttons = scenario.buttons(self.scn)
        self.buttons = buttons[: opts.devices] if opts.devices else buttons
        self.profiles = profiles(self.buttons, opts.world, opts.seed)
        # Modems on the firmware buttons only (the protocol devices speak MQTT alone); each
        # SIM number follows the button's place in the scenario, stable across runs.
        n_fw = min(len(self.buttons), opts.firmware_max)
        self.fitted = second_path.fit(self.profiles, [b.id for b in self.buttons[:n_fw]],
                                      {b.id: i for i, b in enumerate(buttons)})
        self.centre: SmsCentre | None = None
        self.rng = random.Random(f"run:{opts.seed}")
        self.lock = threading.RLock()
        self.devs: dict[str, DevState] = {}
        self.presses: list[Press] = []
        self.unexpected: list[dict] = []      # panic/test ids no press explains
        self.bumps: list[dict] = []
        self.counts = {k: 0 for k in ("bumps", "wifi_outages", "power_cuts", "broker_restarts",
                                      "neighbourhood_cuts", "routers_cut",
                                      "battery_updates", "holder_cancels", "skipped_no_idle_button",
                                      "gps_fix_fed", "gps_nofix_fed", "retransmissions")}
        self.stack: Stack | None = None
        self.feed: WebhookFeed | None = None
        self.poll: PollFeed | None = None
        self.own_stack = opts.api is None
        self.sched = Scheduler()
        self.progress = Progress(enabled=opts.progress)
        self.sampler: Sampler | None = None
        self.phones: PositionReporter | None = None
        self.cuts: list[dict] = []            # each neighbourhood cut: kelurahan, wall start/end
        # What the buttons said of their second path: alert transmissions and acks by the link
        # they went over, switches to cellular, SMS sent or held (firmware events).
        self.second: Counter = Counter()
        self.t0 = 0.0
        self.t_world_end = 0.0
        self.timings: dict[str, float] = {}
        self.rollout = Rollout(Path(opts.state), canary_pct=opts.canary_pct) if opts.release_at is not None else None
        self._rollout_polled = 0.0

    # --- setup ---------------------------------------------------------------------------
    def _start_stack(self) -> tuple[str, str]:
        o = self.o
        if self.own_stack:
            feed = self.feed = WebhookFeed(self._feed_event)
            if o.backup_broker and not hasattr(Stack, "start_backup_broker"):
                raise SystemExit("--backup-broker needs the backup broker in simulator/stack.py "
                                 "(`panic-gateway init --backup-broker-port`)")
            stack = self.stack = (Stack(o.state, webhooks=[feed.url], backup=True) if o.backup_broker
                                  else Stack(o.state, webhooks=[feed.url]))
            stack.init()
            if self.rollout is not None:
                # Before the gateway starts: it reads [fleet] release_keys once.
                self.progress.phase("release manager: a key of this run's, the firmware built and signed")
                self.rollout.prepare(stack)
            if self.fitted:
                # Before the gateway starts: it reads [sms] (the relay's limits) once.
                self.progress.phase(f"{len(self.fitted)} buttons with a modem: gammu-smsd on a dummy phone "
                                    "and the carrier")
                self.centre = second_path.centre(stack=stack, carrier=o.world.carrier, seed=o.seed,
                                                 fitted=self.fitted).start()
            stack.start_broker()
            if o.backup_broker:
                stack.start_backup_broker()
            stack.start_gateway()
            hooks = tomllib.loads(stack.config.read_text()).get("webhooks", [])
            feed.secret = hooks[0]["secret"] if hooks else None
            return stack.api, stack.token("operator")
        # A running stack: we cannot add our webhook to it, so the people poll the API.
        if o.config is None or o.api is None:
            raise SystemExit("--api needs --config FILE (the gateway's TOML) to provision buttons")
        if o.backup_broker:
            raise SystemExit("--backup-broker starts the simulator's own stack: not with --api")
        if self.rollout is not None:
            raise SystemExit("--release builds and trusts a key of the run's own: not with --api")
        if self.fitted:
            raise SystemExit("buttons with a modem need the simulator's own SMS centre (gammu-smsd and the "
                             "carrier beside its own stack): not with --api; --modem-share 0 runs without")
        stack = self.stack = Stack(Path(o.config).parent)
        stack.config = Path(o.config).resolve()
        stack.api_port = int(o.api.rsplit(":", 1)[1].split("/")[0])
        op = o.token or stack.token("operator")
        return o.api.rstrip("/"), op

    def _provision(self) -> list[dict]:
        """New buttons through `panic-gateway device import`; ones a running stack already
        knows (a re-run) get their config from its registry, each with a fresh MQTT password
        (the registry keeps only hashes)."""
        st = self.stack
        assert st is not None, "the stack starts before the buttons are provisioned"
        known = {d["id"] for d in json.loads(st.cli("device", "list", "--json").stdout)}
        fresh = [b for b in self.buttons if b.id not in known]
        sims = {d: f.msisdn for d, f in self.fitted.items()}
        creds = {c["id"]: c for c in (fleet.provision(st, fresh, sims) if fresh else [])}
        if len(creds) < len(self.buttons):
            from gateway import config as gwconfig
            from gateway.cli import reissue_configs
            from gateway.store import open_store
            cfg = gwconfig.load(st.config)
            store = open_store(cfg)
            known_devs = []
            for b in self.buttons:
                if b.id not in creds:
                    d = store.get_device(b.id)
                    if d is None:
                        raise SystemExit(f"{b.id}: not in the gateway's registry")
                    known_devs.append(d)
            # The registry keeps only MQTT password hashes: known buttons get fresh passwords.
            for dev_id, fw_config in reissue_configs(cfg, store, known_devs).items():
                creds[dev_id] = {"id": dev_id, "config": fw_config}
            for d in known_devs:
                if d.id in sims and d.sim != sims[d.id]:
                    st.cli("device", "set-sim", d.id, sims[d.id])
        return [creds[b.id] for b in self.buttons]

    def _start_devices(self, creds: list[dict]) -> None:
        o = self.o
        flash = Path(o.state) / "flash"
        n_fw = min(len(creds), o.firmware_max)
        self.progress.phase(f"starting {n_fw} firmware buttons (micropython)"
                            + (f" and {len(creds) - n_fw} protocol buttons" if len(creds) > n_fw else ""))
        for i, c in enumerate(creds):
            b = self.buttons[i]
            prof = self.profiles[b.id]
            # The scenario's own firmware settings (e.g. the second path's timers), then the
            # button's profile.
            cfg = dict(c["config"], **self.scn.get("button_config", {}), trigger=prof.trigger,
                       long_press_ms=o.long_press_ms)
            dev: FirmwareDevice | ProtocolDevice
            fitted = self.fitted.get(b.id)
            if self.rollout is not None and (fitted is not None or i < n_fw):
                self.rollout.install_keys(flash / b.id)
            if fitted is not None and self.centre is not None:
                second_path.installed_before(flash / b.id, fitted, cfg, random.Random(f"{o.seed}:{b.id}:celltest"))
                dev = FirmwareDevice(flash / b.id, second_path.button_config(cfg), on_event=self._device_event,
                                     modem=second_path.modem(self.centre, fitted), heap=MODEM_HEAP, reboots=True)
                fw = True
            elif i < n_fw:
                dev = FirmwareDevice(flash / b.id, cfg, on_event=self._device_event, reboots=True)
                fw = True
            else:
                dev = ProtocolDevice(flash / b.id, cfg, on_event=self._device_event)
                fw = False
            self.devs[b.id] = DevState(b, prof, dev, fw)
        for started, st in enumerate(self.devs.values(), start=1):
            st.device.start(wait_ready=0)
            self.progress.update(f"started {started}/{len(self.devs)} buttons")
        deadline = time.monotonic() + 60 + len(self.devs) * 0.1
        while time.monotonic() < deadline:
            up = sum(1 for s in self.devs.values() if s.link)
            self.progress.update(f"linked {up}/{len(self.devs)} buttons")
            if up == len(self.devs):
                break
            time.sleep(0.2)
        else:
            missing = [d for d, s in self.devs.items() if not s.link][:5]
            raise RuntimeError(f"buttons not linked after start: {missing} ...")

    # --- device events (reader threads) -----------------------------------------------------
    def _device_event(self, device, ev: dict) -> None:
        kind = ev.get("ev")
        with self.lock:
            st = self.devs.get(device.dev)
            if st is None:
                return
            if kind == "link":
                st.link = ev.get("state") == "up"
            elif kind == "boot":
                st.boots += 1
            elif kind == "alert" and ev.get("kind") in ("panic", "test"):
                self.second[f"alert_tx_{ev.get('via') or 'wifi'}"] += 1
                self._on_alert(st, ev)
            elif kind == "path":
                self.second[f"switched_to_{ev.get('via')}"] += 1
            elif kind == "sms":
                self.second["sms_sent" if ev.get("ok") else "sms_send_failed"] += 1
                if ev.get("ok") and ev.get("id"):
                    # An alert whose only way out was the SMS never had an `alert` event.
                    self._on_alert(st, {"id": ev["id"], "try": 1})
            elif kind in ("sms_held", "bad_ack"):
                self.second[kind] += 1
            if kind == "ack" and ev.get("stage") == "received":
                self.second[f"received_ack_via_{ev.get('via') or 'mqtt'}"] += 1
            if kind == "ack" and st.active is not None and ev.get("id") == st.active.alert_id \
                    and ev.get("stage") in FINAL_STAGES:
                st.active = None
                self.sched.after(1.0, functools.partial(self._free, st))

    def _on_alert(self, st: DevState, ev: dict) -> None:
        aid = ev["id"]
        if ev.get("try", 1) > 1:
            self.counts["retransmissions"] += 1
        known = st.active if st.active is not None and aid in st.active.ids else None
        if known is None:
            known = next((p for p in self.presses if p.dev == st.button.id and aid in p.ids), None)
        if known is not None:
            known.tries += 1
            return
        if st.pending:
            p = st.pending.pop(0)
            p.alert_id = aid
            p.ids.append(aid)
            p.tries += 1
            st.active = p
            if p.false == "operator":
                self.people.operator_false.add(aid)
            if p.power_cut and st.firmware:
                # Cut the power now: after the press is in flash, before the ack is sure.
                self.sched.after(0, lambda: self._power_cycle(st, self.rng.uniform(2, 6), "press"))
            return
        if st.active is not None and st.active.alert_id != aid and ev.get("try", 1) == 1 \
                and time.monotonic() - st.last_bump_t > 10:
            # A second id while the first press is still active: one press, two alerts.
            st.active.ids.append(aid)
            return
        self.unexpected.append({"dev": st.button.id, "id": aid,
                                "after_bump": time.monotonic() - st.last_bump_t < 10})

    def _send(self, st: DevState, command: str) -> None:
        """A command to a button; a button whose power is cut hears nothing (the finger
        that lifts while the battery is out changes nothing either)."""
        if st.off:
            return
        try:
            st.device.send(command)
        except (BrokenPipeError, OSError, AssertionError):
            pass

    def _free(self, st: DevState) -> None:
        with self.lock:
            if st.active is None and not st.pending and not st.off:
                st.busy = False

    # --- people feed ---------------------------------------------------------------------
    def _feed_event(self, event: str, inc: dict) -> None:
        self.people.on_event(event, inc)

    # --- the world -----------------------------------------------------------------------
    def _pick(self, firmware_only: bool = False, kelurahan: str | None = None,
              lit: bool = False) -> DevState | None:
        """An idle button (of `kelurahan`; `lit`: not in a dark kelurahan, for the faults
        whose end would switch its WiFi back on or whose restart would forget the dark)."""
        with self.lock:
            # A button whose link is down (broker restart, reconnect backoff) may still be
            # pressed: the alert waits in its flash outbox, which is part of what is tested.
            idle = [s for s in self.devs.values()
                    if not s.busy and not s.off and (s.firmware or not firmware_only)
                    and (kelurahan is None or s.button.kelurahan == kelurahan) and not (lit and s.dark)]
            if not idle:
                return None
            st = self.rng.choice(idle)
            st.busy = True
            return st

    def _happen(self, h: Happening) -> None:
        getattr(self, f"_w_{h.what}")(h.args)

    def _w_press(self, a: dict, st: DevState | None = None, offline: str | None = None) -> None:
        st = st or self._pick(firmware_only=a.get("power_cut", False), kelurahan=a.get("kelurahan"),
                              lit=a.get("power_cut", False))
        if st is None:
            self.counts["skipped_no_idle_button"] += 1
            for c in self.cuts:
                if c["cut"] == a.get("cut"):
                    c["skipped"] += 1   # every button of the dark kelurahan already busy
            return
        gps = st.profile.gps
        if gps:
            b = st.button
            if gps == "fix":
                lat, lon = geo.offset(b.lat6 / 1e6, b.lon6 / 1e6, self.rng.uniform(-30, 30), self.rng.uniform(-30, 30))
                self._send(st, "gps " + geo.gga(lat, lon))
                self.counts["gps_fix_fed"] += 1
            else:
                self._send(st, "gps " + geo.gga(None, None))
                self.counts["gps_nofix_fed"] += 1
        method = "command" if a["kind"] == "test" else st.profile.trigger
        if offline is None and st.dark:
            offline = "router"
        if offline is None and not st.link:
            offline = "link"
        with self.lock:
            p = Press(len(self.presses) + 1, st.button.id, st.button.kelurahan, a["kind"], method,
                      time.time_ns() // 1_000_000, a.get("burst", False), a.get("false"), gps, offline,
                      bool(a.get("power_cut")) and st.firmware, st.dark)
            self.presses.append(p)
            st.pending.append(p)
        if method == "command":
            self._send(st, "trigger test")
        elif method == "long":
            self._send(st, "down")
            self.sched.after(self.o.long_press_ms / 1000 + a.get("hold_s", 0.5), lambda: self._send(st, "up"))
        else:
            for i in range(3):
                self.sched.after(i * 0.4, lambda: self._send(st, "down"))
                self.sched.after(i * 0.4 + 0.15, lambda: self._send(st, "up"))
        if p.false == "holder":
            self.sched.after(a["cancel_after_sim_s"] / self.o.speed, lambda: self._holder_cancel(st, p))

    def _holder_cancel(self, st: DevState, p: Press) -> None:
        with self.lock:
            if st.active is not p or st.off:
                return      # already closed (or the button is off): nothing to cancel
        self.counts["holder_cancels"] += 1
        self._send(st, "down")
        # cancel_hold_ms is 5 s by default: hold a little longer, as a person would; the
        # hold only arms the cancel, a short press after the beeps confirms it.
        self.sched.after(5.6, lambda: self._send(st, "up"))
        self.sched.after(6.6, lambda: self._send(st, "down"))
        self.sched.after(6.9, lambda: self._send(st, "up"))

    def _w_bump(self, a: dict) -> None:
        st = self._pick()
        if st is None:
            return
        self.counts["bumps"] += 1
        st.last_bump_t = time.monotonic()
        self.bumps.append({"dev": st.button.id, "taps": a["taps"], "hold_s": a["hold_s"],
                           "trigger": st.profile.trigger})
        t = 0.0
        for _ in range(a["taps"]):
            self.sched.after(t, lambda: self._send(st, "down"))
            t += a["hold_s"]
            self.sched.after(t, lambda: self._send(st, "up"))
            t += 0.3
        self.sched.after(t + 3.0, lambda: self._free(st))

    def _w_wifi_outage(self, a: dict) -> None:
        st = self._pick(lit=True)
        if st is None:
            return
        self.counts["wifi_outages"] += 1
        self._send(st, "wifi off")
        if a["press"]:
            self.sched.after(1.0, lambda: self._w_press(dict(a["press_args"], power_cut=False), st, "wifi"))

        def back():
            if not st.dark:     # its kelurahan went dark meanwhile: the router stays down
                self._send(st, "wifi on")
            self._free(st)
        self.sched.after(a["off_s"], back)

    def _w_power_cut(self, a: dict) -> None:
        st = self._pick(firmware_only=True, lit=True)
        if st is None:
            return
        self._power_cycle(st, a["off_s"], "idle")

    def _power_cycle(self, st: DevState, off_s: float, why: str) -> None:
        with self.lock:
            st.off = True
            st.link = False
            st.busy = True
        self.counts["power_cuts"] += 1
        st.device.power_cut()

        def on():
            st.device.start(wait_ready=0)
            with self.lock:
                st.off = False
            if st.dark:
                # The sim board boots with WiFi up; its router went dark while it was off.
                self._send(st, "wifi off")
            self.sched.after(2.0, lambda: self._free(st))
        self.sched.after(off_s, on)

    def _w_broker_restart(self, a: dict) -> None:
        if not self.own_stack or self.stack is None:
            return
        self.counts["broker_restarts"] += 1
        self.stack.stop_broker()
        time.sleep(a["down_s"])
        self.stack.start_broker()

    def _w_router_cut(self, a: dict) -> None:
        """PLN cuts the kelurahan: every home router goes down, the buttons run on."""
        kel = a["kelurahan"]
        self.counts["neighbourhood_cuts"] += 1
        with self.lock:
            dark = [s for s in self.devs.values() if s.button.kelurahan == kel]
            for s in dark:
                s.dark = a["cut"]
        self.cuts.append({"cut": a["cut"], "kelurahan": kel, "buttons": len(dark), "sim_minutes": a["sim_s"] / 60,
                          "start_s": round(time.monotonic() - self.t0, 1), "end_s": None, "skipped": 0})
        for s in dark:
            self.counts["routers_cut"] += 1
            self._send(s, "wifi off")

    def _w_router_restore(self, a: dict) -> None:
        with self.lock:
            lit = [s for s in self.devs.values() if s.dark == a["cut"]]
            for s in lit:
                s.dark = None
        for c in self.cuts:
            if c["cut"] == a["cut"]:
                c["end_s"] = round(time.monotonic() - self.t0, 1)
        for s in lit:
            self._send(s, "wifi on")

    def _w_battery(self, a: dict) -> None:
        level = max(5, 100 - round(95 * a["step"] / a["steps"]))
        for st in self.devs.values():
            if st.profile.drains and not st.off:
                self._send(st, f"battery {level}")
                self.counts["battery_updates"] += 1

    # --- the run -------------------------------------------------------------------------
    def settled(self) -> bool:
        """Every press linked, every case past the point the SLA needs (on scene or closed)."""
        with self.lock:
            if any(p.alert_id is None for p in self.presses):
                return False
        cases = {c.alert_id: c for c in list(self.people.cases.values())}
        for p in self.presses:
            c = cases.get(p.alert_id) if p.alert_id is not None else None
            if c is None:
                return False
            if p.kind == "test" and c.state != "resolved":
                return False
            if p.kind == "panic" and c.state not in ("on_scene", "resolved", "cancelled"):
                return False
        return True

    def execute(self) -> dict:
        o = self.o
        Path(o.state).mkdir(parents=True, exist_ok=True)
        t_setup = time.monotonic()
        self.progress.phase("starting broker and gateway" if self.own_stack else f"using the stack at {o.api}")
        api, op_token = self._start_stack()
        self.api_url = api
        sectors = {b.id: rules.sector_of(b.kecamatan) for b in self.buttons}
        self.people = People(Api(api, op_token), scenario.posts(self.scn), o.people, o.speed, self.sched, o.seed,
                             sector_of=lambda dev: sectors.get(dev, rules.COMMAND_CENTRE),
                             kecamatan=self.scn["kecamatan"])
        try:
            assert self.stack is not None
            self.progress.phase(f"enrolling {len(self.people.units)} units: registry and a responder token each")
            self.people.api.unit_tokens.update(enrol(self.stack, self.people.units))
            self.progress.phase(f"provisioning {len(self.buttons)} buttons with `panic-gateway device import`")
            creds = self._provision()
            self.timings["provision_s"] = time.monotonic() - t_setup
            t_dev = time.monotonic()
            self._start_devices(creds)
            self.timings["devices_start_s"] = time.monotonic() - t_dev
            since_ms = time.time_ns() // 1_000_000 - 1000
            if self.feed is None:
                self.poll = PollFeed(api, op_token, self._feed_event, since_ms)
            self.sampler = Sampler(self)
            if o.idle_probe_s > 0:
                self.progress.phase(f"measuring what {len(self.devs)} linked, idle buttons cost ({o.idle_probe_s:g} s)")
                self.sampler.probe_idle(o.idle_probe_s)
            self.sampler.start()
            self.phones = PositionReporter(self.people.api, self.people.units, self.people.sim_now, speed=o.speed,
                                           fix_interval_s=o.people.fix_interval_s, lock=self.people.lock)
            self.phones.start()
            self.on_ready(api)
            happenings = plan(o.world, o.duration, o.speed, o.seed, can_restart_broker=self.own_stack,
                              kelurahan=sorted({b.kelurahan for b in self.buttons}))
            self.t0 = time.monotonic()
            for h in happenings:
                self.sched.at(self.t0 + h.at, functools.partial(self._happen, h))
            if self.rollout is not None and o.release_at is not None:
                self.sched.at(self.t0 + o.duration * o.release_at, self._release)
            self.progress.phase(f"world running: {o.duration:.0f} s wall, speed x{o.speed:g}")
            while time.monotonic() < self.t0 + o.duration:
                self.progress.tick(self, (time.monotonic() - self.t0) / o.duration)
                self._rollout_step()
                time.sleep(0.5)
            self.t_world_end = time.monotonic()
            self.progress.phase(f"draining: waiting for every press to reach the scene or close (<= {o.drain:.0f} s)"
                                + (" and for the release to reach every button" if self.rollout else ""))
            deadline = time.monotonic() + o.drain
            while time.monotonic() < deadline and not (self.settled() and self._rollout_done()):
                self.progress.tick(self, None)
                self._rollout_step()
                time.sleep(0.5)
            self.timings["drain_s"] = time.monotonic() - self.t_world_end
            self.timings["settled"] = self.settled()
            time.sleep(0.5)
            self.sampler.stop()
            incidents = self._incidents(api, op_token, since_ms)
            deliveries = self._deliveries(incidents)
            metrics = self._metrics(api)
            self.timings["world_s"] = self.t_world_end - self.t0
            self.timings["total_s"] = time.monotonic() - t_setup
            out = {"incidents": incidents, "metrics": metrics, "deliveries": deliveries}
            if self.rollout is not None:
                out["rollout"] = self.rollout.summary(self.t0)
            return out
        finally:
            self.progress.done()
            self.shutdown()

    # --- the release (simulator/rollout.py) -----------------------------------------------
    def _release(self) -> None:
        assert self.stack is not None and self.rollout is not None
        self.rollout.start(self.stack)
        self.progress.phase(f"release {self.rollout.seq} (firmware {self.rollout.fw}) to "
                            f"{self.rollout.canary_pct:g} % of the buttons, then to all")

    def _rollout_step(self) -> None:
        r = self.rollout
        if r is None or not r.waves or r.done() or time.monotonic() - self._rollout_polled < 3.0:
            return
        self._rollout_polled = time.monotonic()
        assert self.stack is not None
        self.progress.update(r.step(self.stack))

    def _rollout_done(self) -> bool:
        return self.rollout is None or self.rollout.done()

    def on_ready(self, api: str) -> None:
        """Hook for the caller (the demo prints URLs here)."""

    def _incidents(self, api: str, token: str, since_ms: int) -> list[dict]:
        import httpx
        r = httpx.get(f"{api}/api/incidents", params={"since": since_ms, "limit": 5000},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)
        r.raise_for_status()
        return r.json()["incidents"]

    def _deliveries(self, incidents: list[dict]) -> dict[str, list[dict]]:
        """Every delivery of our incidents with its path and latency, from the gateway's store
        (the rows the gateway wrote as each copy arrived: store.deliveries)."""
        if self.stack is None or not incidents:
            return {}
        from gateway import config as gwconfig
        from gateway.store import open_store
        store = open_store(gwconfig.load(self.stack.config))
        try:
            return {i["id"]: [d._asdict() for d in store.deliveries(i["id"])] for i in incidents if i["dev"] in self.devs}
        finally:
            store.close()

    def _metrics(self, api: str) -> dict:
        import httpx
        from prometheus_client.parser import text_string_to_metric_families
        out: dict[str, float | str] = {}
        try:
            for fam in text_string_to_metric_families(httpx.get(f"{api}/metrics", timeout=10).text):
                for s in fam.samples:
                    if s.name.endswith(("_total", "_count")) or "reason" in s.labels:
                        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
                        out[f"{s.name}{{{labels}}}" if labels else s.name] = s.value
        except Exception as exc:
            out["error"] = str(exc)
        return out

    def shutdown(self) -> None:
        self.sched.stop()
        if self.phones is not None:
            self.phones.stop()
        if self.poll is not None:
            self.poll.stop()
        threads = [threading.Thread(target=s.device.stop) for s in self.devs.values()]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if self.feed is not None:
            self.feed.stop()
        if self.centre is not None:
            self.centre.stop()
        if self.own_stack and self.stack is not None:
            self.stack.down()
