"""How Marketo's answers map onto the contract's errors (reference/apis.md §3.2).

Marketo signals almost every failure inside an HTTP 200: ``{"success": false, "errors": [{"code": "606",
"message": …}]}``; :class:`Classifier` reads that envelope, not the status. HTTP-level answers are few:
413 (body over 1 MB: split the batch), 414 (URL over 8 KB: resend as POST with ``_method=GET``), 401 from
the identity service, and 5xx from the edge.

=====================  ==========================================================================
600, 601, 602          :class:`TokenRejected`: the caller fetches a new token and tries once more
606                    :class:`RetryLater` (rate limited: 100 calls per 20 s per instance)
607                    :class:`QuotaExhausted` until midnight US Central (the daily quota)
615                    :class:`RetryLater` (over 10 calls in flight on the instance)
502, 604, 608, 611,    :class:`RetryLater` (transient on Marketo's side)
713, 719
603, 614, 1006         :class:`FixConfiguration` (API role lacks permission; field not found)
1013                   :class:`ObjectNotFound` (e.g. the static list does not exist)
others                 :class:`GiveUp` with Marketo's code and message
=====================  ==========================================================================
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import orjson

from connectors.base import FixConfiguration, GiveUp, QuotaExhausted, RetryLater
from connectors.http import parse_retry_after

NAME = "marketo"

TOKEN_CODES = frozenset({"600", "601", "602"})
TRANSIENT_CODES = frozenset({"502", "604", "608", "611", "713", "719"})
CONFIG_CODES = frozenset({"603", "614", "1006"})
# Record-level reasons worth sending again: an import or job queue is busy, an object is locked.
TRANSIENT_REASONS = frozenset({"1016", "1019", "1022", "1029"})


class TokenRejected(FixConfiguration):
    """The access token is missing, invalid or expired (600/601/602): fetch a new one and retry once."""


class PayloadTooLarge(GiveUp):
    """HTTP 413: the request body is over Marketo's 1 MB; send the records in smaller requests."""


class UriTooLong(GiveUp):
    """HTTP 414: the URL is over 8 KB; resend as POST with ``_method=GET`` and the query in the body."""


class ObjectNotFound(GiveUp):
    """1013: the object the request names (a static list, say) does not exist."""


def seconds_until_reset(now: datetime, zone: str) -> float:
    """Seconds from ``now`` to the next midnight in ``zone``, when Marketo's daily quota comes back."""
    local = now.astimezone(ZoneInfo(zone))
    midnight = (local + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
    return max((midnight - local).total_seconds(), 0.0)


def envelope(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or None."""
    try:
        body = orjson.loads(response.content)
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def first_error(body: Mapping[str, Any]) -> tuple[str, str]:
    errors = body.get("errors")
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], Mapping) else {}
    return str(first.get("code") or "?"), str(first.get("message") or "no message")


def describe_reasons(reasons: Any) -> tuple[list[str], str]:
    """(codes, text) of a record's ``reasons``: ``1004 Lead not found; 1006 …``."""
    codes: list[str] = []
    parts: list[str] = []
    for item in reasons if isinstance(reasons, list) else ():
        if isinstance(item, Mapping):
            code = str(item.get("code") or "?")
            codes.append(code)
            parts.append(f"{code} {item.get('message') or ''}".strip())
    return codes, "; ".join(parts) or "skipped without a reason"


class Classifier:
    """``classify`` for one connector: knows the secrets to scrub, the clock and the quota's reset zone."""

    def __init__(self, *, secrets: Callable[[], Iterable[str]], reset_zone: str, now: Callable[[], datetime]) -> None:
        self._secrets = secrets
        self._zone = reset_zone
        self._now = now

    def scrub(self, text: str) -> str:
        # Marketo does not echo credentials, but a proxy or a future message might: none leaves here.
        for secret in self._secrets():
            if secret:
                text = text.replace(secret, "***")
        return text

    def __call__(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 413:
            raise PayloadTooLarge("request body over Marketo's 1 MB limit (HTTP 413)", connector=NAME, status=413)
        if status == 414:
            raise UriTooLong("request URL over Marketo's 8 KB limit (HTTP 414)", connector=NAME, status=414)
        if status in (401, 403):
            raise FixConfiguration(f"HTTP {status} — check client_id and client_secret of the custom service",
                                   connector=NAME, status=status)
        # Marketo itself throttles inside HTTP 200 (606); a proxy in front of it may still answer 429/503
        # with a Retry-After, which is then the best wait there is.
        retry_after = parse_retry_after(response.headers.get("Retry-After"), now=self._now())
        if status == 429:
            raise RetryLater("HTTP 429", connector=NAME, status=status, rate_limited=True, retry_after=retry_after)
        if status >= 500 or status == 408:
            raise RetryLater(f"HTTP {status} from Marketo's edge", connector=NAME, status=status,
                             retry_after=retry_after)
        if not 200 <= status < 300:
            raise GiveUp(f"HTTP {status} {response.reason_phrase}", connector=NAME, status=status)
        body = envelope(response)
        if body is None:
            # Every Marketo answer is a JSON object; anything else came from something in between.
            raise RetryLater(f"HTTP {status} with a body that is not a JSON object", connector=NAME, status=status)
        if body.get("success") is False:
            code, message = first_error(body)
            raise self.error_for(code, message)

    def error_for(self, code: str, message: str) -> Exception:
        """The contract error for one response-level Marketo error."""
        text = self.scrub(f"Marketo error {code}: {message}")
        if code in TOKEN_CODES:
            return TokenRejected(text, connector=NAME)
        if code == "606":
            return RetryLater(text, connector=NAME, rate_limited=True)
        if code == "607":
            now = self._now()
            wait = seconds_until_reset(now, self._zone)
            return QuotaExhausted(f"{text} — the daily quota comes back at midnight ({self._zone})",
                                  connector=NAME, retry_after=wait, rate_limited=True,
                                  resets_at=now + timedelta(seconds=wait))
        if code == "615":
            # Other integrations on the instance hold calls open; this one is under its own cap.
            return RetryLater(text, connector=NAME)
        if code in TRANSIENT_CODES:
            return RetryLater(text, connector=NAME)
        if code in CONFIG_CODES:
            hint = ("give the custom service's API role the permission" if code == "603" else
                    "the subscription is not valid for this API" if code == "614" else
                    "check the field mappings against GET /rest/v1/leads/describe.json")
            return FixConfiguration(f"{text} — {hint}", connector=NAME)
        if code == "1013":
            return ObjectNotFound(text, connector=NAME)
        return GiveUp(text, connector=NAME)


def classify_identity(response: httpx.Response) -> None:
    """``classify`` for the identity service: 401 means wrong credentials, not a stale token."""
    status = response.status_code
    if status in (400, 401, 403):
        body = envelope(response) or {}
        detail = str(body.get("error_description") or body.get("error") or f"HTTP {status}")
        raise FixConfiguration(f"identity service refused the credentials: {detail} — check client_id and "
                               "client_secret", connector=NAME, status=status)
    if status >= 500 or status in (408, 429):
        raise RetryLater(f"identity service answered HTTP {status}", connector=NAME, status=status)
    if not 200 <= status < 300:
        raise GiveUp(f"identity service answered HTTP {status}", connector=NAME, status=status)
    body = envelope(response)
    if body is None or not isinstance(body.get("access_token"), str):
        raise RetryLater("identity service answered without an access token", connector=NAME, status=status)


__all__ = [
    "NAME",
    "TRANSIENT_REASONS",
    "Classifier",
    "ObjectNotFound",
    "PayloadTooLarge",
    "TokenRejected",
    "UriTooLong",
    "classify_identity",
    "describe_reasons",
    "envelope",
    "first_error",
    "seconds_until_reset",
]
