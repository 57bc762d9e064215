"""How a conformance check reports: a failure that says what to fix, or "does not apply here"."""

from __future__ import annotations

from collections.abc import Iterable


class ConformanceFailure(AssertionError):
    """A check found a mistake. The message names what was seen and what to change in the connector."""


class NotApplicable(Exception):
    """The check does not apply to this connector (a destination without idempotent operations, say)."""


def redact(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every secret replaced, so that a failure message never leaks what it complains about."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def keys_text(keys: Iterable[str], limit: int = 5) -> str:
    """A short list of keys for a message: ``'7', '8', '9'`` or ``'1', '2', … (12 in all)``."""
    items = list(keys)
    shown = ", ".join(repr(k) for k in items[:limit])
    return shown if len(items) <= limit else f"{shown}, … ({len(items)} in all)"


__all__ = ["ConformanceFailure", "NotApplicable", "keys_text", "redact"]
