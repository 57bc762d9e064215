"""HubSpot deals as the ``opportunities`` stream, against respx: mapping, paging with one associations read
per page, deals without a company, the primary company, malformed deals quarantined, reads by id."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.base import Opportunity
from tests.connectors.test_hubspot_pull import T0, Factory, FakeSearch, api, collect, make

__all__ = ["api", "make"]  # the fixtures, shared with the contact and company pull tests

DEALS = "/crm/v3/objects/deals/search"
ASSOCIATIONS = "/crm/v4/associations/deals/companies/batch/read"
READ = "/crm/v3/objects/deals/batch/read"


def deal_row(object_id: str, ms: int, **props: str | None) -> dict[str, Any]:
    base = {"dealname": f"Deal {object_id}", "dealstage": "qualifiedtobuy", "pipeline": "default", "amount": "1500",
            "createdate": "2025-12-01T10:00:00.000Z", "hs_is_closed": "false", "hs_is_closed_won": "false"}
    return {"id": object_id, "properties": {**base, "hs_lastmodifieddate": str(ms), "hs_object_id": object_id, **props},
            "createdAt": "2025-12-01T10:00:00.000Z", "updatedAt": "2026-01-01T00:00:00.000Z", "archived": False}


class FakeAssociations:
    """HubSpot's v4 associations batch/read: results for deals with companies; a 207 OBJECT_NOT_FOUND error
    for each deal with none."""

    def __init__(self, links: dict[str, list[tuple[int, list[int]]]]) -> None:
        self.links = links  # deal id -> [(company id, association type ids)]
        self.bodies: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.bodies.append(body)
        results, errors = [], []
        for item in body["inputs"]:
            found = self.links.get(item["id"])
            if found:
                results.append({"from": {"id": item["id"]}, "to": [
                    {"toObjectId": company, "associationTypes": [
                        {"category": "HUBSPOT_DEFINED", "typeId": t, "label": "Primary" if t == 5 else None}
                        for t in types]} for company, types in found]})
            else:
                errors.append({"status": "error", "category": "OBJECT_NOT_FOUND",
                               "message": f"No company is associated with deal {item['id']}.",
                               "context": {"fromObjectId": [item["id"]]}})
        answer: dict[str, Any] = {"status": "COMPLETE", "results": results, "startedAt": "2026-01-01T00:00:00.000Z",
                                  "completedAt": "2026-01-01T00:00:00.100Z"}
        if errors:
            answer |= {"numErrors": len(errors), "errors": errors}
        return httpx.Response(207 if errors else 200, json=answer)


def opportunities(pages: list[Any]) -> list[Opportunity]:
    return [r for p in pages for r in p.records if isinstance(r, Opportunity)]


@pytest.mark.anyio
async def test_deals_map_to_opportunities_with_their_companies(api: respx.MockRouter, make: Factory) -> None:
    """An open deal has no is_won and no closed_at (its closedate is only expected); a won deal has both; the
    company comes from the associations read, the primary one when a deal has several."""
    rows = [deal_row("1", T0, closedate="2026-03-01T00:00:00Z"),
            deal_row("2", T0 + 1, dealstage="closedwon", hs_is_closed="true", hs_is_closed_won="true",
                     closedate="2026-01-15T12:00:00Z", amount="2500.50")]
    api.post(DEALS).mock(side_effect=FakeSearch(rows))
    api.post(ASSOCIATIONS).mock(side_effect=FakeAssociations({"1": [(77, [341])],
                                                              "2": [(12, [341]), (90, [341, 5])]}))
    pages = await collect(make().pull("opportunities", None))
    assert opportunities(pages) == [
        Opportunity(key="1", updated_at=datetime.fromtimestamp(T0 / 1000, tz=UTC),
                    created_at=datetime(2025, 12, 1, 10, tzinfo=UTC), account_key="77", name="Deal 1",
                    stage="qualifiedtobuy", amount=1500.0, closed_at=None, is_won=None,
                    attributes={"pipeline": "default"}),
        Opportunity(key="2", updated_at=datetime.fromtimestamp((T0 + 1) / 1000, tz=UTC),
                    created_at=datetime(2025, 12, 1, 10, tzinfo=UTC), account_key="90", name="Deal 2",
                    stage="closedwon", amount=2500.5, closed_at=datetime(2026, 1, 15, 12, tzinfo=UTC), is_won=True,
                    attributes={"pipeline": "default"}),
    ]
    assert json.loads(pages[-1].cursor or "") == {"modified_ms": T0 + 1}


@pytest.mark.anyio
async def test_each_page_of_deals_costs_one_associations_read(api: respx.MockRouter, make: Factory) -> None:
    """Twelve deals in pages of five: three searches and three associations reads (each naming its page's
    deals), never one call per deal; the search asks for the deal properties on hs_lastmodifieddate."""
    rows = [deal_row(str(n), T0 + n) for n in range(1, 13)]
    search = FakeSearch(rows)
    links = FakeAssociations({str(n): [(1000 + n, [341, 5])] for n in range(1, 13)})
    api.post(DEALS).mock(side_effect=search)
    api.post(ASSOCIATIONS).mock(side_effect=links)
    pages = await collect(make(page_size=5).pull("opportunities", None))
    got = opportunities(pages)
    assert [o.key for o in got] == [str(n) for n in range(1, 13)]
    assert all(o.account_key == str(1000 + int(o.key)) for o in got)
    assert [[i["id"] for i in b["inputs"]] for b in links.bodies] == [
        ["1", "2", "3", "4", "5"], ["6", "7", "8", "9", "10"], ["11", "12"]]
    assert len(search.bodies) == 3
    assert search.bodies[0]["sorts"] == [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}]
    assert set(search.bodies[0]["properties"]) >= {"dealname", "dealstage", "amount", "createdate", "closedate",
                                                   "hs_is_closed", "hs_is_closed_won", "hs_lastmodifieddate"}


@pytest.mark.anyio
async def test_deals_without_a_company_come_without_an_account(api: respx.MockRouter, make: Factory) -> None:
    """HubSpot's 207 OBJECT_NOT_FOUND for a deal with no company leaves that deal's account empty; the others
    keep theirs and nothing is quarantined."""
    api.post(DEALS).mock(side_effect=FakeSearch([deal_row("1", T0), deal_row("2", T0 + 1)]))
    api.post(ASSOCIATIONS).mock(side_effect=FakeAssociations({"2": [(5, [341])]}))
    pages = await collect(make().pull("opportunities", None))
    assert {o.key: o.account_key for o in opportunities(pages)} == {"1": None, "2": "5"}
    assert not [q for p in pages for q in p.quarantined]


@pytest.mark.parametrize(("props", "reason"), [
    ({"amount": "lots"}, "amount: 'lots' is not a number"),
    ({"createdate": None}, None),  # falls back to the object's createdAt
    ({"createdate": "yesterday"}, "createdate: 'yesterday' is not a date"),
    ({"hs_is_closed_won": "maybe"}, "hs_is_closed_won: 'maybe' is not true or false"),
    ({"hs_is_closed": "false", "hs_is_closed_won": "true"}, "hs_is_closed: 'false' for a deal that is closed won"),
])
@pytest.mark.anyio
async def test_a_malformed_deal_is_quarantined_naming_the_field(api: respx.MockRouter, make: Factory,
                                                                props: dict[str, Any], reason: str | None) -> None:
    """A deal breaking the data contract is quarantined with a reason naming the field; its neighbour flows on
    (and the associations read asks only for the deals that mapped)."""
    links = FakeAssociations({"1": [(7, [341])], "2": [(8, [341])]})
    api.post(DEALS).mock(side_effect=FakeSearch([deal_row("1", T0, **props), deal_row("2", T0 + 1)]))
    api.post(ASSOCIATIONS).mock(side_effect=links)
    pages = await collect(make().pull("opportunities", None))
    bad = [(q.stream, q.key, q.reason) for p in pages for q in p.quarantined]
    good = [o.key for o in opportunities(pages)]
    if reason is None:
        assert (bad, good) == ([], ["1", "2"])
    else:
        assert (bad, good) == ([("opportunities", "1", reason)], ["2"])
        assert [i["id"] for b in links.bodies for i in b["inputs"]] == ["2"]


@pytest.mark.anyio
async def test_deals_are_read_by_id_with_their_companies(api: respx.MockRouter, make: Factory) -> None:
    """fetch("opportunities") reads the named deals by batch/read (no search, no cursor) and their companies."""
    read = api.post(READ).mock(return_value=httpx.Response(200, json={
        "status": "COMPLETE", "results": [deal_row("9", T0)], "startedAt": "x", "completedAt": "y"}))
    api.post(ASSOCIATIONS).mock(side_effect=FakeAssociations({"9": [(3, [341])]}))
    search = api.post(DEALS).mock(side_effect=FakeSearch([]))
    pages = await collect(make().fetch("opportunities", ["9", "9"]))
    assert [(o.key, o.account_key) for o in opportunities(pages)] == [("9", "3")]
    assert all(p.cursor is None for p in pages)
    assert json.loads(read.calls[0].request.content)["inputs"] == [{"id": "9"}]
    assert not search.called
