"""HubSpot pulls against respx: mapping, quarantine, cursors, the overlap window and the 10k re-seed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.base import Account, Activity, ActivityType, GiveUp, Lead, Page
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector

BASE = "https://api.hubspot.test"
TOKEN = "pat-na1-0000-super-secret-token"
CONTACTS = "/crm/v3/objects/contacts/search"
COMPANIES = "/crm/v3/objects/companies/search"
EVENTS = "/events/v3/events"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z in epoch ms


async def no_sleep(seconds: float) -> None:
    """Retries in these tests never need to wait for real."""


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


Factory = Callable[..., HubSpotConnector]


@pytest.fixture
def make() -> Factory:
    def build(**overrides: Any) -> HubSpotConnector:
        config = HubSpotConfig(token=TOKEN, base_url=BASE, **overrides)
        client = build_client(BASE, headers=HubSpotConnector.client_headers(config))
        http = HttpLayer(client, name="hubspot", retry=RetrySettings(attempts=2, jitter=0.0), sleep=no_sleep)
        return HubSpotConnector(config, http)

    return build


async def collect(pages: AsyncIterator[Page]) -> list[Page]:
    return [page async for page in pages]


def contact_row(object_id: str | None, ms: int, **props: str | None) -> dict[str, Any]:
    row: dict[str, Any] = {"properties": {"lastmodifieddate": str(ms), "hs_object_id": object_id, **props}}
    if object_id is not None:
        row["id"] = object_id
    return row


class FakeSearch:
    """A small stand-in for HubSpot search: EQ/GT/GTE filters, one ascending sort, offset paging, the cap."""

    def __init__(self, rows: list[dict[str, Any]], cap: int = 10_000) -> None:
        self.rows = rows
        self.cap = cap
        self.bodies: list[dict[str, Any]] = []

    @staticmethod
    def _value(row: dict[str, Any], prop: str) -> int:
        return int(row["id"]) if prop == "hs_object_id" else int(row["properties"][prop])

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        after = int(body.get("after") or 0)
        if after >= self.cap:
            return httpx.Response(400, json={"status": "error", "category": "VALIDATION_ERROR",
                                             "message": "paging beyond 10000 results"})
        ops = {"EQ": int.__eq__, "GT": int.__gt__, "GTE": int.__ge__}
        filters = body["filterGroups"][0]["filters"] if body["filterGroups"] else []
        hits = [
            row for row in self.rows
            if all(ops[f["operator"]](self._value(row, f["propertyName"]), int(f["value"])) for f in filters)
        ]
        sort = body["sorts"][0]["propertyName"]
        hits.sort(key=lambda row: (self._value(row, sort), int(row["id"])))
        limit = body["limit"]
        page: dict[str, Any] = {"total": len(hits), "results": hits[after:after + limit]}
        if after + limit < len(hits):
            page["paging"] = {"next": {"after": str(after + limit)}}
        return httpx.Response(200, json=page)


def leads_of(pages: list[Page]) -> list[Lead]:
    return [r for p in pages for r in p.records if isinstance(r, Lead)]


# --- leads and accounts ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_contacts_map_to_leads_with_conversion(api: respx.MockRouter, make: Factory) -> None:
    """A contact becomes a Lead by the field mapping, plus a CONVERSION activity from its stage date."""
    row = contact_row("101", T0, email="ada@example.com", firstname="Ada", lastname="Lovelace",
                      associatedcompanyid="55", hubspot_owner_id="7", country="UK", jobtitle="CTO",
                      lifecyclestage="opportunity", createdate="2025-12-01T10:00:00.000Z",
                      hs_lifecyclestage_opportunity_date="2025-12-20T08:30:00Z",
                      hs_analytics_source="ORGANIC")
    api.post(CONTACTS).mock(side_effect=FakeSearch([row]))
    pages = await collect(make(extra_contact_properties=["hs_analytics_source"]).pull("leads", None))
    assert pages[0].records == [
        Lead(key="101", updated_at=datetime(2026, 1, 1, tzinfo=UTC), email="ada@example.com",
             first_name="Ada", last_name="Lovelace", account_key="55", owner_id="7", country="UK",
             title="CTO", lifecycle_stage="opportunity", created_at=datetime(2025, 12, 1, 10, tzinfo=UTC),
             attributes={"hs_analytics_source": "ORGANIC"}),
        Activity(key="101:conversion", lead_key="101", type=ActivityType.CONVERSION,
                 occurred_at=datetime(2025, 12, 20, 8, 30, tzinfo=UTC)),
    ]
    assert json.loads(pages[-1].cursor or "") == {"modified_ms": T0}


@pytest.mark.anyio
async def test_search_requests_only_mapped_properties(api: respx.MockRouter, make: Factory) -> None:
    """The search asks for the mapped properties, filters GTE cursor minus overlap, sorts ascending."""
    search = FakeSearch([])
    api.post(CONTACTS).mock(side_effect=search)
    cursor = json.dumps({"modified_ms": T0})
    assert await collect(make(overlap_seconds=60).pull("leads", cursor)) == []
    body = search.bodies[0]
    assert body["filterGroups"] == [{"filters": [
        {"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(T0 - 60_000)}]}]
    assert body["sorts"] == [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}]
    assert body["limit"] == 200
    assert set(body["properties"]) == {
        "email", "firstname", "lastname", "associatedcompanyid", "hubspot_owner_id", "country", "jobtitle",
        "lifecyclestage", "createdate", "lastmodifieddate", "hs_lifecyclestage_opportunity_date",
        # consent: the default channel properties and the lawful basis
        "hs_email_optout", "leadrelay_ads_consent", "leadrelay_sales_consent", "hs_legal_basis"}


@pytest.mark.anyio
async def test_pages_follow_after_and_cursor_advances(api: respx.MockRouter, make: Factory) -> None:
    """Each page's cursor is the greatest modified time seen so far; paging follows paging.next.after."""
    rows = [contact_row(str(i), T0 + i * 1000) for i in range(1, 6)]
    api.post(CONTACTS).mock(side_effect=FakeSearch(rows))
    pages = await collect(make(page_size=2).pull("leads", None))
    assert [[r.key for r in p.records] for p in pages] == [["1", "2"], ["3", "4"], ["5"]]
    assert [json.loads(p.cursor or "")["modified_ms"] for p in pages] == [T0 + 2000, T0 + 4000, T0 + 5000]


@pytest.mark.anyio
async def test_cursor_never_moves_back_within_overlap(api: respx.MockRouter, make: Factory) -> None:
    """Rows re-read from the overlap window do not pull the cursor behind where it was."""
    api.post(CONTACTS).mock(side_effect=FakeSearch([contact_row("1", T0 - 1000)]))
    pages = await collect(make().pull("leads", json.dumps({"modified_ms": T0})))
    assert json.loads(pages[0].cursor or "") == {"modified_ms": T0}


@pytest.mark.anyio
async def test_search_cap_reseeds_from_last_timestamp(api: respx.MockRouter, make: Factory) -> None:
    """Before paging past the cap the pull restarts at the last seen time, yielding each row once."""
    times = [1, 2, 3, 4, 4, 4, 5, 6, 7, 7, 8, 9, 10]
    rows = [contact_row(str(i + 1), T0 + t) for i, t in enumerate(times)]
    search = FakeSearch(rows, cap=4)
    api.post(CONTACTS).mock(side_effect=search)
    pages = await collect(make(page_size=2, search_cap=4).pull("leads", None))
    keys = [lead.key for lead in leads_of(pages)]
    assert sorted(keys, key=int) == [str(i) for i in range(1, len(times) + 1)]
    assert len(keys) == len(set(keys))
    seeds = [b["filterGroups"] and b["filterGroups"][0]["filters"][0]["value"]
             for b in search.bodies if "after" not in b]
    assert seeds[:3] == [[], str(T0 + 4), str(T0 + 5)]
    assert all(int(b.get("after", 0)) < 4 for b in search.bodies)


@pytest.mark.anyio
async def test_window_sharing_one_instant_walks_by_id(api: respx.MockRouter, make: Factory) -> None:
    """More rows at one instant than the cap allows are walked by object id, then the pull moves on."""
    rows = [contact_row(str(i), T0) for i in range(1, 8)] + [contact_row("99", T0 + 5)]
    api.post(CONTACTS).mock(side_effect=FakeSearch(rows, cap=4))
    pages = await collect(make(page_size=2, search_cap=4).pull("leads", None))
    keys = [lead.key for lead in leads_of(pages)]
    assert sorted(keys, key=int) == [*(str(i) for i in range(1, 8)), "99"]
    assert len(keys) == len(set(keys))


@pytest.mark.anyio
async def test_bad_rows_are_quarantined_and_the_page_flows(api: respx.MockRouter, make: Factory) -> None:
    """Missing id, bad date and bad email are quarantined with the field and value; good rows flow on."""
    rows = [
        contact_row(None, T0, email="x@example.com"),
        contact_row("2", T0 + 1, email="not-an-email"),
        contact_row("3", T0 + 2, createdate="yesterday-ish"),
        contact_row("4", T0 + 3, email="ok@example.com"),
    ]
    api.post(CONTACTS).mock(return_value=httpx.Response(200, json={"total": 4, "results": rows}))
    pages = await collect(make().pull("leads", None))
    assert [r.key for r in leads_of(pages)] == ["4"]
    reasons = {q.key: q.reason for q in pages[0].quarantined}
    assert reasons == {
        None: "id: missing",
        "2": "email: 'not-an-email' is not a valid email",
        "3": "createdate: 'yesterday-ish' is not a date",
    }
    assert pages[0].quarantined[1].raw == rows[1]
    assert json.loads(pages[0].cursor or "") == {"modified_ms": T0 + 3}


@pytest.mark.anyio
async def test_companies_map_to_accounts(api: respx.MockRouter, make: Factory) -> None:
    """Companies become Accounts with numbers parsed and the domain normalised; bad numbers quarantine."""
    good = {"id": "55", "properties": {"hs_lastmodifieddate": "2026-01-01T00:00:00Z", "name": "Acme",
                                       "domain": "https://www.Acme.com/about", "industry": "SOFTWARE",
                                       "numberofemployees": "250", "country": "DE",
                                       "annualrevenue": "1250000.50"}}
    bad = {"id": "56", "properties": {"hs_lastmodifieddate": str(T0 + 1), "numberofemployees": "lots"}}
    route = api.post(COMPANIES).mock(return_value=httpx.Response(200, json={"results": [good, bad]}))
    pages = await collect(make().pull("accounts", json.dumps({"modified_ms": T0})))
    assert pages[0].records == [Account(
        key="55", updated_at=datetime(2026, 1, 1, tzinfo=UTC), name="Acme", domain="acme.com",
        industry="SOFTWARE", employees=250, country="DE", annual_revenue=1_250_000.5)]
    assert [q.reason for q in pages[0].quarantined] == ["numberofemployees: 'lots' is not a number"]
    sent = json.loads(route.calls[0].request.content)
    assert sent["filterGroups"][0]["filters"][0]["propertyName"] == "hs_lastmodifieddate"


@pytest.mark.anyio
@pytest.mark.parametrize("cursor", ["not json", "[1, 2]", '{"modified_ms": "soon"}'])
async def test_unreadable_cursor_gives_up(make: Factory, cursor: str) -> None:
    """A cursor this connector did not write is refused, not silently restarted."""
    with pytest.raises(GiveUp, match="cursor"):
        await collect(make().pull("leads", cursor))


@pytest.mark.anyio
async def test_unknown_stream_gives_up(make: Factory) -> None:
    """Only the declared streams can be pulled."""
    with pytest.raises(GiveUp, match="deals"):
        await collect(make().pull("deals", None))


# --- activities -----------------------------------------------------------------------------------


def event(event_id: str, kind: str, when: str, object_id: str | None = "101", **props: str) -> dict[str, Any]:
    return {"id": event_id, "eventType": kind, "objectType": "CONTACT", "objectId": object_id,
            "occurredAt": when, "properties": props}


@pytest.mark.anyio
async def test_events_map_per_type_with_cursor(api: respx.MockRouter, make: Factory) -> None:
    """Configured event types become Activities (a pricing URL: pricing_page), with a cursor per type."""
    views = [
        event("v1", "e_visited_page", "2026-01-01T00:00:01Z", hs_url="https://acme.com/blog"),
        event("v2", "e_visited_page", "2026-01-01T00:00:02Z", hs_url="https://acme.com/pricing?x=1"),
    ]
    forms = [event("f1", "e_submitted_form", "2026-01-01T00:00:05Z"), event("f2", "e_submitted_form", "bad")]

    def handler(request: httpx.Request) -> httpx.Response:
        params = request.url.params
        if params["eventType"] == "e_visited_page":
            if params.get("after") == "p2":
                return httpx.Response(200, json={"results": views[1:]})
            return httpx.Response(200, json={"results": views[:1], "paging": {"next": {"after": "p2"}}})
        return httpx.Response(200, json={"results": forms})

    route = api.get(EVENTS).mock(side_effect=handler)
    cursor = json.dumps({"e_visited_page": T0, "e_submitted_form": T0})
    types = {"e_visited_page": "page_view", "e_submitted_form": "form_submit"}
    pages = await collect(make(event_types=types, overlap_seconds=10).pull("activities", cursor))
    records = [r for p in pages for r in p.records]
    assert [(a.key, a.type) for a in records if isinstance(a, Activity)] == [
        ("v1", ActivityType.PAGE_VIEW), ("v2", ActivityType.PRICING_PAGE), ("f1", ActivityType.FORM_SUBMIT)]
    assert [q.reason for p in pages for q in p.quarantined] == ["occurredAt: 'bad' is not a date"]
    # vendor properties arrive under the canonical names scoring reads
    assert records[1].attributes == {"event_type": "e_visited_page", "url": "https://acme.com/pricing?x=1"}
    assert json.loads(pages[-1].cursor or "") == {"e_visited_page": T0 + 2000, "e_submitted_form": T0 + 5000}
    first = route.calls[0].request.url.params
    assert first["occurredAfter"] == "2025-12-31T23:59:50.000Z"
    assert (first["objectType"], first["sort"]) == ("contact", "occurredAt")
