"""The Google Ads sandbox's own rules (apis.md §5): auth headers, the job state machine, no mixed jobs,
removeAll first, the 100,000-identifier cap, hash validation, partial-failure and RESOURCE_EXHAUSTED
shapes, consent parsing, matching and fault knobs. In-process over ASGI."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sandbox import FaultSettings
from connectors.sandbox.google_ads import GoogleAdsLimits, GoogleAdsSandbox

pytestmark = pytest.mark.anyio

CID = "1234567890"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
JOBS = f"/v21/customers/{CID}/offlineUserDataJobs"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


class Api:
    """An authenticated client for one sandbox, with helpers for the job calls."""

    def __init__(self, sandbox: GoogleAdsSandbox, client: httpx.AsyncClient) -> None:
        self.sandbox, self.client = sandbox, client

    async def token(self) -> str:
        response = await self.client.post("/token", data={
            "grant_type": "refresh_token", "client_id": self.sandbox.client_id,
            "client_secret": self.sandbox.client_secret, "refresh_token": self.sandbox.refresh_token})
        return str(response.json()["access_token"])

    async def post(self, path: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        base = {"authorization": f"Bearer {await self.token()}", "developer-token": self.sandbox.developer_token}
        return await self.client.post(path, json=body, headers=base | headers)

    async def job(self, list_id: str, consent: dict[str, str] | None = None) -> str:
        metadata: dict[str, Any] = {"userList": f"customers/{CID}/userLists/{list_id}"}
        if consent is not None:
            metadata["consent"] = consent
        response = await self.post(f"{JOBS}:create", {"job": {"type": "CUSTOMER_MATCH_USER_LIST",
                                                              "customerMatchUserListMetadata": metadata}})
        return str(response.json()["resourceName"])

    async def add(self, job: str, operations: list[dict[str, Any]], partial: bool = True) -> httpx.Response:
        return await self.post(f"/v21/{job}:addOperations", {"enablePartialFailure": partial,
                                                             "operations": operations})


def create(*emails: str) -> list[dict[str, Any]]:
    return [{"create": {"userIdentifiers": [{"hashedEmail": sha(e)}]}} for e in emails]


def error_codes(body: dict[str, Any]) -> list[str]:
    status = body.get("error") or body.get("partialFailureError") or {}
    return [next(iter(e["errorCode"].values())) for d in status.get("details", []) for e in d.get("errors", [])]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_api(clock: Clock) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def make(**options: Any) -> Api:
        sandbox = GoogleAdsSandbox(clock=clock, **options)
        client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app),
                                   base_url="https://googleads.googleapis.com")
        clients.append(client)
        return Api(sandbox, client)

    yield make
    for client in clients:
        await client.aclose()


async def test_job_lifecycle_pending_running_success(make_api: Any, clock: Clock) -> None:
    """A job is PENDING until run, RUNNING for the processing time, then SUCCESS with its members applied;
    adding to or running a started job is JOB_ALREADY_STARTED."""
    api = make_api(processing_seconds=120, known_people=[[{"hashedEmail": sha("a@x.com")}]])
    list_id = api.sandbox.create_user_list("l")
    job = await api.job(list_id)
    assert api.sandbox.job(job).status == "PENDING"
    assert (await api.add(job, create("a@x.com", "b@x.com"))).json() == {}
    run = await api.post(f"/v21/{job}:run", {})
    assert run.status_code == 200
    assert run.json()["name"].startswith(f"customers/{CID}/operations/")
    assert api.sandbox.job(job).status == "RUNNING"
    assert api.sandbox.member_count(list_id) == 0
    again = await api.post(f"/v21/{job}:run", {})
    late = await api.add(job, create("c@x.com"))
    assert [error_codes(again.json()), error_codes(late.json())] == [["JOB_ALREADY_STARTED"]] * 2
    clock.now += timedelta(seconds=120)
    query = " ".join(("SELECT offline_user_data_job.status, offline_user_data_job.operation_metadata.match_rate_range",
                      "FROM offline_user_data_job WHERE offline_user_data_job.resource_name =", f"'{job}'"))
    search = await api.post(f"/v21/customers/{CID}/googleAds:search", {"query": query})
    row = search.json()["results"][0]["offlineUserDataJob"]
    assert (row["status"], row["operationMetadata"]["matchRateRange"]) == ("SUCCESS", "MATCH_RANGE_41_TO_50")
    assert api.sandbox.member_values(list_id) == {sha("a@x.com"), sha("b@x.com")}


async def test_create_and_remove_never_mix_in_one_job(make_api: Any) -> None:
    """Once a job holds creates, removes are refused (CONFLICTING_OPERATION), within a request and across them;
    removeAll is accepted only as the job's first operation."""
    api = make_api()
    list_id = api.sandbox.create_user_list("l")
    job = await api.job(list_id)
    remove = [{"remove": {"userIdentifiers": [{"hashedEmail": sha("r@x.com")}]}}]
    first = await api.add(job, [*create("a@x.com"), *remove, {"removeAll": True}])
    assert error_codes(first.json()) == ["CONFLICTING_OPERATION", "INVALID_OPERATION_ORDER"]
    later = await api.add(job, remove)
    assert error_codes(later.json()) == ["CONFLICTING_OPERATION"]
    assert [kind for kind, _ in api.sandbox.job(job).operations] == ["create"]
    fresh = await api.job(list_id)
    assert (await api.add(fresh, [{"removeAll": True}, *remove])).json() == {}


async def test_partial_failure_shape_and_whole_request_refusal(make_api: Any) -> None:
    """A bad hash fails its own operation with INVALID_SHA256_FORMAT located at operations[i]; without partial
    failure the whole request is refused (400) and nothing of it is kept."""
    api = make_api()
    list_id = api.sandbox.create_user_list("l")
    job = await api.job(list_id)
    bad = [{"create": {"userIdentifiers": [{"hashedEmail": sha("x@y.z").upper()}]}}]
    operations = create("a@x.com") + bad + create("b@x.com")
    response = await api.add(job, operations)
    assert response.status_code == 200
    status = response.json()["partialFailureError"]
    assert status["code"] == 3
    [error] = status["details"][0]["errors"]
    assert error["errorCode"] == {"offlineUserDataJobError": "INVALID_SHA256_FORMAT"}
    assert error["location"]["fieldPathElements"][:2] == [{"fieldName": "operations", "index": 1},
                                                          {"fieldName": "user_identifiers", "index": 0}]
    assert len(api.sandbox.job(job).operations) == 2
    strict = await api.add(job, bad, partial=False)
    assert (strict.status_code, strict.json()["error"]["status"]) == (400, "INVALID_ARGUMENT")
    assert len(api.sandbox.job(job).operations) == 2


async def test_identifier_cap_is_100000_per_request(make_api: Any) -> None:
    """100,000 identifiers in one addOperations are taken; 100,001 are refused whole."""
    api = make_api()
    job = await api.job(api.sandbox.create_user_list("l"))
    digest = sha("same@x.com")
    operations = [{"create": {"userIdentifiers": [{"hashedEmail": digest}] * 20}}] * 5_000
    assert (await api.add(job, operations)).status_code == 200
    over = [*operations, {"create": {"userIdentifiers": [{"hashedEmail": digest}]}}]
    response = await api.add(job, over)
    assert (response.status_code, error_codes(response.json())) == (400, ["TOO_MANY_USER_IDENTIFIERS"])


async def test_upload_key_type_and_country_rules(make_api: Any) -> None:
    """A CRM_ID list refuses e-mail hashes and a CONTACT_INFO list refuses third-party ids; a country must be
    two uppercase letters; an unknown or non-CRM list refuses the job itself."""
    api = make_api()
    crm = await api.job(api.sandbox.create_user_list("crm", upload_key_type="CRM_ID"))
    contact = await api.job(api.sandbox.create_user_list("contact"))
    refused = await api.add(crm, create("a@x.com"))
    assert error_codes(refused.json()) == ["INCOMPATIBLE_UPLOAD_KEY_TYPE"]
    address = {"addressInfo": {"hashedFirstName": sha("a"), "hashedLastName": sha("b"), "countryCode": "usa",
                               "postalCode": "1"}}
    mixed = await api.add(contact, [{"create": {"userIdentifiers": [{"thirdPartyUserId": "c-1"}]}},
                                    {"create": {"userIdentifiers": [address]}}])
    assert error_codes(mixed.json()) == ["INCOMPATIBLE_UPLOAD_KEY_TYPE", "INVALID_COUNTRY_CODE"]
    unknown = await api.post(f"{JOBS}:create", {"job": {"type": "CUSTOMER_MATCH_USER_LIST",
                                                        "customerMatchUserListMetadata": {
                                                            "userList": f"customers/{CID}/userLists/1"}}})
    assert error_codes(unknown.json()) == ["INVALID_USER_LIST_ID"]


async def test_consent_is_kept_per_job_and_parsed_as_an_enum(make_api: Any) -> None:
    """Job-level consent is stored as sent; a value outside the enum is a proto-JSON parse error."""
    api = make_api()
    list_id = api.sandbox.create_user_list("l")
    job = await api.job(list_id, {"adUserData": "GRANTED", "adPersonalization": "DENIED"})
    assert api.sandbox.job(job).consent == {"adUserData": "GRANTED", "adPersonalization": "DENIED"}
    bad = await api.post(f"{JOBS}:create", {"job": {"type": "CUSTOMER_MATCH_USER_LIST",
                                                    "customerMatchUserListMetadata": {
                                                        "userList": f"customers/{CID}/userLists/{list_id}",
                                                        "consent": {"adUserData": "YES"}}}})
    assert bad.status_code == 400
    assert bad.json()["error"]["details"][0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"


async def test_auth_headers(make_api: Any, clock: Clock) -> None:
    """Missing or expired access tokens are 401 with Google's authentication codes; a wrong developer token is
    refused; with a manager account the login-customer-id header is required."""
    api = make_api(manager_id="9999999999", token_lifetime_seconds=60)
    list_id = api.sandbox.create_user_list("l")
    body = {"job": {"type": "CUSTOMER_MATCH_USER_LIST",
                    "customerMatchUserListMetadata": {"userList": f"customers/{CID}/userLists/{list_id}"}}}
    bare = await api.client.post(f"{JOBS}:create", json=body)
    assert (bare.status_code, error_codes(bare.json())) == (401, ["OAUTH_TOKEN_HEADER_INVALID"])
    token = await api.token()
    headers = {"authorization": f"Bearer {token}", "developer-token": api.sandbox.developer_token}
    no_manager = await api.client.post(f"{JOBS}:create", json=body, headers=headers)
    assert (no_manager.status_code, error_codes(no_manager.json())) == (403, ["USER_PERMISSION_DENIED"])
    ok = await api.client.post(f"{JOBS}:create", json=body, headers=headers | {"login-customer-id": "9999999999"})
    assert ok.status_code == 200
    wrong_dev = await api.client.post(f"{JOBS}:create", json=body, headers=headers | {
        "login-customer-id": "9999999999", "developer-token": "nope"})
    assert wrong_dev.status_code == 401
    assert "nope" not in wrong_dev.text
    clock.now += timedelta(seconds=61)
    expired = await api.client.post(f"{JOBS}:create", json=body, headers=headers | {"login-customer-id": "9999999999"})
    assert error_codes(expired.json()) == ["OAUTH_TOKEN_EXPIRED"]
    refused = await api.client.post("/token", data={"grant_type": "refresh_token", "client_id": api.sandbox.client_id,
                                                    "client_secret": api.sandbox.client_secret,
                                                    "refresh_token": "revoked"})
    assert (refused.status_code, refused.json()["error"]) == (400, "invalid_grant")


async def test_resource_exhausted_shapes(make_api: Any) -> None:
    """A spent daily quota and an injected storm answer 429 RESOURCE_EXHAUSTED with quotaErrorDetails.retryDelay."""
    api = make_api(limits=GoogleAdsLimits(daily_operations=1))
    list_id = api.sandbox.create_user_list("l")
    await api.job(list_id)
    spent = await api.post(f"{JOBS}:create", {"job": {"type": "CUSTOMER_MATCH_USER_LIST"}})
    [error] = spent.json()["error"]["details"][0]["errors"]
    assert (spent.status_code, spent.json()["error"]["status"]) == (429, "RESOURCE_EXHAUSTED")
    assert error["errorCode"] == {"quotaError": "RESOURCE_EXHAUSTED"}
    assert error["details"]["quotaErrorDetails"]["retryDelay"].endswith("s")
    stormy = make_api(faults=FaultSettings(storm_429=1.0), storm_retry_delay=42)
    response = await stormy.post(f"{JOBS}:create", {})
    [storm] = response.json()["error"]["details"][0]["errors"]
    assert storm["errorCode"] == {"quotaError": "RESOURCE_TEMPORARILY_EXHAUSTED"}
    assert storm["details"]["quotaErrorDetails"]["retryDelay"] == "42s"
    broken = make_api(faults=FaultSettings(error_rate=1.0))
    assert (await broken.post(f"{JOBS}:create", {})).status_code in (500, 502, 503, 504)


async def test_failed_job_applies_nothing(make_api: Any, clock: Clock) -> None:
    """A list told to fail ends its jobs FAILED with the reason; no member is added."""
    api = make_api(processing_seconds=0)
    list_id = api.sandbox.create_user_list("l")
    api.sandbox.fail_jobs(list_id, "UNKNOWN")
    job = await api.job(list_id)
    await api.add(job, create("a@x.com"))
    await api.post(f"/v21/{job}:run", {})
    assert (api.sandbox.job(job).status, api.sandbox.job(job).failure_reason) == ("FAILED", "UNKNOWN")
    assert api.sandbox.member_count(list_id) == 0
