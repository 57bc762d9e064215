"""HubSpot sandbox events API: filters, ordering and cursor paging."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.sandbox import HubSpotSandbox

pytestmark = pytest.mark.anyio


def _events(n: int, object_id: str = "1", event_type: str = "e_visited_page") -> list[dict[str, Any]]:
    return [
        {
            "id": f"{object_id}-{event_type}-{i}",
            "eventType": event_type,
            "objectId": object_id,
            "objectType": "contact",
            "occurredAt": f"2026-05-01T00:{i:02d}:00.000Z",
            "properties": {"hs_url": "https://x.test/pricing"},
        }
        for i in range(n)
    ]


async def test_events_page_until_paging_is_absent(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """Events page by cursor in ascending time order and the last page has no paging."""
    sandbox.add_events(_events(25) + _events(5, object_id="2"))
    seen: list[str] = []
    params: dict[str, Any] = {"objectType": "contact", "objectId": "1", "sort": "occurredAt", "limit": 10}
    while True:
        body = (await client.get("/events/v3/events", params=params)).json()
        seen += [e["occurredAt"] for e in body["results"]]
        if "paging" not in body:
            break
        params["after"] = body["paging"]["next"]["after"]
    assert len(seen) == 25
    assert seen == sorted(seen)


async def test_occurred_after_and_event_type_filter(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """occurredAfter is exclusive and eventType narrows the stream across all contacts."""
    sandbox.add_events(_events(10) + _events(10, object_id="2", event_type="e_opened_email"))
    params = {
        "objectType": "contact",
        "occurredAfter": "2026-05-01T00:04:00Z",
        "eventType": "e_opened_email",
        "sort": "occurredAt",
        "limit": 100,
    }
    body = (await client.get("/events/event-occurrences/2026-03", params=params)).json()
    assert [e["occurredAt"][11:16] for e in body["results"]] == [f"00:{i:02d}" for i in range(5, 10)]
    assert {e["objectId"] for e in body["results"]} == {"2"}


async def test_descending_sort_and_limit_cap(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """-occurredAt returns newest first; limit above 1000 is refused."""
    sandbox.add_events(_events(3))
    newest = (
        await client.get("/events/v3/events", params={"objectType": "contact", "sort": "-occurredAt"})
    ).json()
    too_big = await client.get("/events/v3/events", params={"objectType": "contact", "limit": 1001})
    assert newest["results"][0]["occurredAt"] == "2026-05-01T00:02:00.000Z"
    assert too_big.status_code == 400


async def test_object_id_can_be_required(make_sandbox: Any, make_client: Any) -> None:
    """With events_require_object_id the v3 rule applies: no objectId is a 400."""
    sandbox = make_sandbox(events_require_object_id=True)
    async with make_client(sandbox) as client:
        response = await client.get("/events/v3/events", params={"objectType": "contact"})
    assert response.status_code == 400
