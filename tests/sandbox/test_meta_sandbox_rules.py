"""The Meta sandbox's own rules (apis.md §4): auth, audiences, upload validation, set semantics, sessions,
matching, the flagged-audience error, per-ad-account rate limits and fault knobs. In-process over ASGI."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sandbox import FaultSettings
from connectors.sandbox.meta import MetaLimits, MetaSandbox

pytestmark = pytest.mark.anyio

TOKEN = "sandbox-test-token"
ACCOUNT = "1000000000001"
BASE = "https://graph.facebook.com/v25.0"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Clock:
    """The sandbox's clock; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


MakeMeta = Callable[..., MetaSandbox]


@pytest.fixture
def make_meta(clock: Clock) -> MakeMeta:
    def make(**kwargs: Any) -> MetaSandbox:
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("ad_account_id", ACCOUNT)
        kwargs.setdefault("clock", clock)
        return MetaSandbox(**kwargs)

    return make


@pytest.fixture
def meta(make_meta: MakeMeta) -> MetaSandbox:
    return make_meta()


Connect = Callable[..., httpx.AsyncClient]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """httpx clients bound in-process to a sandbox, authenticated by bearer token unless told otherwise."""
    clients: list[httpx.AsyncClient] = []

    def make(sandbox: MetaSandbox, *, token: str | None = TOKEN, base: str = BASE) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), base_url=base,
                                         headers=headers))
        return clients[-1]

    yield make
    for client in clients:
        await client.aclose()


def upload(schema: Any, data: Any, session: dict[str, Any] | None = None) -> dict[str, str]:
    """Form fields as the SDKs send them: JSON text in ``payload`` and ``session``."""
    fields = {"payload": json.dumps({"schema": schema, "data": data})}
    if session is not None:
        fields["session"] = json.dumps(session)
    return fields


def emails(*names: str) -> list[list[str]]:
    return [[sha(f"{name}@example.com")] for name in names]


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    assert error["fbtrace_id"]
    return error


# --- auth -----------------------------------------------------------------------------------------


async def test_token_in_query_form_json_or_header(meta: MetaSandbox, connect: Connect) -> None:
    """The token is accepted from access_token (query, form, JSON body) or an Authorization: Bearer header."""
    bare = connect(meta, token=None)
    assert (await bare.get("/me", params={"access_token": TOKEN})).status_code == 200
    audience = meta.create_audience("a")
    form = {**upload(["EMAIL"], emails("a")), "access_token": TOKEN}
    assert (await bare.post(f"/{audience}/users", data=form)).status_code == 200
    body = {"payload": {"schema": ["EMAIL"], "data": emails("b")}, "access_token": TOKEN}
    assert (await bare.post(f"/{audience}/users", json=body)).status_code == 200
    assert (await connect(meta).get("/me")).status_code == 200
    assert meta.member_values(audience) == {sha("a@example.com"), sha("b@example.com")}


async def test_bad_missing_and_expired_tokens(make_meta: MakeMeta, connect: Connect) -> None:
    """A wrong token is 190 (never echoed), an expired one 190/463, none at all 104; all HTTP 400."""
    meta = make_meta(expired_tokens={"old-token"})
    wrong = await connect(meta, token="wrong-token-value").get("/me")
    assert (wrong.status_code, error_of(wrong)["code"], error_of(wrong)["type"]) == (400, 190, "OAuthException")
    assert "wrong-token-value" not in wrong.text
    assert wrong.headers["WWW-Authenticate"].startswith('OAuth "Facebook Platform" "invalid_token"')
    expired = error_of(await connect(meta, token="old-token").get("/me"))
    assert (expired["code"], expired["error_subcode"]) == (190, 463)
    assert error_of(await connect(meta, token=None).get("/me"))["code"] == 104


async def test_appsecret_proof_required_when_the_app_has_a_secret(make_meta: MakeMeta, connect: Connect) -> None:
    """With app_secret set, calls need appsecret_proof = HMAC-SHA256(token, secret); wrong or missing is 100."""
    meta = make_meta(app_secret="s3cret")
    client = connect(meta)
    missing = error_of(await client.get("/me"))
    assert (missing["code"], missing["message"]) == (100, "API calls from the server require an appsecret_proof "
                                                          "argument")
    wrong = error_of(await client.get("/me", params={"appsecret_proof": "0" * 64}))
    assert wrong["message"] == "Invalid appsecret_proof provided in the API argument"
    proof = hmac.new(b"s3cret", TOKEN.encode(), hashlib.sha256).hexdigest()
    assert (await client.get("/me", params={"appsecret_proof": proof})).status_code == 200


# --- accounts and audiences -----------------------------------------------------------------------


async def test_create_and_read_audiences(meta: MetaSandbox, connect: Connect) -> None:
    """customaudiences creates CUSTOM customer-file audiences; bad parameters and unknown accounts are 100."""
    client = connect(meta)
    good = {"name": "Hot leads", "subtype": "CUSTOM", "customer_file_source": "USER_PROVIDED_ONLY"}
    created = await client.post(f"/act_{ACCOUNT}/customaudiences", data=good)
    audience = created.json()["id"]
    assert audience in meta.audiences
    for bad in ({**good, "subtype": "LOOKALIKE"}, {**good, "customer_file_source": "MAGIC"}, {**good, "name": ""}):
        assert error_of(await client.post(f"/act_{ACCOUNT}/customaudiences", data=bad))["code"] == 100
    unknown = error_of(await client.post("/act_999/customaudiences", data=good))
    assert (unknown["code"], unknown["error_subcode"]) == (100, 33)
    read = (await client.get(f"/{audience}", params={"fields": "name,operation_status,account_id"})).json()
    assert read == {"id": audience, "name": "Hot leads", "operation_status": {"code": 200, "description": "Normal"},
                    "account_id": ACCOUNT}
    assert (await client.get(f"/{audience}")).json() == {"id": audience}  # Graph returns id unless asked
    listed = (await client.get(f"/act_{ACCOUNT}/customaudiences", params={"fields": "name"})).json()
    assert listed == {"data": [{"id": audience, "name": "Hot leads"}]}


async def test_paths_with_or_without_version_and_unknown_paths(meta: MetaSandbox, connect: Connect) -> None:
    """Graph paths work with or without /vNN.0; unknown paths and unknown objects answer Graph's errors."""
    assert (await connect(meta, base="https://graph.facebook.com").get("/me")).status_code == 200
    assert error_of(await connect(meta).get("/nothing/here"))["code"] == 2500
    missing = error_of(await connect(meta).delete("/123/users", params=upload(["EMAIL"], emails("a"))))
    assert (missing["code"], missing["error_subcode"]) == (100, 33)
    assert missing["message"].startswith("Unsupported delete request. Object with ID '123' does not exist")


# --- uploads --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("fields", "words"), [
    ({}, "The parameter payload is required"),
    ({"payload": "{not json"}, "must be a JSON object"),
    (upload(["EMAIL", "SSN"], [["x", "y"]]), "Invalid schema"),
    (upload(["EMAIL", "FN"], [[sha("a"), sha("b")], [sha("c")]]), "Data is missing or does not match schema"),
    (upload(["EMAIL"], []), "Data is missing or does not match schema"),
    (upload("EMAIL_SHA256", "nope"), "Data is missing or does not match schema"),
    (upload(["EMAIL"], emails("a"), {"session_id": "x", "batch_seq": 1}), "Invalid session"),
    (upload(["EMAIL"], emails("a"), {"session_id": 5, "batch_seq": 0}), "Invalid session"),
])
async def test_payload_validation(meta: MetaSandbox, connect: Connect, fields: dict[str, str], words: str) -> None:
    """Malformed payloads and sessions are refused whole with a (#100) error and change nothing."""
    audience = meta.create_audience("a")
    error = error_of(await connect(meta).post(f"/{audience}/users", data=fields))
    assert error["code"] == 100
    assert words in error["message"]
    assert meta.members(audience) == []


async def test_more_than_10000_rows_is_refused(meta: MetaSandbox, connect: Connect) -> None:
    """10,001 rows in one request is a (#100) error and nothing is applied; 10,000 are accepted."""
    audience = meta.create_audience("a")
    rows = [[sha(f"p{n}")] for n in range(10_001)]
    client = connect(meta)
    refused = await client.post(f"/{audience}/users", data=upload(["EMAIL"], rows))
    assert (refused.status_code, error_of(refused)["code"]) == (400, 100)
    assert "maximum is 10000" in error_of(refused)["message"]
    assert meta.members(audience) == []
    accepted = await client.post(f"/{audience}/users", data=upload(["EMAIL"], rows[:10_000]))
    assert accepted.json()["num_received"] == 10_000


async def test_unhashed_values_are_counted_invalid(meta: MetaSandbox, connect: Connect) -> None:
    """A plain e-mail (not a SHA-256) makes its row an invalid entry, sampled with a reason and not added."""
    audience = meta.create_audience("a")
    rows = [[sha("ok@example.com"), ""], ["Plain@Example.com", ""], ["", ""], [sha("x"), sha("y").upper()]]
    body = (await connect(meta).post(f"/{audience}/users", data=upload(["EMAIL", "FN"], rows))).json()
    assert body["num_received"] == 4
    assert body["num_invalid_entries"] == 3
    assert body["invalid_entry_samples"]["Plain@Example.com"] == "EMAIL: not a SHA-256 hash of a normalised value"
    assert sha("y").upper() in body["invalid_entry_samples"]  # uppercase hex is not Meta's format either
    assert meta.member_values(audience) == {sha("ok@example.com")}


async def test_set_semantics(meta: MetaSandbox, connect: Connect) -> None:
    """Adding a member twice or removing a non-member changes nothing; rows merge by strong identifier."""
    audience = meta.create_audience("a")
    client = connect(meta)
    users = f"/{audience}/users"
    schema = ["EMAIL", "PHONE"]
    await client.post(users, data=upload(schema, [[sha("a"), ""], [sha("b"), ""]]))
    await client.post(users, data=upload(schema, [[sha("a"), ""]]))
    assert len(meta.members(audience)) == 2
    await client.post(users, data=upload(schema, [[sha("a"), sha("phone-a")]]))  # same person, one more key
    assert {m["EMAIL"]: m.get("PHONE") for m in meta.members(audience)} == {sha("a"): sha("phone-a"),
                                                                             sha("b"): None}
    gone = await client.request("DELETE", users, data=upload(schema, [["", sha("phone-a")], [sha("nobody"), ""]]))
    assert gone.json()["num_received"] == 2
    assert meta.member_values(audience) == {sha("b")}


async def test_sessions_count_each_batch_once(meta: MetaSandbox, connect: Connect) -> None:
    """Batches of one session add up; a resent batch replaces its count; the session ends with its last batch."""
    audience = meta.create_audience("a")
    meta.add_known_people([{"EMAIL": sha("a@example.com")}, {"EMAIL": sha("c@example.com")}])
    client = connect(meta)
    users = f"/{audience}/users"

    def session(seq: int, last: bool) -> dict[str, Any]:
        return {"session_id": 77, "batch_seq": seq, "last_batch_flag": last, "estimated_num_total": 4}

    first = await client.post(users, data=upload(["EMAIL"], emails("a", "b"), session(1, False)))
    assert first.json()["session_id"] == "77"
    assert meta.session(audience, 77)["stage"] == "uploading"
    await client.post(users, data=upload(["EMAIL"], emails("a", "b"), session(1, False)))  # resent
    await client.post(users, data=upload(["EMAIL"], [[sha("c@example.com")], ["not-a-hash"]], session(2, True)))
    listed = (await client.get(f"/{audience}/sessions", params={"session_id": "77"})).json()["data"]
    assert listed == [{"session_id": "77", "start_time": str(int(NOW.timestamp())),
                       "end_time": str(int(NOW.timestamp())), "num_received": "4", "num_matched": "2",
                       "num_invalid_entries": "1", "progress": "100", "stage": "finished"}]
    late = error_of(await client.post(users, data=upload(["EMAIL"], emails("d"), session(3, False))))
    assert "already received its last batch" in late["message"]
    other_op = error_of(await client.request("DELETE", users, data=upload(["EMAIL"], emails("d"), session(1, False))))
    assert "another operation" in other_op["message"]
    assert meta.stats.rows_received == 6  # every attempt is traffic; the session counts each batch once


async def test_upload_without_session_gets_its_own(meta: MetaSandbox, connect: Connect) -> None:
    """Without a session the sandbox opens a finished one-batch session with an id of its own."""
    audience = meta.create_audience("a")
    body = (await connect(meta).post(f"/{audience}/users", data=upload("EMAIL_SHA256", [sha("a")]))).json()
    view = meta.session(audience, int(body["session_id"]))
    assert (view["num_received"], view["stage"]) == ("1", "finished")


async def test_known_people_make_matches(make_meta: MakeMeta, connect: Connect) -> None:
    """Rows matching a known person by any strong identifier count as matched; the audience size follows."""
    meta = make_meta(known_people=[{"EMAIL": sha("a"), "PHONE": sha("pa")}, {"EXTERN_ID": "crm-7"}])
    audience = meta.create_audience("a")
    rows = [[sha("zzz"), sha("pa"), ""], ["", "", "crm-7"], [sha("nobody"), "", ""]]
    body = (await connect(meta).post(f"/{audience}/users", data=upload(["EMAIL", "PHONE", "EXTERN_ID"], rows))).json()
    assert meta.session(audience, int(body["session_id"]))["num_matched"] == "2"
    assert meta.matched_people(audience) == 2
    size = (await connect(meta).get(f"/{audience}", params={"fields": "approximate_count_lower_bound"})).json()
    assert size["approximate_count_lower_bound"] == 2


async def test_flagged_audience_refuses_edits(meta: MetaSandbox, connect: Connect) -> None:
    """A flagged audience answers adds and removes with the documented 100/1713230 body."""
    audience = meta.create_audience("a")
    meta.flag_audience(audience)
    client = connect(meta)
    for method in ("POST", "DELETE"):
        error = error_of(await client.request(method, f"/{audience}/users", data=upload(["EMAIL"], emails("a"))))
        assert (error["code"], error["error_subcode"], error["message"]) == (100, 1713230, "Invalid parameter")
        assert error["error_user_title"] == "Audience Upload Blocked"
        assert error["error_user_msg"].startswith("Before updating user memberships, you must resolve")
    status = (await client.get(f"/{audience}", params={"fields": "operation_status"})).json()
    assert status["operation_status"]["code"] == 471
    assert meta.members(audience) == []


# --- rate limits ----------------------------------------------------------------------------------


async def test_rate_limit_per_ad_account(make_meta: MakeMeta, connect: Connect, clock: Clock) -> None:
    """The hourly budget (base + 40 per audience) is spent per ad account; over it, 80003 with the usage header."""
    meta = make_meta(limits=MetaLimits(calls_per_hour=2, per_audience=1), ad_account_id=[ACCOUNT, "2000"])
    audience = meta.create_audience("a")  # budget: 2 + 1 × 1 audience = 3 calls an hour
    elsewhere = meta.create_audience("b", account_id="2000")
    client = connect(meta)
    answers = []
    for _ in range(4):
        answers.append(await client.get(f"/{audience}/sessions"))
        clock.now += timedelta(minutes=10)
    usage = [json.loads(a.headers["X-Business-Use-Case-Usage"])["2000000000001"][0] for a in answers]
    assert [u["call_count"] for u in usage] == [33, 66, 100, 100]
    refused = error_of(answers[3])
    assert (answers[3].status_code, refused["code"], refused["is_transient"]) == (400, 80003, True)
    assert usage[3]["estimated_time_to_regain_access"] == 30  # the first call leaves the window at 60 min
    assert (await client.get(f"/{elsewhere}/sessions")).status_code == 200  # another account's budget
    clock.now += timedelta(minutes=30)
    assert (await client.get(f"/{audience}/sessions")).status_code == 200


async def test_rate_limit_613_shape(make_meta: MakeMeta, connect: Connect) -> None:
    """With error_code=613 the throttle is the ad-account custom rate limit body (subcode 1487742)."""
    meta = make_meta(limits=MetaLimits(calls_per_hour=1, per_audience=0, error_code=613))
    audience = meta.create_audience("a")
    client = connect(meta)
    await client.get(f"/{audience}")
    error = error_of(await client.get(f"/{audience}"))
    assert (error["code"], error["error_subcode"]) == (613, 1487742)
    assert "too many calls from this ad-account" in error["error_user_msg"]


# --- faults ---------------------------------------------------------------------------------------


async def test_storm_and_server_errors(make_meta: MakeMeta, connect: Connect) -> None:
    """storm_429 answers the throttle body; error_rate answers 500/503 as Graph JSON and 502/504 as HTML."""
    stormy = make_meta(faults=FaultSettings(storm_429=1.0, retry_after="5"))
    answer = await connect(stormy).get(f"/{stormy.create_audience('a')}")
    assert (answer.status_code, error_of(answer)["code"], answer.headers["Retry-After"]) == (400, 80003, "5")
    assert '"call_count":100' in answer.headers["X-Business-Use-Case-Usage"]
    broken = make_meta(faults=FaultSettings(error_rate=1.0), seed=3)
    audience = broken.create_audience("a")
    seen: dict[int, str] = {}
    client = connect(broken)
    for _ in range(40):
        reply = await client.get(f"/{audience}")
        seen[reply.status_code] = reply.headers["content-type"]
    assert set(seen) == {500, 502, 503, 504}
    assert seen[500].startswith("application/json")
    assert seen[502].startswith("text/html")


async def test_dropped_connection_after_effect(make_meta: MakeMeta, connect: Connect) -> None:
    """timeout_rate with applies_share 1 applies the upload, then drops the connection: the client sees no answer."""
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    meta = make_meta(faults=FaultSettings(timeout_rate=1.0, timeout_applies_share=1.0, timeout_stall_seconds=9,
                                          latency_seconds=0.5), sleep=sleep)
    audience = meta.create_audience("a")
    with pytest.raises(httpx.RemoteProtocolError):
        await connect(meta).post(f"/{audience}/users", data=upload(["EMAIL"], emails("a")))
    assert meta.member_values(audience) == {sha("a@example.com")}
    assert (meta.stats.dropped_connections, slept) == (1, [0.5, 9])


async def test_partial_failures_lose_rows(make_meta: MakeMeta, connect: Connect) -> None:
    """partial_failure_rate loses single rows: num_received falls short of the rows sent."""
    meta = make_meta(faults=FaultSettings(partial_failure_rate=0.5), seed=1)
    audience = meta.create_audience("a")
    rows = [[sha(f"p{n}")] for n in range(40)]
    body = (await connect(meta).post(f"/{audience}/users", data=upload(["EMAIL"], rows))).json()
    assert 5 < body["num_received"] < 35
    assert len(meta.members(audience)) == body["num_received"]


async def test_stats_count_requests_writes_and_rows(meta: MetaSandbox, connect: Connect) -> None:
    """Stats count requests by route, write calls and rows received."""
    audience = meta.create_audience("a")
    client = connect(meta)
    await client.post(f"/{audience}/users", data=upload(["EMAIL"], emails("a", "b")))
    await client.request("DELETE", f"/{audience}/users", data=upload(["EMAIL"], emails("a")))
    await client.get(f"/{audience}/sessions")
    assert meta.stats.requests == {"POST /{audience_id}/users": 1, "DELETE /{audience_id}/users": 1,
                                   "GET /{audience_id}/sessions": 1}
    assert (meta.stats.write_calls, meta.stats.rows_received, meta.stats.status_codes[200]) == (2, 3, 3)
