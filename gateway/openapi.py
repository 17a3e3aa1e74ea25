"""The REST API's OpenAPI 3.1 document, served at /api/openapi.json and kept in docs/.

Each operation is described once here; `undocumented` compares the descriptions with the
app's routes, and tests/gateway/test_openapi.py fails when a route under /api has no
description (or a description no route), or when docs/openapi.json is not this document,
so the document cannot drift from the routes. `python -m gateway.openapi` prints it.

The document is served without a token: it describes the API, the same text as in the
repository, and shows no data.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute, Mount, Route

from protocol.fleet import SETTABLE

from .actions import MAX_NOTE, MAX_UNIT
from .api_units import MAX_CALL_SIGN
from .domain.health import LINK_ERROR_WORDS, LINK_ERRORS, RESET_CAUSES
from .domain.lifecycle import ACTIONS
from .domain.paths import PATHS
from .http_params import INT64_MAX, INT64_MIN

JSON = "application/json"
Schema = dict[str, Any]

ERRORS = {
    400: "the request is malformed (the reason in `error`)",
    401: "no bearer token, or one that is unknown, expired or revoked",
    403: "the token's role may not do this",
    404: "no such resource (or not in the caller's view)",
    409: "the step does not fit the resource's state",
    413: "the request body is over the size the API takes",
}


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(required: Iterable[str] = (), **props: Schema) -> Schema:
    return {"type": "object", "required": list(required), "properties": props}


def _list_of(key: str, item: Schema, **more: Schema) -> Schema:
    return _obj([key, *more], **{key: {"type": "array", "items": item}}, **more)


INT = {"type": "integer"}
STR = {"type": "string"}
INT_OR_NULL = {"type": ["integer", "null"]}
STR_OR_NULL = {"type": ["string", "null"]}
ANY_OBJ: Schema = {"type": "object"}

SCHEMAS: dict[str, Schema] = {
    "Error": _obj(["error"], error=STR),
    "Incident": _obj(["id", "dev", "kind", "state", "press_ms", "received_ms", "latency_ms"],
                     id=STR, alert_id=STR, dev=STR, kind=STR, state=STR, press_ms=INT, received_ms=INT,
                     lat6=INT, lon6=INT, acc=INT, src=STR, unit=STR_OR_NULL, acknowledged_ms=INT_OR_NULL,
                     dispatched_ms=INT_OR_NULL, on_scene_ms=INT_OR_NULL, resolved_ms=INT_OR_NULL,
                     cancelled_ms=INT_OR_NULL, device={"type": ["object", "null"]},
                     latency_ms={"type": "object", "additionalProperties": INT_OR_NULL},
                     path={"type": "string", "enum": list(PATHS),
                           "description": "how the first copy of the alert arrived (docs/protocol.md, Paths)"}),
    "FleetDevice": _obj(["dev", "fw", "slot", "health", "rollout"], dev=STR, fw=STR_OR_NULL, slot=STR_OR_NULL,
                        seq=INT_OR_NULL, health=STR, status=STR,
                        rollout={"type": ["string", "null"], "description": "waiting, sent, ok, failed, later, skipped; "
                                                                            "null: not in the rollout's wave"},
                        rollout_why=STR, stage=STR_OR_NULL, last_op=STR_OR_NULL,
                        last_ok={"type": ["boolean", "null"]}, last_err=STR_OR_NULL, updated_ms=INT_OR_NULL),
    "FleetCommand": _obj(["dev", "n", "op", "args", "by", "sent_ms"], dev=STR, n=INT, op=STR, args=ANY_OBJ, by=STR,
                         sent_ms=INT, result={"type": ["object", "null"]}, ok={"type": ["boolean", "null"]},
                         err=STR_OR_NULL, result_ms=INT_OR_NULL),
    "TrackPoint": _obj(["at_ms", "lat6", "lon6", "acc"], at_ms=INT, lat6=INT, lon6=INT, acc=INT),
    "Delivery": _obj(["alert_id", "path", "received_ms", "latency_ms"], alert_id=STR, incident_id=STR, dev=STR,
                     path={"type": "string", "enum": list(PATHS)}, received_ms=INT,
                     latency_ms={**INT, "description": "received minus the press time"}),
    "Device": _obj(["id", "health"], id=STR, health=_ref("DeviceHealth")),
    # Link diagnostics are null until a button's firmware reports them (older firmware never does).
    "DeviceHealth": _obj(
        ["health"], health=STR, state=STR,
        reset_cause={"type": ["string", "null"], "enum": [*RESET_CAUSES, None],
                     "description": "why the button last (re)started"},
        reconnects={**INT_OR_NULL, "description": "link ups this boot minus one"},
        link_err={"type": ["string", "null"], "enum": [*LINK_ERRORS, None],
                  "description": "kind of the last link failure the button reported"},
        link_err_ms={**INT_OR_NULL, "description": "when that link error was first reported"},
        link_problem={"type": ["string", "null"], "enum": [*LINK_ERROR_WORDS.values(), None],
                      "description": "the last link error in plain words, while the device is offline or silent"}),
    "Unit": _obj(["call_sign"], call_sign=STR),
    "Positions": _list_of("positions", ANY_OBJ),
}


def _param(name: str, where: str, schema: Schema, description: str = "") -> Schema:
    p: Schema = {"name": name, "in": where, "required": where == "path", "schema": schema}
    if description:
        p["description"] = description
    return p


def _path(name: str, description: str = "") -> Schema:
    return _param(name, "path", STR, description)


def _query_int(name: str, description: str, *, lo: int = INT64_MIN) -> Schema:
    return _param(name, "query", {"type": "integer", "minimum": lo, "maximum": INT64_MAX}, description)


def _json_body(schema: Schema, *, required: bool = True) -> Schema:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def op(summary: str, ok: Schema | None, *, role: str | None = "viewer", status: int = 200,
       params: Iterable[Schema] = (), body: Schema | None = None, errors: Iterable[int] = (),
       media: str = JSON, more: dict[int, str] | None = None) -> Schema:
    """One operation: what it answers on success, the error statuses it may answer."""
    codes = sorted({*errors, *((401, 403) if role else ()), *((413,) if body is not None else ())})
    responses: Schema = {str(status): {"description": "done",
                                       "content": {media: {"schema": ok if ok is not None else STR}}}}
    for code in codes:
        responses[str(code)] = {"description": ERRORS[code], "content": {JSON: {"schema": _ref("Error")}}}
    for code, text in (more or {}).items():
        responses[str(code)] = {"description": text, "content": {media: {"schema": ok or STR}}}
    out: Schema = {"summary": summary + (f" (role {role} or above)" if role and role != "viewer" else ""),
                   "responses": responses}
    if params:
        out["parameters"] = list(params)
    if body is not None:
        out["requestBody"] = body
    out["security"] = [{"bearer": []}] if role else []
    return out


INCIDENT_ID = _path("id", "an incident id, e.g. inc-000000000001")
CALL_SIGN = _path("call_sign", "a unit's call sign")
POSITION_BODY = _obj(["lat", "lon"], lat={"type": "number"}, lon={"type": "number"}, acc={"type": "number"})

OPERATIONS: dict[tuple[str, str], Schema] = {
    ("get", "/healthz"): op("Liveness: broker link, ingest queue, forwards", ANY_OBJ, role=None,
                            more={503: "the broker link is down"}),
    ("get", "/metrics"): op("Prometheus metrics", STR, role=None, media="text/plain"),
    ("get", "/api/openapi.json"): op("This document", ANY_OBJ, role=None),
    ("get", "/api/incidents"): op(
        "Incidents, newest first", _list_of("incidents", _ref("Incident")), errors=[400], params=[
            _query_int("since", "received at or after this Unix ms"), _query_int("limit", "at most this many (≤ 5000)", lo=0),
            _param("state", "query", STR, "only incidents in this state")]),
    ("get", "/api/incidents/{id}"): op(
        "One incident: its timeline, every delivery of its alerts (one per path), the button's track",
        {"allOf": [_ref("Incident"), _obj(["events", "deliveries", "track"], events={"type": "array"},
                                          deliveries={"type": "array", "items": _ref("Delivery")},
                                          track={"type": "array", "items": _ref("TrackPoint")})]},
        params=[INCIDENT_ID], errors=[404]),
    ("get", "/api/incidents/{id}.cap"): op("One incident as CAP 1.2 XML", STR, params=[INCIDENT_ID],
                                           errors=[404], media="application/cap+xml"),
    ("post", "/api/incidents/{id}/{action}"): op(
        "Take a step on an incident", _ref("Incident"), role="responder", errors=[400, 404, 409],
        params=[INCIDENT_ID, _param("action", "path", {"type": "string", "enum": list(ACTIONS)})],
        body=_json_body(_obj(note={"type": "string", "maxLength": MAX_NOTE},
                             unit={"type": "string", "minLength": 1, "maxLength": MAX_UNIT}), required=False)),
    ("get", "/api/incidents/{id}/recommendation"): op(
        "Units ranked by ETA for an incident", _obj(["incident"], incident=STR), role="operator",
        params=[INCIDENT_ID], errors=[404, 409]),
    ("get", "/api/incidents/{id}/track"): op(
        "Positions of the units sent to an incident", _list_of("positions", ANY_OBJ, incident=STR),
        role="operator", params=[INCIDENT_ID], errors=[404]),
    ("get", "/api/forwards"): op("Forward queue per sink", _list_of("sinks", ANY_OBJ)),
    ("get", "/api/forwards/dead"): op(
        "Dead letters", _list_of("dead", ANY_OBJ), errors=[400],
        params=[_param("sink", "query", STR, "only this sink's"), _query_int("limit", "at most this many (≤ 5000)", lo=0)]),
    ("post", "/api/forwards/dead/{fid}/retry"): op(
        "Queue a dead letter again", _obj(["requeued"], requeued=INT), role="operator",
        params=[_path("fid", "a dead letter's id")], errors=[404]),
    ("post", "/api/sms/inbound"): {**op(
        "", _obj(["refused", "reply", "incident", "stage"], refused=STR_OR_NULL, reply=STR_OR_NULL,
                 incident=STR_OR_NULL, stage=STR_OR_NULL),
        role="sms_relay", errors=[400], body=_json_body(_obj(["from", "text"], **{"from": STR}, text=STR))),
        "summary": "Hand in one received SMS (the SMS daemon's hook; the sms_relay token only, "
                   "docs/gateway.md \"SMS\"): refused names the reason, reply is the ack to send"},
    ("get", "/api/devices"): op(
        "Devices with their health", _list_of("devices", _ref("Device")),
        params=[_param("health", "query", STR, "only devices in this health state or with this flag")]),
    ("get", "/api/devices/{id}"): op(
        "One device: health, false alarms in the window, recent device events",
        {"allOf": [_ref("Device"), _obj(["false_alarms", "events"])]}, params=[_path("id", "a device id")],
        errors=[404]),
    ("get", "/api/report"): op(
        "The SLA report", ANY_OBJ, errors=[400], params=[
            _param("since", "query", STR, "7d, 12h, 30m, Unix ms or ISO time"),
            _param("until", "query", STR, "as since"),
            _param("kind", "query", STR, "panic, test or panic,test")]),
    ("get", "/api/units"): op(
        "Units with position and status", _list_of("units", _ref("Unit"), now_ms=INT, stale_s=INT), errors=[400],
        params=[_param("sector", "query", STR, "only this sector's units")]),
    ("post", "/api/units"): op(
        "Register a unit", _ref("Unit"), role="admin", status=201, errors=[400, 409],
        body=_json_body(_obj(["call_sign", "kind", "sector", "lat", "lon"],
                             call_sign={"type": "string", "minLength": 1, "maxLength": MAX_CALL_SIGN},
                             kind=STR, sector=STR, post=STR, lat={"type": "number"}, lon={"type": "number"}))),
    ("get", "/api/units/{call_sign}"): op("One unit", _ref("Unit"), params=[CALL_SIGN], errors=[404]),
    ("post", "/api/units/{call_sign}/position"): op(
        "Report a unit's position (its responder, or the desk)", _ref("Unit"), role="responder",
        params=[CALL_SIGN], errors=[400], body=_json_body(POSITION_BODY)),
    ("post", "/api/units/{call_sign}/status"): op(
        "Set a unit's status (its responder, or the desk)", _ref("Unit"), role="responder",
        params=[CALL_SIGN], errors=[400], body=_json_body(_obj(["status"], status=STR))),
    ("get", "/api/fleet"): op(
        "The rollout and every device's firmware: version, slot, place in the rollout, last result",
        _obj(["rollout", "devices"], rollout={"type": ["object", "null"]},
             devices={"type": "array", "items": _ref("FleetDevice")}), role="operator"),
    ("post", "/api/fleet/rollout"): op(
        "Widen the current rollout (a release is stored with `panic-gateway fleet release FILE`)",
        _obj(["seq", "pct", "state"], seq=INT, pct={"type": "number"}, state=STR), role="admin",
        errors=[400, 409], body=_json_body(_obj(["to"], to={"type": "string", "description": "e.g. 100%"},
                                                resume={"type": "boolean",
                                                        "description": "go on with a halted rollout"}))),
    ("post", "/api/fleet/halt"): op(
        "Halt the current rollout", _obj(["seq", "state", "why"], seq=INT, state=STR, why=STR), role="admin",
        errors=[400, 409], body=_json_body(_obj(why={"type": "string", "maxLength": 200}), required=False)),
    ("get", "/api/devices/{id}/commands"): op(
        "A device's commands and their signed results, newest first (the audit log)",
        _list_of("commands", _ref("FleetCommand"), dev=STR), role="operator", errors=[400, 404],
        params=[_path("id", "a device id"), _query_int("limit", "at most this many (≤ 1000)", lo=0)]),
    ("post", "/api/devices/{id}/commands"): op(
        "Send a device a signed command (audited under the caller)", _obj(["dev", "n", "op"], dev=STR, n=INT, op=STR),
        role="admin", status=202, errors=[400, 404, 409], params=[_path("id", "a device id")],
        body=_json_body(_obj(["op"], op={"type": "string", "enum": ["locate", "selftest", "reboot", "set"]},
                             args={"type": "object", "description": "set: keys of " + ", ".join(SETTABLE)}))),
    ("get", "/api/units/{call_sign}/track"): op(
        "A unit's recent positions", _list_of("positions", ANY_OBJ, call_sign=STR), role="responder",
        params=[CALL_SIGN, _query_int("since", "at or after this Unix ms")], errors=[400]),
}


def document() -> Schema:
    paths: dict[str, Schema] = {}
    for (method, path), operation in sorted(OPERATIONS.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        paths.setdefault(path, {})[method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "Panic Button on Hand gateway API", "version": "1",
                 "description": "Incidents, their steps, devices, units, forwards and the SLA report. "
                                "Bearer tokens from `panic-gateway token create`; errors are {\"error\": …}."},
        "paths": paths,
        "components": {"schemas": SCHEMAS,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def text() -> str:
    return json.dumps(document(), indent=2, ensure_ascii=False) + "\n"


def routes_of(routes: Iterable[BaseRoute], prefix: str = "") -> set[tuple[str, str]]:
    """(method, path) of every route (HEAD is implied by GET)."""
    found: set[tuple[str, str]] = set()
    for route in routes:
        if isinstance(route, Mount):
            found |= routes_of(route.routes, prefix + route.path)
        elif isinstance(route, Route):
            found |= {(m.lower(), prefix + route.path) for m in route.methods or () if m != "HEAD"}
    return found


def undocumented(routes: Iterable[BaseRoute]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(API routes without a description, descriptions without a route)."""
    served = {(m, p) for m, p in routes_of(routes) if p.startswith("/api/") or p in ("/healthz", "/metrics")}
    return sorted(served - set(OPERATIONS)), sorted(set(OPERATIONS) - served)


def openapi_json(request: Request) -> JSONResponse:
    return JSONResponse(document())


if __name__ == "__main__":
    sys.stdout.write(text())
