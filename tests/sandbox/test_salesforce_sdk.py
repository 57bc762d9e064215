"""The official simple-salesforce SDK against the Salesforce sandbox over a loopback socket: proof that the
fake speaks the real wire format (token grant, query and query_more, updates, collections, limits, errors).

The SDK always builds ``https://<instance>`` URLs; a transport adapter sends them to the loopback server
unchanged otherwise (same path, query, headers and body).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import pytest

requests = pytest.importorskip("requests")
simple_salesforce = pytest.importorskip("simple_salesforce")

from connectors.sandbox import serve_on_loopback  # noqa: E402
from connectors.sandbox.salesforce import SalesforceLimits, SalesforceSandbox  # noqa: E402

NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
KEY, SECRET = "3MVG9-sdk-consumer-key", "sdk-consumer-secret"
BATCH = {"Sforce-Query-Options": "batchSize=200"}


class Loopback(requests.adapters.HTTPAdapter):  # type: ignore[misc]
    """Sends every https request to the loopback server, keeping path and query."""

    def __init__(self, base: str) -> None:
        super().__init__()
        self.base = base

    def send(self, request: Any, **kwargs: Any) -> Any:
        parts = urlsplit(request.url)
        request.url = self.base + parts.path + (f"?{parts.query}" if parts.query else "")
        return super().send(request, **kwargs)


@pytest.fixture
def box() -> SalesforceSandbox:
    sandbox = SalesforceSandbox(client_id=KEY, client_secret=SECRET, clock=lambda: NOW,
                                instance_url="https://acme.my.salesforce.com",
                                limits=SalesforceLimits(daily_requests=1_000))
    for n in range(450):
        sandbox.insert("Lead", {"LastName": f"L{n}", "Company": "Acme", "Email": f"l{n}@acme.example"},
                       modified_ms=int((NOW - timedelta(minutes=450 - n)).timestamp() * 1000))
    return sandbox


@pytest.fixture
def sf(box: SalesforceSandbox) -> Iterator[Any]:
    with serve_on_loopback(box.app) as url:
        session = requests.Session()
        session.mount("https://", Loopback(url))
        # Client-credentials flow: the SDK posts grant_type=client_credentials with HTTP Basic to
        # https://acme.my.salesforce.com/services/oauth2/token and uses the instance_url it answers.
        client = simple_salesforce.Salesforce(consumer_key=KEY, consumer_secret=SECRET, domain="acme.my",
                                              session=session, version="60.0")
        yield client
        session.close()


def test_query_and_query_more(sf: Any, box: SalesforceSandbox) -> None:
    """query answers the first page with a nextRecordsUrl that query_more follows; query_all reads them all."""
    first = sf.query("SELECT Id, Email FROM Lead ORDER BY SystemModstamp, Id", headers=BATCH)
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    second = sf.query_more(first["nextRecordsUrl"], identifier_is_url=True, headers=BATCH)
    assert len(second["records"]) == 200
    everything = sf.query_all("SELECT Id FROM Lead ORDER BY SystemModstamp, Id")
    assert [r["Id"] for r in everything["records"]] == list(box.records["Lead"])
    assert sf.api_usage["api-usage"].total == 1_000
    assert sf.api_usage["api-usage"].used == box.api_usage()[0]


def test_update_create_and_collections(sf: Any, box: SalesforceSandbox) -> None:
    """SFType.update (PATCH, 204), SFType.create (201) and a collections PATCH through restful all land."""
    first, second = list(box.records["Lead"])[:2]
    assert sf.Lead.update(first, {"Title": "CTO"}) == 204
    created = sf.Task.create({"Subject": "Call", "WhoId": first, "Leadrelay_Operation_Key__c": "op-sdk"})
    assert created["success"] is True
    results = sf.restful("composite/sobjects", method="PATCH", json={"allOrNone": False, "records": [
        {"attributes": {"type": "Lead"}, "id": second, "Leadrelay_Score__c": 88},
        {"attributes": {"type": "Lead"}, "id": second[:15], "OwnerId": "005000000000000AAA"},
    ]})
    assert [r["success"] for r in results] == [True, False]
    assert results[1]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    assert box.records["Lead"][first]["Title"] == "CTO"
    assert box.records["Lead"][second]["Leadrelay_Score__c"] == 88
    assert box.records["Task"][created["id"]]["WhoId"] == first


def test_sdk_refreshes_an_expired_session(sf: Any, box: SalesforceSandbox) -> None:
    """After the sandbox expires every token, the SDK sees INVALID_SESSION_ID, logs in again and succeeds."""
    box.expire_tokens()
    assert sf.query("SELECT Id FROM Lead LIMIT 1")["totalSize"] == 1
    assert box.stats.tokens_issued == 2
    assert box.stats.status_codes[401] == 1


def test_error_shapes_reach_the_sdk(sf: Any, box: SalesforceSandbox) -> None:
    """The SDK's exception classes pick up the sandbox's JSON-array errors by status: 400 malformed, 403
    refused (the daily limit)."""
    with pytest.raises(simple_salesforce.exceptions.SalesforceMalformedRequest) as bad:
        sf.query("SELECT Id FROM Lead WHERE SystemModstamp > '2026-01-01T00:00:00Z'")
    assert bad.value.content[0]["errorCode"] == "INVALID_FIELD"
    box.set_limits(SalesforceLimits(daily_requests=0))
    with pytest.raises(simple_salesforce.exceptions.SalesforceRefusedRequest) as refused:
        sf.query("SELECT Id FROM Lead LIMIT 1")
    assert refused.value.content == [{"message": "TotalRequests Limit exceeded.",
                                      "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
