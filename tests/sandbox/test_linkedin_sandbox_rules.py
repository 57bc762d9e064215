"""The LinkedIn sandbox's own rules (apis.md §6): required headers, BATCH_CREATE, per-element statuses, set
semantics, the element cap, the bare 429 and fault knobs. In-process over ASGI."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sandbox import FaultSettings
from connectors.sandbox.linkedin import LinkedInLimits, LinkedInSandbox

pytestmark = pytest.mark.anyio

TOKEN = "rules-token"
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
HEADERS = {"Authorization": f"Bearer {TOKEN}", "LinkedIn-Version": "202605", "X-Restli-Protocol-Version": "2.0.0",
           "X-RestLi-Method": "BATCH_CREATE"}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def element(email: str, action: str = "ADD") -> dict[str, Any]:
    return {"action": action, "userIds": [{"idType": "SHA256_EMAIL", "idValue": sha(email)}]}


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make(clock: Clock) -> AsyncIterator[Any]:
    clients: list[httpx.AsyncClient] = []

    def build(**options: Any) -> tuple[LinkedInSandbox, httpx.AsyncClient]:
        sandbox = LinkedInSandbox(token=TOKEN, clock=clock, **options)
        clients.append(httpx.AsyncClient(transport=httpx.ASGITransport(app=sandbox.app),
                                         base_url="https://api.linkedin.com"))
        return sandbox, clients[-1]

    yield build
    for client in clients:
        await client.aclose()


async def test_required_headers(make: Any) -> None:
    """No token, no version, a sunset version, no Rest.li 2.0.0 or no BATCH_CREATE each get LinkedIn's error."""
    sandbox, client = make()
    segment = sandbox.create_segment("s")
    url, body = f"/rest/dmpSegments/{segment}/users", {"elements": [element("a@x.com")]}
    cases = [({"Authorization": ""}, 401, "INVALID_ACCESS_TOKEN"), ({"LinkedIn-Version": ""}, 400, "VERSION_MISSING"),
             ({"LinkedIn-Version": "202401"}, 426, "NONEXISTENT_VERSION"),
             ({"X-Restli-Protocol-Version": "1.0.0"}, 400, "ILLEGAL_ARGUMENT"),
             ({"X-RestLi-Method": ""}, 400, "ILLEGAL_ARGUMENT")]
    for override, status, code in cases:
        headers = {k: v for k, v in (HEADERS | override).items() if v}
        response = await client.post(url, json=body, headers=headers)
        assert (response.status_code, response.json()["code"]) == (status, code)
    assert sandbox.member_count(segment) == 0
    assert (await client.post(url, json=body, headers=HEADERS)).status_code == 200


async def test_per_element_status_and_set_semantics(make: Any) -> None:
    """Each element gets its status in input order: 201 for adds and removes (also repeated or of non-members),
    400 with an error for a malformed one; names alone need both first and last name."""
    sandbox, client = make()
    segment = sandbox.create_segment("s")
    elements = [element("a@x.com"), element("a@x.com"), element("z@x.com", "REMOVE"),
                {"action": "ADD", "userIds": [{"idType": "SHA256_EMAIL", "idValue": "NOT-HEX"}]},
                {"action": "ADD", "firstName": "Ann"}, {"action": "ADD", "firstName": "Ann", "lastName": "Lee"}]
    response = await client.post(f"/rest/dmpSegments/{segment}/users", json={"elements": elements}, headers=HEADERS)
    statuses = [e["status"] for e in response.json()["elements"]]
    assert statuses == [201, 201, 201, 400, 400, 201]
    assert "error" in response.json()["elements"][3]
    assert sandbox.member_count(segment) == 2


async def test_element_cap_and_unknown_segment(make: Any) -> None:
    """More elements than the cap refuse the whole batch; an unknown segment is 404; another account's is 403."""
    sandbox, client = make(limits=LinkedInLimits(max_elements=3))
    segment = sandbox.create_segment("s")
    foreign = sandbox.create_segment("other", account_id="42")
    four = {"elements": [element(f"{n}@x.com") for n in range(4)]}
    assert (await client.post(f"/rest/dmpSegments/{segment}/users", json=four, headers=HEADERS)).status_code == 400
    assert (await client.post("/rest/dmpSegments/1/users", json=four, headers=HEADERS)).status_code == 404
    denied = await client.post(f"/rest/dmpSegments/{foreign}/users", json={"elements": [element("a@x.com")]},
                               headers=HEADERS)
    assert (denied.status_code, denied.json()["code"]) == (403, "ACCESS_DENIED")


async def test_bare_429_per_member_minute(make: Any, clock: Clock) -> None:
    """Past the per-minute budget LinkedIn answers 429 with no Retry-After and no rate headers; a minute later
    the member may call again."""
    sandbox, client = make(limits=LinkedInLimits(users_per_minute=1))
    segment = sandbox.create_segment("s")
    url, body = f"/rest/dmpSegments/{segment}/users", {"elements": [element("a@x.com")]}
    assert (await client.post(url, json=body, headers=HEADERS)).status_code == 200
    throttled = await client.post(url, json=body, headers=HEADERS)
    assert (throttled.status_code, throttled.json()["code"]) == (429, "TOO_MANY_REQUESTS")
    assert not any(name.lower().startswith(("retry-after", "x-ratelimit", "x-li-ratelimit"))
                   for name in throttled.headers)
    clock.now += timedelta(seconds=60)
    assert (await client.post(url, json=body, headers=HEADERS)).status_code == 200


async def test_segments_create_and_find(make: Any) -> None:
    """Creating a segment answers 201 with its id in x-restli-id; the account finder lists it."""
    _, client = make(ad_account_id="500000001")
    created = await client.post("/rest/dmpSegments", headers=HEADERS | {"X-RestLi-Method": "CREATE"}, json={
        "name": "New", "account": "urn:li:sponsoredAccount:500000001", "type": "USER",
        "destinations": [{"destination": "LINKEDIN"}]})
    assert created.status_code == 201
    found = await client.get("/rest/dmpSegments", headers=HEADERS,
                             params={"q": "account", "account": "urn:li:sponsoredAccount:500000001"})
    assert [str(e["id"]) for e in found.json()["elements"]] == [created.headers["x-restli-id"]]


async def test_fault_knobs(make: Any) -> None:
    """A 429 storm answers the bare 429; server errors answer 5xx; neither applies the batch."""
    for faults, statuses in ((FaultSettings(storm_429=1.0), {429}), (FaultSettings(error_rate=1.0),
                                                                    {500, 502, 503, 504})):
        sandbox, client = make(faults=faults)
        segment = sandbox.create_segment("s")
        response = await client.post(f"/rest/dmpSegments/{segment}/users", json={"elements": [element("a@x.com")]},
                                     headers=HEADERS)
        assert response.status_code in statuses
        assert sandbox.member_count(segment) == 0
