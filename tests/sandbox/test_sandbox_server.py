"""The sandbox over a real loopback socket, and the package's public surface."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

import connectors.sandbox
from connectors.sandbox import FaultSettings, HubSpotSandbox, generate_dataset, serve_on_loopback

pytestmark = pytest.mark.anyio


async def test_incremental_pull_and_write_back_over_loopback() -> None:
    """Over real HTTP a search pull pages through a dataset and a batch update lands."""
    now = datetime(2026, 6, 1, tzinfo=UTC)
    sandbox = HubSpotSandbox(token="t", clock=lambda: now)
    sandbox.load(generate_dataset(seed=1, contacts=450, now=now))
    search = {
        "filterGroups": [
            {"filters": [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": "0"}]}
        ],
        "sorts": [{"propertyName": "lastmodifieddate", "direction": "ASCENDING"}],
        "limit": 200,
    }
    with serve_on_loopback(sandbox.app) as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": "Bearer t"}) as client:
            ids: list[str] = []
            while True:
                body = (await client.post("/crm/v3/objects/contacts/search", json=search)).json()
                ids += [r["id"] for r in body["results"]]
                if "paging" not in body:
                    break
                search["after"] = body["paging"]["next"]["after"]
            inputs = [{"id": i, "properties": {"leadrelay_score": "50"}} for i in ids[:100]]
            update = await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
    assert sorted(ids, key=int) == sorted(sandbox.objects["contacts"], key=int)
    assert update.status_code == 200
    assert sandbox.stats.records_written["contacts"] == 100


async def test_dropped_connection_over_loopback_is_a_transport_error() -> None:
    """An injected timeout over a real socket reaches the client as an httpx transport error."""
    sandbox = HubSpotSandbox(token="t", faults=FaultSettings(timeout_rate=1.0))
    with serve_on_loopback(sandbox.app, log_level="critical") as base_url:
        async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": "Bearer t"}) as client:
            with pytest.raises(httpx.TransportError):
                await client.get("/crm/v3/objects/contacts")


def test_public_names_are_pinned() -> None:
    """The sandbox package exports exactly its documented public names."""
    assert sorted(connectors.sandbox.__all__) == [
        "Dataset",
        "FaultSettings",
        "GoogleAdsLimits",
        "GoogleAdsSandbox",
        "HubSpotLimits",
        "HubSpotSandbox",
        "LinkedInLimits",
        "LinkedInSandbox",
        "MarketoLimits",
        "MarketoSandbox",
        "MetaLimits",
        "MetaSandbox",
        "SalesforceLimits",
        "SalesforceSandbox",
        "generate_dataset",
        "serve_on_loopback",
    ]
