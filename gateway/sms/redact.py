"""How the SMS path's logs show a phone number."""
from __future__ import annotations


def masked(number: str) -> str:
    """Enough to tell senders apart, not enough to call them."""
    return f"…{number[-4:]}" if len(number) > 4 else "…"
