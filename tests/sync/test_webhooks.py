"""The webhook receiver: HubSpot v3 signatures (checked against HubSpot's own SDK), the generic HMAC form,
and every refusal (401 signature or stale, 400 naming the field, 404, 413)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
from typing import Any

import httpx
import pytest
from hubspot.utils.signature import Signature
from starlette.applications import Starlette

from connectors.sandbox import serve_on_loopback
from sync.webhooks import hubspot_uri, sign_generic, sign_hubspot_v3, webhook_routes

pytestmark = pytest.mark.anyio

SECRET = "app-secret-5b1f0c7e"
OTHER = "second-secret-0d9a"
NOW = 1_780_000_000.0  # unix seconds


class Receiver:
    def __init__(self, secrets: dict[str, str] | None = None, *, asynchronous: bool = False) -> None:
        self.now = NOW
        self.calls: list[tuple[str, list[str]]] = []

        def record(connection: str, ids: list[str]) -> None:
            self.calls.append((connection, ids))

        async def record_async(connection: str, ids: list[str]) -> None:
            record(connection, ids)

        routes = webhook_routes(secrets or {"crm": SECRET}, record_async if asynchronous else record,
                                clock=lambda: self.now)
        self.app = Starlette(routes=routes)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=self.app), base_url="https://agent.example.com")


def events(*items: dict[str, Any]) -> bytes:
    return json.dumps(list(items)).encode()


def contact_event(object_id: int, kind: str = "contact.propertyChange", **extra: Any) -> dict[str, Any]:
    return {"eventId": object_id * 10, "subscriptionId": 7, "portalId": 62515, "appId": 54321,
            "occurredAt": int(NOW * 1000), "subscriptionType": kind, "attemptNumber": 0, "objectId": object_id,
            "changeSource": "CRM", **extra}


async def test_hubspot_signature_made_by_hubspots_sdk_is_accepted_and_contacts_trigger() -> None:
    """A request signed as HubSpot's own SDK computes v3 is accepted; contact ids reach the trigger once each,
    other objects' events are ignored."""
    receiver = Receiver()
    body = events(contact_event(101, "contact.creation"), contact_event(102), contact_event(101),
                  {**contact_event(900), "subscriptionType": "company.propertyChange"},
                  {**contact_event(103), "subscriptionType": "object.propertyChange", "objectTypeId": "0-1"})
    stamp = str(int(NOW * 1000) - 2_000)
    uri = "https://agent.example.com/webhooks/hubspot/crm"
    signature = Signature.get_signature(SECRET, body.decode(), "v3", uri, "POST", stamp)
    async with receiver.client() as client:
        response = await client.post("/webhooks/hubspot/crm", content=body, headers={
            "X-HubSpot-Signature-v3": signature, "X-HubSpot-Request-Timestamp": stamp,
            "Content-Type": "application/json"})
    assert response.status_code == 202, response.text
    assert receiver.calls == [("crm", ["101", "102", "103"])]
    assert sign_hubspot_v3(SECRET, "POST", uri, body, int(stamp))["X-HubSpot-Signature-v3"] == signature


def test_hubspot_vector_computed_independently() -> None:
    """sign_hubspot_v3 equals base64(HMAC-SHA256(secret, method+uri+body+timestamp)) with the listed escapes
    decoded in the URI."""
    body = b'[{"objectId":1}]'
    uri = "https://a.example.com/webhooks/hubspot?portal=1%3A2&x=%2Fy%20z"
    signed = "https://a.example.com/webhooks/hubspot?portal=1:2&x=/y%20z"
    expected = base64.b64encode(hmac.new(SECRET.encode(), b"POST" + signed.encode() + body + b"1700000000000",
                                         hashlib.sha256).digest()).decode()
    assert hubspot_uri(uri) == signed
    assert sign_hubspot_v3(SECRET, "POST", uri, body, 1_700_000_000_000)["X-HubSpot-Signature-v3"] == expected


async def test_hubspot_refusals() -> None:
    """Wrong secret, tampered body, missing headers and a timestamp over five minutes old answer 401; a
    non-array body 400; nothing is triggered."""
    receiver = Receiver()
    body = events(contact_event(5))
    uri = "https://agent.example.com/webhooks/hubspot/crm"
    fresh = int(NOW * 1000)
    cases = {
        "wrong secret": (body, sign_hubspot_v3(OTHER, "POST", uri, body, fresh)),
        "tampered": (events(contact_event(6)), sign_hubspot_v3(SECRET, "POST", uri, body, fresh)),
        "missing": (body, {}),
        "stale": (body, sign_hubspot_v3(SECRET, "POST", uri, body, fresh - 301_000)),
    }
    async with receiver.client() as client:
        for name, (content, headers) in cases.items():
            response = await client.post("/webhooks/hubspot/crm", content=content, headers=headers)
            assert response.status_code == 401, name
        bad = b'{"objectId": 1}'
        response = await client.post("/webhooks/hubspot/crm", content=bad,
                                      headers=sign_hubspot_v3(SECRET, "POST", uri, bad, fresh))
        assert response.status_code == 400
        assert "array" in response.json()["error"]
        broken = events(contact_event(1), {**contact_event(2), "objectId": "abc"})
        response = await client.post("/webhooks/hubspot/crm", content=broken,
                                      headers=sign_hubspot_v3(SECRET, "POST", uri, broken, fresh))
        assert response.status_code == 400
        assert "[1].objectId" in response.json()["error"]
    assert receiver.calls == []


async def test_hubspot_short_path_with_one_connection_and_ambiguity_with_several() -> None:
    """POST /webhooks/hubspot serves the only connection; with several it answers 404 naming the way out."""
    body = events(contact_event(42))
    uri = "https://agent.example.com/webhooks/hubspot"
    headers = sign_hubspot_v3(SECRET, "POST", uri, body, int(NOW * 1000))
    one = Receiver()
    async with one.client() as client:
        assert (await client.post("/webhooks/hubspot", content=body, headers=headers)).status_code == 202
    assert one.calls == [("crm", ["42"])]
    several = Receiver({"crm": SECRET, "other": OTHER})
    async with several.client() as client:
        response = await client.post("/webhooks/hubspot", content=body, headers=headers)
    assert response.status_code == 404
    assert "/webhooks/hubspot/{connection}" in response.json()["error"]


async def test_generic_form_independent_vector_and_async_trigger() -> None:
    """The generic form accepts t=…,v1=hex(HMAC-SHA256(secret, "t.body")) computed here by hand; an async
    trigger is awaited; ids are deduplicated in order."""
    receiver = Receiver(asynchronous=True)
    body = json.dumps({"ids": ["a1", 7, "a1"]}).encode()
    stamp = int(NOW) - 10
    digest = hmac.new(SECRET.encode(), f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    header = f"t={stamp},v1=deadbeef,v1={digest}"  # a rotated-out secret's entry beside the current one
    assert sign_generic(SECRET, body, stamp) == {"X-Leadrelay-Signature": f"t={stamp},v1={digest}"}
    async with receiver.client() as client:
        response = await client.post("/webhooks/crm", content=body, headers={"X-Leadrelay-Signature": header})
    assert response.status_code == 202
    assert response.json() == {"connection": "crm", "accepted": 2}
    assert receiver.calls == [("crm", ["a1", "7"])]


async def test_generic_refusals_name_the_problem() -> None:
    """Unknown connection 404, bad or stale signature 401, malformed body 400 naming the field, oversize 413."""
    receiver = Receiver()
    ok = json.dumps({"ids": ["1"]}).encode()
    async with receiver.client() as client:
        unknown = await client.post("/webhooks/nope", content=ok, headers=sign_generic(SECRET, ok, int(NOW)))
        assert unknown.status_code == 404
        wrong = await client.post("/webhooks/crm", content=ok, headers=sign_generic(OTHER, ok, int(NOW)))
        assert wrong.status_code == 401
        receiver.now = NOW + 301
        stale = await client.post("/webhooks/crm", content=ok, headers=sign_generic(SECRET, ok, int(NOW)))
        assert stale.status_code == 401
        assert "stale" in stale.json()["error"]
        receiver.now = NOW
        for content, field in ((b'{"id": ["1"]}', "ids"), (b'{"ids": []}', "ids"), (b'{"ids": ["1", null]}', "ids[1]"),
                               (b"not json", "body")):
            response = await client.post("/webhooks/crm", content=content,
                                          headers=sign_generic(SECRET, content, int(NOW)))
            assert response.status_code == 400, content
            assert response.json()["error"].startswith(f"{field}:"), response.json()
        big = json.dumps({"ids": ["x" * 1000] * 1100}).encode()
        too_big = await client.post("/webhooks/crm", content=big, headers=sign_generic(SECRET, big, int(NOW)))
        assert too_big.status_code == 413
    assert receiver.calls == []


def test_over_real_loopback_socket_and_secret_never_logged(caplog: pytest.LogCaptureFixture) -> None:
    """Served by uvicorn on a loopback port, a HubSpot call signed for the URL it really hit is accepted and a
    forged one refused; neither the secret nor a signature appears in the logs."""
    receiver = Receiver()
    body = events(contact_event(77))
    caplog.set_level(logging.DEBUG)
    with serve_on_loopback(receiver.app) as base_url, httpx.Client(base_url=base_url) as client:
        uri = f"{base_url}/webhooks/hubspot/crm?source=hubspot%3Aportal"
        good = sign_hubspot_v3(SECRET, "POST", uri, body, int(NOW * 1000))
        accepted = client.post("/webhooks/hubspot/crm?source=hubspot%3Aportal", content=body, headers=good)
        forged = client.post("/webhooks/hubspot/crm?source=hubspot%3Aportal", content=body,
                             headers=sign_hubspot_v3("guess", "POST", uri, body, int(NOW * 1000)))
    assert accepted.status_code == 202, accepted.text
    assert forged.status_code == 401
    assert receiver.calls == [("crm", ["77"])]
    logged = caplog.text
    assert "refused" in logged
    assert SECRET not in logged
    assert good["X-HubSpot-Signature-v3"] not in logged
