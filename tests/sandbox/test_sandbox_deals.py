"""Deals in the generated portals and in the HubSpot and Salesforce fakes: opened at conversions, some sales-led,
some closed; searched, associated and stage-calculated as HubSpot does; Opportunities queryable by SOQL."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, timedelta

import pytest

from connectors.sandbox import SalesforceSandbox, generate_dataset, generator
from connectors.sandbox._wire import parse_time, to_ms
from connectors.sandbox.hubspot import HubSpotSandbox
from tests.sandbox.conftest import NOW, MakeClient

HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS


def test_deals_open_at_conversions_and_on_some_other_companies() -> None:
    """Each conversion at a company has a deal on it opened within two hours after (or one opened in the 30
    days before, which the contact joins); other companies get sales-led deals; some are won, some lost, some
    open; the same seed gives the same deals and another seed others."""
    data = generate_dataset(seed=3, contacts=1500, now=NOW)
    assert generate_dataset(seed=3, contacts=1500, now=NOW).deals == data.deals
    assert generate_dataset(seed=4, contacts=1500, now=NOW).deals != data.deals
    company_of = {d: c for d, kind, c, t in data.deal_associations if kind == "companies" and t == 341}
    assert set(company_of) == {d["id"] for d in data.deals}
    opened: dict[str, list[int]] = {}
    for deal in data.deals:
        opened.setdefault(company_of[deal["id"]], []).append(parse_time(deal["properties"]["createdate"]) or 0)
    converting: set[str] = set()
    for contact in data.contacts:
        props = contact["properties"]
        if props.get("lifecyclestage") != "opportunity" or "associatedcompanyid" not in props:
            continue
        at = parse_time(props["hs_lifecyclestage_opportunity_date"]) or 0
        company = props["associatedcompanyid"]
        converting.add(company)
        assert any(-30 * DAY_MS < created - at <= 2 * HOUR_MS for created in opened[company]), contact["id"]
    assert set(opened) - converting, "no sales-led deal on a company without a conversion"
    stages = Counter(d["properties"]["dealstage"] for d in data.deals)
    assert stages["closedwon"] > 0
    assert stages["closedlost"] > 0
    assert sum(stages.values()) - stages["closedwon"] - stages["closedlost"] > 0
    for deal in data.deals:
        props = deal["properties"]
        closed = props["dealstage"] in ("closedwon", "closedlost")
        assert props["hs_is_closed"] == str(closed).lower()
        assert props["hs_is_closed_won"] == str(props["dealstage"] == "closedwon").lower()
        assert (parse_time(props["closedate"]) or 0) <= to_ms(NOW) or not closed
        assert parse_time(props["createdate"]) <= parse_time(props["hs_lastmodifieddate"]) <= to_ms(NOW)


def test_adding_deals_left_the_rest_of_a_dataset_as_it_was(monkeypatch: pytest.MonkeyPatch) -> None:
    """Deals draw from a random stream of their own: a portal generated without them (the deal step stubbed
    out) has the very same companies, contacts and events; deal ids sit below the companies' so the ids the
    fake gives objects created through the API stay as before."""
    data = generate_dataset(seed=8, contacts=300, now=NOW)
    monkeypatch.setattr(generator, "_deals", lambda *args: ([], []))
    bare = generate_dataset(seed=8, contacts=300, now=NOW)
    assert bare.deals == []
    assert data.deals
    assert (data.companies, data.contacts, data.events) == (bare.companies, bare.contacts, bare.events)
    assert all(int(d["id"]) < int(data.companies[0]["id"]) for d in data.deals)


@pytest.mark.anyio
async def test_hubspot_deals_are_searched_and_associated_like_hubspot(make_client: MakeClient) -> None:
    """The loaded deals answer deals search on hs_lastmodifieddate; associations batch/read names each deal's
    company (unlabelled and primary) and answers 207 OBJECT_NOT_FOUND for a deal without one."""
    sandbox = HubSpotSandbox(token="test-token", clock=lambda: NOW)
    data = generate_dataset(seed=3, contacts=400, now=NOW)
    sandbox.load(data)
    lonely = sandbox.create("deals", {"dealname": "No company", "dealstage": "appointmentscheduled"})
    async with make_client(sandbox) as client:
        found = await client.post("/crm/v3/objects/deals/search", json={
            "filterGroups": [{"filters": [{"propertyName": "hs_lastmodifieddate", "operator": "GTE", "value": "0"}]}],
            "sorts": [{"propertyName": "hs_lastmodifieddate", "direction": "ASCENDING"}],
            "properties": ["dealname", "hs_is_closed_won"], "limit": 200})
        first = data.deals[0]["id"]
        links = await client.post("/crm/v4/associations/deals/companies/batch/read",
                                  json={"inputs": [{"id": first}, {"id": lonely}]})
    body = found.json()
    assert body["total"] == len(data.deals) + 1
    assert set(body["results"][0]["properties"]) == {"dealname", "hs_is_closed_won"}
    assert links.status_code == 207
    answer = links.json()
    company = next(c for d, kind, c, t in data.deal_associations if d == first and kind == "companies")
    [result] = answer["results"]
    assert result["from"] == {"id": first}
    assert [(t["toObjectId"], sorted(x["typeId"] for x in t["associationTypes"])) for t in result["to"]] == [
        (int(company), [5, 341])]
    assert answer["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    assert answer["errors"][0]["context"] == {"fromObjectId": [lonely]}


@pytest.mark.anyio
async def test_hubspot_calculates_closed_and_won_from_the_stage(make_client: MakeClient) -> None:
    """Moving a deal to closedwon sets hs_is_closed/hs_is_closed_won and a close date; writing those
    calculated properties directly is refused as read-only."""
    sandbox = HubSpotSandbox(token="test-token", clock=lambda: NOW)
    deal = sandbox.create("deals", {"dealname": "Big one", "dealstage": "qualifiedtobuy", "amount": "5000"})
    assert sandbox.objects["deals"][deal]["properties"]["hs_is_closed"] == "false"
    async with make_client(sandbox) as client:
        moved = await client.patch(f"/crm/v3/objects/deals/{deal}", json={"properties": {"dealstage": "closedwon"}})
        refused = await client.patch(f"/crm/v3/objects/deals/{deal}",
                                     json={"properties": {"hs_is_closed_won": "false"}})
    assert moved.status_code == 200
    props = sandbox.objects["deals"][deal]["properties"]
    assert (props["hs_is_closed"], props["hs_is_closed_won"]) == ("true", "true")
    assert parse_time(props["closedate"]) == to_ms(NOW)
    assert refused.status_code == 400
    assert "read only" in refused.text


def test_salesforce_opportunities_come_from_the_deals_and_answer_soql() -> None:
    """The Salesforce org holds one Opportunity per deal on the deal company's Account, its stage and outcome
    mapped; SOQL filters on IsClosed/IsWon and orders by SystemModstamp."""
    data = generate_dataset(seed=3, contacts=400, now=NOW)
    sf = SalesforceSandbox(clock=lambda: NOW)
    loaded = sf.load(data)
    assert len(loaded.opportunities) == len(data.deals)
    rows = sf.records["Opportunity"]
    company_of = {d: c for d, kind, c, t in data.deal_associations if kind == "companies" and t == 341}
    for deal in data.deals:
        row = rows[loaded.opportunities[deal["id"]]]
        assert row["AccountId"] == loaded.accounts[company_of[deal["id"]]]
        assert row["IsWon"] == (deal["properties"]["dealstage"] == "closedwon")
        assert row["StageName"] in ("Closed Won", "Closed Lost") if row["IsClosed"] else row["StageName"]
    _, won = sf.query("SELECT Id, Amount FROM Opportunity WHERE IsClosed = true AND IsWon = true "
                      "ORDER BY SystemModstamp, Id")
    assert {r["Id"] for r in won} == {k for k, r in rows.items() if r["IsWon"]}
    since = (NOW - timedelta(days=30)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    _, recent = sf.query("SELECT Id FROM Opportunity WHERE SystemModstamp >= " + since)  # noqa: S608 - a test literal
    assert {r["Id"] for r in recent} == {k for k, r in rows.items()
                                         if r["SystemModstamp"] >= to_ms(NOW - timedelta(days=30))}
