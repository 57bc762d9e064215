"""HubSpot sandbox search: incremental GTE pulls, paging, the 10k cap and filter limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.sandbox import HubSpotSandbox

pytestmark = pytest.mark.anyio

SEARCH = "/crm/v3/objects/contacts/search"


def _incremental(since: str, after: int | None = None, limit: int = 200) -> dict[str, Any]:
    body: dict[str, Any] = {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": since}]}
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "properties": ["email", "lastmodifieddate"],
        "limit": limit,
    }
    if after is not None:
        body["after"] = str(after)
    return body


def _seed(sandbox: HubSpotSandbox, clock: Any, n: int) -> list[str]:
    ids = []
    for i in range(n):
        ids.append(sandbox.create("contacts", {"email": f"s{i}@example.com"}))
        clock.advance(seconds=1)
    return ids


async def test_gte_on_lastmodifieddate_pages_ascending(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient, clock: Any
) -> None:
    """GTE on lastmodifieddate sorted ascending returns 200 a page in modified order, then no paging."""
    ids = _seed(sandbox, clock, 450)
    since = sandbox.objects["contacts"][ids[0]]["properties"]["lastmodifieddate"]
    seen: list[str] = []
    after: int | None = None
    sizes = []
    while True:
        body = (await client.post(SEARCH, json=_incremental(since, after))).json()
        sizes.append(len(body["results"]))
        assert body["total"] == 450
        seen += [r["id"] for r in body["results"]]
        if "paging" not in body:
            break
        after = int(body["paging"]["next"]["after"])
    assert sizes == [200, 200, 50]
    assert seen == ids


async def test_updated_records_move_to_the_end_of_an_incremental_pull(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient, clock: Any
) -> None:
    """A write bumps the modified date, so the record comes after everything older in the next pull."""
    ids = _seed(sandbox, clock, 5)
    sandbox.update("contacts", ids[1], {"jobtitle": "CFO"})
    body = (await client.post(SEARCH, json=_incremental("0"))).json()
    assert [r["id"] for r in body["results"]] == [ids[0], ids[2], ids[3], ids[4], ids[1]]


async def test_epoch_ms_and_iso_filters_agree(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient, clock: Any
) -> None:
    """The modified-date filter accepts epoch milliseconds and ISO-8601 alike."""
    ids = _seed(sandbox, clock, 10)
    iso = sandbox.objects["contacts"][ids[4]]["properties"]["lastmodifieddate"]
    epoch = str(int(clock.now.timestamp() * 1000) - 6000)
    by_iso = (await client.post(SEARCH, json=_incremental(iso))).json()
    by_ms = (await client.post(SEARCH, json=_incremental(epoch))).json()
    assert by_iso["total"] == by_ms["total"] == 6


async def test_paging_to_10000_is_a_400(client: httpx.AsyncClient) -> None:
    """An after offset reaching 10,000 is refused with VALIDATION_ERROR."""
    response = await client.post(SEARCH, json=_incremental("0", after=10_000))
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


async def test_limit_above_200_is_refused(client: httpx.AsyncClient) -> None:
    """Search pages are at most 200."""
    response = await client.post(SEARCH, json=_incremental("0", limit=201))
    assert response.status_code == 400


async def test_too_many_filters_are_refused(client: httpx.AsyncClient) -> None:
    """More than 6 filters in a group, or more than 5 groups, is a 400."""
    flt = {"propertyName": "email", "operator": "HAS_PROPERTY"}
    wide = {"filterGroups": [{"filters": [flt] * 7}]}
    many = {"filterGroups": [{"filters": [flt]}] * 6}
    assert (await client.post(SEARCH, json=wide)).status_code == 400
    assert (await client.post(SEARCH, json=many)).status_code == 400


async def test_filter_groups_or_and_operators(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """Groups are ORed, filters ANDed; IN, NEQ, NOT_HAS_PROPERTY and CONTAINS_TOKEN behave like HubSpot's."""
    a = sandbox.create("contacts", {"email": "a@acme.com", "jobtitle": "VP Sales", "country": "DE"})
    b = sandbox.create("contacts", {"email": "b@acme.com", "country": "US"})
    c = sandbox.create("contacts", {"email": "c@other.io", "jobtitle": "Engineer", "country": "FR"})
    body = {
        "filterGroups": [
            {
                "filters": [
                    {"propertyName": "country", "operator": "IN", "values": ["de", "fr"]},
                    {"propertyName": "jobtitle", "operator": "CONTAINS_TOKEN", "value": "vp"},
                ]
            },
            {
                "filters": [
                    {"propertyName": "jobtitle", "operator": "NOT_HAS_PROPERTY"},
                    {"propertyName": "country", "operator": "NEQ", "value": "DE"},
                ]
            },
        ]
    }
    found = (await client.post(SEARCH, json=body)).json()
    assert sorted(r["id"] for r in found["results"]) == sorted([a, b])
    assert c not in [r["id"] for r in found["results"]]


async def test_search_defaults_to_hubspots_contact_properties(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """Without properties, search returns HubSpot's default contact properties."""
    sandbox.create("contacts", {"email": "d@example.com", "jobtitle": "CTO"})
    body = (await client.post(SEARCH, json={})).json()
    assert set(body["results"][0]["properties"]) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }


async def test_companies_filter_on_hs_lastmodifieddate(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient, clock: Any
) -> None:
    """Companies use hs_lastmodifieddate for incremental pulls."""
    sandbox.create("companies", {"name": "Old"})
    clock.advance(days=1)
    new = sandbox.create("companies", {"name": "New"})
    body = {
        "filterGroups": [
            {
                "filters": [
                    {
                        "propertyName": "hs_lastmodifieddate",
                        "operator": "GT",
                        "value": "2026-06-01T12:00:00.000Z",
                    }
                ]
            }
        ],
        "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
    }
    found = (await client.post("/crm/v3/objects/companies/search", json=body)).json()
    assert [r["id"] for r in found["results"]] == [new]
