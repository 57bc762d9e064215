"""Salesforce Opportunities as the ``opportunities`` stream, against the Salesforce sandbox over loopback:
mapping, incremental SOQL on SystemModstamp, paging, and malformed rows quarantined naming the field."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import Opportunity
from connectors.sandbox.salesforce import SalesforceSandbox
from tests.connectors.test_salesforce_sandbox import START, Connectors, base_url, clock, connector, pages, sandbox

__all__ = ["base_url", "clock", "connector", "sandbox"]  # the fixtures, shared with the other Salesforce tests

pytestmark = pytest.mark.anyio


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def seed(box: SalesforceSandbox, count: int) -> tuple[str, list[str]]:
    """An account and ``count`` opportunities on it, modified an hour apart (the last an hour before START):
    every third one won, every third lost, the rest open."""
    account = box.insert("Account", {"Name": "Acme"})
    ids = []
    for n in range(count):
        stamp = ms(START - timedelta(hours=count - n))
        closed, won = n % 3 != 2, n % 3 == 0
        ids.append(box.insert("Opportunity", {
            "AccountId": account, "Name": f"Deal {n}", "StageName": "Closed Won" if won else
            "Closed Lost" if closed else "Prospecting", "Amount": 1000.0 + n, "CloseDate": "2026-02-20",
            "IsClosed": closed, "IsWon": won}, created_ms=stamp - 86_400_000, modified_ms=stamp))
    return account, ids


def opportunities(found: list[object]) -> list[Opportunity]:
    return [r for page in found for r in page.records if isinstance(r, Opportunity)]  # type: ignore[attr-defined]


async def test_opportunities_map_and_page_to_the_end(connector: Connectors, base_url: str,
                                                     sandbox: SalesforceSandbox) -> None:
    """450 Opportunities at 200 a page come as three pages of one SOQL query on SystemModstamp: each once, on
    its Account, won/lost with their CloseDate, open ones with neither; the cursor is the newest stamp."""
    account, ids = seed(sandbox, 450)
    found = await pages(connector(base_url, page_size=200), "opportunities")
    got = opportunities(found)
    assert [o.key for o in got] == ids
    assert [len(p.records) for p in found] == [200, 200, 50]
    assert sandbox.stats.requests["GET /query"] == 1
    first, open_one = got[0], got[2]
    assert (first.account_key, first.name, first.stage, first.amount, first.is_won, first.closed_at) == (
        account, "Deal 0", "Closed Won", 1000.0, True, datetime(2026, 2, 20, tzinfo=UTC))
    assert first.created_at == START - timedelta(hours=450, days=1)
    assert (got[1].is_won, open_one.is_won, open_one.closed_at) == (False, None, None)
    assert json.loads(found[-1].cursor or "") == {"Opportunity": ms(START - timedelta(hours=1))}


async def test_opportunities_pull_from_the_cursor_minus_the_overlap(connector: Connectors, base_url: str,
                                                                    sandbox: SalesforceSandbox) -> None:
    """A pull from a cursor reads only Opportunities stamped since the cursor minus the overlap window."""
    _, ids = seed(sandbox, 10)
    cursor = json.dumps({"Opportunity": ms(START - timedelta(hours=3))})
    found = await pages(connector(base_url, overlap_seconds=3600), "opportunities", cursor)
    assert [o.key for o in opportunities(found)] == ids[-4:]


@pytest.mark.parametrize(("values", "reason"), [
    ({"IsWon": True, "IsClosed": False}, "Opportunity.IsClosed: false for an opportunity that IsWon"),
    ({"CreatedDate": None}, "Opportunity.CreatedDate: missing"),
    ({"Amount": "a lot"}, "Opportunity.Amount: 'a lot' is not a number"),
])
async def test_a_malformed_opportunity_is_quarantined_naming_the_field(
        connector: Connectors, base_url: str, sandbox: SalesforceSandbox, values: dict[str, object],
        reason: str) -> None:
    """An Opportunity breaking the data contract is quarantined with the field named; the rest flow on."""
    _, ids = seed(sandbox, 3)
    bad = sandbox.insert("Opportunity", {"Name": "Bad", "StageName": "Prospecting", "CloseDate": "2026-02-20",
                                         "IsClosed": False, "IsWon": False}, modified_ms=ms(START))
    sandbox.records["Opportunity"][bad].update(values)
    found = await pages(connector(base_url), "opportunities")
    assert [o.key for o in opportunities(found)] == ids
    assert [(q.stream, q.key, q.reason) for p in found for q in p.quarantined] == [("opportunities", bad, reason)]
