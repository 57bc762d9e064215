"""How Salesforce's answers map onto the contract's errors, and what ``Sforce-Limit-Info`` says.

Salesforce's whole-request errors are a JSON array ``[{"message", "errorCode", "fields"?}]`` (apis.md
§2.2); per-record errors in a collections answer carry ``statusCode`` instead. :class:`Classifier` is the
``classify`` handed to :meth:`connectors.http.HttpLayer.request`:

=================================================  ==========================================================
401 ``INVALID_SESSION_ID``                         :class:`SessionExpired` — the caller refreshes the token
                                                   once and resends; a second one is :class:`FixConfiguration`
403 ``REQUEST_LIMIT_EXCEEDED`` (TotalRequests)     :class:`QuotaExhausted`: the daily limit (rolling 24 h)
403 ``REQUEST_LIMIT_EXCEEDED`` (concurrency)       :class:`RetryLater`, rate limited
other 401/403, 404                                 :class:`FixConfiguration` (permissions, API version)
400 ``INVALID_QUERY_LOCATOR``                      :class:`LocatorExpired`: the puller re-queries
400 ``INVALID_FIELD``/``INVALID_TYPE``/…QUERY      :class:`FixConfiguration`: a mapped field or object the org
                                                   does not have
400 ``QUERY_TIMEOUT``, 408, 429, 5xx               :class:`RetryLater`
other 4xx                                          :class:`GiveUp` (a malformed collection: the framework
                                                   bisects the batch)
=================================================  ==========================================================

Messages never carry a secret: the client secret, refresh token and access tokens are scrubbed.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import httpx
import orjson

from connectors.base import FixConfiguration, GiveUp, OutcomeUnknown, QuotaExhausted, RetryLater
from connectors.http import RateObservation, Scrubber, parse_retry_after

NAME = "salesforce"

_USAGE = re.compile(r"(?:^|[;,\s])api-usage=(\d+)/(\d+)")
_CONFIG_CODES = frozenset({"INVALID_FIELD", "INVALID_TYPE", "MALFORMED_QUERY", "INVALID_FIELD_FOR_INSERT_UPDATE",
                           "API_DISABLED_FOR_ORG", "API_CURRENTLY_DISABLED", "INSUFFICIENT_ACCESS",
                           "INSUFFICIENT_ACCESS_OR_READONLY", "NOT_FOUND", "INVALID_SESSION_ID"})
# Per-record status codes worth sending again: locks, capacity, and records rolled back for another's fault.
TRANSIENT_RECORD_CODES = frozenset({"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "ALL_OR_NONE_OPERATION_ROLLED_BACK",
                                    "REQUEST_RUNNING_TOO_LONG", "UNKNOWN_EXCEPTION", "QUERY_TIMEOUT",
                                    "REQUEST_LIMIT_EXCEEDED"})


class SessionExpired(FixConfiguration):
    """401 ``INVALID_SESSION_ID``: refresh the access token and resend once (not retried by the HTTP layer)."""


class LocatorExpired(GiveUp):
    """400 ``INVALID_QUERY_LOCATOR``: the query cursor is gone; query again from the last cursor."""


def read_json(response: httpx.Response, *, idempotent: bool = True) -> Any:
    """The body of an accepted answer; a 2xx that is not JSON says nothing about what happened."""
    if not response.content:
        return None
    try:
        return orjson.loads(response.content)
    except ValueError:
        message = f"HTTP {response.status_code} with a body that is not JSON"
        if idempotent:
            raise RetryLater(message, connector=NAME, status=response.status_code) from None
        raise OutcomeUnknown(message, connector=NAME, status=response.status_code) from None


def error_entries(response: httpx.Response) -> list[Mapping[str, Any]]:
    """The entries of Salesforce's error array (an object body is taken as one entry)."""
    try:
        body = orjson.loads(response.content) if response.content else None
    except ValueError:
        return []
    if isinstance(body, Mapping):
        return [body]
    return [entry for entry in body if isinstance(entry, Mapping)] if isinstance(body, list) else []


def describe(entry: Mapping[str, Any], fallback: str = "no message") -> str:
    """``CODE: message (fields: A, B)`` from a top-level (``errorCode``) or per-record (``statusCode``) error."""
    code = entry.get("errorCode") or entry.get("statusCode") or entry.get("error")
    message = str(entry.get("message") or entry.get("error_description") or fallback)
    names = entry.get("fields")
    tail = f" (fields: {', '.join(str(n) for n in names)})" if isinstance(names, list) and names else ""
    return f"{code}: {message}{tail}" if code else f"{message}{tail}"


def code_of(entry: Mapping[str, Any]) -> str:
    return str(entry.get("errorCode") or entry.get("statusCode") or "").upper()


class Classifier:
    """``classify`` for one connector: knows the clock, how long a spent quota lasts, what to scrub."""

    def __init__(self, *, scrub: Scrubber, quota_retry_seconds: float, now: Callable[[], datetime]) -> None:
        self._scrub = scrub
        self._quota_wait = quota_retry_seconds
        self._now = now

    def __call__(self, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        entries = error_entries(response)
        first = entries[0] if entries else {}
        code = code_of(first)
        fallback = response.reason_phrase or f"HTTP {status}"
        message = self._scrub("; ".join(describe(e, fallback) for e in entries) or fallback)
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._now())
        if status == 401 and code in ("INVALID_SESSION_ID", ""):
            raise SessionExpired(message, connector=NAME, status=status)
        if code == "REQUEST_LIMIT_EXCEEDED":
            self._limit_exceeded(message, str(first.get("message") or ""), status, retry_after)
        if code == "INVALID_QUERY_LOCATOR":
            raise LocatorExpired(message, connector=NAME, status=status)
        if status in (408, 429) or status >= 500 or code in ("QUERY_TIMEOUT", "SERVER_UNAVAILABLE"):
            raise RetryLater(message, connector=NAME, status=status, retry_after=retry_after)
        if status in (401, 403, 404) or code in _CONFIG_CODES:
            raise FixConfiguration(f"{message} — check the connected app's access and the field map",
                                   connector=NAME, status=status)
        raise GiveUp(message, connector=NAME, status=status)

    def _limit_exceeded(self, message: str, vendor: str, status: int, retry_after: float | None) -> None:
        if "concurrent" in vendor.lower():
            # Too many long-running requests at once: a short wait, not the end of the day.
            raise RetryLater(message, connector=NAME, status=status, retry_after=retry_after, rate_limited=True)
        # The daily limit is a rolling 24 hours and Salesforce says nothing about when room comes back.
        wait = retry_after if retry_after is not None else self._quota_wait
        raise QuotaExhausted(message, connector=NAME, status=status, retry_after=wait, rate_limited=True,
                             resets_at=self._now() + timedelta(seconds=wait))


def observe(response: httpx.Response) -> RateObservation | None:
    """The daily request budget from ``Sforce-Limit-Info: api-usage=<used>/<max>``."""
    found = _USAGE.search(response.headers.get("Sforce-Limit-Info", ""))
    if found is None:
        return None
    used, most = int(found.group(1)), int(found.group(2))
    return RateObservation(daily_remaining=max(most - used, 0), daily_limit=most)


def oauth_classify(scrub: Scrubber) -> Callable[[httpx.Response], None]:
    """``classify`` for the token endpoint: OAuth errors (``invalid_grant``, ``invalid_client``…) need a person."""

    def classify(response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        entries = error_entries(response)
        message = scrub(describe(entries[0]) if entries else response.reason_phrase or f"HTTP {status}")
        if status in (408, 429) or status >= 500:
            raise RetryLater(f"token endpoint: {message}", connector=NAME, status=status)
        raise FixConfiguration(f"token endpoint refused the refresh: {message} — check client_id, client_secret "
                               "and refresh_token (and login_url)", connector=NAME, status=status)

    return classify


__all__ = [
    "NAME",
    "TRANSIENT_RECORD_CODES",
    "Classifier",
    "LocatorExpired",
    "Scrubber",
    "SessionExpired",
    "code_of",
    "describe",
    "error_entries",
    "oauth_classify",
    "observe",
    "read_json",
]
