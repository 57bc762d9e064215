"""``RateBudgets.usage()``: the public view of each shared limiter that /metrics reads."""

from __future__ import annotations

import pytest

from connectors.base import RateLimit
from connectors.ratelimit import RateBudgets


@pytest.mark.anyio
async def test_usage_reports_the_share_spent_per_account() -> None:
    """Three of ten requests spent on one account show as 0.3 used; an untouched account as 0; no token shown."""
    now = [100.0]
    budgets = RateBudgets()
    busy = budgets.limiter("hubspot", "a" * 40, RateLimit(10, 10.0), clock=lambda: now[0])
    budgets.limiter("salesforce", "b" * 40, RateLimit(20, 1.0), clock=lambda: now[0])
    for _ in range(3):
        busy.release(await busy.acquire())
    rows = sorted(budgets.usage(), key=lambda r: r["connector"])
    assert rows == [
        {"connector": "hubspot", "account": "a" * 12, "used": 0.3, "limit": 10, "per_seconds": 10.0,
         "waited_seconds": 0.0},
        {"connector": "salesforce", "account": "b" * 12, "used": 0.0, "limit": 20, "per_seconds": 1.0,
         "waited_seconds": 0.0},
    ]
