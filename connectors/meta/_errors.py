"""How the Graph API's answers map onto the contract's errors, and what its usage headers say.

Graph errors come as ``{"error": {"message", "type", "code", "error_subcode", "error_user_title",
"error_user_msg", "fbtrace_id", "is_transient"?}}`` and the HTTP status says little (throttles arrive as
400 or 403), so :class:`Classifier` keys on ``code`` and ``error_subcode`` (reference/apis.md §4.5) and falls
back on the status only when there is no Graph envelope (an HTML page from Meta's edge, say).

Throttle waits come from ``X-Business-Use-Case-Usage``'s ``estimated_time_to_regain_access`` (minutes);
the same headers feed :func:`make_observe`, which tells the token bucket how much budget is left.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from connectors.base import FixConfiguration, GiveUp, QuotaExhausted, RateLimit, RetryLater
from connectors.http import Observe, RateObservation, Scrubber, parse_retry_after

NAME = "meta"

TOKEN_CODES = frozenset({102, 104, 190})  # session key invalid, token missing, token invalid/expired
RATE_LIMIT_CODES = frozenset({4, 17, 32, 613, *range(80_000, 80_015)})  # app, user, page, custom, BUC
PERMISSION_CODES = frozenset({10, 270, 368, *range(200, 300)})
TRANSIENT_CODES = frozenset({1, 2})  # "unknown error" and "service temporarily unavailable"
FLAGGED_AUDIENCE = 1_713_230  # code 100: the audience is under integrity restrictions (operation_status 471)
NO_SUCH_OBJECT = 33  # code 100: the object does not exist or this token cannot see it
AUDIENCE_UPDATE_FAILED = 2650  # e.g. the audience's data source does not take this kind of upload

DEFAULT_THROTTLE_WAIT = 60.0  # seconds, when Meta throttles without saying for how long


class AudienceUnavailable(FixConfiguration):
    """Meta refuses edits of one audience (flagged, deleted, or of another data source).

    Its rows cannot be written until a person acts on the audience; other audiences are unaffected, so the
    writer turns this into per-record rejections instead of stopping the destination.
    """


def as_int(value: Any) -> int | None:
    """An int from an int or a numeric string (Graph sends counts both ways); else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    return None


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The body as a JSON object, or ``None`` (empty, HTML, a JSON list…)."""
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def describe(error: Mapping[str, Any]) -> str:
    """``Meta error 100/1713230: Invalid parameter — Audience Upload Blocked: … [fbtrace_id …]``."""
    code, sub = error.get("code"), error.get("error_subcode")
    head = f"Meta error {code}{'/' + str(sub) if sub is not None else ''}: " if code is not None else ""
    text = str(error.get("message") or "no message")
    title, user_msg = error.get("error_user_title"), error.get("error_user_msg")
    if title or user_msg:
        text += " — " + ": ".join(str(part) for part in (title, user_msg) if part)
    trace = f" [fbtrace_id {error['fbtrace_id']}]" if error.get("fbtrace_id") else ""
    return head + text + trace


@dataclass(frozen=True, slots=True)
class Usage:
    """What the usage headers report: the highest share of any budget spent, and Meta's wait estimate."""

    percent: float
    regain_seconds: float | None = None


def _header_json(headers: httpx.Headers, name: str) -> Any:
    raw = headers.get(name)
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return None


def _numbers(entry: Mapping[str, Any], names: Iterable[str]) -> list[float]:
    found = []
    for name in names:
        value = entry.get(name)
        if isinstance(value, int | float) and not isinstance(value, bool):
            found.append(float(value))
    return found


def read_usage(headers: httpx.Headers) -> Usage | None:
    """Usage from ``X-Business-Use-Case-Usage`` (custom-audience entries), ``X-App-Usage`` and
    ``X-Ad-Account-Usage``; ``None`` when the answer carries none of them."""
    shares: list[float] = []
    waits: list[float] = []
    seen = False
    buc = _header_json(headers, "X-Business-Use-Case-Usage")
    if isinstance(buc, Mapping):
        for entries in buc.values():
            for entry in entries if isinstance(entries, list) else ():
                # Budgets of other use cases (ads_management, insights…) do not throttle audience uploads.
                if not isinstance(entry, Mapping) or entry.get("type") not in (None, "custom_audience"):
                    continue
                seen = True
                shares += _numbers(entry, ("call_count", "total_cputime", "total_time"))
                waits += [minutes * 60 for minutes in _numbers(entry, ("estimated_time_to_regain_access",))]
    app = _header_json(headers, "X-App-Usage")
    if isinstance(app, Mapping):
        seen = True
        shares += _numbers(app, ("call_count", "total_cputime", "total_time"))
    account = _header_json(headers, "X-Ad-Account-Usage")
    if isinstance(account, Mapping):
        seen = True
        shares += _numbers(account, ("acc_id_util_pct",))
        waits += _numbers(account, ("reset_time_duration",))
    if not seen:
        return None
    longest = max(waits, default=0.0)
    return Usage(max(shares, default=0.0), longest if longest > 0 else None)


def make_observe(limit: RateLimit) -> Observe:
    """An ``observe`` callback for :class:`connectors.http.HttpLayer` that corrects the rate model.

    Meta reports the share of its hourly budget already spent; what is left of the hour (scaled from
    ``limit``) caps what is left of the current window, and at 100 % nothing is.
    """
    per_hour = limit.requests * 3_600 / limit.per_seconds

    def observe(response: httpx.Response) -> RateObservation | None:
        usage = read_usage(response.headers)
        if usage is None:
            return None
        left = 0 if usage.percent >= 100 else int(min(limit.requests, per_hour * (100 - usage.percent) / 100))
        return RateObservation(remaining=left, limit=limit.requests, window_seconds=limit.per_seconds)

    return observe


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
                # Every Graph answer is a JSON object; anything else came from something in between.
                raise RetryLater(f"Meta answered HTTP {status} with a body that is not a JSON object",
                                 connector=NAME, status=status)
            return
        raise self._without_envelope(response)

    def error_for(self, error: Mapping[str, Any], response: httpx.Response) -> Exception:
        """The contract error for one Graph error object."""
        code, sub = as_int(error.get("code")), as_int(error.get("error_subcode"))
        status = response.status_code
        message = self.scrub(describe(error))
        if code in TOKEN_CODES:
            return FixConfiguration(f"{message} — the access token is missing, invalid or expired; issue a new one",
                                    connector=NAME, status=status)
        # Meta reports appsecret_proof problems as a plain "invalid parameter"; only the text tells them apart.
        if code == 100 and "appsecret_proof" in str(error.get("message") or ""):
            return FixConfiguration(f"{message} — set app_secret to the secret of the token's app",
                                    connector=NAME, status=status)
        if code == 100 and sub == FLAGGED_AUDIENCE:
            return AudienceUnavailable(
                f"{message} — resolve the audience's restrictions in Audience Manager or use a new audience",
                connector=NAME, status=status)
        if (code == 100 and sub == NO_SUCH_OBJECT) or code == AUDIENCE_UPDATE_FAILED:
            return AudienceUnavailable(message, connector=NAME, status=status)
        if code in RATE_LIMIT_CODES:
            return self._throttled(message, response)
        if code in PERMISSION_CODES:
            return FixConfiguration(
                f"{message} — the token needs ads_management and access to this ad account",
                connector=NAME, status=status)
        if error.get("is_transient") is True or code in TRANSIENT_CODES or status >= 500:
            return RetryLater(message, connector=NAME, status=status)
        return GiveUp(message, connector=NAME, status=status)

    def _throttled(self, message: str, response: httpx.Response) -> RetryLater:
        usage = read_usage(response.headers)
        wait = usage.regain_seconds if usage is not None else None
        if wait is None:
            wait = parse_retry_after(response.headers.get("Retry-After"), cap=float("inf"))
        if wait is None:
            wait = DEFAULT_THROTTLE_WAIT
        if wait > self.max_inline_wait:
            return QuotaExhausted(f"{message} — Meta expects the budget back in {wait / 60:.0f} min",
                                  connector=NAME, status=response.status_code, retry_after=wait, rate_limited=True)
        return RetryLater(message, connector=NAME, status=response.status_code, retry_after=wait,
                          rate_limited=True)

    def _without_envelope(self, response: httpx.Response) -> Exception:
        status = response.status_code
        # The body (an HTML error page, typically) is not quoted: it says nothing useful and is not ours.
        message = f"HTTP {status} {response.reason_phrase} without a Graph error body"
        if status in (401, 403):
            return FixConfiguration(f"{message} — check the access token", connector=NAME, status=status)
        if status == 429:
            return self._throttled(message, response)
        if status >= 500 or status == 408:
            return RetryLater(message, connector=NAME, status=status)
        return GiveUp(message, connector=NAME, status=status)


__all__ = [
    "AudienceUnavailable",
    "Classifier",
    "Usage",
    "as_int",
    "describe",
    "json_object",
    "make_observe",
    "read_usage",
]
