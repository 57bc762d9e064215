"""How LinkedIn's answers map onto the contract's errors, including its 429 that says nothing.

Errors come as ``{"status": 401, "serviceErrorCode": 65600, "code": "INVALID_ACCESS_TOKEN", "message": "…"}``
(reference/apis.md §6.3). A 429 carries no ``Retry-After`` and no rate-limit headers, and may mean the
per-minute limit (gone within a minute) or a daily limit (gone at midnight UTC) without saying which, so
:class:`Classifier` keeps its own schedule: ``throttle_backoff_seconds`` after the first 429, twice as
long after each further one in a row; when the next wait would take the streak past
``max_inline_wait_seconds``, the daily limit is taken to be spent and the run ends with
:class:`~connectors.base.QuotaExhausted` until the next midnight UTC. Any accepted answer ends the streak.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import Any

import httpx

from connectors.base import FixConfiguration, GiveUp, QuotaExhausted, RetryLater
from connectors.http import Scrubber

NAME = "linkedin"
WallClock = Callable[[], datetime]


class SegmentUnavailable(FixConfiguration):
    """LinkedIn refuses one DMP segment (unknown, or of an account this member cannot manage).

    Its records cannot be written until a person acts; other segments are unaffected, so the connector turns
    this into per-record rejections instead of stopping the destination.
    """


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def describe(body: Mapping[str, Any]) -> str:
    """``LinkedIn 401 INVALID_ACCESS_TOKEN (65600): Invalid access token``."""
    code = body.get("code")
    service = body.get("serviceErrorCode")
    head = f"LinkedIn {body.get('status', '')} {code or ''}".rstrip()
    if service is not None:
        head += f" ({service})"
    return f"{head}: {body.get('message') or 'no message'}"


class Classifier:
    """``classify`` for one connector: scrubs secrets and keeps the 429 back-off schedule."""

    def __init__(self, *, secrets: Iterable[str], backoff: float, max_inline_wait: float,
                 now: WallClock | None = None) -> None:
        self.scrub = Scrubber(secrets)
        self.backoff = backoff
        self.max_inline_wait = max_inline_wait
        self._now = now or (lambda: datetime.now(UTC))
        self.streak = 0  # 429s in a row
        self.streak_wait = 0.0  # seconds the current streak has asked for

    def __call__(self, response: httpx.Response) -> None:
        status = response.status_code
        if status == 429:
            raise self._throttled(response)
        self.streak, self.streak_wait = 0, 0.0
        if 200 <= status < 300:
            if json_object(response) is None and status != 204:
                raise RetryLater(f"LinkedIn answered HTTP {status} with a body that is not a JSON object",
                                 connector=NAME, status=status)
            return
        body = json_object(response)
        message = self.scrub(describe(body)) if body is not None else f"HTTP {status} {response.reason_phrase}"
        if status == 401:
            raise FixConfiguration(f"{message} — the access token is invalid or expired; issue a new one",
                                   connector=NAME, status=status)
        if status == 404:
            raise SegmentUnavailable(f"{message} — no such DMP segment", connector=NAME, status=status)
        if status == 403:
            raise SegmentUnavailable(
                f"{message} — the member needs rw_dmp_segments and a role other than VIEWER on the segment's "
                "ad account", connector=NAME, status=status)
        if status == 426 or (body is not None and str(body.get("code", "")).startswith(("VERSION", "NONEXISTENT_V"))):
            raise FixConfiguration(f"{message} — set linkedin_version to a month LinkedIn still serves",
                                   connector=NAME, status=status)
        if status >= 500 or status == 408:
            raise RetryLater(message, connector=NAME, status=status)
        raise GiveUp(message, connector=NAME, status=status)

    def _throttled(self, response: httpx.Response) -> RetryLater:
        wait = self.backoff * 2 ** self.streak
        self.streak += 1
        message = "LinkedIn 429: too many requests (LinkedIn says neither which limit nor for how long)"
        if self.streak_wait + wait > self.max_inline_wait:
            now = self._now()
            midnight = datetime.combine(now.date() + timedelta(days=1), time(), UTC)
            self.streak, self.streak_wait = 0, 0.0
            return QuotaExhausted(f"{message}; throttled past {self.max_inline_wait:g} s, so the daily limit is "
                                  "taken to be spent until midnight UTC", connector=NAME, status=429,
                                  retry_after=(midnight - now).total_seconds(), rate_limited=True,
                                  resets_at=midnight)
        self.streak_wait += wait
        return RetryLater(message, connector=NAME, status=429, retry_after=wait, rate_limited=True)


__all__ = ["NAME", "Classifier", "SegmentUnavailable", "describe", "json_object"]
