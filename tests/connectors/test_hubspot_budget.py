"""The HubSpot connector's rate budgets against the sandbox's real rolling windows, on one fake clock:
honest headers cost no 429 and leave no budget idle; under-reporting headers cost 429s that are waited out."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.base import Outcome, QuotaExhausted, RecordOutcome, WriteRecord
from connectors.http import HttpLayer, RateLimiter, RetrySettings, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector
from connectors.sandbox import FaultSettings, HubSpotLimits, HubSpotSandbox

TOKEN = "pat-na1-budget-token"
START = datetime(2026, 3, 2, 21, 0, tzinfo=UTC)
UPDATE = "POST /crm/v3/objects/contacts/batch/update"


class FakeTime:
    """One clock for the sandbox and the agent: waiting moves it, nothing sleeps for real."""

    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.now)

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


Make = Callable[..., tuple[HubSpotConnector, HubSpotSandbox]]


@pytest.fixture
async def make() -> AsyncIterator[Make]:
    """A sandbox portal of 400 contacts and a connector whose limiter and retries run on the same fake time."""
    clients: list[httpx.AsyncClient] = []
    time = FakeTime()

    def build(*, limits: HubSpotLimits, faults: FaultSettings | None = None,
              **config: Any) -> tuple[HubSpotConnector, HubSpotSandbox]:
        sandbox = HubSpotSandbox(token=TOKEN, clock=time.wall, limits=limits, faults=faults, sleep=time.sleep)
        for n in range(400):
            sandbox.create("contacts", {"email": f"b{n}@example.com"})
        settings = HubSpotConfig(token=TOKEN, base_url="https://api.hubapi.com", **config)
        client = build_client(settings.base_url, headers=HubSpotConnector.client_headers(settings),
                              transport=httpx.ASGITransport(app=sandbox.app))
        clients.append(client)
        limiter = RateLimiter(settings.rate_limit(), clock=time.monotonic, sleep=time.sleep, now=time.wall)
        http = HttpLayer(client, name="hubspot", retry=RetrySettings(jitter=0.0), limiter=limiter,
                         sleep=time.sleep)
        return HubSpotConnector(settings, http, now=time.wall), sandbox

    build.time = time  # type: ignore[attr-defined]
    yield build
    for client in clients:
        await client.aclose()


async def push(hub: HubSpotConnector, sandbox: HubSpotSandbox, size: int) -> list[RecordOutcome]:
    """Every contact's score in batches of ``size``, four batches in flight at a time (as the outbox does)."""
    ids = sorted(sandbox.objects["contacts"], key=int)
    gate = asyncio.Semaphore(4)

    async def one(chunk: list[str]) -> list[RecordOutcome]:
        async with gate:
            return await hub.write_batch("update_lead", [WriteRecord(i, f"k{i}", {"score": 50}) for i in chunk])

    results = await asyncio.gather(*(one(ids[i:i + size]) for i in range(0, len(ids), size)))
    return [outcome for batch in results for outcome in batch]


@pytest.mark.anyio
async def test_honest_headers_cost_no_429_and_leave_no_budget_idle(make: Make) -> None:
    """40 batches against 10 per 10 s (configured 100: the headers correct it) go in four full windows,
    each the moment the previous one ages out, without a single 429."""
    hub, sandbox = make(limits=HubSpotLimits(burst=10, window_ms=10_000, daily=10_000))
    outcomes = await push(hub, sandbox, size=10)
    assert all(o.outcome is Outcome.ACKNOWLEDGED for o in outcomes)
    assert len(outcomes) == 400
    assert sandbox.stats.requests[UPDATE] == 40
    assert sandbox.stats.status_codes[429] == 0
    assert make.time.now == pytest.approx(3 * 10.1)  # type: ignore[attr-defined]


@pytest.mark.anyio
async def test_another_app_in_honest_headers_is_paced_around_without_429s(make: Make) -> None:
    """When another app spends part of the window and the headers say so, the limiter leaves it room."""
    faults = FaultSettings(other_app_share=0.3)
    hub, sandbox = make(limits=HubSpotLimits(burst=10, window_ms=10_000, daily=10_000), faults=faults)
    outcomes = await push(hub, sandbox, size=20)
    assert all(o.outcome is Outcome.ACKNOWLEDGED for o in outcomes)
    assert sandbox.stats.other_app_requests > 0
    assert sandbox.stats.status_codes[429] == 0


@pytest.mark.anyio
async def test_under_reporting_headers_cost_429s_that_are_waited_out(make: Make) -> None:
    """Headers that hide another app's use lead to 429s; each is waited out and every record still lands."""
    faults = FaultSettings(other_app_share=0.3, other_app_hidden=True)
    hub, sandbox = make(limits=HubSpotLimits(burst=10, window_ms=10_000, daily=10_000), faults=faults)
    outcomes = await push(hub, sandbox, size=20)
    assert all(o.outcome is Outcome.ACKNOWLEDGED for o in outcomes)
    assert sandbox.stats.status_codes[429] > 0
    assert hub.http.rate_limited == sandbox.stats.status_codes[429]
    assert sandbox.stats.records_written["contacts"] == 400


@pytest.mark.anyio
async def test_search_pages_keep_to_the_search_limit(make: Make) -> None:
    """A pull of many search pages keeps to 5 per second without a SECONDLY 429 (search has no headers)."""
    hub, sandbox = make(limits=HubSpotLimits(burst=10, window_ms=10_000, daily=10_000), page_size=10)
    leads = [r async for page in hub.pull("leads", None) for r in page.records]
    assert len(leads) == 400
    assert sandbox.stats.status_codes[429] == 0
    assert make.time.now == pytest.approx(7 * 1.01)  # type: ignore[attr-defined]  # 40 pages, 5 a second


@pytest.mark.anyio
async def test_spent_daily_quota_ends_the_push_until_midnight(make: Make) -> None:
    """After the portal's daily quota the connector raises QuotaExhausted carrying midnight, and the next
    batches are refused locally, without another request."""
    hub, sandbox = make(limits=HubSpotLimits(burst=100, window_ms=10_000, daily=100_000),
                        faults=FaultSettings(daily_quota=3))
    records = [WriteRecord(str(i), f"k{i}", {"score": 1}) for i in sorted(sandbox.objects["contacts"], key=int)]
    for n in range(3):
        await hub.write_batch("update_lead", records[n * 10:(n + 1) * 10])
    for _ in range(2):
        with pytest.raises(QuotaExhausted) as info:
            await hub.write_batch("update_lead", records[30:40])
        assert info.value.resets_at == datetime(2026, 3, 3, tzinfo=UTC)
    assert sandbox.stats.requests[UPDATE] == 3  # the daily headers said 0 left: the 4th never went
