"""The Marketo sandbox's own rules (apis.md §3): identity tokens, HTTP-200 error envelopes, limits
(606/607/615), 413/414 and the _method=GET cure, paging tokens with short pages, lead changes, sync and
list statuses in input order, faults, and loading a generated dataset. In-process over ASGI."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sandbox import FaultSettings, generate_dataset
from connectors.sandbox.marketo import MarketoLimits, MarketoSandbox

pytestmark = pytest.mark.anyio

CLIENT, SECRET = "cid", "csecret"
BASE = "https://123-abc-456.mktorest.com"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class Clock:
    """The sandbox's clock; tests move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> Clock:
    return Clock()


MakeSandbox = Callable[..., MarketoSandbox]


@pytest.fixture
def make(clock: Clock) -> MakeSandbox:
    def build(**options: Any) -> MarketoSandbox:
        options.setdefault("credentials", {CLIENT: SECRET})
        return MarketoSandbox(clock=clock, **options)

    return build


class Api:
    """A raw client of one sandbox with a token fetched on first use."""

    def __init__(self, sandbox: MarketoSandbox) -> None:
        self.sandbox = sandbox
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app), base_url=BASE)
        self.token: str | None = None

    async def identity(self, secret: str = SECRET) -> httpx.Response:
        return await self.client.post("/identity/oauth/token", data={
            "grant_type": "client_credentials", "client_id": CLIENT, "client_secret": secret})

    async def auth(self) -> dict[str, str]:
        if self.token is None:
            self.token = (await self.identity()).json()["access_token"]
        return {"Authorization": f"Bearer {self.token}"}

    async def get(self, path: str, **params: Any) -> dict[str, Any]:
        response = await self.client.get(path, params=params, headers=await self.auth())
        assert response.status_code == 200
        return response.json()

    async def send(self, method: str, path: str, body: Any) -> dict[str, Any]:
        response = await self.client.request(method, path, json=body, headers=await self.auth())
        assert response.status_code == 200
        return response.json()


@pytest.fixture
async def connect() -> AsyncIterator[Callable[[MarketoSandbox], Api]]:
    made: list[Api] = []

    def build(sandbox: MarketoSandbox) -> Api:
        made.append(Api(sandbox))
        return made[-1]

    yield build
    for api in made:
        await api.client.aclose()


def code_of(body: dict[str, Any]) -> str | None:
    return None if body.get("success") else body["errors"][0]["code"]


async def test_identity_returns_the_same_token_until_it_expires(make: MakeSandbox, clock: Clock, connect) -> None:
    """Asking again before expiry returns the same token with less life left; after expiry a new one."""
    api = connect(make())
    first = (await api.identity()).json()
    clock.advance(minutes=20)
    again = (await api.identity()).json()
    assert again["access_token"] == first["access_token"]
    assert (first["expires_in"], again["expires_in"]) == (3600, 2400)
    assert first["token_type"] == "bearer"
    clock.advance(minutes=41)
    assert (await api.identity()).json()["access_token"] != first["access_token"]


async def test_bad_credentials_are_http_401(make: MakeSandbox, connect) -> None:
    """Wrong client credentials get HTTP 401 from the identity service, and no token."""
    response = await connect(make()).identity(secret="nope")
    assert response.status_code == 401
    assert "access_token" not in response.json()


async def test_token_errors_are_http_200_envelopes(make: MakeSandbox, clock: Clock, connect) -> None:
    """No token → 600, an unknown one → 601, an expired one → 602; each as HTTP 200 with success false."""
    sandbox = make()
    api = connect(sandbox)
    missing = await api.client.get("/rest/v1/activities/types.json")
    unknown = await api.client.get("/rest/v1/activities/types.json", headers={"Authorization": "Bearer nope"})
    headers = await api.auth()
    clock.advance(hours=1, seconds=1)
    expired = await api.client.get("/rest/v1/activities/types.json", headers=headers)
    assert [r.status_code for r in (missing, unknown, expired)] == [200, 200, 200]
    assert [code_of(r.json()) for r in (missing, unknown, expired)] == ["600", "601", "602"]
    assert "nope" not in unknown.text


async def test_rate_limit_606_then_the_window_frees(make: MakeSandbox, clock: Clock, connect) -> None:
    """The 101st call within 20 s is refused with 606 and spends nothing; 20 s after the first, calls pass."""
    api = connect(make(limits=MarketoLimits()))
    await api.auth()
    codes = [code_of(await api.get("/rest/v1/activities/types.json")) for _ in range(101)]
    assert codes[:100] == [None] * 100
    assert codes[100] == "606"
    clock.advance(seconds=20)
    assert code_of(await api.get("/rest/v1/activities/types.json")) is None


async def test_daily_quota_607_resets_at_central_midnight(make: MakeSandbox, clock: Clock, connect) -> None:
    """Past the daily quota every call is 607 until midnight US Central, not UTC."""
    clock.now = datetime(2026, 6, 1, 22, 0, tzinfo=UTC)  # 17:00 in Chicago
    api = connect(make(limits=MarketoLimits(daily=2)))
    codes = [code_of(await api.get("/rest/v1/activities/types.json")) for _ in range(3)]
    assert codes == [None, None, "607"]
    clock.now = datetime(2026, 6, 2, 1, 0, tzinfo=UTC)  # past midnight UTC, 20:00 in Chicago
    api.token = None  # the old one expired meanwhile
    assert code_of(await api.get("/rest/v1/activities/types.json")) == "607"
    clock.now = datetime(2026, 6, 2, 5, 1, tzinfo=UTC)  # 00:01 in Chicago
    api.token = None
    assert code_of(await api.get("/rest/v1/activities/types.json")) is None


async def test_more_than_ten_in_flight_is_615(make: MakeSandbox, connect) -> None:
    """With eleven calls held open at once, exactly one is refused with 615."""
    async def hold(seconds: float) -> None:
        for _ in range(20):
            await asyncio.sleep(0)

    sandbox = make(limits=MarketoLimits(), sleep=hold, faults=FaultSettings(latency_seconds=1.0))
    api = connect(sandbox)
    await api.auth()
    bodies = await asyncio.gather(*(api.get("/rest/v1/activities/types.json") for _ in range(11)))
    assert sorted(str(code_of(b)) for b in bodies) == ["615"] + ["None"] * 10
    assert sandbox.stats.max_in_flight == 10


async def test_overlong_url_is_414_and_post_method_get_answers_the_same(make: MakeSandbox, connect) -> None:
    """A GET over 8 KB is HTTP 414; the same query as a POST form with _method=GET returns the leads."""
    sandbox = make()
    ids = [sandbox.add_lead(email=f"p{n}@x.com") for n in range(3)]
    api = connect(sandbox)
    values = ",".join([*map(str, ids), *(str(10_000_000 + n) for n in range(297))])
    long = await api.client.get("/rest/v1/leads.json", params={"filterType": "id", "filterValues": values,
                                                                "fields": "id,email," + "x" * 6000},
                                headers=await api.auth())
    assert long.status_code == 414
    form = {"filterType": "id", "filterValues": values, "fields": "id,email", "_method": "GET"}
    posted = await api.client.post("/rest/v1/leads.json", data=form, headers=await api.auth())
    assert [row["id"] for row in posted.json()["result"]] == ids
    assert sandbox.stats.method_get_posts == 1


async def test_oversized_body_is_413(make: MakeSandbox, connect) -> None:
    """A body over 1 MB is HTTP 413 and writes nothing."""
    sandbox = make()
    lead = sandbox.add_lead(email="a@x.com")
    api = connect(sandbox)
    body = {"action": "updateOnly", "lookupField": "id", "input": [{"id": lead, "title": "x" * 1_100_000}]}
    response = await api.client.post("/rest/v1/leads.json", json=body, headers=await api.auth())
    assert response.status_code == 413
    assert sandbox.lead(lead).get("title") is None


async def test_sync_answers_per_record_in_input_order(make: MakeSandbox, connect) -> None:
    """updateOnly by id: updated, skipped 1004 (no such lead), skipped 1006 (no such field), in input order;
    more than 300 inputs are refused whole."""
    sandbox = make()
    lead = sandbox.add_lead(email="a@x.com")
    api = connect(sandbox)
    body = await api.send("POST", "/rest/v1/leads.json", {"action": "updateOnly", "lookupField": "id", "input": [
        {"id": lead, "title": "CTO"}, {"id": 999, "title": "x"}, {"id": lead, "bogus": 1}]})
    assert [(r.get("id"), r["status"]) for r in body["result"]] == [(lead, "updated"), (None, "skipped"),
                                                                      (None, "skipped")]
    assert [r["reasons"][0]["code"] for r in body["result"][1:]] == ["1004", "1006"]
    assert sandbox.lead(lead)["title"] == "CTO"
    big = await api.send("POST", "/rest/v1/leads.json", {"action": "updateOnly", "lookupField": "id",
                                                         "input": [{"id": lead}] * 301})
    assert code_of(big) == "1003"


async def test_list_statuses(make: MakeSandbox, connect) -> None:
    """Add: added / skipped 1004; remove: removed / skipped 1015 / skipped 1004; ismember: memberof and
    notmemberof; a list that does not exist is 1013."""
    sandbox = make()
    a, b = sandbox.add_lead(email="a@x.com"), sandbox.add_lead(email="b@x.com")
    list_id = sandbox.create_list("hot")
    api = connect(sandbox)
    path = f"/rest/v1/lists/{list_id}/leads.json"
    added = await api.send("POST", path, {"input": [{"id": a}, {"id": 999}]})
    assert [r["status"] for r in added["result"]] == ["added", "skipped"]
    member = await api.get(f"/rest/v1/lists/{list_id}/leads/ismember.json", id=f"{a},{b}")
    assert [r["status"] for r in member["result"]] == ["memberof", "notmemberof"]
    removed = await api.send("DELETE", path, {"input": [{"id": a}, {"id": b}, {"id": 999}]})
    assert [(r["status"], r.get("reasons", [{}])[0].get("code")) for r in removed["result"]] == [
        ("removed", None), ("skipped", "1015"), ("skipped", "1004")]
    assert code_of(await api.send("POST", "/rest/v1/lists/777/leads.json", {"input": [{"id": a}]})) == "1013"


async def test_activity_pages_can_be_short_with_more_results(make: MakeSandbox, clock: Clock, connect) -> None:
    """Activities page by position: a page may hold fewer than batchSize rows and still say moreResult;
    following nextPageToken to the end yields each matching activity once, and a token from a date starts
    at that date."""
    sandbox = make(activity_scan=10)
    lead = sandbox.add_lead(email="a@x.com")
    for n in range(40):
        sandbox.add_activity(lead, 1 if n % 3 == 0 else 10, at=NOW + timedelta(minutes=n))
    api = connect(sandbox)
    token = (await api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2026-01-01T00:00:00Z"))[
        "nextPageToken"]
    seen: list[str] = []
    pages = 0
    while True:
        body = await api.get("/rest/v1/activities.json", nextPageToken=token, activityTypeIds="1")
        pages += 1
        seen += [row["marketoGUID"] for row in body.get("result", [])]
        assert len(body.get("result", [])) < 300
        token = body["nextPageToken"]
        if not body["moreResult"]:
            break
    assert pages > 2
    assert len(seen) == len(set(seen)) == 14
    later = (await api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2026-06-01T12:30:00Z"))[
        "nextPageToken"]
    rest = await api.get("/rest/v1/activities.json", nextPageToken=later, activityTypeIds="1,10", batchSize=300)
    assert rest["result"][0]["activityDate"] == "2026-06-01T12:30:00Z"
    assert code_of(await api.get("/rest/v1/activities.json", nextPageToken=later,
                                 activityTypeIds=",".join(str(n) for n in range(1, 12)))) == "1003"


async def test_lead_changes_show_only_requested_fields(make: MakeSandbox, connect) -> None:
    """leadchanges returns New Lead rows and only those Change Data Value rows whose field was asked for."""
    sandbox = make()
    lead = sandbox.add_lead(email="a@x.com")
    sandbox.update_lead(lead, title="CTO", country="DE")
    api = connect(sandbox)
    token = (await api.get("/rest/v1/activities/pagingtoken.json", sinceDatetime="2026-01-01T00:00:00Z"))[
        "nextPageToken"]
    body = await api.get("/rest/v1/activities/leadchanges.json", nextPageToken=token, fields="title")
    assert [(r["activityTypeId"], [f["name"] for f in r["fields"]]) for r in body["result"]] == [
        (12, []), (13, ["title"])]
    assert body["result"][1]["fields"][0]["newValue"] == "CTO"


async def test_storm_and_edge_faults(make: MakeSandbox, connect) -> None:
    """storm_429 answers 606 in an HTTP 200 envelope; error_rate answers 611 or an edge 5xx page."""
    storm = connect(make(faults=FaultSettings(storm_429=1.0)))
    assert code_of(await storm.get("/rest/v1/activities/types.json")) == "606"
    broken = connect(make(faults=FaultSettings(error_rate=1.0)))
    seen = set()
    for _ in range(12):
        response = await broken.client.get("/rest/v1/activities/types.json", headers=await broken.auth())
        seen.add(response.status_code if response.status_code != 200 else code_of(response.json()))
    assert seen <= {"611", 502, 503, 504}
    assert len(seen) >= 2


async def test_generated_dataset_loads_as_leads_and_activities(make: MakeSandbox) -> None:
    """Every contact becomes a lead, carrying its company's firmographics when it has one; events become
    activities with Marketo type ids, all in time order."""
    dataset = generate_dataset(seed=3, contacts=40, now=NOW)
    sandbox = make()
    ids = sandbox.load(dataset)
    assert len(sandbox.state.leads) == len(dataset.contacts) == len(ids)
    types = {row.type_id for row in sandbox.state.log}
    assert {1, 2, 10, 11, 12} <= types
    dates = [row.at_ms for row in sandbox.state.log]
    assert dates == sorted(dates)
    assert sum(1 for row in sandbox.state.log if row.type_id not in (12, 13)) == len(dataset.events)
    with_company = [ids[c["id"]] for c in dataset.contacts if c["properties"].get("associatedcompanyid")]
    assert with_company
    assert all(sandbox.lead(lead_id).get("industry") for lead_id in with_company)
