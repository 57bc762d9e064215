"""How Google Ads answers map onto the contract's errors, and how partial failures name their operations.

Errors come as a ``google.rpc.Status`` envelope (reference/apis.md §5.5)::

    {"error": {"code": 400, "message": "…", "status": "INVALID_ARGUMENT",
               "details": [{"@type": "type.googleapis.com/google.ads.googleads.v21.errors.GoogleAdsFailure",
                            "errors": [{"errorCode": {"offlineUserDataJobError": "INVALID_SHA256_FORMAT"},
                                        "message": "…", "location": {"fieldPathElements": [
                                            {"fieldName": "operations", "index": 3}, …]},
                                        "details": {"quotaErrorDetails": {"retryDelay": "30s", …}}}],
                            "requestId": "…"}]}}

:class:`Classifier` keys on the ``errorCode`` entries of the GoogleAdsFailure and falls back on the
RPC status and then the HTTP status (proto JSON parse errors carry no GoogleAdsFailure; Google's front end
answers some failures with an HTML page). A ``partialFailureError`` in a 200 answer has the same
``details``; :func:`partial_failures` turns it into per-operation reasons.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.base import FixConfiguration, GiveUp, QuotaExhausted, RetryLater
from connectors.http import Classify, Scrubber, parse_retry_after

NAME = "google_ads"
DEFAULT_THROTTLE_WAIT = 30.0  # seconds, when Google throttles without a retryDelay

TOKEN_ERRORS = frozenset({"OAUTH_TOKEN_INVALID", "OAUTH_TOKEN_EXPIRED", "OAUTH_TOKEN_HEADER_INVALID"})
LIST_ERRORS = frozenset({"INVALID_USER_LIST_ID", "INVALID_USER_LIST_TYPE", "INCOMPATIBLE_UPLOAD_KEY_TYPE",
                         "REMOVE_NOT_SUPPORTED", "REMOVE_ALL_NOT_SUPPORTED"})
TERMS_ERRORS = frozenset({"CUSTOMER_NOT_ACCEPTED_CUSTOMER_DATA_TERMS"})
# Error categories whose operations may succeed when simply sent again.
TRANSIENT_CATEGORIES = frozenset({"internalError", "quotaError"})
TRANSIENT_CODES = frozenset({"CONCURRENT_MODIFICATION", "TRANSIENT_ERROR", "INTERNAL_ERROR"})
TRANSIENT_RPC = frozenset({"INTERNAL", "UNAVAILABLE", "DEADLINE_EXCEEDED", "ABORTED"})
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)s\s*$")


class TokenRejected(FixConfiguration):
    """Google refused the OAuth access token (expired, revoked, malformed): refresh it and try once more."""


class ListUnavailable(FixConfiguration):
    """Google refuses uploads to one user list (unknown, not a CRM list, other upload key type).

    Its records cannot be written until a person acts on the list; other lists are unaffected, so the
    writer turns this into per-record rejections instead of stopping the destination.
    """


@dataclass(frozen=True, slots=True)
class AdsError:
    """One GoogleAdsError: its category (``quotaError``…), code (``RESOURCE_EXHAUSTED``…) and where."""

    category: str
    code: str
    message: str
    operation: int | None = None  # index of the failing operation, for partial failures
    retry_delay: float | None = None

    @property
    def transient(self) -> bool:
        return self.category in TRANSIENT_CATEGORIES or self.code in TRANSIENT_CODES

    def describe(self) -> str:
        return f"{self.category} {self.code}: {self.message}" if self.message else f"{self.category} {self.code}"


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` (empty, HTML, a list…)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def duration_seconds(value: Any) -> float | None:
    """A protobuf Duration in JSON ("30s", "1.5s") as seconds."""
    found = _DURATION.match(value) if isinstance(value, str) else None
    return float(found.group(1)) if found else None


def ads_errors(status: Mapping[str, Any]) -> list[AdsError]:
    """The GoogleAdsErrors inside a google.rpc.Status (an ``error`` or a ``partialFailureError``)."""
    found: list[AdsError] = []
    details = status.get("details")
    for detail in details if isinstance(details, list) else ():
        if not isinstance(detail, Mapping) or not str(detail.get("@type", "")).endswith("GoogleAdsFailure"):
            continue
        errors = detail.get("errors")
        for error in errors if isinstance(errors, list) else ():
            if not isinstance(error, Mapping):
                continue
            code = error.get("errorCode")
            category, value = next(iter(code.items())) if isinstance(code, Mapping) and code else ("unknown", "")
            found.append(AdsError(str(category), str(value), str(error.get("message") or ""),
                                  _operation_index(error), _retry_delay(error)))
    return found


def _operation_index(error: Mapping[str, Any]) -> int | None:
    location = error.get("location")
    elements = location.get("fieldPathElements") if isinstance(location, Mapping) else None
    if not isinstance(elements, list) or not elements or not isinstance(elements[0], Mapping):
        return None
    first = elements[0]
    index = first.get("index")
    if first.get("fieldName") != "operations" or isinstance(index, bool):
        return None
    if isinstance(index, int):
        return index
    return int(index) if isinstance(index, str) and index.isdigit() else None


def _retry_delay(error: Mapping[str, Any]) -> float | None:
    details = error.get("details")
    quota = details.get("quotaErrorDetails") if isinstance(details, Mapping) else None
    return duration_seconds(quota.get("retryDelay")) if isinstance(quota, Mapping) else None


def _rpc_retry_delay(status: Mapping[str, Any]) -> float | None:
    details = status.get("details")
    for detail in details if isinstance(details, list) else ():
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return duration_seconds(detail.get("retryDelay"))
    return None


def partial_failures(body: Mapping[str, Any]) -> dict[int, list[AdsError]]:
    """Operation index → its errors, from an answer's ``partialFailureError`` (empty when there is none)."""
    status = body.get("partialFailureError")
    by_operation: dict[int, list[AdsError]] = {}
    if isinstance(status, Mapping):
        for error in ads_errors(status):
            if error.operation is not None:
                by_operation.setdefault(error.operation, []).append(error)
    return by_operation


class Classifier:
    """``classify`` for one connector: knows the secrets to scrub and how long a wait may be held inline."""

    def __init__(self, *, secrets: Iterable[str], max_inline_wait: float) -> None:
        self.scrub = Scrubber(secrets)
        self.max_inline_wait = max_inline_wait

    def __call__(self, response: httpx.Response) -> None:
        status = response.status_code
        body = json_object(response)
        error = body.get("error") if body is not None else None
        if isinstance(error, Mapping):
            raise self.error_for(error, response)
        if 200 <= status < 300:
            if body is None:
                raise RetryLater(f"Google Ads answered HTTP {status} with a body that is not a JSON object",
                                 connector=NAME, status=status)
            return
        raise self._without_envelope(response)

    def error_for(self, error: Mapping[str, Any], response: httpx.Response) -> Exception:
        """The contract error for one google.rpc.Status."""
        status = response.status_code
        rpc = str(error.get("status") or "")
        found = ads_errors(error)
        text = "; ".join(e.describe() for e in found) or str(error.get("message") or "no message")
        message = self.scrub(f"Google Ads {rpc or status}: {text}")
        codes = {e.code for e in found}
        if status == 429 or rpc == "RESOURCE_EXHAUSTED" or any(e.category == "quotaError" for e in found):
            delays = [e.retry_delay for e in found if e.retry_delay is not None]
            return self._throttled(message, response, max(delays) if delays else _rpc_retry_delay(error))
        if codes & TOKEN_ERRORS:
            return TokenRejected(message, connector=NAME, status=status)
        if codes & LIST_ERRORS:
            return ListUnavailable(message, connector=NAME, status=status)
        if codes & TERMS_ERRORS:
            return FixConfiguration(f"{message} — accept the Customer Match data terms in the Google Ads UI",
                                    connector=NAME, status=status)
        if status in (401, 403) or rpc in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
            hint = (" — check the developer token, the OAuth client and refresh token, and login_customer_id "
                    "(the manager account the credentials reach this customer through)")
            return FixConfiguration(message + hint, connector=NAME, status=status)
        if status >= 500 or rpc in TRANSIENT_RPC or (found and all(e.transient for e in found)):
            return RetryLater(message, connector=NAME, status=status)
        return GiveUp(message, connector=NAME, status=status)

    def _throttled(self, message: str, response: httpx.Response, delay: float | None) -> RetryLater:
        wait = delay
        if wait is None:
            wait = parse_retry_after(response.headers.get("Retry-After"), cap=float("inf"))
        if wait is None:
            wait = DEFAULT_THROTTLE_WAIT
        if wait > self.max_inline_wait:
            return QuotaExhausted(f"{message} — Google asks to retry in {wait / 60:.0f} min", connector=NAME,
                                  status=response.status_code, retry_after=wait, rate_limited=True)
        return RetryLater(message, connector=NAME, status=response.status_code, retry_after=wait, rate_limited=True)

    def _without_envelope(self, response: httpx.Response) -> Exception:
        status = response.status_code
        # The body (an HTML page, typically) is not quoted: it says nothing useful.
        message = f"HTTP {status} {response.reason_phrase} without a google.rpc.Status body"
        if status in (401, 403):
            return FixConfiguration(f"{message} — check the credentials", connector=NAME, status=status)
        if status == 429:
            return self._throttled(message, response, None)
        if status >= 500 or status == 408:
            return RetryLater(message, connector=NAME, status=status)
        return GiveUp(message, connector=NAME, status=status)


def classify_token(scrub: Classifier) -> Classify:
    """``classify`` for Google's OAuth token endpoint (``{"error": "invalid_grant", "error_description"}``)."""

    def classify(response: httpx.Response) -> None:
        status = response.status_code
        body = json_object(response) or {}
        if 200 <= status < 300 and isinstance(body.get("access_token"), str):
            return
        code = body.get("error")
        detail = scrub.scrub(f"{code}: {body.get('error_description') or ''}" if isinstance(code, str) else "")
        message = f"OAuth token refresh failed (HTTP {status}) {detail}".rstrip()
        if status == 429 or status >= 500:
            raise RetryLater(message, connector=NAME, status=status, rate_limited=status == 429)
        if code in ("invalid_grant", "invalid_client", "unauthorized_client") or status in (400, 401, 403):
            raise FixConfiguration(f"{message} — issue a new refresh token or check client_id/client_secret",
                                   connector=NAME, status=status)
        raise RetryLater(message, connector=NAME, status=status)

    return classify


__all__ = [
    "NAME",
    "AdsError",
    "Classifier",
    "ListUnavailable",
    "TokenRejected",
    "ads_errors",
    "classify_token",
    "duration_seconds",
    "json_object",
    "partial_failures",
]
