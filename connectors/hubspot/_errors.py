"""How HubSpot's answers map onto the contract's errors, and what its rate-limit headers say.

``classify`` is handed to :meth:`connectors.http.HttpLayer.request`: it accepts 2xx (207 included, whose
per-record errors the write module attributes) and raises the error that tells the framework what to do
next. HubSpot's error body is ``{status, message, correlationId, category, subCategory?, errors?,
context?, policyName?}``, every field optional, and proxies in front of it may answer with HTML.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from connectors.base import FixConfiguration, GiveUp, QuotaExhausted, RetryLater
from connectors.http import RateObservation, parse_retry_after

NAME = "hubspot"

# Waits by policy when neither Retry-After nor the interval header says better.
_POLICY_WAIT = {"TEN_SECONDLY_ROLLING": 10.0, "SECONDLY": 1.0}
_TRANSIENT_STATUS = frozenset({423, 477, 500, 502, 503, 504})

# Per-record categories inside a 207 that are worth sending again; anything else is the record's fault.
_TRANSIENT_CATEGORIES = frozenset(
    {"RATE_LIMITS", "LOCKED", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT", "CONCURRENT_MODIFICATION"}
)


def error_body(response: httpx.Response) -> dict[str, Any]:
    """The JSON error object, or ``{}`` when the body is empty or not a JSON object."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def describe(error: Mapping[str, Any], fallback: str = "no message") -> str:
    """``CATEGORY: message (detail; detail)`` from a top-level or per-record HubSpot error."""
    category = error.get("category")
    sub = error.get("subCategory")
    message = str(error.get("message") or fallback)
    details = [
        str(item.get("message"))
        for item in error.get("errors") or ()
        if isinstance(item, Mapping) and item.get("message") and item.get("message") != message
    ]
    head = f"{category}{'/' + str(sub) if sub else ''}: " if category else ""
    tail = f" ({'; '.join(details)})" if details else ""
    return f"{head}{message}{tail}"


def is_transient_record_error(error: Mapping[str, Any]) -> bool:
    """Whether one 207 error is worth retrying (lock, throttle, server fault) rather than a data error."""
    if str(error.get("category") or "").upper() in _TRANSIENT_CATEGORIES:
        return True
    try:
        status = int(str(error.get("status")))
    except ValueError:
        return False  # per-record errors usually say "error" here
    return status == 429 or status in _TRANSIENT_STATUS or status >= 500


def seconds_until_reset(now: datetime, zone: str) -> float:
    """Seconds from ``now`` to the next midnight in ``zone``: when HubSpot's daily quota comes back."""
    local = now.astimezone(ZoneInfo(zone))
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max((midnight - local).total_seconds(), 0.0)


def _header_float(response: httpx.Response, name: str) -> float | None:
    try:
        return float(response.headers[name])
    except (KeyError, ValueError):
        return None


class Classifier:
    """``classify`` for one connector: knows the reset zone, the clock, and the secret to scrub."""

    def __init__(self, *, secret: str, reset_zone: str, now: Callable[[], datetime]) -> None:
        self._secret = secret
        self._zone = reset_zone
        self._now = now

    def _scrub(self, text: str) -> str:
        # HubSpot does not echo tokens, but a proxy or a future message might; a secret never leaves here.
        return text.replace(self._secret, "***") if self._secret else text

    def __call__(self, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        body = error_body(response)
        message = self._scrub(describe(body, fallback=response.reason_phrase or f"HTTP {status}"))
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._now())
        if status in (401, 403):
            hint = "check the token" if status == 401 else "grant the missing scope to the private app"
            raise FixConfiguration(f"{message} — {hint}", connector=NAME, status=status)
        if status == 429:
            self._rate_limited(response, body, message, retry_after)
        if status in _TRANSIENT_STATUS or status >= 500:
            raise RetryLater(message, connector=NAME, status=status, retry_after=retry_after)
        raise GiveUp(message, connector=NAME, status=status)

    def _rate_limited(
        self, response: httpx.Response, body: Mapping[str, Any], message: str, retry_after: float | None
    ) -> None:
        policy = str(body.get("policyName") or "").upper()
        if policy == "DAILY":
            wait = seconds_until_reset(self._now(), self._zone)
            raise QuotaExhausted(message, connector=NAME, status=429, retry_after=wait, rate_limited=True)
        if retry_after is None:
            interval_ms = _header_float(response, "X-HubSpot-RateLimit-Interval-Milliseconds")
            retry_after = interval_ms / 1000 if interval_ms else _POLICY_WAIT.get(policy, 10.0)
        raise RetryLater(message, connector=NAME, status=429, retry_after=retry_after, rate_limited=True)


def observe(response: httpx.Response) -> RateObservation | None:
    """The burst budget left, from ``X-HubSpot-RateLimit-*`` (search responses carry none: ``None``)."""
    remaining = _header_float(response, "X-HubSpot-RateLimit-Remaining")
    if remaining is None:
        return None
    limit = _header_float(response, "X-HubSpot-RateLimit-Max")
    interval_ms = _header_float(response, "X-HubSpot-RateLimit-Interval-Milliseconds")
    return RateObservation(
        remaining=int(remaining),
        limit=int(limit) if limit is not None else None,
        window_seconds=interval_ms / 1000 if interval_ms is not None else None,
    )


__all__ = [
    "Classifier",
    "describe",
    "error_body",
    "is_transient_record_error",
    "observe",
    "seconds_until_reset",
]
