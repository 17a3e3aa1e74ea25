"""The path rule (docs/protocol.md "Paths") and the SIM number form."""
from __future__ import annotations

import pytest

from gateway.domain.paths import PATHS, delivery_path, e164


@pytest.mark.parametrize(("sms", "via", "backup", "path"), [
    (False, None, False, "wifi"),
    (False, "wifi", False, "wifi"),
    (False, None, True, "backup_broker"),
    (False, "wifi", True, "backup_broker"),
    (False, "cellular", False, "cellular"),
    (False, "cellular", True, "cellular"),
    (True, None, False, "sms"),
    (True, "cellular", True, "sms"),  # an SMS is an SMS whatever a body might claim
])
def test_delivery_path(sms, via, backup, path):
    assert delivery_path(sms=sms, via=via, backup_broker=backup) == path
    assert path in PATHS


@pytest.mark.parametrize(("raw", "norm"), [
    ("+6281234567890", "+6281234567890"),
    (" +62 812-3456-7890 ", "+6281234567890"),
    ("081234567890", None),       # national form: not matched against a sender's E.164
    ("+0812345678", None),
    ("+62", None),
    ("+1234567890123456", None),  # 16 digits
    ("+62812abc", None),
    ("", None),
])
def test_e164(raw, norm):
    assert e164(raw) == norm
