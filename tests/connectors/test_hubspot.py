"""HubSpot connector against respx: config, error classification, rate headers and batch writes."""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from connectors import registry
from connectors.base import (
    Budget,
    FixConfiguration,
    RateLimit,
    RetryLater,
    WriteRecord,
)
from connectors.http import HttpLayer, RateLimiter, RetrySettings, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector

BASE = "https://api.hubspot.test"
TOKEN = "pat-na1-0000-super-secret-token"
NOW = datetime(2026, 5, 4, 21, 30, tzinfo=UTC)
UPDATE = "/crm/v3/objects/contacts/batch/update"
OWNERS = "/crm/v3/owners"


class FakeSleep:
    """Records requested waits instead of sleeping."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


Factory = Callable[..., HubSpotConnector]


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def make(sleep: FakeSleep) -> Factory:
    def build(limiter: RateLimiter | None = None, **overrides: Any) -> HubSpotConnector:
        config = HubSpotConfig(token=TOKEN, base_url=BASE, **overrides)
        client = build_client(BASE, headers=HubSpotConnector.client_headers(config))
        retry = RetrySettings(attempts=3, jitter=0.0)
        http = HttpLayer(client, name="hubspot", retry=retry, limiter=limiter, sleep=sleep)
        return HubSpotConnector(config, http, now=lambda: NOW)

    return build


def error(status: int, category: str, message: str, **extra: Any) -> httpx.Response:
    body = {"status": "error", "message": message, "correlationId": "c0ffee", "category": category, **extra}
    return httpx.Response(status, json=body)


OWNERS_OK = httpx.Response(200, json={"results": [{"id": "7", "email": "sdr@example.com"}]})


def rec(target: str, key: str | None = None, **payload: Any) -> WriteRecord:
    return WriteRecord(target=target, idempotency_key=key or f"k-{target}", payload=payload)


def sent_json(route: respx.Route, call: int = -1) -> Any:
    return json.loads(route.calls[call].request.content)


# --- config and declarations ----------------------------------------------------------------------


def test_config_refuses_unknown_keys_by_name() -> None:
    """An unknown setting is refused and the error names it."""
    with pytest.raises(ValidationError, match="pagesize"):
        HubSpotConfig(token=TOKEN, pagesize=100)


@pytest.mark.parametrize(
    ("field", "value"),
    [("page_size", 500), ("page_size", 0), ("search_cap", 20_000), ("overlap_seconds", -1),
     ("contact_fields", {"favourite_colour": "x"}), ("daily_reset_timezone", "Mars/Olympus"),
     ("base_url", "api.hubapi.com"), ("event_types", {"e_visited_page": "teleport"})],
)
def test_config_validation_names_the_field(field: str, value: Any) -> None:
    """Each invalid value is reported with the name of its field."""
    with pytest.raises(ValidationError) as info:
        HubSpotConfig(token=TOKEN, **{field: value})
    assert field in str(info.value)


def test_config_requires_token() -> None:
    """The token is required and named when missing."""
    with pytest.raises(ValidationError, match="token"):
        HubSpotConfig()


def test_field_mappings_merge_over_defaults() -> None:
    """Overriding one mapped property keeps the other defaults."""
    config = HubSpotConfig(token=TOKEN, contact_fields={"title": "job_title_custom"})
    assert config.contact_fields["title"] == "job_title_custom"
    assert config.contact_fields["email"] == "email"


def test_config_is_frozen() -> None:
    """Settings cannot be changed after validation."""
    config = HubSpotConfig(token=TOKEN)
    with pytest.raises(ValidationError):
        config.page_size = 10  # type: ignore[misc]


def test_token_never_shown_by_config(make: Factory) -> None:
    """Neither repr, str nor a JSON dump of the config shows the token."""
    config = make().config
    for text in (repr(config), str(config), config.model_dump_json(), repr(config.model_dump())):
        assert TOKEN not in text


def test_client_headers_carry_bearer_token() -> None:
    """The framework's client gets the token as a bearer header."""
    headers = HubSpotConnector.client_headers(HubSpotConfig(token=TOKEN))
    assert headers["Authorization"] == f"Bearer {TOKEN}"


def test_declarations_and_registration() -> None:
    """Streams, operations and the rate limit are declared on the class; the entry point resolves."""
    caps = HubSpotConnector.capabilities
    assert caps.streams == ("accounts", "opportunities", "leads", "activities")
    assert caps.operations["update_lead"].max_batch_size == 100
    assert caps.operations["update_lead"].idempotent
    assert not caps.operations["create_task"].idempotent
    search = Budget("search", 5, 1.0)
    assert caps.rate_limit == RateLimit(100, 10, daily=250_000, budgets=(search,))
    assert registry.get("hubspot") is HubSpotConnector
    tier = HubSpotConfig(token=TOKEN, rate_limit_requests=190, daily_limit=650_000,
                         daily_reset_timezone="Europe/Berlin")
    assert HubSpotConnector.rate_limit_for(tier) == RateLimit(
        190, 10, daily=650_000, budgets=(search,), daily_reset_timezone="Europe/Berlin")


# --- error handling (the table of every shape: test_hubspot_error_shapes.py) -----------------------


@pytest.mark.anyio
async def test_token_scrubbed_from_vendor_messages(api: respx.MockRouter, make: Factory) -> None:
    """Even a message that echoed the token would not carry it into the error."""
    api.get(OWNERS).mock(return_value=error(401, "INVALID_AUTHENTICATION", f"bad token {TOKEN}"))
    with pytest.raises(FixConfiguration) as info:
        await make().check()
    assert TOKEN not in str(info.value)
    assert TOKEN not in repr(info.value.args)


@pytest.mark.anyio
async def test_check_sends_bearer_and_succeeds(api: respx.MockRouter, make: Factory) -> None:
    """check() makes one owners call with the bearer token."""
    route = api.get(OWNERS).mock(return_value=OWNERS_OK)
    await make().check()
    assert route.calls[0].request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert route.calls[0].request.url.params["limit"] == "1"


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("headers", "policy", "wait"),
    [
        ({"Retry-After": "3"}, "TEN_SECONDLY_ROLLING", 3.0),
        ({"Retry-After": http_date(NOW + timedelta(seconds=7))}, "TEN_SECONDLY_ROLLING", 7.0),
        ({"Retry-After": "2"}, "SECONDLY", 2.0),
        ({}, "TEN_SECONDLY_ROLLING", 0.5),
        ({}, None, 0.5),
    ],
)
async def test_rate_limited_waits_then_succeeds(
    api: respx.MockRouter, make: Factory, sleep: FakeSleep,
    headers: dict[str, str], policy: str | None, wait: float,
) -> None:
    """A 429 waits Retry-After (seconds or HTTP-date); without one and without a limiter, a back-off step."""
    body: dict[str, Any] = {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
                            "errorType": "RATE_LIMIT", "correlationId": "c"}
    if policy:
        body["policyName"] = policy
    api.get(OWNERS).mock(side_effect=[httpx.Response(429, json=body, headers=headers), OWNERS_OK])
    connector = make()
    await connector.check()
    assert sleep.waits == [wait]
    assert connector.http.rate_limited == 1


class Clock:
    """A monotonic clock that sleeping moves."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.mark.anyio
async def test_429_without_retry_after_waits_for_the_window_not_an_interval(
    api: respx.MockRouter, make: Factory
) -> None:
    """Without Retry-After the retry goes when the oldest request leaves the rolling window (the 429's headers
    say it is full), not a whole interval after the refusal: the budget is not left idle."""
    clock = Clock()
    limiter = RateLimiter(RateLimit(3, 10), clock=clock, sleep=clock.sleep, slack=0.0)
    full = {"X-HubSpot-RateLimit-Remaining": "0", "X-HubSpot-RateLimit-Max": "3",
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000"}
    refusal = {"status": "error", "message": "You have reached your ten_secondly_rolling limit.",
               "errorType": "RATE_LIMIT", "correlationId": "c", "policyName": "TEN_SECONDLY_ROLLING"}
    api.get(OWNERS).mock(side_effect=[OWNERS_OK, httpx.Response(429, json=refusal, headers=full), OWNERS_OK])
    config = HubSpotConfig(token=TOKEN, base_url=BASE)
    client = build_client(BASE, headers=HubSpotConnector.client_headers(config))
    http = HttpLayer(client, name="hubspot", retry=RetrySettings(jitter=0.0), limiter=limiter, sleep=clock.sleep)
    connector = HubSpotConnector(config, http, now=lambda: NOW)
    await connector.check()  # at t=0
    clock.now = 6.0
    await connector.check()  # refused at t=6 (another app filled the window), retried when t=0 ages out
    assert clock.now == pytest.approx(10.0)
    assert http.rate_limited == 1
    assert http.requests == 3


@pytest.mark.anyio
@pytest.mark.parametrize("status", [423, 477, 500, 502, 503, 504])
async def test_transient_statuses_retry(
    api: respx.MockRouter, make: Factory, sleep: FakeSleep, status: int
) -> None:
    """423, 477 and 5xx are retried with back-off until the call succeeds."""
    api.get(OWNERS).mock(side_effect=[error(status, "INTERNAL_ERROR", "oops"), OWNERS_OK])
    await make().check()
    assert sleep.waits == [0.5]


@pytest.mark.anyio
async def test_persistent_server_errors_give_retry_later(api: respx.MockRouter, make: Factory) -> None:
    """A proxy's HTML 502 on every attempt ends as RetryLater after the retry budget."""
    route = api.get(OWNERS).mock(return_value=httpx.Response(502, text="<html>Bad gateway</html>"))
    with pytest.raises(RetryLater) as info:
        await make().check()
    assert info.value.status == 502
    assert route.call_count == 3


@pytest.mark.anyio
async def test_rate_headers_correct_the_limiter(api: respx.MockRouter, make: Factory) -> None:
    """X-HubSpot-RateLimit-* set the limiter's window and daily quota; an answer without them leaves it."""
    limiter = RateLimiter(RateLimit(100, 10, daily=250_000), clock=lambda: 0.0, sleep=FakeSleep(), slack=0.0)
    headers = {"X-HubSpot-RateLimit-Remaining": "7", "X-HubSpot-RateLimit-Max": "190",
               "X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Daily": "650000",
               "X-HubSpot-RateLimit-Daily-Remaining": "1200"}
    api.get(OWNERS).mock(side_effect=[OWNERS_OK, httpx.Response(200, json={"results": []}, headers=headers)])
    connector = make(limiter=limiter)
    await connector.check()
    assert limiter.remaining() == 99
    assert limiter.daily_remaining == 249_999
    await connector.check()
    assert limiter.window() == (190, 10.0)
    assert limiter.remaining() == 7
    assert limiter.daily_remaining == 1200


@pytest.mark.anyio
async def test_search_draws_from_the_search_budget(api: respx.MockRouter, make: Factory) -> None:
    """Searches (the pull and the task look-up) spend the 5-per-second search budget, not the burst window."""
    limiter = RateLimiter(HubSpotConfig(token=TOKEN).rate_limit(), clock=lambda: 0.0, sleep=FakeSleep())
    api.post("/crm/v3/objects/tasks/search").mock(return_value=httpx.Response(200, json={"results": []}))
    await make(limiter=limiter).lookup("create_task", [rec("1")])
    assert limiter.remaining("search") == 4
    assert limiter.remaining() == 100


@pytest.mark.anyio
async def test_list_owners_follows_paging(api: respx.MockRouter, make: Factory) -> None:
    """list_owners returns every owner across pages."""
    api.get(OWNERS, params={"after": "2"}).mock(
        return_value=httpx.Response(200, json={"results": [{"id": "3"}]}))
    api.get(OWNERS).mock(return_value=httpx.Response(
        200, json={"results": [{"id": "1"}, {"id": "2"}], "paging": {"next": {"after": "2"}}}))
    owners = await make().list_owners()
    assert [o["id"] for o in owners] == ["1", "2", "3"]
