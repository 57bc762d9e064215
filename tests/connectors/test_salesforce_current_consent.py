"""Salesforce's consent stream reads each person's opt-out checkbox as it stands (so an opt-out set before
the first pull is known), for every object pulled as a lead unless consent_objects says otherwise."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import pytest

from connectors.base import ConsentChange, ConsentStatus
from connectors.salesforce import SalesforceConfig
from connectors.sandbox import serve_on_loopback
from connectors.sandbox.salesforce import SalesforceSandbox
from tests.connectors.test_salesforce_sandbox import CLIENT_ID, CLIENT_SECRET, REFRESH, START, Clock, Connectors, pages

pytestmark = pytest.mark.anyio


@pytest.fixture
def sandbox() -> SalesforceSandbox:
    return SalesforceSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH, clock=Clock())


@pytest.fixture
def base_url(sandbox: SalesforceSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield url


@pytest.fixture
async def connector() -> AsyncIterator[Connectors]:
    made = Connectors(Clock())
    yield made
    for salesforce in made.made:
        await salesforce.http.client.aclose()


def config(**options: object) -> SalesforceConfig:
    return SalesforceConfig(client_id=CLIENT_ID, client_secret="s", refresh_token=REFRESH,
                            login_url="https://login.example", **options)


def test_consent_objects_follow_lead_objects_unless_set() -> None:
    """Unset, consent_objects are the lead_objects; set, they are kept as given."""
    assert config().consent_objects == ["Lead"]
    assert config(lead_objects=["Lead", "Contact"]).consent_objects == ["Lead", "Contact"]
    assert config(lead_objects=["Lead", "Contact"], consent_objects=["Lead"]).consent_objects == ["Lead"]


async def test_an_old_contact_opt_out_arrives_on_the_first_pull(
        connector: Connectors, base_url: str, sandbox: SalesforceSandbox) -> None:
    """A Contact opted out long before the first pull (pulled as a lead with Leads) yields an e-mail denial."""
    stamp = int((START - timedelta(days=400)).timestamp() * 1000)
    out = sandbox.insert("Contact", {"FirstName": "Old", "LastName": "Optout", "Email": "old@acme.example",
                                     "HasOptedOutOfEmail": True}, created_ms=stamp, modified_ms=stamp)
    reachable = sandbox.insert("Contact", {"FirstName": "Still", "LastName": "In", "Email": "in@acme.example",
                                           "HasOptedOutOfEmail": False}, created_ms=stamp, modified_ms=stamp)
    salesforce = connector(base_url, lead_objects=["Lead", "Contact"])
    changes = [r for p in await pages(salesforce, "consent") for r in p.records if isinstance(r, ConsentChange)]
    assert {c.lead_key: c.status for c in changes} == {out: ConsentStatus.DENIED, reachable: ConsentStatus.GRANTED}
