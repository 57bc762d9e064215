"""Meta's custom-audience rate limit as the sandbox enforces it: a rolling hour per ad account.

The Business Use Case budget is ``calls_per_hour + per_audience × audiences`` calls an hour per ad account,
capped at 700,000 (apis.md §4.5). Every counted answer carries ``X-Business-Use-Case-Usage``; a call over
budget is refused with the configured code (80003 by default, or 613) and does not spend budget, and its
header says when the oldest call leaves the window (``estimated_time_to_regain_access``, minutes).
"""

from __future__ import annotations

import json
import math
from collections import deque
from dataclasses import dataclass

from connectors.sandbox._meta_wire import GraphError, throttled


@dataclass(frozen=True, slots=True)
class MetaLimits:
    """An ad account's custom-audience budget (defaults: the Limited-access tier)."""

    calls_per_hour: int = 5_000  # Full access: 190,000
    per_audience: int = 40
    cap: int = 700_000
    window_seconds: int = 3_600
    error_code: int = 80_003  # 613: the older "too many calls from this ad-account" limit
    status: int = 400  # Graph throttles are usually HTTP 400 (sometimes 403): clients must read the code

    def __post_init__(self) -> None:
        if self.calls_per_hour < 1 or self.window_seconds < 1:
            raise ValueError("budgets and windows must be positive")

    def budget(self, audiences: int) -> int:
        return min(self.cap, self.calls_per_hour + self.per_audience * audiences)


def usage_header(business_id: str, percent: int, regain_minutes: int) -> dict[str, str]:
    """``X-Business-Use-Case-Usage`` for the custom_audience use case.

    The sandbox counts calls only; CPU time and total time are reported as half the call share.
    """
    entry = {"type": "custom_audience", "call_count": percent, "total_cputime": percent // 2,
             "total_time": percent // 2, "estimated_time_to_regain_access": regain_minutes}
    return {"X-Business-Use-Case-Usage": json.dumps({business_id: [entry]}, separators=(",", ":"))}


class BucLimiter:
    """Spends one call of an ad account's budget, or raises the throttle Meta would answer."""

    def __init__(self, limits: MetaLimits) -> None:
        self.limits = limits
        self._calls: dict[str, deque[int]] = {}

    def spend(self, account: str, business_id: str, now_ms: int, audiences: int) -> dict[str, str]:
        """Record one call at ``now_ms``; returns the usage header of its answer."""
        limits = self.limits
        calls = self._calls.setdefault(account, deque())
        horizon = now_ms - limits.window_seconds * 1000
        while calls and calls[0] <= horizon:
            calls.popleft()
        budget = limits.budget(audiences)
        if len(calls) >= budget:
            wait_ms = calls[0] + limits.window_seconds * 1000 - now_ms
            headers = usage_header(business_id, 100, max(1, math.ceil(wait_ms / 60_000)))
            raise throttled(limits.error_code, headers, limits.status)
        calls.append(now_ms)
        return usage_header(business_id, len(calls) * 100 // budget, 0)


def storm(limits: MetaLimits, business_id: str, retry_after: str | None) -> GraphError:
    """An injected throttle: the configured code, usage at 100 %, a minute to wait (and Retry-After if set)."""
    headers = usage_header(business_id, 100, 1)
    if retry_after is not None:
        headers["Retry-After"] = retry_after
    return throttled(limits.error_code, headers, limits.status)


__all__ = ["BucLimiter", "MetaLimits", "storm", "usage_header"]
