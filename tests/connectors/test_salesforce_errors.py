"""Unit edge cases of the Salesforce connector: answer classification, the limit header, config checks."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from connectors.base import FixConfiguration, GiveUp, Outcome, QuotaExhausted, RetryLater, WriteRecord
from connectors.salesforce import SalesforceConfig
from connectors.salesforce._errors import Classifier, LocatorExpired, Scrubber, SessionExpired, observe
from connectors.salesforce._write import settle, soql_string

NOW = datetime(2026, 6, 1, tzinfo=UTC)
SECRET = "planted-secret-in-a-message"


def classify() -> Classifier:
    return Classifier(scrub=Scrubber([SECRET]), quota_retry_seconds=600, now=lambda: NOW)


def answer(status: int, body: Any, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers=headers)


@pytest.mark.parametrize(("status", "code", "message", "error"), [
    (401, "INVALID_SESSION_ID", "Session expired or invalid", SessionExpired),
    (403, "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", QuotaExhausted),
    (400, "INVALID_QUERY_LOCATOR", "invalid query locator", LocatorExpired),
    (400, "INVALID_FIELD", "No such column 'Foo__c' on entity 'Lead'", FixConfiguration),
    (403, "INSUFFICIENT_ACCESS", "insufficient access rights on object id", FixConfiguration),
    (400, "QUERY_TIMEOUT", "Your query request was running for too long.", RetryLater),
    (503, "SERVER_UNAVAILABLE", "Server temporarily unavailable", RetryLater),
    (400, "JSON_PARSER_ERROR", "Unexpected character", GiveUp),
])
def test_classification_by_error_code(status: int, code: str, message: str, error: type[Exception]) -> None:
    """Each whole-request error raises the contract error that says what to do next."""
    with pytest.raises(error) as raised:
        classify()(answer(status, [{"message": message, "errorCode": code}]))
    assert type(raised.value) is error
    assert code in str(raised.value)


def test_concurrency_limit_is_a_short_rate_limited_wait() -> None:
    """REQUEST_LIMIT_EXCEEDED for concurrent long requests is a rate-limit wait, not a spent day."""
    with pytest.raises(RetryLater) as raised:
        classify()(answer(403, [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                                 "errorCode": "REQUEST_LIMIT_EXCEEDED"}]))
    assert not isinstance(raised.value, QuotaExhausted)
    assert raised.value.rate_limited


def test_quota_waits_for_the_configured_time() -> None:
    """A spent daily limit resumes after quota_retry_seconds (Salesforce's window is rolling, with no reset)."""
    with pytest.raises(QuotaExhausted) as raised:
        classify()(answer(403, [{"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]))
    assert (raised.value.retry_after, raised.value.resets_at) == (600, datetime(2026, 6, 1, 0, 10, tzinfo=UTC))


def test_secrets_are_scrubbed_from_messages() -> None:
    """A secret echoed by the vendor (or a proxy) never reaches the exception."""
    with pytest.raises(GiveUp) as raised:
        classify()(answer(400, [{"message": f"bad value {SECRET}", "errorCode": "JSON_PARSER_ERROR"}]))
    assert SECRET not in str(raised.value)


@pytest.mark.parametrize(("header", "expected"), [
    ("api-usage=18/5000", (4982, 5000)),
    ("api-usage=25/5000; per-app-api-usage=17/250(appName=sample)", (4975, 5000)),
    ("api-usage=9/15000; api-bursts=1/750", (14991, 15000)),
])
def test_limit_header_is_read(header: str, expected: tuple[int, int]) -> None:
    """Sforce-Limit-Info's api-usage (not the per-app or burst figures) is the daily budget."""
    seen = observe(httpx.Response(200, headers={"Sforce-Limit-Info": header}))
    assert seen is not None
    assert (seen.daily_remaining, seen.daily_limit) == expected


def test_short_collection_answer_leaves_outcomes_unknown() -> None:
    """A results list of another length than the records sent proves nothing: every record is UNKNOWN."""
    records = [WriteRecord(f"00Q{n}", f"k{n}", {}) for n in range(2)]
    settled = settle([{"id": "00Q0", "success": True, "errors": []}], [0, 1], records)
    assert {o.outcome for o in settled.values()} == {Outcome.UNKNOWN}


def test_soql_strings_are_escaped() -> None:
    """Keys inside SOQL literals cannot end the literal."""
    assert soql_string("it's \\ odd") == "'it\\'s \\\\ odd'"


@pytest.mark.parametrize("options", [
    {"lead_fields": {"email": "Email' OR Name != null"}},
    {"task_key_field": "Key__c FROM User"},
    {"lead_fields": {"shoe_size": "Shoe__c"}},
    {"consent_fields": {"HasOptedOutOfEmail": " "}},
])
def test_config_refuses_bad_names(options: dict[str, Any]) -> None:
    """Field names that are not API names (they end up inside SOQL) and unknown canonical fields are refused."""
    with pytest.raises(ValidationError):
        SalesforceConfig(client_id="id", client_secret="s", refresh_token="r", **options)


def test_config_merges_field_maps_and_hides_secrets() -> None:
    """Overrides merge over the defaults ("" unmaps a field) and secrets do not show in the repr."""
    config = SalesforceConfig(client_id="id", client_secret=SECRET, refresh_token=SECRET,
                              lead_fields={"account_key": "Matched_Account__c", "lifecycle_stage": ""})
    assert config.person_fields("Lead")["account_key"] == "Matched_Account__c"
    assert "lifecycle_stage" not in config.person_fields("Lead")
    assert config.person_fields("Lead")["email"] == "Email"
    assert SECRET not in repr(config)
