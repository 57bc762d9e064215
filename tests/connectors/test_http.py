"""The shared HTTP layer: retry policy, Retry-After and rate-limit waits (the limiter: test_http_budgets)."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
import respx

from connectors.base import FixConfiguration, OutcomeUnknown, QuotaExhausted, RetryLater
from connectors.http import HttpLayer, RetrySettings, build_client, parse_retry_after

BASE = "https://api.example.test"


class FakeTime:
    """An injected clock: sleeping advances it instantly and records the wait."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


def classify(response: httpx.Response) -> None:
    if response.status_code == 429:
        raise RetryLater("rate limited", status=429, rate_limited=True,
                         retry_after=parse_retry_after(response.headers.get("Retry-After")))
    if response.status_code == 403:
        raise QuotaExhausted("daily quota", status=403, retry_after=3600)
    if response.status_code == 401:
        raise FixConfiguration("bad token", status=401)
    if response.status_code >= 500:
        raise RetryLater("server error", status=response.status_code)


def layer(t: FakeTime, **kw: object) -> HttpLayer:
    retry = RetrySettings(attempts=3, initial_wait=1.0, max_wait=8.0, jitter=0.0, **kw)  # type: ignore[arg-type]
    return HttpLayer(build_client(BASE), name="test", retry=retry, sleep=t.sleep)


def test_retry_after_seconds_and_http_date_are_parsed_and_clamped() -> None:
    """Retry-After works in both forms and is clamped to [0, cap]."""
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("7") == 7.0
    assert parse_retry_after("Thu, 01 Jan 2026 12:00:30 GMT", now=now) == 30.0
    assert parse_retry_after("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("99999", cap=120) == 120
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


@pytest.mark.anyio
@respx.mock
async def test_5xx_then_success_backs_off_exponentially() -> None:
    """Transient server errors are retried with exponential back-off, then the success is returned."""
    route = respx.get(f"{BASE}/x").mock(side_effect=[httpx.Response(503), httpx.Response(502),
                                                      httpx.Response(200, json={"ok": True})])
    t = FakeTime()
    response = await layer(t).request("GET", "/x", classify=classify)
    assert response.json() == {"ok": True}
    assert route.call_count == 3
    assert t.waits == [1.0, 2.0]


@pytest.mark.anyio
@respx.mock
async def test_retry_after_is_honoured_exactly_without_jitter() -> None:
    """A 429 with Retry-After waits exactly that long (no jitter added on top)."""
    respx.get(f"{BASE}/x").mock(side_effect=[httpx.Response(429, headers={"Retry-After": "4"}),
                                             httpx.Response(200)])
    t = FakeTime()
    retry = RetrySettings(attempts=3, jitter=5.0)
    http = HttpLayer(build_client(BASE), name="t", retry=retry, sleep=t.sleep)
    await http.request("GET", "/x", classify=classify)
    assert t.waits == [4.0]
    assert http.rate_limited == 1


@pytest.mark.anyio
@respx.mock
async def test_rate_limit_waits_do_not_use_up_the_retry_budget() -> None:
    """Many 429s in a row are waited out even though the retry budget is only 3 attempts."""
    storms = [httpx.Response(429, headers={"Retry-After": "1"}) for _ in range(10)]
    respx.get(f"{BASE}/x").mock(side_effect=[*storms, httpx.Response(200)])
    t = FakeTime()
    response = await layer(t).request("GET", "/x", classify=classify)
    assert response.status_code == 200
    assert len(t.waits) == 10


@pytest.mark.anyio
@respx.mock
async def test_transient_errors_stop_after_the_attempt_budget() -> None:
    """Persistent 5xx errors give up after `attempts` tries and raise RetryLater."""
    route = respx.get(f"{BASE}/x").mock(return_value=httpx.Response(500))
    t = FakeTime()
    with pytest.raises(RetryLater):
        await layer(t).request("GET", "/x", classify=classify)
    assert route.call_count == 3


@pytest.mark.anyio
@respx.mock
async def test_configuration_errors_and_quota_are_not_retried() -> None:
    """A bad credential or an exhausted daily quota ends the request at once."""
    route = respx.get(f"{BASE}/auth").mock(return_value=httpx.Response(401))
    quota = respx.get(f"{BASE}/quota").mock(return_value=httpx.Response(403))
    t = FakeTime()
    with pytest.raises(FixConfiguration):
        await layer(t).request("GET", "/auth", classify=classify)
    with pytest.raises(QuotaExhausted):
        await layer(t).request("GET", "/quota", classify=classify)
    assert route.call_count == 1
    assert quota.call_count == 1
    assert t.waits == []


@pytest.mark.anyio
@respx.mock
async def test_timeout_on_a_non_idempotent_request_is_an_unknown_outcome() -> None:
    """A read timeout on a create is not blindly resent: it raises OutcomeUnknown after one try."""
    route = respx.post(f"{BASE}/create").mock(side_effect=httpx.ReadTimeout("slow"))
    t = FakeTime()
    with pytest.raises(OutcomeUnknown):
        await layer(t, ).request("POST", "/create", classify=classify, idempotent=False)
    assert route.call_count == 1


@pytest.mark.anyio
@respx.mock
async def test_connect_errors_are_retried_even_for_non_idempotent_requests() -> None:
    """A request that never left (connection refused) is safe to retry."""
    route = respx.post(f"{BASE}/create").mock(side_effect=[httpx.ConnectError("refused"), httpx.Response(201)])
    t = FakeTime()
    response = await layer(t).request("POST", "/create", classify=classify, idempotent=False)
    assert response.status_code == 201
    assert route.call_count == 2
