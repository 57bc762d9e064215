"""HubSpot sandbox rate limits: headers, burst and daily 429s, the search limit, recovery by the clock."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sandbox import HubSpotLimits

pytestmark = pytest.mark.anyio

LIST = "/crm/v3/objects/contacts"
SEARCH = "/crm/v3/objects/contacts/search"


async def test_burst_headers_count_down_then_429_then_recover(
    make_sandbox: Any, make_client: Any, clock: Any
) -> None:
    """Remaining counts down, the burst ends in a TEN_SECONDLY_ROLLING 429, and the window rolls on."""
    sandbox = make_sandbox(limits=HubSpotLimits(burst=3, window_ms=10_000, daily=1000))
    async with make_client(sandbox) as client:
        answers = [await client.get(LIST) for _ in range(4)]
        clock.advance(seconds=10)
        recovered = await client.get(LIST)
    remaining = [r.headers.get("X-HubSpot-RateLimit-Remaining") for r in answers[:3]]
    limited = answers[3]
    assert remaining == ["2", "1", "0"]
    assert answers[0].headers["X-HubSpot-RateLimit-Max"] == "3"
    assert answers[0].headers["X-HubSpot-RateLimit-Interval-Milliseconds"] == "10000"
    assert answers[0].headers["X-HubSpot-RateLimit-Daily-Remaining"] == "999"
    assert limited.status_code == 429
    assert limited.json() == {
        **limited.json(),
        "status": "error",
        "errorType": "RATE_LIMIT",
        "policyName": "TEN_SECONDLY_ROLLING",
        "message": "You have reached your ten_secondly_rolling limit.",
    }
    assert {"correlationId", "requestId"} <= set(limited.json())
    assert recovered.status_code == 200


async def test_a_429_does_not_spend_budget(make_sandbox: Any, make_client: Any, clock: Any) -> None:
    """Requests refused with 429 do not count: the window frees up exactly as the first calls age out."""
    sandbox = make_sandbox(limits=HubSpotLimits(burst=2, window_ms=10_000, daily=1000))
    async with make_client(sandbox) as client:
        await client.get(LIST)
        clock.advance(seconds=5)
        await client.get(LIST)
        refused = [(await client.get(LIST)).status_code for _ in range(5)]
        clock.advance(seconds=5)
        after_first_ages_out = await client.get(LIST)
    assert refused == [429] * 5
    assert after_first_ages_out.status_code == 200
    assert after_first_ages_out.headers["X-HubSpot-RateLimit-Daily-Remaining"] == "997"


async def test_daily_limit_is_429_daily_until_midnight(
    make_sandbox: Any, make_client: Any, clock: Any
) -> None:
    """Past the daily quota every request is a DAILY 429 until the next UTC day."""
    sandbox = make_sandbox(limits=HubSpotLimits(burst=100, daily=2))
    async with make_client(sandbox) as client:
        ok = [(await client.get(LIST)).status_code for _ in range(2)]
        clock.advance(seconds=30)
        limited = await client.get(LIST)
        clock.advance(days=1)
        next_day = await client.get(LIST)
    assert ok == [200, 200]
    assert limited.status_code == 429
    assert limited.json()["policyName"] == "DAILY"
    assert next_day.status_code == 200


async def test_search_has_no_rate_headers_and_its_own_secondly_limit(
    make_sandbox: Any, make_client: Any, clock: Any
) -> None:
    """Search answers carry no X-HubSpot-RateLimit headers and 429 with SECONDLY past 5 per second."""
    sandbox = make_sandbox(limits=HubSpotLimits())
    async with make_client(sandbox) as client:
        answers = [await client.post(SEARCH, json={}) for _ in range(6)]
        clock.advance(seconds=1)
        later = await client.post(SEARCH, json={})
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert not any(h.lower().startswith("x-hubspot-ratelimit") for a in answers for h in a.headers)
    assert answers[5].json()["policyName"] == "SECONDLY"
    assert later.status_code == 200


async def test_no_limits_means_no_headers(client: Any) -> None:
    """A sandbox without limits never throttles and sends no rate headers."""
    response = await client.get(LIST)
    assert "X-HubSpot-RateLimit-Remaining" not in response.headers
