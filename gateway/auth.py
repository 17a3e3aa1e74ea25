"""Bearer tokens for the API. Only a token's SHA-256 is stored."""
from __future__ import annotations

import hashlib
import secrets

ROLES = ("viewer", "responder", "operator", "admin")
# What each role may do beyond reading; checked by the API.
CAN_ACT = {"operator": {"acknowledge", "dispatch", "on_scene", "resolve", "false_alarm", "en_route"},
           "admin": {"acknowledge", "dispatch", "on_scene", "resolve", "false_alarm", "en_route"},
           "responder": {"on_scene", "en_route", "resolve"},
           "viewer": set()}


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return "pbt_" + secrets.token_urlsafe(32)
