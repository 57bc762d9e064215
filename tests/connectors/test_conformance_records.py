"""The conformance kit's canonical-records check: it accepts good Opportunity records and catches broken ones
(naive times, a non-bool ``is_won``, the wrong record type for a stream), naming the field to fix."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any, ClassVar

import pytest

from connectors.base import Account, Connector, ConnectorConfig, Lead, Opportunity, Page
from connectors.http import HttpLayer
from connectors.hubspot import HubSpotConnector
from connectors.testing import ConformanceFailure, KitClock
from connectors.testing import _checks_source as source
from tests.connectors.kit.builtin import HubSpotKit

T = datetime(2026, 3, 1, tzinfo=UTC)


class NaiveDeals(HubSpotConnector):
    """Hands out deals with a naive creation time (a ``fromisoformat`` without the zone)."""

    async def pull(self, stream: str, cursor: str | None) -> AsyncIterator[Page]:  # type: ignore[override]
        async for page in super().pull(stream, cursor):
            records = [dataclasses.replace(r, created_at=r.created_at.replace(tzinfo=None))
                       if isinstance(r, Opportunity) else r for r in page.records]
            yield Page(records, page.cursor, page.quarantined)


def kit_for(broken: type[Connector]) -> HubSpotKit:
    class Broken(HubSpotKit):
        connector: ClassVar[type[Connector]] = broken

        def make_connector(self, config: ConnectorConfig, http: HttpLayer, clock: KitClock) -> Connector:
            return broken(config, http, now=clock)  # type: ignore[call-arg]

    return Broken()


def test_a_good_opportunity_keeps_the_contract() -> None:
    """An open opportunity without an account, amount or close is canonical; so is a won one with all of them."""
    assert source.record_problems("opportunities", Opportunity("o1", T, T)) == []
    won = Opportunity("o2", T, T, account_key="a1", amount=10.5, closed_at=T, is_won=True, stage="closedwon")
    assert source.record_problems("opportunities", won) == []


@pytest.mark.parametrize(("record", "problem"), [
    (Opportunity("o1", T, T.replace(tzinfo=None)), "Opportunity.created_at: "),
    (Opportunity("o1", T, T, closed_at=T.replace(tzinfo=None)), "Opportunity.closed_at: "),
    (Opportunity("o1", T, T, is_won="true"), "Opportunity.is_won: 'true' is not true, false or None"),  # type: ignore[arg-type]
    (Opportunity("o1", T, T, amount=float("nan")), "Opportunity.amount: nan is not a finite number"),
    (Opportunity("o1", T, T, account_key=""), "Opportunity.account_key: '' is neither an id nor None"),
    (Opportunity(" ", T, T), "Opportunity.key: ' ' is empty"),
    (Account("a1", T), "Account record in stream 'opportunities', which carries Opportunity"),
])
def test_a_broken_opportunity_is_named_by_its_field(record: Any, problem: str) -> None:
    """Each broken part of an opportunity record is reported naming the field."""
    found = source.record_problems("opportunities", record)
    assert len(found) == 1
    assert found[0].startswith(problem)


def test_records_of_other_streams_and_custom_streams() -> None:
    """A lead stream may carry a Lead; an Opportunity there is refused; a plugin's own stream takes any record."""
    assert source.record_problems("leads", Lead("l1", T)) == []
    refused = source.record_problems("leads", Opportunity("o1", T, T))
    assert refused[0].startswith("Opportunity record in stream 'leads'")
    assert source.record_problems("deals_v2", Opportunity("o1", T, T)) == []


@pytest.mark.anyio
async def test_the_kit_catches_naive_opportunity_times_and_passes_the_real_connector() -> None:
    """Through the kit, deals with a naive created_at fail canonical_records naming the field; HubSpot's own
    connector passes the same check."""
    with pytest.raises(ConformanceFailure, match=r"Opportunity\.created_at: .* is not a timezone-aware datetime"):
        await source.canonical_records(kit_for(NaiveDeals), "opportunities")
    await source.canonical_records(HubSpotKit(), "opportunities")
