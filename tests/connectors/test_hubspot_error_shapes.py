"""Every HubSpot error shape of apis.md §1, through the connector against respx: which contract error it
becomes, whether it is retried, how long the wait is, and what the message keeps (never the token).

Retry-then-succeed behaviour (waits honoured, 429s not using the retry budget) is in test_hubspot.py and
test_http.py; 207 attribution by ids and trace ids in test_hubspot_write.py. This file is the table of shapes.
"""

from __future__ import annotations

import email.utils
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx

from connectors.base import (
    ConnectorError,
    FixConfiguration,
    GiveUp,
    Outcome,
    OutcomeUnknown,
    QuotaExhausted,
    RetryLater,
    WriteRecord,
)
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector

BASE = "https://api.hubspot.test"
TOKEN = "pat-na1-0000-super-secret-token"
NOW = datetime(2026, 5, 4, 21, 30, tzinfo=UTC)
UPDATE = "/crm/v3/objects/contacts/batch/update"
CREATE_TASKS = "/crm/v3/objects/tasks/batch/create"
SEARCH = "/crm/v3/objects/contacts/search"
UNTIL_MIDNIGHT_UTC = 2.5 * 3600


class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def sleep() -> FakeSleep:
    return FakeSleep()


@pytest.fixture
def hub(sleep: FakeSleep) -> Callable[..., HubSpotConnector]:
    """A connector allowed two tries, so each shape shows whether it is retried; rate-limit waits stop at one."""

    def build(**overrides: Any) -> HubSpotConnector:
        config = HubSpotConfig(token=TOKEN, base_url=BASE, **overrides)
        client = build_client(BASE, headers=HubSpotConnector.client_headers(config))
        retry = RetrySettings(attempts=2, initial_wait=0.5, jitter=0.0, rate_limit_waits=0)
        return HubSpotConnector(config, HttpLayer(client, name="hubspot", retry=retry, sleep=sleep), now=lambda: NOW)

    return build


def http_date(moment: datetime) -> str:
    return email.utils.format_datetime(moment, usegmt=True)


def hubspot_error(category: str | None, message: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"status": "error", "message": message, "correlationId": "8b7d-c0ffee"}
    if category is not None:
        body["category"] = category
    return {**body, **extra}


def rate_limit(policy: str) -> dict[str, Any]:
    message = {"TEN_SECONDLY_ROLLING": "You have reached your ten_secondly_rolling limit.",
               "SECONDLY": "You have reached your secondly limit.",
               "DAILY": "You have reached your daily limit."}[policy]
    return {"status": "error", "message": message, "errorType": "RATE_LIMIT", "correlationId": "c",
            "policyName": policy, "requestId": "r"}


HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>Bad Gateway</h1></body></html>"
RATE_HEADERS = {"X-HubSpot-RateLimit-Interval-Milliseconds": "10000", "X-HubSpot-RateLimit-Max": "100",
                "X-HubSpot-RateLimit-Remaining": "0"}


@dataclass(frozen=True)
class Shape:
    """One answer HubSpot (or a proxy in front of it) gives, and what the connector must make of it."""

    status: int
    body: dict[str, Any] | str | None
    raises: type[ConnectorError]
    retried: bool = False
    retry_after: float | None = None
    rate_limited: bool = False
    says: tuple[str, ...] = ()
    headers: dict[str, str] = field(default_factory=dict)

    def response(self) -> httpx.Response:
        if isinstance(self.body, dict):
            return httpx.Response(self.status, json=self.body, headers=self.headers)
        return httpx.Response(self.status, text=self.body or "", headers=self.headers)


SHAPES: dict[str, Shape] = {
    # --- 401 / 403: a person must act -----------------------------------------------------------
    "401 missing token": Shape(401, hubspot_error(
        "INVALID_AUTHENTICATION", "Authentication credentials not found. This API supports OAuth 2.0 "
        "authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/"
        "oauth-overview"), FixConfiguration, says=("INVALID_AUTHENTICATION", "check the token")),
    "401 invalid token": Shape(401, hubspot_error(
        "INVALID_AUTHENTICATION", "The access token provided is invalid or has been revoked."),
        FixConfiguration, says=("invalid or has been revoked",)),
    "401 expired token": Shape(401, hubspot_error(
        "EXPIRED_AUTHENTICATION", "The OAuth token used to make this call expired 12 second(s) ago.",
        context={"expire time": ["2026-05-04T21:29:48.000Z"]}), FixConfiguration,
        says=("EXPIRED_AUTHENTICATION", "expired 12 second(s) ago")),
    "401 empty body": Shape(401, None, FixConfiguration, says=("Unauthorized",)),
    "403 missing scope": Shape(403, hubspot_error(
        "MISSING_SCOPES", "This app hasn't been granted all required scopes to make this call.",
        errors=[{"message": "One or more of the following scopes are required.",
                 "context": {"requiredGranularScopes": ["crm.objects.contacts.write"]}}]),
        FixConfiguration, says=("MISSING_SCOPES", "required scopes", "grant the missing scope")),
    # --- other 4xx: these records cannot go as they are --------------------------------------------
    "404 not found": Shape(404, hubspot_error("OBJECT_NOT_FOUND", "resource not found"), GiveUp,
                           says=("OBJECT_NOT_FOUND",)),
    "409 conflict": Shape(409, hubspot_error(
        "CONFLICT", "Contact already exists. Existing ID: 1201"), GiveUp, says=("CONFLICT", "Existing ID: 1201")),
    "400 over 100 inputs": Shape(400, hubspot_error(
        "VALIDATION_ERROR", "The maximum number of inputs supported in a batch is 100. Please reduce the number "
        "of items and try again"), GiveUp, says=("VALIDATION_ERROR", "maximum number of inputs")),
    "400 over 50 with history": Shape(400, hubspot_error(
        "VALIDATION_ERROR", "The maximum number of inputs supported in a batch request for property histories "
        "is 50"), GiveUp, says=("property histories is 50",)),
    "400 whole batch, one bad input": Shape(400, hubspot_error(
        "VALIDATION_ERROR", 'Property values were not valid: [{"isValid":false,"message":"\'soon\' was not a '
        'valid datetime for leadrelay_scored_at","error":"INVALID_DATE","name":"leadrelay_scored_at"}]',
        errors=[{"message": "'soon' was not a valid datetime", "in": "inputs[1].properties.leadrelay_scored_at",
                 "code": "INVALID_DATE", "context": {"ids": ["2"]}}], context={"ids": ["2"]}),
        GiveUp, says=("VALIDATION_ERROR", "Property values were not valid", "INVALID_DATE")),
    "414 URI too long": Shape(414, "<html><body>414 Request-URI Too Large</body></html>", GiveUp,
                              says=("Request-URI Too Long",)),
    "400 malformed JSON body": Shape(400, '{"status":"error","message":"Invalid input', GiveUp,
                                     says=("Bad Request",)),
    # --- transient: retried after a back-off or the vendor's wait ----------------------------------
    "423 locked": Shape(423, hubspot_error("LOCKED", "Contact 2 is locked by a concurrent update"), RetryLater,
                        retried=True, says=("LOCKED",)),
    "423 locked with Retry-After": Shape(423, hubspot_error("LOCKED", "locked"), RetryLater, retried=True,
                                         retry_after=2.0, headers={"Retry-After": "2"}),
    "477 migration": Shape(477, {"status": "error", "message": "Migration in progress"}, RetryLater,
                           retried=True, retry_after=30.0, headers={"Retry-After": "30"},
                           says=("Migration in progress",)),
    "500 JSON": Shape(500, hubspot_error("INTERNAL_ERROR", "internal error"), RetryLater, retried=True,
                      says=("INTERNAL_ERROR",)),
    "500 HTML": Shape(500, "<html><body>Oops</body></html>", RetryLater, retried=True,
                      says=("Internal Server Error",)),
    "502 HTML": Shape(502, HTML_502, RetryLater, retried=True, says=("Bad Gateway",)),
    "503 JSON with Retry-After": Shape(503, hubspot_error("SERVICE_UNAVAILABLE", "Service Unavailable"),
                                       RetryLater, retried=True, retry_after=5.0, headers={"Retry-After": "5"}),
    "503 HTML": Shape(503, "<html>Service Temporarily Unavailable</html>", RetryLater, retried=True,
                      says=("Service Unavailable",)),
    "504 HTML": Shape(504, "<html><body>Gateway Time-out</body></html>", RetryLater, retried=True,
                      says=("Gateway Timeout",)),
    "500 malformed JSON body": Shape(500, '{"status":"error","mess', RetryLater, retried=True,
                                     says=("Internal Server Error",)),
    # --- 429 by policy: rate-limit waits (not retries), Retry-After or the limiter's; DAILY ends the run
    "429 burst, rate headers": Shape(429, rate_limit("TEN_SECONDLY_ROLLING"), RetryLater, rate_limited=True,
                                     headers=RATE_HEADERS, says=("ten_secondly_rolling",)),
    "429 burst, no headers": Shape(429, rate_limit("TEN_SECONDLY_ROLLING"), RetryLater, rate_limited=True),
    "429 burst, Retry-After seconds": Shape(429, rate_limit("TEN_SECONDLY_ROLLING"), RetryLater,
                                            rate_limited=True, retry_after=3.0, headers={"Retry-After": "3"}),
    "429 burst, Retry-After date": Shape(429, rate_limit("TEN_SECONDLY_ROLLING"), RetryLater, rate_limited=True,
                                         retry_after=7.0,
                                         headers={"Retry-After": http_date(NOW + timedelta(seconds=7))}),
    "429 search, no Retry-After": Shape(429, rate_limit("SECONDLY"), RetryLater, rate_limited=True,
                                        says=("secondly",)),
    "429 search, Retry-After seconds": Shape(429, rate_limit("SECONDLY"), RetryLater, rate_limited=True,
                                             retry_after=2.0, headers={"Retry-After": "2"}),
    "429 search, Retry-After date": Shape(429, rate_limit("SECONDLY"), RetryLater, rate_limited=True,
                                          retry_after=4.0,
                                          headers={"Retry-After": http_date(NOW + timedelta(seconds=4))}),
    "429 daily, no Retry-After": Shape(429, rate_limit("DAILY"), QuotaExhausted, rate_limited=True,
                                       retry_after=UNTIL_MIDNIGHT_UTC, says=("daily limit",)),
    "429 daily, Retry-After seconds": Shape(429, rate_limit("DAILY"), QuotaExhausted, rate_limited=True,
                                            retry_after=3 * 3600.0, headers={"Retry-After": "10800"}),
    "429 daily, Retry-After date": Shape(429, rate_limit("DAILY"), QuotaExhausted, rate_limited=True,
                                         retry_after=3600.0,
                                         headers={"Retry-After": http_date(NOW + timedelta(hours=1))}),
    "429 without policy": Shape(429, {"status": "error", "message": "Too many requests"}, RetryLater,
                                rate_limited=True),
}


@pytest.mark.anyio
@pytest.mark.parametrize("name", list(SHAPES))
async def test_error_shape_becomes_the_right_contract_error(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector], sleep: FakeSleep, name: str
) -> None:
    """Each shape raises its contract error with HubSpot's words and status, is retried only when transient
    (after Retry-After when given), and never carries the token."""
    shape = SHAPES[name]
    route = api.post(UPDATE).mock(side_effect=lambda request: shape.response())
    with pytest.raises(ConnectorError) as info:
        await hub().write_batch("update_lead", [WriteRecord("1", "k-1", {"score": 1})])
    error = info.value
    assert type(error) is shape.raises
    assert error.status == shape.status
    assert route.call_count == (2 if shape.retried else 1)
    if isinstance(error, RetryLater):
        assert error.rate_limited == shape.rate_limited
        assert error.retry_after == (pytest.approx(shape.retry_after) if shape.retry_after is not None else None)
    if shape.retried:
        assert sleep.waits == [shape.retry_after if shape.retry_after is not None else 0.5]
    for words in shape.says:
        assert words in str(error)
    assert "<html" not in str(error).lower()
    assert TOKEN not in str(error)


@pytest.mark.anyio
@pytest.mark.parametrize(("zone", "resets_at"), [
    ("UTC", datetime(2026, 5, 5, 0, 0, tzinfo=UTC)),
    ("America/New_York", datetime(2026, 5, 5, 4, 0, tzinfo=UTC)),
])
async def test_daily_429_carries_when_the_quota_comes_back(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector], zone: str, resets_at: datetime
) -> None:
    """A DAILY 429 without Retry-After resets at midnight in the portal's configured zone: resets_at says when."""
    api.post(UPDATE).mock(return_value=httpx.Response(429, json=rate_limit("DAILY")))
    with pytest.raises(QuotaExhausted) as info:
        await hub(daily_reset_timezone=zone).write_batch("update_lead", [WriteRecord("1", "k", {"score": 1})])
    assert info.value.resets_at == resets_at
    assert info.value.retry_after == pytest.approx((resets_at - NOW).total_seconds())


# --- 2xx that are not what they seem ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("operation", "path", "raises"), [
    ("update_lead", UPDATE, RetryLater),
    ("create_task", CREATE_TASKS, OutcomeUnknown),
])
async def test_success_status_with_malformed_json_is_not_a_success(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector], operation: str, path: str,
    raises: type[ConnectorError],
) -> None:
    """A 200 whose body is cut off acknowledges nothing: an update is retryable, a create's effect unknown."""
    api.post(path).mock(return_value=httpx.Response(200, text='{"status":"COMPLETE","results":[{"id":'))
    payload: dict[str, Any] = {"subject": "Call", "due_at": NOW} if operation == "create_task" else {"score": 1}
    record = WriteRecord("1", "k-1", payload)
    with pytest.raises(ConnectorError) as info:
        await hub().write_batch(operation, [record])
    assert type(info.value) is raises
    assert "not JSON" in str(info.value)


@pytest.mark.anyio
async def test_search_page_with_malformed_json_is_retryable(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector]
) -> None:
    """A pull page that is not JSON raises RetryLater (the cursor stays), not a parser's ValueError."""
    api.post(SEARCH).mock(return_value=httpx.Response(200, text="<html>maintenance</html>"))
    with pytest.raises(RetryLater, match="not JSON"):
        async for _ in hub().pull("leads", None):
            pass


@pytest.mark.anyio
async def test_207_errors_that_name_no_input_leave_tasks_unknown(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector]
) -> None:
    """A create 207 without objectWriteTraceId in its errors cannot say whose they are: those tasks stay
    UNKNOWN (looked up before any re-create), the one confirmed by its key is acknowledged."""
    body = {"status": "COMPLETE", "numErrors": 2,
            "results": [{"id": "901", "properties": {"leadrelay_operation_key": "k-1"}}],
            "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "Invalid association"},
                       {"status": "error", "category": "VALIDATION_ERROR", "message": "Invalid association"}]}
    api.post(CREATE_TASKS).mock(return_value=httpx.Response(207, json=body))
    records = [WriteRecord(str(i), f"k-{i}", {"subject": "Call", "due_at": NOW}) for i in (1, 2, 3)]
    results = await hub().write_batch("create_task", records)
    assert [(r.idempotency_key, r.outcome) for r in results] == [
        ("k-1", Outcome.ACKNOWLEDGED), ("k-2", Outcome.UNKNOWN), ("k-3", Outcome.UNKNOWN)]
    assert results[0].remote_id == "901"


@pytest.mark.anyio
async def test_207_with_no_errors_and_no_results_leaves_created_tasks_unknown(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector]
) -> None:
    """The numErrors-0-empty-results quirk on a create: nothing acknowledged, nothing rejected, all UNKNOWN."""
    api.post(CREATE_TASKS).mock(return_value=httpx.Response(
        207, json={"status": "COMPLETE", "numErrors": 0, "results": [], "errors": []}))
    records = [WriteRecord(str(i), f"k-{i}", {"subject": "Call", "due_at": NOW}) for i in (1, 2)]
    results = await hub().write_batch("create_task", records)
    assert [r.outcome for r in results] == [Outcome.UNKNOWN, Outcome.UNKNOWN]
    assert all("0 of 2 inputs answered" in (r.reason or "") for r in results)


# --- no answer at all ---------------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("failure", [
    httpx.ReadTimeout("read timed out"),
    httpx.WriteTimeout("write timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    httpx.ReadError("connection reset by peer"),
])
async def test_create_without_an_answer_is_an_unknown_outcome(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector], failure: Exception
) -> None:
    """A task create that may have arrived (timeout, reset mid-answer) raises OutcomeUnknown after one send."""
    route = api.post(CREATE_TASKS).mock(side_effect=failure)
    with pytest.raises(OutcomeUnknown):
        await hub().write_batch("create_task", [WriteRecord("1", "k-1", {"subject": "Call", "due_at": NOW})])
    assert route.call_count == 1


@pytest.mark.anyio
@pytest.mark.parametrize("failure", [httpx.ConnectError("refused"), httpx.ConnectTimeout("connect timed out"),
                                     httpx.PoolTimeout("no connection free")])
async def test_create_that_never_left_is_retried(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector], failure: Exception
) -> None:
    """A task create that never reached HubSpot (connect failures) is safely sent again."""
    created = {"status": "COMPLETE", "results": [{"id": "9", "properties": {"leadrelay_operation_key": "k-1"}}]}
    route = api.post(CREATE_TASKS).mock(side_effect=[failure, httpx.Response(201, json=created)])
    results = await hub().write_batch("create_task", [WriteRecord("1", "k-1", {"subject": "Call", "due_at": NOW})])
    assert results[0].outcome is Outcome.ACKNOWLEDGED
    assert route.call_count == 2


@pytest.mark.anyio
async def test_update_without_an_answer_is_resent(
    api: respx.MockRouter, hub: Callable[..., HubSpotConnector]
) -> None:
    """An idempotent update that timed out is simply sent again within the request's retries."""
    ok = {"status": "COMPLETE", "results": [{"id": "1", "properties": {}}]}
    route = api.post(UPDATE).mock(side_effect=[httpx.ReadTimeout("slow"), httpx.Response(200, json=ok)])
    results = await hub().write_batch("update_lead", [WriteRecord("1", "k-1", {"score": 1})])
    assert results[0].outcome is Outcome.ACKNOWLEDGED
    assert route.call_count == 2
