"""The Salesforce sandbox's wire rules (apis.md §2, §7.2), checked through its ASGI app in-process."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sandbox import FaultSettings, generate_dataset
from connectors.sandbox.salesforce import SalesforceLimits, SalesforceSandbox

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
V = "/services/data/v60.0"
FORM = {"grant_type": "refresh_token", "client_id": "sandbox-client-id", "client_secret": "sandbox-client-secret",
        "refresh_token": "sandbox-refresh-token"}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def box(clock: Clock) -> SalesforceSandbox:
    return SalesforceSandbox(clock=clock, limits=SalesforceLimits(daily_requests=50))


@pytest.fixture
async def client(box: SalesforceSandbox) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=box.app),
                                 base_url="https://acme.my.salesforce.com") as c:
        token = (await c.post("/services/oauth2/token", data=FORM)).json()["access_token"]
        c.headers["Authorization"] = f"Bearer {token}"
        yield c


def leads(box: SalesforceSandbox, count: int) -> list[str]:
    return [box.insert("Lead", {"LastName": f"L{n}", "Company": "Acme", "Email": f"l{n}@acme.example"},
                       modified_ms=int((NOW - timedelta(minutes=count - n)).timestamp() * 1000)) for n in range(count)]


async def query(client: httpx.AsyncClient, soql: str, **headers: str) -> httpx.Response:
    return await client.get(f"{V}/query", params={"q": soql}, headers=headers)


async def test_token_answer_has_no_expires_in(box: SalesforceSandbox) -> None:
    """The refresh grant answers Salesforce's fields and no expires_in; a bad refresh token is invalid_grant."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=box.app), base_url="https://x.test") as c:
        good = await c.post("/services/oauth2/token", data=FORM)
        bad = await c.post("/services/oauth2/token", data={**FORM, "refresh_token": "nope"})
    assert set(good.json()) == {"access_token", "signature", "scope", "instance_url", "id", "token_type",
                                "issued_at"}
    assert good.json()["instance_url"] == "https://x.test"
    assert (bad.status_code, bad.json()) == (400, {"error": "invalid_grant",
                                                   "error_description": "expired access/refresh token"})
    assert "sforce-limit-info" not in good.headers


async def test_tokens_expire_on_the_injected_clock(box: SalesforceSandbox, client: httpx.AsyncClient,
                                                   clock: Clock) -> None:
    """After the session timeout a token is refused with 401 INVALID_SESSION_ID in Salesforce's array shape."""
    assert (await client.get(f"{V}/limits")).status_code == 200
    clock.now += timedelta(hours=2)
    expired = await client.get(f"{V}/limits")
    assert (expired.status_code, expired.json()) == (
        401, [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}])


async def test_paging_by_relative_next_records_url(box: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    """batchSize is clamped to 200; nextRecordsUrl is a relative locator path, absent on the last page."""
    ids = leads(box, 450)
    soql = "SELECT Id FROM Lead ORDER BY SystemModstamp, Id"
    first = (await query(client, soql, **{"Sforce-Query-Options": "batchSize=50"})).json()
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    assert first["nextRecordsUrl"].startswith(f"{V}/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    seen = [r["Id"] for r in first["records"]]
    page = first
    while not page["done"]:
        page = (await client.get(page["nextRecordsUrl"], headers={"Sforce-Query-Options": "batchSize=200"})).json()
        seen += [r["Id"] for r in page["records"]]
    assert "nextRecordsUrl" not in page
    assert seen == ids
    assert first["records"][0]["attributes"] == {"type": "Lead", "url": f"{V}/sobjects/Lead/{ids[0]}"}


async def test_soql_subset(box: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    """Datetime comparisons, AND, IN, != null, ORDER BY … DESC and LIMIT select what SOQL would."""
    ids = leads(box, 5)
    box.records["Lead"][ids[1]]["Title"] = "CTO"
    since = (NOW - timedelta(minutes=3)).strftime("%Y-%m-%dT%H:%M:%S.000+00:00")
    soql = f"select id, title from lead where SystemModstamp > {since} and Title = null ORDER BY SystemModstamp DESC LIMIT 1"  # noqa: S608, E501
    rows = (await query(client, soql)).json()["records"]
    assert [r["Id"] for r in rows] == [ids[4]]
    assert "Title" in rows[0]
    rows = (await query(client, "SELECT Id FROM Lead WHERE Email IN ('l1@acme.example', 'l3@acme.example') "
                                "AND Title != null")).json()["records"]
    assert [r["Id"] for r in rows] == [ids[1]]


@pytest.mark.parametrize(("soql", "code", "message"), [
    ("SELECT Id FROM Lead WHERE SystemModstamp > '2026-01-01T00:00:00Z'", "INVALID_FIELD",
     "value of filter criterion for field 'SystemModstamp' must be of type dateTime and should not be enclosed "
     "in quotes"),
    ("SELECT Id, Nope__c FROM Lead", "INVALID_FIELD", "No such column 'Nope__c' on entity 'Lead'."),
    ("SELECT Id FROM Widget__c", "INVALID_TYPE", "sObject type 'Widget__c' is not supported."),
    ("SELECT Id FROM Lead WHERE", "MALFORMED_QUERY", "unexpected end of query"),
    ("SELECT Id FROM Lead WHERE Name = 'a' OR Name = 'b'", "MALFORMED_QUERY", "OR"),
])
async def test_query_errors_are_json_arrays(client: httpx.AsyncClient, soql: str, code: str, message: str) -> None:
    """Bad queries are 400s with Salesforce's [{message, errorCode}] body."""
    answer = await query(client, soql)
    assert answer.status_code == 400
    (error,) = answer.json()
    assert error["errorCode"] == code
    assert message in error["message"]


async def test_limit_header_and_daily_limit(client: httpx.AsyncClient, clock: Clock) -> None:
    """Every API answer carries api-usage=N/M; past the limit the answer is 403 REQUEST_LIMIT_EXCEEDED and
    is not counted; the rolling window gives the budget back a day later."""
    used = []
    for _ in range(50):
        answer = await client.get(f"{V}/limits")
        used.append(answer.headers["sforce-limit-info"])
    assert used[0] == "api-usage=1/50"
    assert used[-1] == "api-usage=50/50"
    refused = await client.get(f"{V}/limits")
    assert (refused.status_code, refused.json()) == (
        403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}])
    assert refused.headers["sforce-limit-info"] == "api-usage=50/50"
    assert "sforce-limit-info" not in (await client.get("/services/data/")).headers
    clock.now += timedelta(days=1)
    token = (await client.post("/services/oauth2/token", data=FORM)).json()["access_token"]  # the old one expired
    answer = await client.get(f"{V}/limits", headers={"Authorization": f"Bearer {token}"})
    assert answer.headers["sforce-limit-info"] == "api-usage=1/50"


def _update(records: list[dict[str, Any]], all_or_none: bool = False) -> dict[str, Any]:
    return {"allOrNone": all_or_none, "records": records}


async def test_collections_answer_per_record_in_order(box: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    """A collection update answers 200 with one result per record in input order; errors use statusCode."""
    ids = leads(box, 2)
    answer = await client.patch(f"{V}/composite/sobjects", json=_update([
        {"attributes": {"type": "Lead"}, "id": ids[0], "Title": "VP"},
        {"attributes": {"type": "Lead"}, "id": ids[1], "OwnerId": "not-an-id"},
        {"attributes": {"type": "Lead"}, "id": ids[1], "Company": ""},
    ]))
    assert answer.status_code == 200
    assert answer.json() == [
        {"id": ids[0], "success": True, "errors": []},
        {"id": ids[1], "success": False, "errors": [
            {"statusCode": "MALFORMED_ID", "message": "Owner ID: id value of incorrect type: not-an-id",
             "fields": ["OwnerId"]}]},
        {"id": ids[1], "success": True, "errors": []},
    ]
    assert box.records["Lead"][ids[0]]["Title"] == "VP"


async def test_all_or_none_rolls_back(box: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    """With allOrNone a failure rolls every record back; the valid ones say ALL_OR_NONE_OPERATION_ROLLED_BACK."""
    ids = leads(box, 1)
    answer = await client.post(f"{V}/composite/sobjects", json=_update([
        {"attributes": {"type": "Task"}, "WhoId": ids[0], "Subject": "ok"},
        {"attributes": {"type": "Lead"}, "Company": "Acme"},
    ], all_or_none=True))
    first, second = answer.json()
    assert first["errors"][0]["statusCode"] == "ALL_OR_NONE_OPERATION_ROLLED_BACK"
    assert second["errors"][0] == {"statusCode": "REQUIRED_FIELD_MISSING",
                                   "message": "Required fields are missing: [LastName]", "fields": ["LastName"]}
    assert box.records["Task"] == {}


async def test_collection_cap_and_unknown_field(box: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    """201 records are refused whole (EXCEEDED_ID_LIMIT); so is a record naming a field the object lacks."""
    over = await client.post(f"{V}/composite/sobjects",
                             json=_update([{"attributes": {"type": "Task"}, "Subject": "x"}] * 201))
    assert (over.status_code, over.json()[0]["errorCode"]) == (400, "EXCEEDED_ID_LIMIT")
    unknown = await client.post(f"{V}/composite/sobjects",
                                json=_update([{"attributes": {"type": "Task"}, "Nope__c": "x"}]))
    assert (unknown.status_code, unknown.json()[0]["errorCode"]) == (400, "INVALID_FIELD")
    assert box.records["Task"] == {}


async def test_unique_external_id_names_the_holder(box: SalesforceSandbox, client: httpx.AsyncClient) -> None:
    """A second task with the same operation key is DUPLICATE_VALUE naming the first task's id."""
    task = {"attributes": {"type": "Task"}, "Subject": "x", "Leadrelay_Operation_Key__c": "op-1"}
    answer = (await client.post(f"{V}/composite/sobjects", json=_update([task, task]))).json()
    assert answer[0]["success"] is True
    assert answer[1]["errors"][0] == {
        "statusCode": "DUPLICATE_VALUE", "fields": ["Leadrelay_Operation_Key__c"],
        "message": f"duplicate value found: Leadrelay_Operation_Key__c duplicates value on record with id: "
                   f"{answer[0]['id']}"}


async def test_auto_assign_defaults_to_true(client: httpx.AsyncClient, clock: Clock) -> None:
    """Without Sforce-Auto-Assign the org's assignment rule overrides a written owner; FALSE keeps it."""
    box = SalesforceSandbox(clock=clock)
    queue, rep = (box.insert("User", {"Name": n, "IsActive": True}) for n in ("Queue", "Rep"))
    box.assignment_rule_owner = queue
    lead = leads(box, 1)[0]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=box.app), base_url="https://x.test") as c:
        token = (await c.post("/services/oauth2/token", data=FORM)).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        await c.patch(f"{V}/sobjects/Lead/{lead}", json={"OwnerId": rep}, headers=auth)
        assert box.records["Lead"][lead]["OwnerId"] == queue
        answer = await c.patch(f"{V}/sobjects/Lead/{lead}", json={"OwnerId": rep},
                               headers={**auth, "Sforce-Auto-Assign": "FALSE"})
    assert answer.status_code == 204
    assert box.records["Lead"][lead]["OwnerId"] == rep


async def test_query_locator_expires(box: SalesforceSandbox, client: httpx.AsyncClient, clock: Clock) -> None:
    """A query cursor left unused for 15 minutes is gone: 400 INVALID_QUERY_LOCATOR."""
    leads(box, 300)
    first = (await query(client, "SELECT Id FROM Lead", **{"Sforce-Query-Options": "batchSize=200"})).json()
    clock.now += timedelta(minutes=16)
    answer = await client.get(first["nextRecordsUrl"])
    assert (answer.status_code, answer.json()[0]["errorCode"]) == (400, "INVALID_QUERY_LOCATOR")


async def test_injected_faults(clock: Clock) -> None:
    """storm_429 answers the concurrency refusal (403 REQUEST_LIMIT_EXCEEDED), error_rate a 5xx, and
    partial_failure_rate single records with UNABLE_TO_LOCK_ROW."""
    storm = SalesforceSandbox(clock=clock, faults=FaultSettings(storm_429=1.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=storm.app), base_url="https://x.test") as c:
        answer = await c.post("/services/oauth2/token", data=FORM)
    assert (answer.status_code, answer.json()[0]["message"]) == (403, "ConcurrentPerOrgLongTxn Limit exceeded.")
    broken = SalesforceSandbox(clock=clock, faults=FaultSettings(error_rate=1.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=broken.app), base_url="https://x.test") as c:
        assert (await c.post("/services/oauth2/token", data=FORM)).status_code >= 500
    flaky = SalesforceSandbox(clock=clock, faults=FaultSettings(partial_failure_rate=1.0))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=flaky.app), base_url="https://x.test") as c:
        token = (await c.post("/services/oauth2/token", data=FORM)).json()["access_token"]
        answer = await c.post(f"{V}/composite/sobjects", headers={"Authorization": f"Bearer {token}"},
                              json=_update([{"attributes": {"type": "Task"}, "Subject": "x"}]))
    assert answer.json()[0]["errors"][0]["statusCode"] == "UNABLE_TO_LOCK_ROW"


def test_generated_dataset_maps_onto_sobjects(clock: Clock) -> None:
    """A generated portal becomes users, accounts, leads (converted ones converted), tasks and campaign
    members, with every generator contact a Lead."""
    data = generate_dataset(seed=3, contacts=200, now=NOW)
    box = SalesforceSandbox(clock=clock)
    loaded = box.load(data)
    assert len(box.records["Lead"]) == len(data.contacts)
    assert len(box.records["Account"]) == len(data.companies)
    converted = [c for c in data.contacts if c["properties"].get("lifecyclestage") == "opportunity"]
    assert sum(1 for row in box.records["Lead"].values() if row["IsConverted"]) == len(converted)
    tasks = sum(1 for e in data.events if e["eventType"] in ("e_visited_page", "e_opened_email", "e_clicked_email"))
    assert len(box.records["Task"]) == tasks
    assert box.records["CampaignMember"]
    first = box.records["Lead"][loaded.leads[data.contacts[0]["id"]]]
    assert first["Email"] == data.contacts[0]["properties"]["email"]
