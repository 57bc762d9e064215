"""update_account: the account model's score written to HubSpot companies (respx edge cases: 207 partial
failures, unknown properties in a 207 and in a 400) and to Salesforce Accounts (the sandbox over loopback),
and the account score maps of both connectors' configs."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.base import FixConfiguration, Outcome, WriteRecord
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector
from connectors.salesforce import SalesforceConfig, SalesforceConnector
from connectors.sandbox import serve_on_loopback
from connectors.sandbox.salesforce import SalesforceSandbox

pytestmark = pytest.mark.anyio

BASE = "https://api.hubspot.test"
TOKEN = "pat-na1-0000-account-secret-token"
COMPANIES = "/crm/v3/objects/companies/batch/update"
SF_CLIENT_ID = "3MVG9-account-consumer-key"
SF_SECRET = "planted-account-secret-2b9c"
SF_REFRESH = "5Aep861-planted-account-refresh-8d1e"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


async def no_sleep(seconds: float) -> None:
    """Retries in these tests never need to wait for real."""


def account(target: str, score: int = 71, band: str = "B", version: str = "acct-1") -> WriteRecord:
    return WriteRecord(target, f"k-{target}", {"account_score": score, "account_band": band, "model_version": version})


def hubspot(**options: Any) -> HubSpotConnector:
    config = HubSpotConfig(token=TOKEN, base_url=BASE, **options)
    client = build_client(BASE, headers=HubSpotConnector.client_headers(config))
    http = HttpLayer(client, name="hubspot", retry=RetrySettings(attempts=3, jitter=0.0), sleep=no_sleep)
    return HubSpotConnector(config, http)


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


def batch(status: int, ids: list[str], errors: list[dict[str, Any]] | None = None) -> httpx.Response:
    body: dict[str, Any] = {"status": "COMPLETE", "results": [{"id": i, "properties": {}} for i in ids]}
    if errors is not None:
        body |= {"errors": errors, "numErrors": len(errors)}
    return httpx.Response(status, json=body)


def invalid(names: list[str]) -> str:
    """HubSpot's message for properties the portal lacks (JSON text inside the message, as the API sends it)."""
    detail = [{"isValid": False, "message": f'Property "{n}" does not exist', "error": "PROPERTY_DOESNT_EXIST",
               "name": n, "localizedErrorMessage": f'Property "{n}" does not exist'} for n in names]
    return f"Property values were not valid: {json.dumps(detail)}"


# --- HubSpot companies ----------------------------------------------------------------------------


async def test_hubspot_writes_the_mapped_company_properties(api: respx.MockRouter) -> None:
    """Each account goes to companies batch/update by id with the mapped properties as strings; a 200 acks all."""
    route = api.post(COMPANIES).mock(return_value=batch(200, ["11", "12"]))
    results = await hubspot().write_batch("update_account", [account("11"), account("12", 40, "C")])
    assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED] * 2
    sent = json.loads(route.calls[0].request.content)["inputs"]
    assert sent == [
        {"id": "11", "properties": {"leadrelay_account_score": "71", "leadrelay_account_band": "B",
                                    "leadrelay_account_model_version": "acct-1"}},
        {"id": "12", "properties": {"leadrelay_account_score": "40", "leadrelay_account_band": "C",
                                    "leadrelay_account_model_version": "acct-1"}},
    ]


async def test_hubspot_leaves_out_what_the_map_unmaps(api: respx.MockRouter) -> None:
    """A key mapped to "" is neither sent nor listed among the connector's payload keys; a renamed one is used."""
    route = api.post(COMPANIES).mock(return_value=batch(200, ["11"]))
    hub = hubspot(account_score_properties={"account_band": "", "account_score": "acct_fit"})
    assert hub.payload_keys("update_account") == {"account_score", "model_version"}
    assert hub.payload_keys("update_lead") is None
    await hub.write_batch("update_account", [account("11")])
    assert json.loads(route.calls[0].request.content)["inputs"][0]["properties"] == {
        "acct_fit": "71", "leadrelay_account_model_version": "acct-1"}


async def test_hubspot_207_attributes_each_error_to_its_company(api: respx.MockRouter) -> None:
    """In a 207, a missing company is REJECTED with HubSpot's reason, a locked one RETRYABLE, the rest acked."""
    errors = [
        {"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Could not get some COMPANY objects",
         "context": {"ids": ["13"]}},
        {"status": "error", "category": "LOCKED", "message": "Record is locked", "context": {"ids": ["12"]}},
    ]
    api.post(COMPANIES).mock(return_value=batch(207, ["11"], errors))
    results = await hubspot().write_batch("update_account", [account("11"), account("12"), account("13")])
    assert [(r.idempotency_key, r.outcome) for r in results] == [
        ("k-11", Outcome.ACKNOWLEDGED), ("k-12", Outcome.RETRYABLE), ("k-13", Outcome.REJECTED)]
    assert "OBJECT_NOT_FOUND" in (results[2].reason or "")


async def test_hubspot_207_without_an_answer_leaves_the_company_unknown(api: respx.MockRouter) -> None:
    """The batch-update quirk (207, numErrors 0, no results) acknowledges nothing: outcomes stay UNKNOWN."""
    api.post(COMPANIES).mock(return_value=batch(207, [], []))
    results = await hubspot().write_batch("update_account", [account("11")])
    assert [r.outcome for r in results] == [Outcome.UNKNOWN]


@pytest.mark.parametrize("status", [207, 400])
async def test_hubspot_missing_company_property_is_a_configuration_error(api: respx.MockRouter, status: int) -> None:
    """A company property the portal lacks (per input in a 207, or the whole request in a 400) raises
    FixConfiguration naming that property and the config key, not a dead letter per company."""
    error = {"status": "error", "category": "VALIDATION_ERROR", "message": invalid(["leadrelay_account_band"]),
             "context": {"ids": ["11"]}}
    if status == 207:
        api.post(COMPANIES).mock(return_value=batch(207, [], [error]))
    else:
        api.post(COMPANIES).mock(return_value=httpx.Response(400, json={**error, "correlationId": "c-1"}))
    with pytest.raises(FixConfiguration) as raised:
        await hubspot().write_batch("update_account", [account("11")])
    message = str(raised.value)
    assert "'leadrelay_account_band'" in message
    assert "leadrelay_account_score'" not in message  # only what the portal refused is named
    assert "account_score_properties" in message
    assert TOKEN not in message


async def test_hubspot_bad_value_is_rejected_not_a_configuration_error(api: respx.MockRouter) -> None:
    """An invalid value for an existing property is that company's problem: REJECTED with the reason."""
    error = {"status": "error", "category": "VALIDATION_ERROR", "context": {"ids": ["11"]},
             "message": 'Property values were not valid: [{"isValid":false,"message":"\'x\' was not a valid number",'
                        '"error":"INVALID_FLOAT","name":"leadrelay_account_score"}]'}
    api.post(COMPANIES).mock(return_value=batch(207, ["12"], [error]))
    results = await hubspot().write_batch("update_account", [account("11"), account("12")])
    assert [r.outcome for r in results] == [Outcome.REJECTED, Outcome.ACKNOWLEDGED]
    assert "INVALID_FLOAT" in (results[0].reason or "")


async def test_hubspot_unknown_account_payload_key_is_rejected(api: respx.MockRouter) -> None:
    """A payload key that is no account score key is refused for that record, naming it, and nothing is sent."""
    route = api.post(COMPANIES).mock(return_value=batch(200, []))
    results = await hubspot().write_batch("update_account", [WriteRecord("11", "k", {"acount_score": 3})])
    assert results[0].outcome is Outcome.REJECTED
    assert "acount_score" in (results[0].reason or "")
    assert not route.called


# --- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field", "options"), [
    ("hubspot", "account_score_properties", {"token": "x"}),
    ("salesforce", "account_score_fields", {"client_id": "i", "client_secret": "s", "refresh_token": "r"}),
])
def test_account_score_maps_default_unmap_and_refuse_unknown_keys(kind: str, field: str,
                                                                  options: dict[str, Any]) -> None:
    """Both connectors map account_score/account_band/model_version by default, unmap a key given "", and refuse
    an unknown key naming it."""
    from connectors import registry

    cls = registry.get(kind)
    names = getattr(cls.config_model.model_validate(options), field)
    assert set(names) == {"account_score", "account_band", "model_version"}
    assert all("account" in name.lower() for name in names.values())
    none = getattr(cls.config_model.model_validate(
        {**options, field: {"account_score": "", "account_band": "", "model_version": ""}}), field)
    assert none == {}
    with pytest.raises(ValueError, match="acount_band"):
        cls.config_model.model_validate({**options, field: {"acount_band": "x"}})


# --- Salesforce Accounts (the sandbox over loopback) ----------------------------------------------


@pytest.fixture
def sandbox() -> SalesforceSandbox:
    return SalesforceSandbox(client_id=SF_CLIENT_ID, client_secret=SF_SECRET, refresh_token=SF_REFRESH,
                             clock=lambda: START)


@pytest.fixture
async def salesforce(sandbox: SalesforceSandbox) -> AsyncIterator[Any]:
    made: list[SalesforceConnector] = []

    def make(**options: Any) -> SalesforceConnector:
        config = SalesforceConfig(client_id=SF_CLIENT_ID, client_secret=SF_SECRET, refresh_token=SF_REFRESH,
                                  login_url=url, **options)
        client = build_client(SalesforceConnector.client_base_url(config),
                              headers=SalesforceConnector.client_headers(config))
        http = HttpLayer(client, name="salesforce", retry=RetrySettings(attempts=3, jitter=0.0), sleep=no_sleep)
        made.append(SalesforceConnector(config, http, now=lambda: START))
        return made[-1]

    with serve_on_loopback(sandbox.app) as url:
        yield make
        for connector in made:
            await connector.http.client.aclose()


async def test_salesforce_writes_account_fields_in_one_collection(sandbox: SalesforceSandbox, salesforce: Any) -> None:
    """Account scores go in one PATCH /composite/sobjects of Account records with Sforce-Auto-Assign: FALSE; a
    missing Account is REJECTED with Salesforce's code and the others land."""
    ids = [sandbox.insert("Account", {"Name": f"Acme {n}"}) for n in range(2)]
    records = [account(ids[0], 88, "A"), account("001000000000999AAA"), account(ids[1], 12, "D")]
    results = await salesforce().write_batch("update_account", records)
    assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED, Outcome.REJECTED, Outcome.ACKNOWLEDGED]
    assert "INVALID_CROSS_REFERENCE_KEY" in (results[1].reason or "")
    held = [sandbox.get(i) or {} for i in ids]
    assert [(r.get("Leadrelay_Account_Score__c"), r.get("Leadrelay_Account_Band__c"),
             r.get("Leadrelay_Account_Model_Version__c")) for r in held] == [(88, "A", "acct-1"), (12, "D", "acct-1")]
    assert sandbox.stats.requests["PATCH /composite/sobjects"] == 1
    assert sandbox.stats.auto_assign[-1] == "FALSE"


async def test_salesforce_missing_account_field_is_a_configuration_error(sandbox: SalesforceSandbox,
                                                                         salesforce: Any) -> None:
    """An Account field the org lacks refuses the request (400 INVALID_FIELD): FixConfiguration naming the field
    and account_score_fields, and no Account changed."""
    target = sandbox.insert("Account", {"Name": "Acme"})
    connector = salesforce(account_score_fields={"account_band": "Fit_Band__c"})
    with pytest.raises(FixConfiguration) as raised:
        await connector.write_batch("update_account", [account(target)])
    message = str(raised.value)
    assert "'Fit_Band__c'" in message
    assert "account_score_fields" in message
    assert SF_SECRET not in message
    assert SF_REFRESH not in message
    assert (sandbox.get(target) or {}).get("Leadrelay_Account_Score__c") is None
