"""One SMS from the daemon's hook, judged and, if it holds, ingested with path `sms`.

Every refusal is named (the label of `panic_sms_rejected_total`), logged without the text or
the whole number, and answered with nothing: only a sender whose MAC verified from the SIM
registered for its device is ever written back to. The order follows docs/protocol.md "SMS":
the rate per number first (it counts every message), then the claimed device and the number
it came from, the MAC, and only then the checks every alert gets (validate.check_alert, on
the SMS's MQTT form) and the store, which tells a replay (the alert already has an `sms`
delivery) from a copy that adds the `sms` path.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass

from protocol import sms as sms_format
from protocol import v1 as protocol

from .. import metrics
from ..domain.paths import SMS, e164
from ..models import Device, Outcome
from ..timeutil import now_ms
from ..validate import Rejection, check_alert
from .ratelimit import PerNumberLimit
from .redact import masked

log = logging.getLogger("panic.sms")

REASONS = ("format", "unknown_number", "unknown_device", "number_mismatch", "mac", "replay", "rate",
           "size", "suspended", "schema", "stale", "json", "dev_mismatch")
MAX_TEXT = 4 * sms_format.SEGMENT  # longer is no protocol v1 SMS (one segment), however it was joined
for _reason in REASONS:
    metrics.sms_rejected.labels(_reason)


@dataclass(frozen=True, kw_only=True)
class Verdict:
    reason: str | None = None  # None: ingested
    reply: str | None = None   # the signed ack to send back to the number, if any
    incident: str | None = None
    stage: str | None = None


class SmsRelay:
    def __init__(self, *, device_by_sim: Callable[[str], Device | None], device: Callable[[str], Device | None],
                 ingest: Callable[..., Outcome], per_number_per_hour: int, root: str,
                 stale_past_ms: int, stale_future_ms: int, clock: Callable[[], int] = now_ms) -> None:
        self.device_by_sim, self.device, self.ingest = device_by_sim, device, ingest
        self.limit = PerNumberLimit(per_hour=per_number_per_hour)
        self.root, self.clock = root, clock
        self.stale_past_ms, self.stale_future_ms = stale_past_ms, stale_future_ms

    def handle(self, number: str, text: str) -> Verdict:
        metrics.sms_received.inc()
        now = self.clock()
        sender = e164(number) or number.strip()[:20]
        if not self.limit.allow(sender, now):
            return self._refuse("rate", sender, None)
        claimed = sms_format.sms_device(text) if len(text) <= MAX_TEXT else None
        if claimed is None:
            return self._refuse("format", sender, None)
        device = self.device_by_sim(sender) if e164(number) else None
        if device is None:
            return self._refuse("unknown_number", sender, claimed)
        if device.id != claimed:
            return self._refuse("number_mismatch" if self.device(claimed) else "unknown_device", sender, claimed)
        try:
            fields = sms_format.parse_alert(text, device.secret)
        except sms_format.SmsError as exc:
            return self._refuse(exc.reason, sender, claimed)
        # The alert in its MQTT form goes through the checks every alert gets (suspended,
        # schema, stale), so the rules live in one place.
        payload = protocol.sign(protocol.encode(fields), device.secret)
        result = check_alert(protocol.alert_topic(device.id, self.root), payload, root=self.root,
                             max_payload=protocol.MAX_PAYLOAD, device=lambda d: device if d == device.id else None,
                             now_ms=now, stale_past_ms=self.stale_past_ms, stale_future_ms=self.stale_future_ms)
        if isinstance(result, Rejection):
            return self._refuse(result.reason, sender, claimed)
        # The stored body is that MQTT form (not the SMS text), so a later copy of another path
        # is judged against its press time like any retransmission (store: id_reuse).
        out = self.ingest(result, path=SMS)
        inc = out.incident
        reply = sms_format.ack_text(boot=result.boot, seq=result.seq, stage=out.stage, reason=out.reason,
                                    now_s=self.clock() // 1000, secret=device.secret)
        if out.duplicate and not out.new_path:
            # The same SMS again: no second delivery, but an answer. A button whose ack SMS was
            # lost sends its SMS again and must learn the stage; only the registered SIM gets it,
            # at most `per_number_per_hour` times, so a captured SMS replayed costs one reply each.
            verdict = self._refuse("replay", sender, claimed)
            return Verdict(reason=verdict.reason, reply=reply, incident=inc.id if inc else None, stage=out.stage)
        metrics.sms_replies.labels(out.stage).inc()
        log.info("SMS alert %s from %s: %s%s", result.id, masked(sender), out.stage,
                 f" (incident {inc.id})" if inc else "",
                 extra={"event": "sms_alert", "dev": device.id, "alert_id": result.id, "stage": out.stage})
        return Verdict(reply=reply, incident=inc.id if inc else None, stage=out.stage)

    def _refuse(self, reason: str, sender: str, dev: str | None) -> Verdict:
        metrics.sms_rejected.labels(reason).inc()
        log.warning("refused SMS: %s from %s (claims %s)", reason, masked(sender), dev or "-",
                    extra={"event": "sms_rejected", "reason": reason, "dev": dev})
        return Verdict(reason=reason)


def request_body(raw: bytes) -> tuple[str, str]:
    """(number, text) of the hook's request, or ValueError."""
    body = json.loads(raw)
    if not isinstance(body, dict):
        raise ValueError("a JSON object {\"from\": ..., \"text\": ...}")
    number, text = body.get("from"), body.get("text")
    if not isinstance(number, str) or not isinstance(text, str):
        raise ValueError("from and text: strings")
    return number, text
