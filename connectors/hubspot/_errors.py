"""How HubSpot's answers map onto the contract's errors, and what its rate-limit headers say.

``classify`` is handed to :meth:`connectors.http.HttpLayer.request`: it accepts 2xx (207 included, whose
per-record errors the write module attributes) and raises the error that tells the framework what to do
next. HubSpot's error body is ``{status, message, correlationId, category, subCategory?, errors?,
context?, policyName?}``, every field optional, and proxies in front of it may answer with HTML.

What it raises, by status:

======================  =====================================================================
401, 403                :class:`FixConfiguration` (token missing, invalid or expired; scope missing)
429 ``DAILY``           :class:`QuotaExhausted` until ``Retry-After`` or midnight in the portal's zone
429 other policies      :class:`RetryLater` (rate limited) after ``Retry-After``, else when the rate
                        limiter, corrected by the answer's headers, has room again
423, 477, 5xx           :class:`RetryLater` (after ``Retry-After`` when given)
other 4xx               :class:`GiveUp` (400 ``VALIDATION_ERROR`` on a batch: the framework bisects it)
======================  =====================================================================

A 2xx whose body is not JSON is not a success either: :func:`read_json` raises :class:`RetryLater`, or
:class:`OutcomeUnknown` for a write that is not idempotent.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from connectors.base import FixConfiguration, GiveUp, OutcomeUnknown, QuotaExhausted, RetryLater
from connectors.http import RateObservation, parse_retry_after

NAME = "hubspot"

_TRANSIENT_STATUS = frozenset({423, 477, 500, 502, 503, 504})
_DAY_SECONDS = 86_400.0

# Per-record categories inside a 207 that are worth sending again; anything else is the record's fault.
_TRANSIENT_CATEGORIES = frozenset(
    {"RATE_LIMITS", "LOCKED", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT", "CONCURRENT_MODIFICATION"}
)


def read_json(response: httpx.Response, *, idempotent: bool = True) -> Any:
    """The body of an accepted answer. A 2xx that is not JSON (a proxy's page, a cut-off body) tells nothing
    about what happened: try again, or, for a write that is not idempotent, look the effect up first."""
    if not response.content:
        return {}
    try:
        return orjson.loads(response.content)  # the bulk path: pages of a thousand events
    except ValueError:
        message = f"HTTP {response.status_code} with a body that is not JSON"
        if idempotent:
            raise RetryLater(message, connector=NAME, status=response.status_code) from None
        raise OutcomeUnknown(message, connector=NAME, status=response.status_code) from None


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
            now = self._now()
            # HubSpot does not document a Retry-After here; when one comes, it knows the reset better (and
            # it may be hours away: not clamped like a burst wait).
            told = parse_retry_after(response.headers.get("Retry-After"), now=now, cap=_DAY_SECONDS)
            wait = told if told is not None else seconds_until_reset(now, self._zone)
            raise QuotaExhausted(message, connector=NAME, status=429, retry_after=wait, rate_limited=True,
                                 resets_at=now + timedelta(seconds=wait))
        # Without Retry-After (HubSpot documents none) the wait is the rate limiter's: it has read the
        # answer's headers and counts the refused window (burst or search) as full from now.
        raise RetryLater(message, connector=NAME, status=429, retry_after=retry_after, rate_limited=True)


def observe(response: httpx.Response) -> RateObservation | None:
    """The burst window and the daily quota left, from ``X-HubSpot-RateLimit-*`` (search answers carry
    none: ``None``)."""
    remaining = _header_float(response, "X-HubSpot-RateLimit-Remaining")
    daily_remaining = _header_float(response, "X-HubSpot-RateLimit-Daily-Remaining")
    if remaining is None and daily_remaining is None:
        return None
    limit = _header_float(response, "X-HubSpot-RateLimit-Max")
    interval_ms = _header_float(response, "X-HubSpot-RateLimit-Interval-Milliseconds")
    daily = _header_float(response, "X-HubSpot-RateLimit-Daily")
    return RateObservation(
        remaining=int(remaining) if remaining is not None else None,
        limit=int(limit) if limit is not None else None,
        window_seconds=interval_ms / 1000 if interval_ms is not None else None,
        daily_remaining=int(daily_remaining) if daily_remaining is not None else None,
        daily_limit=int(daily) if daily is not None else None,
    )


__all__ = [
    "Classifier",
    "describe",
    "error_body",
    "is_transient_record_error",
    "observe",
    "read_json",
    "seconds_until_reset",
]
