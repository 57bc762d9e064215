"""Salesforce's daily API request limit as the sandbox enforces it: a rolling 24 hours per org.

Every counted answer carries ``Sforce-Limit-Info: api-usage=<used>/<max>`` (apis.md §2.6); a request
over the limit is refused with 403 ``REQUEST_LIMIT_EXCEEDED`` ("TotalRequests Limit exceeded.") and no
``Retry-After``, and is not counted. Requests of another app of the same org (``FaultSettings.
other_app_share``) count too; with ``other_app_hidden`` the header leaves them out.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from connectors.sandbox._salesforce_wire import request_limit_exceeded


@dataclass(frozen=True, slots=True)
class SalesforceLimits:
    """An org's API budget (default: an Enterprise org's base 100,000 requests per rolling 24 hours)."""

    daily_requests: int = 100_000
    window_seconds: int = 86_400

    def __post_init__(self) -> None:
        if self.daily_requests < 0 or self.window_seconds < 1:
            raise ValueError("daily_requests must not be negative and window_seconds must be positive")


def limit_header(used: int, limit: int) -> dict[str, str]:
    return {"Sforce-Limit-Info": f"api-usage={used}/{limit}"}


class DailyCounter:
    """Counts requests over the rolling window and refuses those over the limit."""

    def __init__(self, limits: SalesforceLimits) -> None:
        self.limits = limits
        self._ours: deque[int] = deque()
        self._others: deque[int] = deque()

    def _evict(self, now_ms: int) -> None:
        horizon = now_ms - self.limits.window_seconds * 1000
        for log in (self._ours, self._others):
            while log and log[0] <= horizon:
                log.popleft()

    def used(self, now_ms: int) -> int:
        self._evict(now_ms)
        return len(self._ours) + len(self._others)

    def other(self, at_ms: int) -> bool:
        """Count one request of another app (refused, and not counted, when the budget is spent)."""
        if self.used(at_ms) >= self.limits.daily_requests:
            return False
        self._others.append(at_ms)
        return True

    def spend(self, now_ms: int, *, hide_others: bool = False) -> dict[str, str]:
        """Count one request at ``now_ms``; the answer's header, or the 403 Salesforce would answer."""
        used = self.used(now_ms)
        if used >= self.limits.daily_requests:
            raise request_limit_exceeded()
        self._ours.append(now_ms)
        return self.header(now_ms, hide_others=hide_others)

    def header(self, now_ms: int, *, hide_others: bool = False) -> dict[str, str]:
        used = self.used(now_ms) - (len(self._others) if hide_others else 0)
        return limit_header(used, self.limits.daily_requests)


__all__ = ["DailyCounter", "SalesforceLimits", "limit_header"]
