"""`panic-gateway unit add|list|remove` and `bhabinkamtibmas set|list|remove`: the units
registry and each kelurahan's community officer, from the command line."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import config
from .domain.dispatch import KINDS, SECTORS, DispatchError, check_position
from .store import open_store
from .timeutil import now_ms


def _fail(msg: str) -> int:
    print(f"panic-gateway: {msg}", file=sys.stderr)
    return 2


POSTS = Path(__file__).parent / "data" / "malang_posts.json"


def known_post(name: str) -> dict | None:
    """A police post of Kota Malang by name (gateway/data/malang_posts.json)."""
    posts = json.loads(POSTS.read_text())["posts"]
    return next((p for p in posts if p["name"].lower() == name.strip().lower()), None)


def cmd_unit_add(args) -> int:
    if args.lat is None or args.lon is None:
        post = known_post(args.post)
        if post is None:
            return _fail(f"give --lat and --lon, or --post as one of the known posts ({POSTS.name})")
        args.lat, args.lon, args.post = post["lat"], post["lon"], post["name"]
        args.sector = args.sector or post["sector"]
    if not args.sector:
        return _fail("--sector is required (a known --post gives its own)")
    try:
        lat6, lon6, _ = check_position(args.lat, args.lon)
    except DispatchError as exc:
        return _fail(str(exc))
    store = open_store(config.load(args.config))
    if not store.add_unit(args.call_sign, kind=args.kind, post=args.post, sector=args.sector,
                          post_lat6=lat6, post_lon6=lon6, now_ms=now_ms()):
        return _fail(f"unit {args.call_sign} exists")
    print(f"added unit {args.call_sign} ({args.kind}, sector {args.sector})", file=sys.stderr)
    return 0


def cmd_unit_list(args) -> int:
    store = open_store(config.load(args.config))
    units = store.list_units(sectors=(args.sector,) if args.sector else None)
    at = now_ms()
    if args.json:
        print(json.dumps([u.to_json(at) for u in units]))
        return 0
    print(f"{'call sign':14}{'kind':11}{'sector':15}{'status':12}{'fix age':9}post")
    for u in units:
        age = "—" if u.fix_ms is None else f"{max(0, at - u.fix_ms) // 1000} s"
        print(f"{u.call_sign:14}{u.kind:11}{u.sector:15}{u.status:12}{age:9}{u.post}")
    return 0


def cmd_unit_remove(args) -> int:
    if not open_store(config.load(args.config)).remove_unit(args.call_sign):
        return _fail(f"no unit {args.call_sign}")
    return 0


def cmd_bhabin_set(args) -> int:
    if not args.name.strip() or not args.phone.strip():
        return _fail("--name and --phone are required")
    open_store(config.load(args.config)).set_bhabinkamtibmas(args.kelurahan, args.name.strip(), args.phone.strip(),
                                                             now_ms())
    return 0


def cmd_bhabin_list(args) -> int:
    rows = open_store(config.load(args.config)).bhabinkamtibmas()
    if args.json:
        print(json.dumps([r._asdict() for r in rows]))
        return 0
    for r in rows:
        print(f"{r.kelurahan:20}{r.name:32}{r.phone}")
    return 0


def cmd_bhabin_remove(args) -> int:
    if not open_store(config.load(args.config)).remove_bhabinkamtibmas(args.kelurahan):
        return _fail(f"no Bhabinkamtibmas for {args.kelurahan}")
    return 0


def add_commands(sub, command) -> None:
    """Hook for gateway/cli.py: `command` is its helper that adds --config."""
    units = sub.add_parser("unit", help="the units registry (dispatch)").add_subparsers(dest="ncmd", required=True)
    c = command(units, "add", cmd_unit_add, "register a unit at its home post (available)")
    c.add_argument("call_sign", help="e.g. KLJ-R2 (a responder's --unit names it)")
    c.add_argument("--kind", choices=KINDS, required=True)
    c.add_argument("--sector", choices=SECTORS, help="its Polsek's kecamatan, or polresta (a known --post gives it)")
    c.add_argument("--post", default="", help="the home post's name; a known post (e.g. \"Polsek Sukun\") "
                                               "places the unit without --lat/--lon")
    c.add_argument("--lat", type=float, help="the home post's latitude")
    c.add_argument("--lon", type=float, help="the home post's longitude")
    c = command(units, "list", cmd_unit_list, "every unit with status and fix age")
    c.add_argument("--sector", choices=SECTORS)
    c.add_argument("--json", action="store_true")
    command(units, "remove", cmd_unit_remove, "take a unit out of the registry").add_argument("call_sign")

    officers = sub.add_parser("bhabinkamtibmas", help="each kelurahan's community officer (told of every incident)"
                              ).add_subparsers(dest="bcmd", required=True)
    c = command(officers, "set", cmd_bhabin_set, "set the kelurahan's Bhabinkamtibmas")
    c.add_argument("kelurahan", help="as in the device registry, e.g. Kauman")
    c.add_argument("--name", required=True)
    c.add_argument("--phone", required=True)
    c = command(officers, "list", cmd_bhabin_list, "every kelurahan's officer")
    c.add_argument("--json", action="store_true")
    command(officers, "remove", cmd_bhabin_remove, "remove a kelurahan's officer").add_argument("kelurahan")
