"""HubSpot's rate limits as the sandbox enforces them: a rolling burst window, a daily count and a
separate per-second limit for search, all read from the injected clock.

Non-search answers carry the ``X-HubSpot-RateLimit-*`` headers; search answers carry none (apis.md 1.4),
which is exactly what trips clients that pace themselves by headers alone. A 429 does not spend budget.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from connectors.sandbox._wire import HubSpotError, correlation_id

_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class HubSpotLimits:
    """A portal's budgets (defaults: the Free/Starter private-app tier, apis.md 1.6).

    ``daily`` resets at midnight UTC of the injected clock (HubSpot: midnight in the account's time zone).
    Search requests count towards ``daily`` but not towards ``burst``.
    """

    burst: int = 100
    window_ms: int = 10_000
    daily: int = 250_000
    search_per_second: int = 5


def rate_limit_error(policy: str, headers: dict[str, str] | None = None) -> HubSpotError:
    """HubSpot's 429 for a policy (``TEN_SECONDLY_ROLLING``, ``SECONDLY`` or ``DAILY``)."""
    message = {
        "TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
        "SECONDLY": "You have reached your secondly limit.",
        "DAILY": "You have reached your daily limit.",
    }[policy]
    return HubSpotError(
        429,
        None,
        message,
        headers=headers,
        errorType="RATE_LIMIT",
        policyName=policy,
        requestId=correlation_id(),
    )


class RateLimiter:
    """Spends one request of budget or raises the 429 HubSpot would answer."""

    def __init__(self, limits: HubSpotLimits) -> None:
        self.limits = limits
        self._burst: deque[int] = deque()
        self._search: deque[int] = deque()
        self._day = -1
        self._daily_used = 0

    def spend(self, now_ms: int, *, search: bool) -> dict[str, str]:
        """Record one request at ``now_ms``; returns the headers for its answer."""
        limits = self.limits
        day = now_ms // _DAY_MS
        if day != self._day:
            self._day, self._daily_used = day, 0
        if search:
            _evict(self._search, now_ms - 1000)
            if self._daily_used >= limits.daily:
                raise rate_limit_error("DAILY")
            if len(self._search) >= limits.search_per_second:
                raise rate_limit_error("SECONDLY")
            self._search.append(now_ms)
            self._daily_used += 1
            return {}
        _evict(self._burst, now_ms - limits.window_ms)
        if self._daily_used >= limits.daily:
            raise rate_limit_error("DAILY", self._headers())
        if len(self._burst) >= limits.burst:
            raise rate_limit_error("TEN_SECONDLY_ROLLING", self._headers())
        self._burst.append(now_ms)
        self._daily_used += 1
        return self._headers()

    def _headers(self) -> dict[str, str]:
        limits = self.limits
        return {
            "X-HubSpot-RateLimit-Max": str(limits.burst),
            "X-HubSpot-RateLimit-Remaining": str(max(0, limits.burst - len(self._burst))),
            "X-HubSpot-RateLimit-Interval-Milliseconds": str(limits.window_ms),
            "X-HubSpot-RateLimit-Daily": str(limits.daily),
            "X-HubSpot-RateLimit-Daily-Remaining": str(max(0, limits.daily - self._daily_used)),
        }


def _evict(window: deque[int], horizon: int) -> None:
    # a request at time t stops counting once the window has fully passed it (t <= now - window)
    while window and window[0] <= horizon:
        window.popleft()
