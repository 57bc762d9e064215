"""Wire-level helpers shared by the HubSpot sandbox modules: timestamps and HubSpot's error bodies.

HubSpot writes every timestamp as ISO-8601 UTC with milliseconds and a ``Z`` (``2024-05-01T12:00:00.123Z``)
and accepts epoch milliseconds or ISO-8601 in search filters; the sandbox keeps milliseconds internally
and converts at the edge, so comparisons are integer comparisons.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def to_ms(value: datetime) -> int:
    """Epoch milliseconds of an aware datetime (naive values are taken as UTC)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return (value - _EPOCH) // timedelta(milliseconds=1)


_DAY_MS = 86_400_000
# Datasets hold millions of timestamps: format and parse HubSpot's one fixed layout from tables.
_CLOCK = tuple(f"{h:02d}:{m:02d}:{s:02d}." for h in range(24) for m in range(60) for s in range(60))
_MILLIS = tuple(f"{i:03d}Z" for i in range(1000))
_DAY_PREFIX: dict[int, str] = {}
_PREFIX_MINUTE: dict[str, int] = {}  # 'YYYY-MM-DDTHH:MM' -> epoch ms


def iso_ms(ms: int) -> str:
    """HubSpot's timestamp format (``2024-05-01T12:00:00.123Z``) for epoch milliseconds."""
    day, rest = divmod(ms, _DAY_MS)
    prefix = _DAY_PREFIX.get(day)
    if prefix is None:
        prefix = _DAY_PREFIX[day] = (_EPOCH + timedelta(days=day)).strftime("%Y-%m-%dT")
    seconds, millis = divmod(rest, 1000)
    return prefix + _CLOCK[seconds] + _MILLIS[millis]


def _fast_parse(text: str) -> int | None:
    """Epoch ms of exactly ``YYYY-MM-DDTHH:MM:SS.mmmZ``, or None for any other layout."""
    minute = _PREFIX_MINUTE.get(text[:16])
    try:
        if minute is None:
            day = (datetime.fromisoformat(text[:10]).replace(tzinfo=UTC) - _EPOCH).days
            minute = _PREFIX_MINUTE[text[:16]] = (
                day * 1440 + int(text[11:13]) * 60 + int(text[14:16])
            ) * 60_000
        return minute + int(text[17:19]) * 1000 + int(text[20:23])
    except ValueError:
        return None


def parse_time(value: object) -> int | None:
    """Epoch milliseconds from what HubSpot accepts on the wire: epoch-ms (int or digits) or ISO-8601.

    Returns ``None`` when the value is not a timestamp at all.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str) or not value:
        return None
    if len(value) == 24 and value[10] == "T" and value[23] == "Z" and value[19] == ".":
        fast = _fast_parse(value)
        if fast is not None:
            return fast
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    return to_ms(parsed)


def correlation_id() -> str:
    return str(uuid.uuid4())


class HubSpotError(Exception):
    """A whole-request error, rendered as HubSpot's top-level error body with ``status``."""

    def __init__(
        self,
        status: int,
        category: str | None,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.category = category
        self.message = message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": "error", "message": self.message, "correlationId": correlation_id()}
        if self.category is not None:  # 429 bodies carry errorType/policyName instead of a category
            body["category"] = self.category
        body.update(self.extra)
        return body


def validation_error(message: str, **extra: Any) -> HubSpotError:
    return HubSpotError(400, "VALIDATION_ERROR", message, **extra)


def not_found(message: str = "resource not found") -> HubSpotError:
    return HubSpotError(404, "OBJECT_NOT_FOUND", message)


def standard_error(
    category: str, message: str, context: dict[str, list[str]], *, sub_category: str | None = None
) -> dict[str, Any]:
    """One entry of a batch response's ``errors`` list (the SDK's ``StandardError``)."""
    error: dict[str, Any] = {
        "status": "error",
        "category": category,
        "message": message,
        "context": context,
        "errors": [],
        "links": {},
    }
    if sub_category is not None:
        error["subCategory"] = sub_category
    return error
