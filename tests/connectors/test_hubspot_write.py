"""HubSpot writes against respx: score/owner updates, 207 attribution, tasks and their look-up."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx

from connectors.base import GiveUp, Outcome, OutcomeUnknown, WriteRecord
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector

BASE = "https://api.hubspot.test"
TOKEN = "pat-na1-0000-super-secret-token"
UPDATE = "/crm/v3/objects/contacts/batch/update"
CREATE_TASKS = "/crm/v3/objects/tasks/batch/create"
SEARCH_TASKS = "/crm/v3/objects/tasks/search"
DUE = datetime(2026, 5, 5, 9, 0, tzinfo=UTC)


async def no_sleep(seconds: float) -> None:
    """Retries in these tests never need to wait for real."""


@pytest.fixture
def api() -> Iterator[respx.MockRouter]:
    with respx.mock(base_url=BASE, assert_all_called=False) as router:
        yield router


@pytest.fixture
def hub() -> HubSpotConnector:
    config = HubSpotConfig(token=TOKEN, base_url=BASE)
    client = build_client(BASE, headers=HubSpotConnector.client_headers(config))
    http = HttpLayer(client, name="hubspot", retry=RetrySettings(attempts=3, jitter=0.0), sleep=no_sleep)
    return HubSpotConnector(config, http)


def rec(target: str, key: str | None = None, **payload: Any) -> WriteRecord:
    return WriteRecord(target=target, idempotency_key=key or f"k-{target}", payload=payload)


def body_of(route: respx.Route, call: int = -1) -> Any:
    return json.loads(route.calls[call].request.content)


def batch(status: int, results: list[dict[str, Any]], errors: list[dict[str, Any]] | None = None,
          **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"status": "COMPLETE", "results": results, **extra}
    if errors is not None:
        body |= {"errors": errors, "numErrors": len(errors)}
    return httpx.Response(status, json=body)


def contact(object_id: str) -> dict[str, Any]:
    return {"id": object_id, "properties": {}, "archived": False}


def outcomes_of(results: list[Any]) -> list[tuple[str, Outcome]]:
    return [(r.idempotency_key, r.outcome) for r in results]


# --- update_lead ----------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_update_sends_mapped_string_properties(api: respx.MockRouter, hub: HubSpotConnector) -> None:
    """Score fields and the owner go out as HubSpot property strings; a 200 acknowledges every input."""
    route = api.post(UPDATE).mock(return_value=batch(200, [contact("1"), contact("2")]))
    scored = datetime(2026, 5, 4, 12, 0, tzinfo=UTC)
    results = await hub.write_batch("update_lead", [
        rec("1", score=87, band="A", reasons=["visited pricing", "VP title"], model_version="m-3",
            scored_at=scored),
        rec("2", owner_id="42"),
    ])
    assert outcomes_of(results) == [("k-1", Outcome.ACKNOWLEDGED), ("k-2", Outcome.ACKNOWLEDGED)]
    assert body_of(route) == {"inputs": [
        {"id": "1", "properties": {
            "leadrelay_score": "87", "leadrelay_band": "A", "leadrelay_reasons": "visited pricing; VP title",
            "leadrelay_model_version": "m-3", "leadrelay_scored_at": "2026-05-04T12:00:00.000Z"}},
        {"id": "2", "properties": {"hubspot_owner_id": "42"}},
    ]}


@pytest.mark.anyio
async def test_partial_207_attributes_errors_to_their_records(
    api: respx.MockRouter, hub: HubSpotConnector
) -> None:
    """A 207's errors land on the inputs their context ids name, in input order; the rest are acknowledged."""
    errors = [
        {"status": "error", "category": "VALIDATION_ERROR", "subCategory": "PROPERTY_DOESNT_EXIST",
         "message": 'Property "leadrelay_band" does not exist', "context": {"ids": ["3"]}},
        {"status": "error", "category": "OBJECT_NOT_FOUND", "message": "Object not found.",
         "context": {"ids": ["5"]}},
        {"status": "error", "category": "LOCKED", "message": "Record is locked", "context": {"ids": ["2"]}},
    ]
    api.post(UPDATE).mock(return_value=batch(207, [contact("4"), contact("1")], errors))
    results = await hub.write_batch("update_lead", [rec(str(i), score=i) for i in range(1, 6)])
    assert outcomes_of(results) == [
        ("k-1", Outcome.ACKNOWLEDGED), ("k-2", Outcome.RETRYABLE), ("k-3", Outcome.REJECTED),
        ("k-4", Outcome.ACKNOWLEDGED), ("k-5", Outcome.REJECTED),
    ]
    assert results[2].reason is not None
    assert 'Property "leadrelay_band" does not exist' in results[2].reason
    assert "OBJECT_NOT_FOUND" in (results[4].reason or "")


@pytest.mark.anyio
async def test_207_without_errors_or_results_is_not_acknowledged(
    api: respx.MockRouter, hub: HubSpotConnector
) -> None:
    """The known quirk — 207, numErrors 0, no results — acknowledges nothing."""
    api.post(UPDATE).mock(return_value=httpx.Response(207, json={"status": "COMPLETE", "numErrors": 0}))
    results = await hub.write_batch("update_lead", [rec("1", score=1), rec("2", score=2)])
    assert [r.outcome for r in results] == [Outcome.UNKNOWN, Outcome.UNKNOWN]
    assert "0 of 2" in (results[0].reason or "")


@pytest.mark.anyio
async def test_short_results_leave_missing_inputs_unknown(
    api: respx.MockRouter, hub: HubSpotConnector
) -> None:
    """An acknowledged count below the sent count is never silently a success."""
    api.post(UPDATE).mock(return_value=batch(200, [contact("2")]))
    results = await hub.write_batch("update_lead", [rec("1", score=1), rec("2", score=2)])
    assert outcomes_of(results) == [("k-1", Outcome.UNKNOWN), ("k-2", Outcome.ACKNOWLEDGED)]


@pytest.mark.anyio
async def test_error_attributed_by_message_when_context_is_silent(
    api: respx.MockRouter, hub: HubSpotConnector
) -> None:
    """An error without context ids is attributed by the id its message names."""
    errors = [{"status": "error", "category": "VALIDATION_ERROR",
               "message": "Property values were not valid for object 12",
               "errors": [{"message": "leadrelay_score: 'abc' is not a number", "code": "INVALID_INTEGER"}]}]
    api.post(UPDATE).mock(return_value=batch(207, [contact("11"), contact("13")], errors))
    results = await hub.write_batch("update_lead", [rec(i, score=1) for i in ("11", "12", "13")])
    assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED, Outcome.REJECTED, Outcome.ACKNOWLEDGED]
    assert "is not a number" in (results[1].reason or "")


@pytest.mark.anyio
async def test_bad_payload_rejected_locally_rest_sent(api: respx.MockRouter, hub: HubSpotConnector) -> None:
    """A payload key with no HubSpot property is rejected without sending; the others go out."""
    route = api.post(UPDATE).mock(return_value=batch(200, [contact("2")]))
    results = await hub.write_batch("update_lead", [rec("1", shoe_size=44), rec("2", band="B")])
    assert outcomes_of(results) == [("k-1", Outcome.REJECTED), ("k-2", Outcome.ACKNOWLEDGED)]
    assert "shoe_size" in (results[0].reason or "")
    assert [i["id"] for i in body_of(route)["inputs"]] == ["2"]


@pytest.mark.anyio
async def test_duplicate_target_waits_for_next_batch(api: respx.MockRouter, hub: HubSpotConnector) -> None:
    """A second update of the same contact in one batch is held back as retryable."""
    route = api.post(UPDATE).mock(return_value=batch(200, [contact("1")]))
    results = await hub.write_batch("update_lead", [rec("1", "a", score=1), rec("1", "b", score=2)])
    assert outcomes_of(results) == [("a", Outcome.ACKNOWLEDGED), ("b", Outcome.RETRYABLE)]
    assert len(body_of(route)["inputs"]) == 1


@pytest.mark.anyio
async def test_empty_batches_make_no_calls(api: respx.MockRouter, hub: HubSpotConnector) -> None:
    """An empty batch (write or look-up) sends nothing."""
    route = api.route().mock(return_value=httpx.Response(500))
    assert await hub.write_batch("update_lead", []) == []
    assert await hub.write_batch("create_task", []) == []
    assert await hub.lookup("create_task", []) == []
    assert route.call_count == 0
    assert hub.http.requests == 0


@pytest.mark.anyio
async def test_unknown_operation_gives_up(hub: HubSpotConnector) -> None:
    """An operation HubSpot does not declare is refused."""
    with pytest.raises(GiveUp, match="delete_everything"):
        await hub.write_batch("delete_everything", [rec("1")])


# --- create_task and lookup -----------------------------------------------------------------------


def task(object_id: str, key: str) -> dict[str, Any]:
    return {"id": object_id, "properties": {"leadrelay_operation_key": key, "hs_task_subject": "Call"}}


@pytest.mark.anyio
async def test_create_task_carries_key_and_contact_association(
    api: respx.MockRouter, hub: HubSpotConnector
) -> None:
    """Tasks carry the idempotency key property, HubSpot's status and type defaults and a task→contact (204)
    association; results map by key."""
    route = api.post(CREATE_TASKS).mock(return_value=batch(201, [task("900", "t-2"), task("901", "t-1")]))
    results = await hub.write_batch("create_task", [
        rec("11", "t-1", due_at=DUE, subject="Call Ada", body="Hot lead", priority="HIGH", owner_id="42"),
        rec("12", "t-2", due_at=DUE, subject="Call Bob"),
    ])
    assert [(r.outcome, r.remote_id) for r in results] == [
        (Outcome.ACKNOWLEDGED, "901"), (Outcome.ACKNOWLEDGED, "900")]
    first = body_of(route)["inputs"][0]
    assert first["properties"] == {
        "hs_timestamp": "2026-05-05T09:00:00.000Z", "hs_task_subject": "Call Ada", "hs_task_body": "Hot lead",
        "hs_task_priority": "HIGH", "hubspot_owner_id": "42", "leadrelay_operation_key": "t-1",
        "hs_task_status": "NOT_STARTED", "hs_task_type": "TODO"}
    assert first["associations"] == [{"to": {"id": "11"}, "types": [
        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}]}]


@pytest.mark.anyio
async def test_create_task_without_due_time_is_rejected(api: respx.MockRouter, hub: HubSpotConnector) -> None:
    """HubSpot requires hs_timestamp, so a task without due_at is rejected before sending."""
    route = api.post(CREATE_TASKS).mock(return_value=batch(201, []))
    results = await hub.write_batch("create_task", [rec("11", "t-1", subject="Call")])
    assert results[0].outcome is Outcome.REJECTED
    assert "due_at" in (results[0].reason or "")
    assert route.call_count == 0


@pytest.mark.anyio
async def test_create_task_timeout_is_not_resent(api: respx.MockRouter, hub: HubSpotConnector) -> None:
    """A create that may have arrived is not retried blindly: it raises OutcomeUnknown after one send."""
    route = api.post(CREATE_TASKS).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(OutcomeUnknown):
        await hub.write_batch("create_task", [rec("11", "t-1", due_at=DUE)])
    assert route.call_count == 1


@pytest.mark.anyio
async def test_create_task_207_error_found_by_trace_id(api: respx.MockRouter, hub: HubSpotConnector) -> None:
    """A create error whose context names the objectWriteTraceId lands on that task."""
    errors = [{"status": "error", "category": "VALIDATION_ERROR", "message": "hs_task_priority: bad option",
               "context": {"objectWriteTraceId": ["t-2"]}}]
    api.post(CREATE_TASKS).mock(return_value=batch(207, [task("900", "t-1")], errors))
    results = await hub.write_batch("create_task", [
        rec("11", "t-1", due_at=DUE), rec("12", "t-2", due_at=DUE, priority="URGENT")])
    assert outcomes_of(results) == [("t-1", Outcome.ACKNOWLEDGED), ("t-2", Outcome.REJECTED)]


@pytest.mark.anyio
async def test_lookup_finds_tasks_by_key(api: respx.MockRouter, hub: HubSpotConnector) -> None:
    """lookup searches the key property with one IN filter; found keys are acknowledged with the task id."""
    route = api.post(SEARCH_TASKS).mock(return_value=httpx.Response(
        200, json={"total": 1, "results": [task("900", "t-2")]}))
    results = await hub.lookup("create_task", [rec("11", "t-1"), rec("12", "t-2")])
    assert [(r.outcome, r.remote_id) for r in results] == [
        (Outcome.UNKNOWN, None), (Outcome.ACKNOWLEDGED, "900")]
    sent = body_of(route)
    assert sent["filterGroups"] == [{"filters": [
        {"propertyName": "leadrelay_operation_key", "operator": "IN", "values": ["t-1", "t-2"]}]}]


@pytest.mark.anyio
async def test_lookup_of_idempotent_operation_makes_no_call(hub: HubSpotConnector) -> None:
    """update_lead is idempotent: lookup answers UNKNOWN (resend) without a request."""
    results = await hub.lookup("update_lead", [rec("1")])
    assert results[0].outcome is Outcome.UNKNOWN
    assert hub.http.requests == 0


@pytest.mark.anyio
async def test_create_conflict_on_task_key_means_already_created(
    api: respx.MockRouter, hub: HubSpotConnector
) -> None:
    """A unique-key conflict on the task key acknowledges the existing task instead of rejecting it."""
    errors = [{"status": "error", "category": "CONFLICT", "context": {"objectWriteTraceId": ["t-1"]},
               "message": "A task with leadrelay_operation_key t-1 already exists. Existing ID: 777"}]
    api.post(CREATE_TASKS).mock(return_value=batch(207, [task("901", "t-2")], errors))
    records = [rec("11", "t-1", due_at=DUE), rec("12", "t-2", due_at=DUE)]
    results = await hub.write_batch("create_task", records)
    assert [(r.outcome, r.remote_id) for r in results] == [
        (Outcome.ACKNOWLEDGED, "777"), (Outcome.ACKNOWLEDGED, "901")]
