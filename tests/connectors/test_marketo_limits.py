"""The Marketo connector against the sandbox's limits: 606 (100 calls / 20 s), 607 (daily quota), 615 (more
than 10 calls in flight), the connector's own concurrency cap, and edge failures. Rate tests run over
loopback; the concurrency tests run in-process, where the sandbox's injected latency lets concurrent calls
overlap deterministically without any real waiting."""

from __future__ import annotations

import asyncio
from datetime import datetime
from zoneinfo import ZoneInfo

import httpx
import pytest

from connectors.base import Outcome, QuotaExhausted, WriteRecord
from connectors.marketo import MarketoConnector
from connectors.sandbox import FaultSettings, serve_on_loopback
from connectors.sandbox.faults import Fate, FaultInjector
from connectors.sandbox.marketo import MarketoLimits, MarketoSandbox
from tests.connectors.test_marketo_rig import START, Clock, make_connector, make_sandbox, yield_a_little

pytestmark = pytest.mark.anyio

TYPES = "/rest/v1/activities/types.json"
BASE = "https://123-abc-456.mktorest.com"


@pytest.fixture
def clock() -> Clock:
    return Clock()


def in_process(sandbox: MarketoSandbox, clock: Clock, **options: object) -> MarketoConnector:
    return make_connector(BASE, clock, transport=httpx.ASGITransport(app=sandbox.app), **options)


def adds(list_id: str, leads: list[int]) -> list[WriteRecord]:
    return [WriteRecord(str(lead), f"add:{lead}", {"audience_id": list_id}) for lead in leads]


async def test_rate_limit_606_waits_and_then_succeeds(clock: Clock) -> None:
    """Over 3 calls per 20 s the sandbox answers 606 inside HTTP 200; the connector treats it as a rate
    limit (no retry budget spent), backs off on the injected clock and every call succeeds."""
    sandbox = make_sandbox(clock, limits=MarketoLimits(calls=3, window_seconds=20))
    with serve_on_loopback(sandbox.app) as url:
        connector = make_connector(url, clock, attempts=2)
        try:
            for _ in range(8):
                await connector.api.call("GET", TYPES)
        finally:
            await connector.http.client.aclose()
    assert sandbox.stats.errors["606"] >= 1
    assert connector.http.rate_limited == sandbox.stats.errors["606"]
    assert sandbox.stats.requests[f"GET {TYPES}"] == 8 + sandbox.stats.errors["606"]
    assert sum(clock.waits) >= 20  # at least one window had to pass


async def test_declared_budget_never_meets_606(clock: Clock) -> None:
    """With the framework's limiter on the declared budget (here the sandbox's 5 per 20 s) the connector
    spends the window fully and Marketo never has to refuse a call."""
    sandbox = make_sandbox(clock, limits=MarketoLimits(calls=5, window_seconds=20))
    with serve_on_loopback(sandbox.app) as url:
        connector = make_connector(url, clock, paced=True, rate_limit_calls=5, rate_limit_window_seconds=20)
        try:
            for _ in range(12):
                await connector.api.call("GET", TYPES)
        finally:
            await connector.http.client.aclose()
    assert sandbox.stats.errors["606"] == 0
    assert sandbox.stats.requests[f"GET {TYPES}"] == 12
    assert 40 <= (clock.now - START).total_seconds() < 61  # three full windows, no idle one


async def test_daily_quota_607_is_quota_exhausted_until_central_midnight(clock: Clock) -> None:
    """After the day's quota, 607 becomes QuotaExhausted (not retried) resetting at midnight US Central."""
    sandbox = make_sandbox(clock, limits=MarketoLimits(daily=3))
    with serve_on_loopback(sandbox.app) as url:
        connector = make_connector(url, clock)
        try:
            for _ in range(3):
                await connector.api.call("GET", TYPES)
            with pytest.raises(QuotaExhausted) as raised:
                await connector.api.call("GET", TYPES)
        finally:
            await connector.http.client.aclose()
    error = raised.value
    assert "607" in str(error)
    assert error.resets_at is not None
    central = error.resets_at.astimezone(ZoneInfo("America/Chicago"))
    assert (central.hour, central.minute, central.date()) == (0, 0, datetime(2026, 6, 2).date())
    assert sandbox.stats.errors["607"] == 1  # not retried within the run


async def test_concurrency_615_is_retried(clock: Clock) -> None:
    """When other callers hold the instance's slots (here: a limit of 1 and two calls at once), 615 is a
    transient refusal: the refused call is tried again and both writes land."""
    sandbox = make_sandbox(clock, limits=MarketoLimits(concurrent=1), sleep=yield_a_little,
                           faults=FaultSettings(latency_seconds=1.0))
    first, second = sandbox.add_lead(email="a@x.com"), sandbox.add_lead(email="b@x.com")
    list_id = sandbox.create_list("l")
    connector = in_process(sandbox, clock, max_concurrent_calls=2)
    try:
        await connector.check()
        results = await asyncio.gather(connector.write_batch("audience_add", adds(list_id, [first])),
                                       connector.write_batch("audience_add", adds(list_id, [second])))
    finally:
        await connector.http.client.aclose()
    assert [r.outcome for batch in results for r in batch] == [Outcome.ACKNOWLEDGED] * 2
    assert sandbox.stats.errors["615"] >= 1
    assert sandbox.members(list_id) == {first, second}


@pytest.mark.parametrize("cap", [1, 3, 10])
async def test_connector_never_exceeds_its_concurrency_cap(clock: Clock, cap: int) -> None:
    """Thirty writes at once never put more than max_concurrent_calls in flight (and with 10, Marketo's own
    limit, no call meets 615); the cap is reached, so calls do overlap."""
    sandbox = make_sandbox(clock, limits=MarketoLimits(calls=10_000), sleep=yield_a_little,
                           faults=FaultSettings(latency_seconds=1.0))
    leads = [sandbox.add_lead(email=f"p{n}@x.com") for n in range(30)]
    list_id = sandbox.create_list("l")
    connector = in_process(sandbox, clock, max_concurrent_calls=cap)
    try:
        await connector.check()
        await asyncio.gather(*(connector.write_batch("audience_add", adds(list_id, [lead])) for lead in leads))
    finally:
        await connector.http.client.aclose()
    assert sandbox.stats.max_in_flight == cap
    assert sandbox.stats.errors["615"] == 0
    assert sandbox.members(list_id) == set(leads)


def _seed_for(settings: FaultSettings, fates: list[Fate]) -> int:
    for seed in range(10_000):
        injector = FaultInjector(settings, seed)
        if [injector.for_request().fate for _ in fates] == fates:
            return seed
    raise AssertionError("no seed found")


async def test_edge_errors_and_drops_are_retried(clock: Clock) -> None:
    """A 5xx page from the edge and a connection dropped after the effect are retried; the idempotent list
    add is acknowledged and the lead is a member once."""
    faults = FaultSettings(error_rate=0.3, timeout_rate=0.3, timeout_applies_share=1.0)
    wanted = [Fate.NORMAL, Fate.SERVER_ERROR, Fate.DROP_AFTER, Fate.NORMAL]
    sandbox = make_sandbox(clock, faults=faults, seed=_seed_for(faults, wanted))
    lead = sandbox.add_lead(email="a@x.com")
    list_id = sandbox.create_list("l")
    with serve_on_loopback(sandbox.app) as url:
        connector = make_connector(url, clock, attempts=5)
        try:
            await connector.api.call("GET", TYPES)
            results = await connector.write_batch("audience_add", adds(list_id, [lead]))
        finally:
            await connector.http.client.aclose()
    assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED]
    assert sandbox.stats.dropped_connections == 1
    assert sum(sandbox.stats.status_codes[s] for s in (502, 503, 504)) + sandbox.stats.errors["611"] == 1
    assert sandbox.members(list_id) == {lead}
