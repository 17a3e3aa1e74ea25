"""Names of the forwarding sinks and which events each takes.

`mqtt` carries incident events to the retained incident topic; `ops` carries device
events (health, false-alarm policy) to `<root>/ops/...`; each `[[webhooks]]` entry is
`webhook:<name>` and takes what its `events` list says (empty: every incident event).
"""
from __future__ import annotations

from .config import DEVICE_EVENTS, Config, WebhookConfig


def webhook_name(hook: WebhookConfig, index: int) -> str:
    return f"webhook:{hook.name or index}"


def sink_names(webhooks: list[WebhookConfig]) -> list[str]:
    """Sinks that take incident events (the order the walking skeleton had)."""
    return ["mqtt"] + [webhook_name(w, i) for i, w in enumerate(webhooks)]


def routes(cfg: Config) -> dict[str, frozenset[str] | None]:
    """sink -> the events it takes; None: every incident event, no device events."""
    out: dict[str, frozenset[str] | None] = {"mqtt": None, "ops": frozenset(DEVICE_EVENTS)}
    for i, hook in enumerate(cfg.webhooks):
        out[webhook_name(hook, i)] = frozenset(hook.events) if hook.events else None
    return out
