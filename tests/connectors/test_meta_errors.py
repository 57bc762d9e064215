"""The Meta connector against respx: every Graph error shape of apis.md §4.1/4.3/4.5 classified by code,
usage headers, and how upload answers become per-record outcomes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
import respx

from connectors.base import (
    FixConfiguration,
    GiveUp,
    Outcome,
    QuotaExhausted,
    RateLimit,
    RetryLater,
    WriteRecord,
)
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.meta import AudienceUnavailable, MetaConfig, MetaConnector, appsecret_proof, session_id_for
from connectors.meta._errors import make_observe

BASE = "https://graph.meta.test/v25.0"
TOKEN = "EAAB-planted-secret-token-0000"
APP_SECRET = "planted-app-secret-1111"
AUDIENCE = "23850000000000001"
OTHER = "23850000000000002"
USERS = f"/{AUDIENCE}/users"


class Waits:
    """The HTTP layer's sleep: records each wait instead of waiting."""

    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def waits() -> Waits:
    return Waits()


Make = Callable[..., MetaConnector]


@pytest.fixture
async def make(waits: Waits) -> AsyncIterator[Make]:
    """A connector factory; keyword arguments go to MetaConfig. Rate-limit waits end the request at once."""
    made: list[MetaConnector] = []

    def build(**options: Any) -> MetaConnector:
        options.setdefault("access_token", TOKEN)
        options.setdefault("ad_account_id", "act_1000000000001")
        config = MetaConfig(base_url=BASE, **options)
        client = build_client(BASE, headers=MetaConnector.client_headers(config))
        retry = RetrySettings(attempts=2, jitter=0.0, rate_limit_waits=0)
        made.append(MetaConnector(config, HttpLayer(client, name="meta", retry=retry, sleep=waits)))
        return made[-1]

    yield build
    for connector in made:
        await connector.http.client.aclose()


@pytest.fixture
def meta(make: Make) -> MetaConnector:
    return make()


def graph_error(code: int, message: str = "boom", *, status: int = 400, headers: dict[str, str] | None = None,
                **extra: Any) -> httpx.Response:
    body = {"error": {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "AbCdEfGh123",
                      **extra}}
    return httpx.Response(status, json=body, headers=headers)


def buc(minutes: int, percent: int = 100) -> dict[str, str]:
    entry = {"type": "custom_audience", "call_count": percent, "total_cputime": 10, "total_time": 10,
             "estimated_time_to_regain_access": minutes}
    return {"X-Business-Use-Case-Usage": json.dumps({"2000000000001": [entry]})}


def accepted(rows: int, invalid: int = 0, samples: dict[str, str] | None = None) -> httpx.Response:
    return httpx.Response(200, json={"audience_id": AUDIENCE, "session_id": "1", "num_received": rows,
                                     "num_invalid_entries": invalid, "invalid_entry_samples": samples or {}})


def person(n: int, audience: str = AUDIENCE, **extra: Any) -> WriteRecord:
    return WriteRecord(str(n), f"add:{n}", {"audience_id": audience, "email": f"person{n}@example.com", **extra})


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def form_of(request: httpx.Request) -> dict[str, Any]:
    fields = {k: v[0] for k, v in parse_qs(request.content.decode(), keep_blank_values=True).items()}
    return {k: json.loads(v) if k in ("payload", "session") else v for k, v in fields.items()}


async def classify(meta: MetaConnector, api: respx.MockRouter, response: httpx.Response) -> None:
    api.get("/probe").mock(return_value=response)
    await meta.http.request("GET", "/probe", classify=meta.classify)


# --- tokens and permissions (§4.1) ----------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("error", [
    graph_error(190, "Invalid OAuth access token - Cannot parse access token"),
    graph_error(190, "Error validating access token: Session has expired", error_subcode=463),
    graph_error(190, "Error validating access token: user changed password", status=401, error_subcode=460),
    graph_error(104, "An access token is required to request this resource."),
])
async def test_token_errors_ask_for_a_new_token(meta: MetaConnector, api: respx.MockRouter,
                                                error: httpx.Response) -> None:
    """Code 190 (any subcode) and a missing token end in FixConfiguration from check(), whatever the status."""
    api.get("/act_1000000000001").mock(return_value=error)
    with pytest.raises(FixConfiguration, match="access token is missing, invalid or expired"):
        await meta.check()


@pytest.mark.anyio
@pytest.mark.parametrize("code", [10, 200, 294, 270])
async def test_permission_errors_ask_for_access(meta: MetaConnector, api: respx.MockRouter, code: int) -> None:
    """Permission codes (10, 2xx, 270) are configuration problems, not retries."""
    with pytest.raises(FixConfiguration, match="ads_management"):
        await classify(meta, api, graph_error(code, "(#294) Managing advertisements requires ads_management"))


@pytest.mark.anyio
async def test_appsecret_proof_problems_are_configuration(meta: MetaConnector, api: respx.MockRouter) -> None:
    """Graph's code-100 appsecret_proof refusals are told apart from bad payloads and ask for app_secret."""
    with pytest.raises(FixConfiguration, match="set app_secret"):
        await classify(meta, api, graph_error(100, "Invalid appsecret_proof provided in the API argument"))


@pytest.mark.anyio
async def test_check_reports_a_missing_or_dead_ad_account(meta: MetaConnector, api: respx.MockRouter) -> None:
    """An ad account that does not exist (100/33) or is disabled fails check() with the account's name."""
    route = api.get("/act_1000000000001")
    route.mock(return_value=graph_error(100, "Unsupported get request. Object with ID 'act_1' does not exist",
                                        error_subcode=33))
    with pytest.raises(FixConfiguration, match="ad account act_1000000000001 does not exist"):
        await meta.check()
    route.mock(return_value=httpx.Response(200, json={"id": "act_1000000000001", "account_status": 2}))
    with pytest.raises(FixConfiguration, match="is disabled"):
        await meta.check()
    route.mock(return_value=httpx.Response(200, json={"id": "act_1000000000001", "account_status": 1}))
    await meta.check()


# --- rate limits (§4.5) ---------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize(("code", "subcode"), [(4, 1504022), (4, 1504039), (17, 2446079), (32, None),
                                               (613, 1487742), (80003, None), (80004, None)])
async def test_rate_limit_codes_are_rate_limited_retries(meta: MetaConnector, api: respx.MockRouter,
                                                         code: int, subcode: int | None) -> None:
    """Every throttle code is RetryLater(rate_limited) whatever the HTTP status; without a hint, wait 60 s."""
    extra = {"error_subcode": subcode} if subcode is not None else {}
    with pytest.raises(RetryLater) as caught:
        await classify(meta, api, graph_error(code, "too many calls", status=403, is_transient=True, **extra))
    assert caught.value.rate_limited
    assert caught.value.retry_after == 60.0
    assert not isinstance(caught.value, QuotaExhausted)


@pytest.mark.anyio
async def test_throttle_waits_for_metas_estimate(meta: MetaConnector, api: respx.MockRouter) -> None:
    """estimated_time_to_regain_access (minutes) in X-Business-Use-Case-Usage sets the wait."""
    with pytest.raises(RetryLater) as caught:
        await classify(meta, api, graph_error(613, "(#613) Calls to this api have exceeded the rate limit.",
                                              error_subcode=1487742, headers=buc(minutes=3)))
    assert caught.value.retry_after == 180.0


@pytest.mark.anyio
async def test_long_throttle_ends_the_run(meta: MetaConnector, api: respx.MockRouter) -> None:
    """A throttle Meta expects to last longer than max_inline_wait_seconds is QuotaExhausted with that wait."""
    with pytest.raises(QuotaExhausted) as caught:
        await classify(meta, api, graph_error(80003, "(#80003) There have been too many calls to this ad-account.",
                                              headers=buc(minutes=30)))
    assert caught.value.retry_after == 1800.0
    assert caught.value.rate_limited


@pytest.mark.anyio
async def test_http_layer_retries_a_throttle_after_the_estimate(make: Make, api: respx.MockRouter,
                                                                waits: Waits) -> None:
    """Through the HTTP layer a throttled request is sent again after Meta's estimate and then succeeds."""
    meta = make()
    meta.http.retry = RetrySettings(attempts=2, jitter=0.0)
    route = api.post(USERS).mock(side_effect=[graph_error(80003, headers=buc(minutes=2)), accepted(1)])
    outcomes = await meta.write_batch("audience_add", [person(1)])
    assert [o.outcome for o in outcomes] == [Outcome.ACKNOWLEDGED]
    assert waits.seconds == [120.0]
    assert route.call_count == 2


def test_usage_headers_correct_the_rate_model() -> None:
    """Usage shares become the requests left in the window; 100 % leaves none; no header says nothing."""
    observe = make_observe(RateLimit(100, 60))  # 6,000 an hour
    half = observe(httpx.Response(200, headers=buc(minutes=0, percent=50)))
    assert half is not None
    assert (half.remaining, half.limit, half.window_seconds) == (100, 100, 60)  # 3,000 left this hour
    nearly = observe(httpx.Response(200, headers=buc(minutes=0, percent=99)))
    assert nearly is not None
    assert nearly.remaining == 60  # 1 % of 6,000
    spent = observe(httpx.Response(200, headers=buc(minutes=5, percent=100)))
    assert spent is not None
    assert spent.remaining == 0
    app = observe(httpx.Response(200, headers={"X-App-Usage": json.dumps({"call_count": 100, "total_time": 3})}))
    assert app is not None
    assert app.remaining == 0
    other_use_case = {"X-Business-Use-Case-Usage": json.dumps(
        {"1": [{"type": "ads_management", "call_count": 100}, {"type": "custom_audience", "call_count": 0}]})}
    unaffected = observe(httpx.Response(200, headers=other_use_case))
    assert unaffected is not None
    assert unaffected.remaining == 100
    assert observe(httpx.Response(200)) is None


# --- transient and malformed answers --------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("response", [
    graph_error(1, "An unknown error occurred", status=500, error_subcode=99),
    graph_error(2, "Service temporarily unavailable", status=503, is_transient=True),
    graph_error(9999, "Something odd, try again", is_transient=True),
    httpx.Response(502, text="<!DOCTYPE html><html><title>Facebook | Error</title></html>"),
    httpx.Response(504, text=""),
    httpx.Response(200, text="<html>proxy says hi</html>"),
])
async def test_transient_and_unreadable_answers_retry(meta: MetaConnector, api: respx.MockRouter,
                                                      response: httpx.Response) -> None:
    """5xx, is_transient, codes 1/2, HTML pages and a 200 that is not a JSON object are all RetryLater."""
    with pytest.raises(RetryLater) as caught:
        await classify(meta, api, response)
    assert not caught.value.rate_limited
    assert "<html" not in str(caught.value).lower()


@pytest.mark.anyio
async def test_errors_without_an_envelope_fall_back_on_the_status(meta: MetaConnector,
                                                                  api: respx.MockRouter) -> None:
    """With no Graph body: 401 asks for configuration, 429 is a throttle (Retry-After honoured), 400 gives up."""
    with pytest.raises(FixConfiguration):
        await classify(meta, api, httpx.Response(401, text="<html>Unauthorized</html>"))
    with pytest.raises(RetryLater) as caught:
        await classify(meta, api, httpx.Response(429, headers={"Retry-After": "7"}))
    assert (caught.value.rate_limited, caught.value.retry_after) == (True, 7.0)
    with pytest.raises(GiveUp, match="HTTP 400"):
        await classify(meta, api, httpx.Response(400, text="<html>Bad Request</html>"))


@pytest.mark.anyio
async def test_other_code_100_is_a_bad_request(meta: MetaConnector, api: respx.MockRouter) -> None:
    """A plain invalid parameter (a malformed payload) gives up on these records; the framework bisects."""
    api.post(USERS).mock(return_value=graph_error(100, "(#100) Data is missing or does not match schema"))
    with pytest.raises(GiveUp, match="does not match schema"):
        await meta.write_batch("audience_add", [person(1), person(2)])


@pytest.mark.anyio
async def test_secrets_are_scrubbed_from_messages(make: Make, api: respx.MockRouter) -> None:
    """A token, app secret or proof echoed by something in between never reaches an exception message."""
    meta = make(app_secret=APP_SECRET)
    proof = appsecret_proof(TOKEN, APP_SECRET)
    with pytest.raises(GiveUp) as caught:
        await classify(meta, api, graph_error(100, f"bad {TOKEN} {APP_SECRET} {proof}"))
    text = str(caught.value)
    assert TOKEN not in text
    assert APP_SECRET not in text
    assert proof not in text
    assert text.count("***") == 3


# --- audiences refused (§4.3) ---------------------------------------------------------------------


FLAGGED = graph_error(
    100, "Invalid parameter", error_subcode=1713230, error_user_title="Audience Upload Blocked",
    error_user_msg="Before updating user memberships, you must resolve integrity restrictions on this Data File "
                   "Custom Audience.")


@pytest.mark.anyio
async def test_flagged_audience_is_audience_unavailable(meta: MetaConnector, api: respx.MockRouter) -> None:
    """100/1713230 classifies as AudienceUnavailable (a FixConfiguration) carrying Meta's user title."""
    with pytest.raises(AudienceUnavailable, match=r"Audience Upload Blocked.*Audience Manager"):
        await classify(meta, api, FLAGGED)


@pytest.mark.anyio
async def test_flagged_audience_rejects_its_rows_only(meta: MetaConnector, api: respx.MockRouter) -> None:
    """Rows for a flagged audience are rejected with Meta's reason; another audience's rows still go through."""
    api.post(USERS).mock(return_value=FLAGGED)
    api.post(f"/{OTHER}/users").mock(return_value=accepted(1))
    outcomes = await meta.write_batch("audience_add", [person(1), person(2, OTHER), person(3)])
    assert [o.outcome for o in outcomes] == [Outcome.REJECTED, Outcome.ACKNOWLEDGED, Outcome.REJECTED]
    assert "Audience Upload Blocked" in (outcomes[0].reason or "")


@pytest.mark.anyio
async def test_deleted_audience_rejects_its_rows(meta: MetaConnector, api: respx.MockRouter) -> None:
    """An audience id Meta does not know (100/33) rejects that audience's rows with Meta's message."""
    api.delete(USERS).mock(return_value=graph_error(
        100, f"Unsupported delete request. Object with ID '{AUDIENCE}' does not exist", error_subcode=33))
    outcomes = await meta.write_batch("audience_remove", [person(1)])
    assert outcomes[0].outcome is Outcome.REJECTED
    assert "does not exist" in (outcomes[0].reason or "")


# --- upload answers (§4.3) ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_received_count_mismatch_is_not_acknowledged(meta: MetaConnector, api: respx.MockRouter) -> None:
    """num_received below the rows sent is retried with the same session, and never acknowledged."""
    route = api.post(USERS).mock(return_value=accepted(2))
    with pytest.raises(RetryLater, match="received 2 of 3 rows"):
        await meta.write_batch("audience_add", [person(1), person(2), person(3)])
    sessions = [form_of(call.request)["session"] for call in route.calls]
    assert len(sessions) == 2
    assert sessions[0] == sessions[1]


@pytest.mark.anyio
async def test_named_invalid_entries_are_rejected_with_metas_reason(meta: MetaConnector,
                                                                   api: respx.MockRouter) -> None:
    """Rows whose hash appears in invalid_entry_samples are rejected; the reason never quotes the value."""
    bad = sha("person2@example.com")
    api.post(USERS).mock(return_value=accepted(3, invalid=1, samples={bad: "Invalid EMAIL hash"}))
    outcomes = await meta.write_batch("audience_add", [person(1), person(2), person(3)])
    assert [o.outcome for o in outcomes] == [Outcome.ACKNOWLEDGED, Outcome.REJECTED, Outcome.ACKNOWLEDGED]
    assert outcomes[1].reason == "Meta counted this row as invalid: Invalid EMAIL hash"
    assert all(bad not in (o.reason or "") for o in outcomes)


@pytest.mark.anyio
async def test_unnamed_invalid_entries(meta: MetaConnector, api: respx.MockRouter) -> None:
    """Unnamed invalid entries reject every row when they account for all; otherwise the batch gives up."""
    route = api.post(USERS).mock(return_value=accepted(1, invalid=1))
    outcomes = await meta.write_batch("audience_add", [person(1)])
    assert outcomes[0].outcome is Outcome.REJECTED
    route.mock(return_value=accepted(3, invalid=1))
    with pytest.raises(GiveUp, match="1 invalid entries among 3 rows"):
        await meta.write_batch("audience_add", [person(1), person(2), person(3)])


@pytest.mark.anyio
async def test_unusable_records_are_rejected_before_sending(meta: MetaConnector, api: respx.MockRouter) -> None:
    """A record with no usable identifier, a bad audience id or unknown keys is rejected without a request."""
    route = api.post(USERS).mock(return_value=accepted(1))
    outcomes = await meta.write_batch("audience_add", [
        WriteRecord("1", "a", {"audience_id": AUDIENCE, "email": "  ", "country": "US", "zip": "94107"}),
        WriteRecord("2", "b", {"audience_id": "my audience", "email": "x@example.com"}),
        WriteRecord("3", "c", {"audience_id": AUDIENCE, "email": "x@example.com", "ssn": "123"}),
        WriteRecord("4", "d", {"audience_id": AUDIENCE, "first_name": "Ann"}),
    ])
    assert [o.outcome for o in outcomes] == [Outcome.REJECTED] * 4
    assert "no identifier Meta can match on" in (outcomes[0].reason or "")
    assert "audience_id" in (outcomes[1].reason or "")
    assert "unknown payload key" in (outcomes[2].reason or "")
    assert route.call_count == 0


@pytest.mark.anyio
async def test_payload_and_session_on_the_wire(make: Make, api: respx.MockRouter) -> None:
    """Rows go hashed in a multi-key payload, split by rows_per_request into one session numbered 1…n."""
    meta = make(rows_per_request=2, app_secret=APP_SECRET)
    route = api.post(USERS).mock(side_effect=[accepted(2), accepted(2), accepted(1)])
    batch = [person(n, phone="+1 650 555 000" + str(n)) for n in range(1, 6)]
    outcomes = await meta.write_batch("audience_add", batch)
    forms = [form_of(call.request) for call in route.calls]
    assert [f["payload"]["schema"] for f in forms] == [["EMAIL", "PHONE"]] * 3
    assert forms[0]["payload"]["data"][0] == [sha("person1@example.com"), sha("16505550001")]
    sessions = [f["session"] for f in forms]
    expected_id = session_id_for("audience_add", AUDIENCE, [r.idempotency_key for r in batch], 2)
    assert sessions == [
        {"session_id": expected_id, "batch_seq": seq, "last_batch_flag": seq == 3, "estimated_num_total": 5}
        for seq in (1, 2, 3)]
    assert {o.remote_id for o in outcomes} == {str(expected_id)}
    assert all(f["appsecret_proof"] == appsecret_proof(TOKEN, APP_SECRET) for f in forms)
    for call in route.calls:
        assert call.request.headers["Authorization"] == f"Bearer {TOKEN}"
        assert TOKEN not in str(call.request.url)
        assert TOKEN not in call.request.content.decode()
        assert "person1" not in call.request.content.decode()


@pytest.mark.anyio
async def test_remove_sends_delete_with_a_body(meta: MetaConnector, api: respx.MockRouter) -> None:
    """Removals are DELETE with the payload in the body (a 10,000-row query string would overflow URLs)."""
    route = api.delete(USERS).mock(return_value=accepted(1))
    await meta.write_batch("audience_remove", [person(1)])
    request = route.calls.last.request
    assert "payload" not in str(request.url)
    assert form_of(request)["payload"]["data"] == [[sha("person1@example.com")]]


@pytest.mark.anyio
async def test_duplicate_rows_go_once_and_share_the_outcome(meta: MetaConnector, api: respx.MockRouter) -> None:
    """Two records for the same person and audience are one row; both get its outcome."""
    route = api.post(USERS).mock(return_value=accepted(1))
    twin = WriteRecord("1", "again:1", {"audience_id": AUDIENCE, "email": " PERSON1@example.com"})
    outcomes = await meta.write_batch("audience_add", [person(1), twin])
    assert [o.outcome for o in outcomes] == [Outcome.ACKNOWLEDGED, Outcome.ACKNOWLEDGED]
    assert len(form_of(route.calls.last.request)["payload"]["data"]) == 1


def test_session_id_is_stable_for_the_batch() -> None:
    """The same batch in any order gives the same session id; another batch or request size another."""
    one = session_id_for("audience_add", AUDIENCE, ["a", "b", "c"], 10_000)
    assert one == session_id_for("audience_add", AUDIENCE, ["c", "a", "b"], 10_000)
    assert 0 < one < 2**53
    assert one != session_id_for("audience_remove", AUDIENCE, ["a", "b", "c"], 10_000)
    assert one != session_id_for("audience_add", AUDIENCE, ["a", "b"], 10_000)
    assert one != session_id_for("audience_add", AUDIENCE, ["a", "b", "c"], 5_000)


@pytest.mark.anyio
async def test_failure_after_acknowledged_requests_keeps_them(make: Make, api: respx.MockRouter) -> None:
    """When a later request of a batch fails, the rows already acknowledged stay so; the rest are retryable."""
    meta = make(rows_per_request=2)
    api.post(USERS).mock(side_effect=[accepted(2), graph_error(1, status=500), graph_error(1, status=500)])
    outcomes = await meta.write_batch("audience_add", [person(n) for n in range(1, 5)])
    assert [o.outcome for o in outcomes] == [Outcome.ACKNOWLEDGED] * 2 + [Outcome.RETRYABLE] * 2
    assert "batch interrupted" in (outcomes[2].reason or "")


@pytest.mark.anyio
async def test_match_rate_reads_the_session(meta: MetaConnector, api: respx.MockRouter) -> None:
    """The match rate is matched ÷ received (invalid rows included) from the numeric strings Meta returns."""
    route = api.get(f"/{AUDIENCE}/sessions").mock(return_value=httpx.Response(200, json={"data": [
        {"session_id": "42", "num_received": "8", "num_matched": "3", "num_invalid_entries": "2",
         "progress": "100", "stage": "finished", "start_time": "1", "end_time": "2"}]}))
    rate = await meta.match_rate(AUDIENCE, "42")
    assert (rate.received, rate.matched, rate.invalid, rate.rate, rate.stage) == (8, 3, 2, 0.375, "finished")
    assert route.calls.last.request.url.params["session_id"] == "42"
    route.mock(return_value=httpx.Response(200, json={"data": []}))
    with pytest.raises(GiveUp, match="no session 42"):
        await meta.match_rate(AUDIENCE, 42)


@pytest.mark.anyio
async def test_unknown_operation_and_oversized_batch(meta: MetaConnector) -> None:
    """Unknown operations and batches over the declared maximum are refused before any request."""
    with pytest.raises(GiveUp, match="unknown operation"):
        await meta.write_batch("update_lead", [person(1)])
    size = meta.capabilities.operations["audience_add"].max_batch_size
    with pytest.raises(GiveUp, match="exceeds"):
        await meta.write_batch("audience_add", [person(1)] * (size + 1))
