"""Marketo's limits as the sandbox enforces them: 100 calls per rolling 20 s and a daily quota per
instance, shared by every integration, and 10 calls in flight at once (apis.md §3.3).

A call over the rate limit is answered 606, over the daily quota 607 (the quota resets at midnight US
Central), over the concurrency limit 615; none of the refused calls spends budget. Marketo sends no rate
headers: a client learns of the limits only from these codes.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from connectors.sandbox._marketo_wire import MarketoError


@dataclass(frozen=True, slots=True)
class MarketoLimits:
    """An instance's budgets (defaults: Marketo's documented ones)."""

    calls: int = 100
    window_seconds: float = 20.0
    daily: int = 50_000
    concurrent: int = 10
    reset_timezone: str = "America/Chicago"  # "12:00 AM CST"

    def __post_init__(self) -> None:
        if self.calls < 1 or self.window_seconds <= 0 or self.daily < 0 or self.concurrent < 1:
            raise ValueError("limits must be positive")


class InstanceBudget:
    """Spends one call of the instance's budgets at a moment, or raises the error Marketo would answer."""

    def __init__(self, limits: MarketoLimits) -> None:
        self.limits = limits
        self._calls: deque[int] = deque()
        self._zone = ZoneInfo(limits.reset_timezone)
        self._day: str | None = None
        self.daily_used = 0

    def day_of(self, now_ms: int) -> str:
        return datetime.fromtimestamp(now_ms / 1000, tz=UTC).astimezone(self._zone).date().isoformat()

    def roll(self, now_ms: int) -> None:
        day = self.day_of(now_ms)
        if day != self._day:
            self._day, self.daily_used = day, 0

    def note(self, at_ms: int) -> None:
        """A call someone else made (another integration on the instance)."""
        self._calls.append(at_ms)
        self.daily_used += 1

    def spend(self, now_ms: int) -> None:
        limits = self.limits
        self.roll(now_ms)
        horizon = now_ms - int(limits.window_seconds * 1000)
        while self._calls and self._calls[0] <= horizon:
            self._calls.popleft()
        if self.daily_used >= limits.daily:
            raise MarketoError(607)
        if len(self._calls) >= limits.calls:
            raise MarketoError(606, f"Max rate limit '{limits.calls}' exceeded with in "
                                    f"'{limits.window_seconds:g}' secs")
        self._calls.append(now_ms)
        self.daily_used += 1


__all__ = ["InstanceBudget", "MarketoLimits"]
