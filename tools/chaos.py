"""Chaos: a fleet of real-firmware buttons presses while the harness kills the gateway
(SIGKILL), restarts mosquitto, cuts power to buttons between publish and ack and flaps
their WiFi. Then it counts: every press must be exactly one incident and reach dispatch.

    python -m tools.chaos                      # the full run (`make chaos`)
    python -m tools.chaos --alerts 400 ...     # shorter

Pressed = `trigger` commands written to running buttons; each makes one alert id.
Lost = an alert id that never became an incident. Duplicate = a second incident for one
alert id. Forwards are at least once: the dispatch side deduplicates by Idempotency-Key,
and the harness counts both the raw deliveries and what is left after deduplication.
"""
from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

from gateway import config
from gateway.store import open_store
from simulator import fleet, scenario
from simulator.firmware import FirmwareDevice
from simulator.stack import Stack
from tests.conftest import Webhook

ROOT = Path(__file__).resolve().parent.parent


@dataclass
class Plan:
    devices: int = 100
    alerts: int = 10_000
    gateway_kills: int = 10
    broker_restarts: int = 5
    power_cuts: int = 50
    wifi_flaps: int = 50
    duration_s: float = 240.0
    seed: int = 1


class Ledger:
    """What the buttons said, from their own event streams."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.sent: dict[str, str] = {}      # alert id -> device
        self.acked: set[str] = set()
        self.first_sent: dict[str, float] = {}
        self.ack_ms: dict[str, float] = {}
        self.bad_acks = 0

    def on_event(self, fw: FirmwareDevice, e: dict) -> None:
        with self.lock:
            if e["ev"] == "alert":
                self.sent.setdefault(e["id"], fw.dev)
                self.first_sent.setdefault(e["id"], e["host_t"])
            elif e["ev"] == "ack" and e["stage"] in ("received", "rejected", "cancelled"):
                if e["id"] not in self.acked:
                    self.acked.add(e["id"])
                    self.ack_ms[e["id"]] = (e["host_t"] - self.first_sent.get(e["id"], e["host_t"])) * 1000
            elif e["ev"] == "bad_ack":
                self.bad_acks += 1

    def count(self, dev: str) -> int:
        with self.lock:
            return sum(1 for d in self.sent.values() if d == dev)

    def unacked(self, dev: str | None = None) -> list[str]:
        with self.lock:
            return [i for i, d in self.sent.items() if i not in self.acked and (dev is None or d == dev)]


_last_line = [0.0]


def _progress(msg: str) -> None:
    if sys.stderr.isatty():
        print(f"\r{msg:<100}", end="", file=sys.stderr, flush=True)
    elif time.monotonic() - _last_line[0] > 10:  # a log, not a terminal: a line every 10 s
        _last_line[0] = time.monotonic()
        print(msg, file=sys.stderr, flush=True)


def run(plan: Plan, state: Path, progress: bool = True) -> dict:
    rng = random.Random(plan.seed)
    hook = Webhook()
    # The ledger counts one incident per alert, ~100 per button: the open-incident cap is off.
    stack = Stack(state, webhooks=[hook.url], gateway={"open_incidents_per_device": 0})
    ledger = Ledger()
    figures: Counter = Counter()
    devices: list[FirmwareDevice] = []
    started = time.monotonic()
    try:
        stack.up()
        buttons = scenario.buttons(scenario.load("klojen"))[: plan.devices]
        creds = fleet.provision(stack, buttons)
        for c in creds:
            fw = FirmwareDevice(state / "flash" / c["id"], dict(c["config"], retry_ms=1000, outbox_max=64),
                                on_event=ledger.on_event)
            devices.append(fw.start(wait_ready=0))
        for fw in devices:
            fw.wait_for(lambda e: e["ev"] == "ready", 60)
        fleet.wait_links(devices, 120)
        lock = threading.RLock()  # presses and power cuts never interleave
        off: set[str] = set()
        pressed_by: Counter = Counter()

        def press(fw: FirmwareDevice) -> None:
            fw.send("trigger")
            pressed_by[fw.dev] += 1
            figures["pressed"] += 1

        def press_loop() -> None:
            interval = plan.duration_s / plan.alerts
            t_next = time.monotonic()
            while figures["pressed"] < plan.alerts:
                t_next += interval
                with lock:
                    live = [fw for fw in devices if fw.dev not in off and fw.running]
                    press(rng.choice(live))
                time.sleep(max(0.0, t_next - time.monotonic()))

        def chaos_loop() -> None:
            events = (["kill_gateway"] * plan.gateway_kills + ["restart_broker"] * plan.broker_restarts
                      + ["wifi_flap"] * plan.wifi_flaps)
            rng.shuffle(events)
            # Power cuts are taken during gateway outages, when unacked alerts are certain.
            cuts_per_kill = -(-plan.power_cuts // max(1, plan.gateway_kills))
            gap = plan.duration_s * 0.9 / max(1, len(events))
            for kind in events:
                time.sleep(gap * rng.uniform(0.5, 1.5))
                if kind == "kill_gateway":
                    stack.kill_gateway()
                    figures["gateway_kills"] += 1
                    time.sleep(0.3)
                    # RT heads press while the police system is down, then their power fails:
                    # the cut falls between publish and ack for certain.
                    n = min(cuts_per_kill, plan.power_cuts - figures["power_cuts"])
                    victims = rng.sample([fw for fw in devices if fw.dev not in off | flapping], n)
                    with lock:
                        for fw in victims:
                            press(fw)
                        # Cut only once every press written to a victim has become a journaled,
                        # published alert: a press into a dead board is not a lost alert.
                        deadline = time.monotonic() + 5
                        while time.monotonic() < deadline and not all(
                                ledger.count(fw.dev) == pressed_by[fw.dev] and ledger.unacked(fw.dev)
                                for fw in victims):
                            time.sleep(0.01)
                        for fw in victims:
                            figures["cut_with_unacked"] += bool(ledger.unacked(fw.dev))
                            fw.power_cut()
                            off.add(fw.dev)
                            figures["power_cuts"] += 1
                    time.sleep(rng.uniform(0.5, 2.0))
                    stack.start_gateway()
                    for fw in devices:
                        if fw.dev in off and not fw.running and fw.dev not in flapping:
                            with lock:
                                fw.start(wait_ready=0)
                                off.discard(fw.dev)
                elif kind == "restart_broker":
                    stack.stop_broker()
                    time.sleep(rng.uniform(0.5, 2.0))
                    stack.start_broker()
                    figures["broker_restarts"] += 1
                else:
                    fw = rng.choice([d for d in devices if d.dev not in off])
                    flapping.add(fw.dev)
                    fw.send("wifi off")
                    threading.Timer(rng.uniform(1, 5), wifi_on, args=(fw,)).start()
                    figures["wifi_flaps"] += 1

        flapping: set[str] = set()

        def wifi_on(fw: FirmwareDevice) -> None:
            with lock:
                if fw.running:
                    fw.send("wifi on")
                flapping.discard(fw.dev)

        presser = threading.Thread(target=press_loop, daemon=True)
        chaos = threading.Thread(target=chaos_loop, daemon=True)
        presser.start()
        chaos.start()
        while presser.is_alive() or chaos.is_alive():
            if progress:
                _progress(f"chaos: pressed {figures['pressed']}/{plan.alerts}  acked {len(ledger.acked)}  "
                          f"kills {figures['gateway_kills']}  restarts {figures['broker_restarts']}  "
                          f"cuts {figures['power_cuts']}  flaps {figures['wifi_flaps']}")
            time.sleep(0.5)
        for fw in devices:
            if fw.dev in flapping:
                fw.send("wifi on")
        # Drain: every alert a button sent must come back acked.
        deadline = time.monotonic() + 180
        while ledger.unacked() and time.monotonic() < deadline:
            if progress:
                _progress(f"chaos: draining, {len(ledger.unacked())} alerts not yet acked")
            time.sleep(0.5)
        store = open_store(config.load(stack.config))
        incidents = store.list_incidents(limit=10**7)
        store.close()
        hook.wait(len(incidents), timeout=60)
    finally:
        for fw in devices:
            fw.stop()
        stack.down()
        hook.server.shutdown()
    if progress and sys.stderr.isatty():
        print(file=sys.stderr)
    ids = set(ledger.sent)
    by_alert = Counter(i.alert_id for i in incidents)
    keys = Counter(p["headers"]["Idempotency-Key"] for p in hook.posts)
    new_keys = {k for k in keys if k.endswith(":new")}
    acks = sorted(ledger.ack_ms.values())
    result = {
        "plan": asdict(plan),
        "pressed": figures["pressed"],
        "alert_ids": len(ids),
        "incidents": len(incidents),
        "lost": len(ids - set(by_alert)),
        "duplicates": sum(n - 1 for n in by_alert.values()) + max(0, len(ids) - figures["pressed"]),
        "unacked_at_end": len(ledger.unacked()),
        "forwarded_raw": len(hook.posts),
        "forwarded_unique": len(keys),
        "forward_redeliveries": len(hook.posts) - len(keys),
        "incidents_not_forwarded": len({i.id for i in incidents} - {k.rsplit(":", 1)[0] for k in new_keys}),
        "gateway_kills": figures["gateway_kills"],
        "broker_restarts": figures["broker_restarts"],
        "power_cuts": figures["power_cuts"],
        "power_cuts_with_unacked_alert": figures["cut_with_unacked"],
        "wifi_flaps": figures["wifi_flaps"],
        "forged_or_bad_acks_at_devices": ledger.bad_acks,
        "first_send_to_ack_ms_p50": acks[len(acks) // 2] if acks else None,
        "first_send_to_ack_ms_max": acks[-1] if acks else None,
        "wall_s": round(time.monotonic() - started, 1),
    }
    result["ok"] = (result["lost"] == 0 and result["duplicates"] == 0 and result["incidents_not_forwarded"] == 0
                    and result["alert_ids"] == result["pressed"])
    return result


# What follows this line in the report is written by hand and kept across runs.
KEPT = "<!-- written by hand below: kept by make chaos -->"


def write_report(result: dict, path: Path) -> None:
    rows = "\n".join(f"| {k} | {v} |" for k, v in result.items() if k != "plan")
    old = path.read_text() if path.exists() else ""
    kept = old[old.index(KEPT):] if KEPT in old else ""
    path.write_text(f"""# Reliability: the latest chaos run

`make chaos` (`python -m tools.chaos`) runs {result['plan']['devices']} buttons on the real firmware
(`micropython -X heapsize=96K`) against the project's mosquitto and gateway, presses
{result['plan']['alerts']} times over about {result['plan']['duration_s']:.0f} s, and meanwhile
kills the gateway with SIGKILL, restarts mosquitto, cuts power to buttons that hold an
unacknowledged alert (during a gateway outage, so the cut is certainly between publish
and ack) and drops WiFi on others. A shorter run is part of `make test`.

| figure | value |
|---|---|
{rows}

*Lost*: an alert id a button sent that never became an incident. *Duplicates*: a second
incident for one alert id (or more alert ids than presses). Webhook forwarding is at
least once; `forward_redeliveries` are deliveries the dispatch side dropped by
`Idempotency-Key`, and `incidents_not_forwarded` must be 0. The webhook receives every
incident event, so `forwarded_unique` also counts the escalations of incidents nobody
acknowledged (the harness plays no operator).
""" + ("\n" + kept if kept else ""))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for field, default in asdict(Plan()).items():
        p.add_argument(f"--{field.replace('_', '-')}", type=type(default), default=default)
    p.add_argument("--json", help="write the figures here")
    p.add_argument("--report", help="write docs/reliability.md-style markdown here")
    args = p.parse_args()
    plan = Plan(**{f: getattr(args, f) for f in asdict(Plan())})
    with tempfile.TemporaryDirectory(prefix="panic-chaos-") as tmp:
        result = run(plan, Path(tmp))
    for k, v in result.items():
        if k != "plan":
            print(f"{k:32} {v}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    if args.report:
        write_report(result, Path(args.report))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
