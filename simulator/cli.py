"""`panic-sim`: run the world around the system: buttons on the real firmware, the people
and the faults around them, and the report of what the system did.

  panic-sim run SCENARIO [--devices N] [--duration S] [--speed X] [--json FILE] [--plots DIR]
  panic-sim demo [--devices N]          # Klojen end to end, the showcase `make demo` runs
  panic-sim compare SCENARIO [--seed N]  # the same seed: free-text dispatch vs the recommendation
  panic-sim plan SCENARIO [--target 0.9] # the fewest units per sector that keep the promise (a model, fast)

Exit status: 0 when no press was lost or duplicated (and no pocket bump raised an
incident), 1 otherwise, 2 on bad usage.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import httpx

from . import plots, report, scenario
from .people import PeopleConfig
from .run import Run, RunOptions
from .units import DISPATCH_MODES
from .world import WorldConfig


def _burst(text: str) -> tuple[float, int, float]:
    try:
        frac, n, within = text.split(":")
        return float(frac), int(n), float(within)
    except ValueError:
        raise argparse.ArgumentTypeError("burst is FRACTION:PRESSES:WITHIN_SIM_SECONDS, e.g. 0.5:20:120") from None


def _probability(text: str) -> float:
    try:
        p = float(text)
    except ValueError:
        p = -1.0
    if not 0.0 <= p <= 1.0:
        raise argparse.ArgumentTypeError(f"a probability in [0, 1], not {text!r}")
    return p


def add_run_options(p: argparse.ArgumentParser, duration: float, speed: float, devices: int | None) -> None:
    p.add_argument("--devices", type=int, default=devices, help="the first N buttons of the scenario (default: all)")
    p.add_argument("--duration", type=float, default=None,
                   help=f"wall seconds of the world (default: the scenario's `run`, else {duration:g})")
    p.add_argument("--speed", type=float, default=None,
                   help=f"time compression of human and driving intervals (default: the scenario's `run`, else {speed:g})")
    p.set_defaults(default_duration=duration, default_speed=speed)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", metavar="FILE", help="write every figure as JSON")
    p.add_argument("--plots", metavar="DIR", help="write latency_cdf.png and incident_map.png")
    p.add_argument("--state", help="folder for the stack and the buttons' flash (default var/sim/<scenario>)")
    g = p.add_argument_group("a running stack (else the simulator starts its own broker and gateway)")
    g.add_argument("--api", help="gateway API base URL, e.g. http://127.0.0.1:8080")
    g.add_argument("--token", help="operator bearer token (default: create one with the gateway's CLI)")
    g.add_argument("--config", help="the gateway's TOML: buttons are provisioned with its CLI")
    w = p.add_argument_group("the world (rates per simulated hour)")
    d = WorldConfig()
    w.add_argument("--rate", type=float, default=d.rate_per_h, help="presses per hour, Poisson (%(default)s)")
    w.add_argument("--burst", type=_burst, action="append",
                   help="FRACTION:PRESSES:WITHIN_S, e.g. 0.5:20:120 (default one such burst); repeatable")
    w.add_argument("--no-burst", action="store_true")
    w.add_argument("--bumps", type=float, default=d.bumps_per_h, help="pocket bumps per hour (%(default)s)")
    w.add_argument("--outages", type=float, default=d.outages_per_h, help="WiFi outages per hour (%(default)s)")
    w.add_argument("--power-cuts", type=float, default=d.power_cuts_per_h, help="idle power cuts per hour (%(default)s)")
    w.add_argument("--broker-restarts", type=int, default=d.broker_restarts, help="(%(default)s; own stack only)")
    w.add_argument("--long-press-ms", type=int, default=2000, help="the buttons' long_press_ms (%(default)s)")
    w.add_argument("--power-cut", action="store_true",
                   help="the scenario's power-cut variant (SCENARIO-powercut.json): a kelurahan dark for a "
                        "simulated hour while presses go on, every button with a modem")
    w.add_argument("--neighbourhood-cuts", type=int, default=None,
                   help="kelurahan whose home routers all go down (default: the scenario's, else 0)")
    w.add_argument("--cut-minutes", type=float, default=None,
                   help="each neighbourhood cut's length, simulated minutes (default: the scenario's, else 60)")
    w.add_argument("--cut-press-rate", type=float, default=None,
                   help="presses per simulated hour in the dark kelurahan (default: --rate)")
    s2 = p.add_argument_group("the second path (docs/protocol.md \"Paths\")")
    s2.add_argument("--modem-share", type=_probability, default=None,
                    help="share of buttons fitted with an LTE modem (default: the scenario's, else 0)")
    s2.add_argument("--backup-broker", action="store_true",
                    help="start a backup broker and list it second in every button's config (own stack only)")
    fl = p.add_argument_group("the fleet (docs/gateway.md \"Fleet updates\"; own stack only)")
    fl.add_argument("--release", type=_share, nargs="?", const=0.25, default=None, metavar="AT",
                    help="roll a signed firmware release out while the world runs, starting at this share "
                         "of it (default 0.25): to --canary-pct of the buttons, then to all")
    fl.add_argument("--canary-pct", type=float, default=5.0, help="the first wave's share, percent (%(default)s)")
    pe = p.add_argument_group("the people")
    dp = PeopleConfig()
    pe.add_argument("--operators", type=int, default=dp.operators, help="(%(default)s)")
    pe.add_argument("--unit-kmh", type=float, default=dp.speed_kmh, help="median driving speed (%(default)s)")
    pe.add_argument("--dispatch", choices=DISPATCH_MODES, default=dp.dispatch,
                    help="free: the operator types the nearest free unit; recommend: follows the gateway's "
                         "ETA recommendation (%(default)s)")
    pe.add_argument("--override", type=_probability, default=dp.override,
                    help="recommend: chance the operator sends another offered unit (%(default)s)")
    pe.add_argument("--fix-interval", type=float, default=dp.fix_interval_s,
                    help="simulated seconds between a unit phone's position reports (%(default)s)")
    p.add_argument("--firmware-max", type=int, default=1000,
                   help="buttons beyond this many run as Python protocol devices (default %(default)s; "
                        "a firmware process costs ~6 MiB PSS)")
    p.add_argument("--drain", type=float, default=180.0, help="max wall seconds to wait for open incidents at the end")
    p.add_argument("--idle-probe", type=float, default=5.0, help="seconds measuring idle CPU before the world starts")
    p.add_argument("--no-progress", action="store_true")


def options(args) -> RunOptions:
    if args.power_cut:
        args.scenario = scenario.variant(args.scenario, "powercut")
    scn = scenario.load(args.scenario)
    world = WorldConfig(rate_per_h=args.rate, bumps_per_h=args.bumps, outages_per_h=args.outages,
                        power_cuts_per_h=args.power_cuts, broker_restarts=args.broker_restarts,
                        **scenario.world_settings(scn))
    # The command line overrides the scenario's settings.
    if args.neighbourhood_cuts is not None:
        world.neighbourhood_cuts = args.neighbourhood_cuts
    if args.cut_minutes is not None:
        world.neighbourhood_cut_sim_s = args.cut_minutes * 60
    if args.cut_press_rate is not None:
        world.cut_press_rate_per_h = args.cut_press_rate
    if args.modem_share is not None:
        world.modem_share = args.modem_share
    if args.no_burst:
        world.bursts = []
    elif args.burst:
        world.bursts = args.burst
    people = PeopleConfig(operators=args.operators, speed_kmh=args.unit_kmh, dispatch=args.dispatch,
                          override=args.override, fix_interval_s=args.fix_interval)
    state = Path(args.state or f"var/sim/{Path(args.scenario).stem}").resolve()
    run = scn.get("run", {})
    duration = args.duration if args.duration is not None else float(run.get("duration_s", args.default_duration))
    speed = args.speed if args.speed is not None else float(run.get("speed", args.default_speed))
    return RunOptions(scenario=args.scenario, devices=args.devices, duration=duration, speed=speed,
                      seed=args.seed, state=state, api=args.api, token=args.token,
                      config=Path(args.config) if args.config else None,
                      firmware_max=args.firmware_max, drain=args.drain, long_press_ms=args.long_press_ms,
                      progress=not args.no_progress, idle_probe_s=args.idle_probe, world=world, people=people,
                      backup_broker=args.backup_broker or bool(scn.get("backup_broker", False)),
                      release_at=args.release, canary_pct=args.canary_pct)


def execute(opts: RunOptions, json_path: str | None, plots_dir: str | None, on_ready=None) -> int:
    rep, _ = run_and_report(opts, json_path, plots_dir, on_ready)
    return 1 if rep["lost"] or rep["duplicates"] or rep["bump_incidents"] else 0


def run_and_report(opts: RunOptions, json_path: str | None, plots_dir: str | None,
                   on_ready=None) -> tuple[dict, dict]:
    """One run, its report printed (and written); the report and the run's scenario."""
    if opts.api is None:
        shutil.rmtree(opts.state, ignore_errors=True)   # own stack: start from a clean state
    run = Run(opts)
    if on_ready:
        run.on_ready = on_ready  # type: ignore[method-assign]  # the demo's hook replaces the default
    result = run.execute()
    rep = report.build(run, result)
    print(report.text(rep))
    if plots_dir:
        for path in plots.write(rep, run.scn, Path(plots_dir)):
            print(f"plot: {path}")
    if json_path:
        Path(json_path).parent.mkdir(parents=True, exist_ok=True)
        Path(json_path).write_text(json.dumps(rep, indent=1))
        print(f"json: {json_path}")
    return rep, run.scn


def cmd_compare(args) -> int:
    from . import compare
    base = options(args)
    out = Path(args.out or f"var/sim/{Path(args.scenario).stem}-compare")
    reps = {}
    for mode in ("free", "recommend"):
        print(f"\n=== {mode} ===", flush=True)
        reps[mode], _ = run_and_report(compare.options_for(base, mode, override=args.override),
                                       str(out / f"{mode}.json"), None)
    c = compare.summarise(reps["free"], reps["recommend"])
    print("\n" + compare.text(c))
    (out / "compare.json").write_text(json.dumps(c, indent=1))
    print(f"json: {out / 'compare.json'}")
    print(f"plot: {plots.compare(reps['free'], reps['recommend'], out / 'compare.png')}")
    bad = any(r["lost"] or r["duplicates"] or r["bump_incidents"] for r in reps.values())
    return 1 if bad else 0


def cmd_run(args) -> int:
    return execute(options(args), args.json, args.plots)


def cmd_demo(args) -> int:
    args.scenario = args.scenario or "klojen"
    args.state = args.state or "var/demo"
    args.json = args.json or f"{args.state}/report.json"
    args.plots = args.plots or f"{args.state}/plots"

    def ready(api: str) -> None:
        print(f"\ngateway API: {api}/api/incidents   health {api}/healthz   metrics {api}/metrics", flush=True)
        config = Path(args.state).resolve() / "gateway.toml"
        password = "klojen-" + secrets.token_hex(3)
        made = subprocess.run([str(Path(sys.executable).parent / "panic-gateway"), "user", "add", "demo",
                               "--role", "operator", "--password-stdin"], input=password + "\n",
                              capture_output=True, text=True, env=dict(os.environ, PANIC_CONFIG=str(config)))
        try:
            if made.returncode == 0 and httpx.get(f"{api}/console/login", timeout=2).status_code == 200:
                print(f"console: {api}/console/   login: demo / {password}   (watch the queue live)", flush=True)
        except httpx.HTTPError:
            pass
    return execute(options(args), args.json, args.plots, on_ready=ready)


def _share(text: str) -> float:
    p = _probability(text)
    if not 0.0 < p < 1.0:
        raise argparse.ArgumentTypeError(f"a share in (0, 1), not {text!r}")
    return p


def cmd_plan(args) -> int:
    from . import plan, scenario
    try:
        settings = plan.PlanSettings(target=args.target, seeds=args.seeds, calls=args.calls, seed=args.seed,
                                     rate_per_h=args.rate_per_h, sites=args.sites)
    except ValueError as exc:
        print(f"panic-sim plan: {exc}", file=sys.stderr)
        return 2
    scn = scenario.load(args.scenario)
    cfg = PeopleConfig(operators=args.operators, dispatch=args.dispatch, override=args.override,
                       fix_interval_s=args.fix_interval)
    result = plan.search(scn, settings, cfg)
    print(plan.text(result))
    rep = result.to_json()
    out = Path(args.out or f"var/plan/{scn['name']}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "plan.json").write_text(json.dumps(rep, indent=1))
    print(f"json: {out / 'plan.json'}")
    print(f"plot: {plots.plan(rep, scn, out / 'plan.png')}")
    return 0 if result.met else 1


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    p = argparse.ArgumentParser(prog="panic-sim", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a scenario and report")
    r.add_argument("scenario", help="klojen, malang, or a path to a scenario .json")
    add_run_options(r, duration=180.0, speed=10.0, devices=None)
    r.set_defaults(func=cmd_run)
    d = sub.add_parser("demo", help="Klojen end to end: every button on the real firmware, operators, units, report")
    d.add_argument("--scenario", default=None)
    add_run_options(d, duration=180.0, speed=10.0, devices=None)
    d.set_defaults(func=cmd_demo)
    cp = sub.add_parser("compare", help="the same seed twice: free-text dispatch vs the gateway's recommendation")
    cp.add_argument("scenario", help="klojen, malang, or a path to a scenario .json")
    add_run_options(cp, duration=180.0, speed=10.0, devices=None)
    cp.add_argument("--out", help="folder for free.json, recommend.json, compare.json, compare.png "
                                  "(default var/sim/<scenario>-compare)")
    cp.set_defaults(func=cmd_compare)
    pl = sub.add_parser("plan", help="the fewest units, and their posts per sector, that keep the target "
                                     "on scene within 10 minutes (discrete-event model, no firmware)")
    pl.add_argument("scenario", help="klojen, malang, or a path to a scenario .json")
    pl.add_argument("--target", type=_share, default=0.9, help="share on scene within 10 min (%(default)s)")
    pl.add_argument("--seeds", type=int, default=5, help="seeds searched on, and as many fresh ones to check (%(default)s)")
    pl.add_argument("--calls", type=int, default=300, help="presses per seed (%(default)s)")
    pl.add_argument("--seed", type=int, default=1, help="the first seed (%(default)s)")
    pl.add_argument("--rate-per-h", type=float, default=None,
                    help="presses per hour (default: the realistic rate from shared/DESIGN.md, stated in the output)")
    pl.add_argument("--sites", choices=("posts", "all"), default="all",
                    help="posts: the scenario's posts only; all: also a post at each kelurahan centre (%(default)s)")
    dp = PeopleConfig()
    pl.add_argument("--dispatch", choices=DISPATCH_MODES, default="recommend", help="(%(default)s)")
    pl.add_argument("--override", type=_probability, default=dp.override, help="(%(default)s)")
    pl.add_argument("--operators", type=int, default=dp.operators, help="(%(default)s)")
    pl.add_argument("--fix-interval", type=float, default=dp.fix_interval_s, help="(%(default)s simulated s)")
    pl.add_argument("--out", help="folder for plan.json and plan.png (default var/plan/<scenario>)")
    pl.set_defaults(func=cmd_plan)
    args = p.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
