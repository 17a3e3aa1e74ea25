"""`panic-sim`: run the world around the system: buttons on the real firmware, and
the people and faults around them."""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from pathlib import Path

from . import fleet, scenario
from .stack import Stack


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def cmd_demo(args) -> int:
    state = Path(args.state).resolve()
    shutil.rmtree(state, ignore_errors=True)
    stack = Stack(state, broker_port=args.broker_port, api_port=args.api_port)
    print(f"starting broker on 127.0.0.1:{stack.broker_port} and gateway API on {stack.api}", flush=True)
    stack.up()
    devices = []
    try:
        buttons = scenario.buttons(scenario.load(args.scenario))[: args.devices]
        creds = fleet.provision(stack, buttons)
        print(f"provisioned {len(creds)} buttons with `panic-gateway device import`", flush=True)
        devices = fleet.start_devices(stack, creds, state / "flash")
        fleet.wait_links(devices)
        print(f"{len(devices)} firmware processes (micropython -X heapsize=96K) connected; pressing each button",
              flush=True)
        pressed = {}
        for fw in devices:
            t0 = fw.send("trigger")
            sent = fw.wait_for(lambda e: e["ev"] == "alert", 10)
            ack = fw.wait_for(lambda e: e["ev"] == "ack", 10)
            pressed[fw.dev] = (sent, ack, (ack["host_t"] - t0) * 1000)
            time.sleep(args.gap)
        by_dev = {i["dev"]: i for i in stack.incidents()}
        where = {b.id: b for b in buttons}
        print()
        print(f"{'button':34} {'kelurahan':15} {'incident':18} {'press→received':>15} {'press→ack':>10}")
        received, round_trip = [], []
        for dev, (sent, ack, rt_ms) in pressed.items():
            inc = by_dev.get(dev)
            p2r = inc["latency_ms"]["press_to_received"] if inc else None
            received.append(p2r)
            round_trip.append(rt_ms)
            print(f"{dev:34} {where[dev].kelurahan:15} {ack['inc']:18} {p2r:>12} ms {rt_ms:>7.1f} ms")
        lost = len(pressed) - len(by_dev)
        print()
        print(f"pressed {len(pressed)}, incidents {len(by_dev)}, lost {lost}; "
              f"press→received p50 {statistics.median(received)} ms, max {max(received)} ms; "
              f"press→ack (host-measured) p50 {statistics.median(round_trip):.1f} ms, "
              f"p90 {_pct(round_trip, 0.9):.1f} ms")
        return 1 if lost else 0
    finally:
        for fw in devices:
            fw.stop()
        stack.down()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="panic-sim", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    d = sub.add_parser("demo", help="start a stack, run buttons on the real firmware, press each, report")
    d.add_argument("--scenario", default="klojen")
    d.add_argument("--devices", type=int, default=10)
    d.add_argument("--state", default="var/demo")
    d.add_argument("--broker-port", type=int, default=None)
    d.add_argument("--api-port", type=int, default=None)
    d.add_argument("--gap", type=float, default=0.2, help="seconds between presses")
    d.set_defaults(func=cmd_demo)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
