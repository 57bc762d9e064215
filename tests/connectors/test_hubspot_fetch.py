"""HubSpot reads by id (``fetch``, the batch/read endpoint) against the HubSpot sandbox over loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import pytest

from connectors.base import Account, ConsentChange, GiveUp, Lead, Page
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector
from connectors.sandbox import HubSpotSandbox, serve_on_loopback

TOKEN = "pat-na1-fetch-token"
NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
READ = "POST /crm/v3/objects/contacts/batch/read"
SEARCH = "POST /crm/v3/objects/contacts/search"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@pytest.fixture
def sandbox() -> HubSpotSandbox:
    box = HubSpotSandbox(token=TOKEN, clock=lambda: NOW, limits=None)
    box.load(SimpleNamespace(
        owners=[],
        companies=[{"id": "9001", "properties": {"name": "Acme", "domain": "acme.example",
                                                    "hs_lastmodifieddate": iso(NOW - timedelta(days=3))}}],
        contacts=[{"id": str(n), "properties": {
            "email": f"p{n}@example.com", "firstname": f"P{n}", "lastname": "Test", "jobtitle": f"Title {n}",
            "associatedcompanyid": "9001", "lastmodifieddate": iso(NOW - timedelta(minutes=n))}}
            for n in range(1, 251)],
        events=[],
    ))
    return box


@pytest.fixture
async def hub(sandbox: HubSpotSandbox) -> AsyncIterator[HubSpotConnector]:
    with serve_on_loopback(sandbox.app) as url:
        config = HubSpotConfig(token=TOKEN, base_url=url)
        client = build_client(url, headers=HubSpotConnector.client_headers(config))
        connector = HubSpotConnector(config, HttpLayer(client, name="hubspot", retry=RetrySettings(attempts=2)))
        yield connector
        await client.aclose()


async def drain(pages: AsyncIterator[Page]) -> list[Page]:
    return [page async for page in pages]


def test_fetch_is_declared() -> None:
    """HubSpot declares reads by id for contacts, companies and deals, not for events."""
    assert HubSpotConnector.capabilities.fetchable == ("accounts", "opportunities", "leads")


@pytest.mark.anyio
async def test_fetch_batches_by_100_and_maps_like_a_pull(hub: HubSpotConnector, sandbox: HubSpotSandbox) -> None:
    """250 ids (one repeated) go out as 3 batch/read calls of ≤100 ids; the leads come back mapped, no cursor,
    no search spent."""
    keys = [str(n) for n in range(250, 0, -1)] + ["7"]
    pages = await drain(hub.fetch("leads", keys))
    assert sandbox.stats.requests[READ] == 3
    assert sandbox.stats.requests[SEARCH] == 0
    assert all(p.cursor is None for p in pages)
    leads = {r.key: r for p in pages for r in p.records if isinstance(r, Lead)}
    assert sorted(leads, key=int) == [str(n) for n in range(1, 251)]
    assert leads["42"].email == "p42@example.com"
    assert leads["42"].title == "Title 42"
    assert leads["42"].account_key == "9001"


@pytest.mark.anyio
async def test_fetch_leaves_out_missing_ids(hub: HubSpotConnector, sandbox: HubSpotSandbox) -> None:
    """Ids HubSpot does not have (its 207 OBJECT_NOT_FOUND) are left out; the others still come back."""
    sandbox.objects["contacts"]["5"]["archived"] = True
    pages = await drain(hub.fetch("leads", ["3", "5", "999999"]))
    got = [r.key for p in pages for r in p.records if not isinstance(r, ConsentChange)]
    assert got == ["3"]
    assert sandbox.stats.status_codes[207] == 1


@pytest.mark.anyio
async def test_fetch_companies_and_refuses_events(hub: HubSpotConnector) -> None:
    """Companies read by id too; asking for events by id is a clear GiveUp naming what can be read."""
    pages = await drain(hub.fetch("accounts", ["9001"]))
    assert [(type(r), r.key) for p in pages for r in p.records] == [(Account, "9001")]
    with pytest.raises(GiveUp, match="by id: accounts, opportunities, leads"):
        await drain(hub.fetch("activities", ["1"]))
