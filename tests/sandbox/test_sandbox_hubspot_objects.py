"""HubSpot sandbox: auth, objects, batches, properties, owners, associations and counters."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from connectors.sandbox import HubSpotSandbox

TOKEN = "test-token"

pytestmark = pytest.mark.anyio

BATCH_MESSAGE = (
    "The maximum number of inputs supported in a batch is 100. "
    "Please reduce the number of items and try again"
)


def _contacts(sandbox: HubSpotSandbox, n: int) -> list[str]:
    return [
        sandbox.create("contacts", {"email": f"p{i}@example.com", "firstname": f"P{i}"}) for i in range(n)
    ]


async def test_missing_token_is_401_invalid_authentication(sandbox: HubSpotSandbox, make_client: Any) -> None:
    """A request without a bearer token gets HubSpot's 401 INVALID_AUTHENTICATION body."""
    async with make_client(sandbox) as client:
        response = await client.get("/crm/v3/objects/contacts", headers={"Authorization": ""})
    body = response.json()
    assert response.status_code == 401
    assert body["status"] == "error"
    assert body["category"] == "INVALID_AUTHENTICATION"
    assert body["message"].startswith("Authentication credentials not found")
    assert body["correlationId"]


async def test_wrong_token_is_401_and_never_echoed(sandbox: HubSpotSandbox, make_client: Any) -> None:
    """A wrong token is refused and does not appear anywhere in the answer."""
    secret = "pat-na1-not-the-right-one"
    async with make_client(sandbox) as client:
        response = await client.get("/crm/v3/objects/contacts", headers={"Authorization": f"Bearer {secret}"})
    assert response.status_code == 401
    assert secret not in response.text
    assert secret not in str(response.headers)


async def test_expired_token_is_401_expired_authentication(make_sandbox: Any, make_client: Any) -> None:
    """An expired token gets category EXPIRED_AUTHENTICATION with the expiry in the context."""
    sandbox = make_sandbox(expired_tokens={"old-token"})
    async with make_client(sandbox) as client:
        response = await client.get("/crm/v3/objects/contacts", headers={"Authorization": "Bearer old-token"})
    body = response.json()
    assert response.status_code == 401
    assert body["category"] == "EXPIRED_AUTHENTICATION"
    assert "expired" in body["message"]
    assert "expire time" in body["context"]


async def test_list_pages_until_paging_is_absent(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """Listing with limit pages through every object; the last page has no paging key."""
    ids = _contacts(sandbox, 25)
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 10}
    pages = 0
    while True:
        body = (await client.get("/crm/v3/objects/contacts", params=params)).json()
        pages += 1
        seen += [r["id"] for r in body["results"]]
        if "paging" not in body:
            break
        assert body["paging"]["next"]["link"].startswith(
            "https://api.hubapi.com/crm/v3/objects/contacts?after="
        )
        params["after"] = body["paging"]["next"]["after"]
    assert seen == ids
    assert pages == 3


async def test_list_limit_above_100_is_refused(client: httpx.AsyncClient) -> None:
    """The list endpoint refuses page sizes above HubSpot's 100."""
    response = await client.get("/crm/v3/objects/contacts", params={"limit": 101})
    assert response.status_code == 400
    assert response.json()["category"] == "VALIDATION_ERROR"


async def test_get_by_id_and_by_email(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """An object is found by id, by a unique idProperty, and a missing one is 404 OBJECT_NOT_FOUND."""
    contact_id = sandbox.create("contacts", {"email": "Ada@Example.com", "jobtitle": "CTO"})
    by_id = (
        await client.get(f"/crm/v3/objects/contacts/{contact_id}", params={"properties": "jobtitle"})
    ).json()
    by_email = await client.get("/crm/v3/objects/contacts/ada@example.com", params={"idProperty": "email"})
    missing = await client.get("/crm/v3/objects/contacts/999999")
    assert by_id["properties"] == {"jobtitle": "CTO"}
    assert by_email.json()["id"] == contact_id
    assert missing.status_code == 404
    assert missing.json()["category"] == "OBJECT_NOT_FOUND"


async def test_dated_object_paths_are_served(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """The date-versioned /crm/objects/2026-03 prefix serves the same objects."""
    contact_id = sandbox.create("contacts", {"email": "a@example.com"})
    response = await client.get(f"/crm/objects/2026-03/contacts/{contact_id}")
    assert response.json()["properties"]["email"] == "a@example.com"


async def test_batch_of_101_inputs_is_refused_with_hubspots_message(client: httpx.AsyncClient) -> None:
    """Any batch over 100 inputs is a 400 VALIDATION_ERROR with HubSpot's exact message."""
    inputs = [{"id": str(i), "properties": {"firstname": "x"}} for i in range(101)]
    response = await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
    body = response.json()
    assert response.status_code == 400
    assert body["category"] == "VALIDATION_ERROR"
    assert body["message"] == BATCH_MESSAGE


async def test_batch_read_with_history_caps_at_50(client: httpx.AsyncClient) -> None:
    """Batch read with propertiesWithHistory refuses more than 50 inputs."""
    body = {"propertiesWithHistory": ["email"], "inputs": [{"id": str(i)} for i in range(51)]}
    response = await client.post("/crm/v3/objects/contacts/batch/read", json=body)
    assert response.status_code == 400
    assert "property histories is 50" in response.json()["message"]


async def test_batch_update_partial_failure_is_207(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """Good inputs are written; bad ones (missing id, unknown property) come back in errors."""
    good, other = _contacts(sandbox, 2)
    inputs = [
        {"id": good, "properties": {"leadrelay_score": "87", "leadrelay_band": "A"}},
        {"id": "424242", "properties": {"leadrelay_score": "10"}},
        {"id": other, "properties": {"not_a_property": "x"}},
        {"id": other, "properties": {"lastmodifieddate": "2020-01-01"}},
    ]
    inputs.pop()  # duplicate ids are a whole-request error, checked separately
    response = await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
    body = response.json()
    assert response.status_code == 207
    assert body["numErrors"] == 2
    assert [r["id"] for r in body["results"]] == [good]
    categories = {e["category"]: e["context"] for e in body["errors"]}
    assert categories["OBJECT_NOT_FOUND"] == {"ids": ["424242"]}
    assert categories["VALIDATION_ERROR"] == {"ids": [other]}
    assert (
        "PROPERTY_DOESNT_EXIST"
        in next(e for e in body["errors"] if e["context"] == {"ids": [other]})["message"]
    )
    assert sandbox.objects["contacts"][good]["properties"]["leadrelay_score"] == "87"


async def test_read_only_property_fails_that_input(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """Writing a read-only property fails the input with READ_ONLY_VALUE."""
    (contact,) = _contacts(sandbox, 1)
    inputs = [{"id": contact, "properties": {"lastmodifieddate": "2020-01-01T00:00:00Z"}}]
    body = (await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})).json()
    assert body["numErrors"] == 1
    assert "READ_ONLY_VALUE" in body["errors"][0]["message"]


async def test_batch_update_all_good_is_200_complete_and_bumps_modified(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient, clock: Any
) -> None:
    """A fully successful batch update is 200 COMPLETE and stamps lastmodifieddate with the clock."""
    ids = _contacts(sandbox, 3)
    clock.advance(hours=1)
    inputs = [{"id": i, "properties": {"hubspot_owner_id": ""}} for i in ids]
    response = await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
    assert response.status_code == 200
    assert response.json()["status"] == "COMPLETE"
    assert sandbox.objects["contacts"][ids[0]]["properties"]["lastmodifieddate"] == "2026-06-01T13:00:00.000Z"
    assert sandbox.objects["contacts"][ids[0]]["updatedAt"] == "2026-06-01T13:00:00.000Z"


async def test_empty_string_clears_a_value(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """An empty string clears a property."""
    contact = sandbox.create("contacts", {"email": "c@example.com", "jobtitle": "VP Sales"})
    inputs = [{"id": contact, "properties": {"jobtitle": ""}}]
    await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
    assert "jobtitle" not in sandbox.objects["contacts"][contact]["properties"]


async def test_duplicate_ids_in_a_batch_are_refused(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """The same id twice in one batch update is a 400 for the whole request."""
    (contact,) = _contacts(sandbox, 1)
    inputs = [
        {"id": contact, "properties": {"firstname": "a"}},
        {"id": contact, "properties": {"firstname": "b"}},
    ]
    response = await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
    assert response.status_code == 400
    assert "Duplicate IDs" in response.json()["message"]


async def test_upsert_by_email_reports_new_true_then_false(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """Upsert by email creates the first time (new: true) and updates the second (new: false)."""
    body = {"inputs": [{"id": "lin@example.com", "idProperty": "email", "properties": {"firstname": "Lin"}}]}
    first = (await client.post("/crm/v3/objects/contacts/batch/upsert", json=body)).json()
    body["inputs"][0]["properties"] = {"firstname": "Linda"}
    second = (await client.post("/crm/v3/objects/contacts/batch/upsert", json=body)).json()
    assert first["results"][0]["new"] is True
    assert second["results"][0]["new"] is False
    assert first["results"][0]["id"] == second["results"][0]["id"]
    assert len(sandbox.objects["contacts"]) == 1
    assert sandbox.objects["contacts"][first["results"][0]["id"]]["properties"]["firstname"] == "Linda"


async def test_upsert_by_a_non_unique_property_is_refused(client: httpx.AsyncClient) -> None:
    """Upsert keyed on a property without hasUniqueValue is a 400."""
    body = {"inputs": [{"id": "x", "idProperty": "firstname", "properties": {}}]}
    response = await client.post("/crm/v3/objects/contacts/batch/upsert", json=body)
    assert response.status_code == 400


async def test_task_upsert_by_operation_key_with_association(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """Tasks upsert idempotently by leadrelay_operation_key, and batch create associates them to contacts."""
    (contact,) = _contacts(sandbox, 1)
    task = {
        "hs_timestamp": "2026-06-02T09:00:00Z",
        "hs_task_subject": "Call",
        "leadrelay_operation_key": "op-1",
    }
    create = {
        "inputs": [
            {
                "properties": task,
                "objectWriteTraceId": "t1",
                "associations": [
                    {
                        "to": {"id": contact},
                        "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
                    }
                ],
            }
        ]
    }
    created = await client.post("/crm/v3/objects/tasks/batch/create", json=create)
    upsert = {
        "inputs": [
            {"id": "op-1", "idProperty": "leadrelay_operation_key", "properties": {"hs_task_body": "b"}}
        ]
    }
    upserted = (await client.post("/crm/v3/objects/tasks/batch/upsert", json=upsert)).json()
    task_id = created.json()["results"][0]["id"]
    read = {"inputs": [{"id": contact}]}
    linked = (await client.post("/crm/v4/associations/contacts/tasks/batch/read", json=read)).json()
    assert created.status_code == 201
    assert upserted["results"][0] == {**upserted["results"][0], "id": task_id, "new": False}
    assert linked["results"][0]["to"][0]["toObjectId"] == int(task_id)
    assert linked["results"][0]["to"][0]["associationTypes"][0]["typeId"] == 203


async def test_batch_create_without_trace_ids_fails_whole_request(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """Without objectWriteTraceId one bad input fails the whole create and nothing is created."""
    inputs = [{"properties": {"email": "ok@example.com"}}, {"properties": {"bogus": "1"}}]
    response = await client.post("/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    assert response.status_code == 400
    assert sandbox.objects["contacts"] == {}


async def test_batch_create_with_trace_ids_is_207_by_trace(client: httpx.AsyncClient) -> None:
    """With objectWriteTraceId each bad input fails alone and its error names the trace id."""
    inputs = [
        {"properties": {"email": "ok@example.com"}, "objectWriteTraceId": "a"},
        {"properties": {"bogus": "1"}, "objectWriteTraceId": "b"},
    ]
    response = await client.post("/crm/v3/objects/contacts/batch/create", json={"inputs": inputs})
    body = response.json()
    assert response.status_code == 207
    assert body["numErrors"] == 1
    assert body["errors"][0]["context"] == {"objectWriteTraceId": ["b"]}
    assert body["results"][0]["objectWriteTraceId"] == "a"


async def test_properties_list_includes_leadrelay_schema(client: httpx.AsyncClient) -> None:
    """The property listing carries HubSpot defaults and leadrelay's custom properties with their types."""
    contacts = {p["name"]: p for p in (await client.get("/crm/v3/properties/contacts")).json()["results"]}
    tasks = {p["name"]: p for p in (await client.get("/crm/v3/properties/tasks")).json()["results"]}
    assert contacts["leadrelay_score"]["type"] == "number"
    assert {"leadrelay_band", "leadrelay_reasons", "leadrelay_model_version", "leadrelay_scored_at"} <= set(
        contacts
    )
    assert contacts["lastmodifieddate"]["modificationMetadata"]["readOnlyValue"] is True
    assert contacts["email"]["hasUniqueValue"] is True
    assert tasks["leadrelay_operation_key"]["hasUniqueValue"] is True


async def test_created_property_becomes_writable(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """A property created through the API can then be written."""
    (contact,) = _contacts(sandbox, 1)
    created = await client.post(
        "/crm/v3/properties/contacts",
        json={"name": "fav_color", "label": "Colour", "type": "string", "fieldType": "text"},
    )
    inputs = [{"id": contact, "properties": {"fav_color": "teal"}}]
    response = await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
    assert created.status_code == 201
    assert response.status_code == 200


async def test_owners_page_and_filter_by_email(client: httpx.AsyncClient, sandbox: HubSpotSandbox) -> None:
    """Owners list pages with after and filters by email; one owner is read by id."""
    sandbox.owners.extend(
        {"id": str(100 + i), "email": f"o{i}@corp.com", "archived": False} for i in range(3)
    )
    first = (await client.get("/crm/v3/owners", params={"limit": 2})).json()
    rest = (
        await client.get("/crm/v3/owners", params={"limit": 2, "after": first["paging"]["next"]["after"]})
    ).json()
    by_email = (await client.get("/crm/v3/owners", params={"email": "o1@corp.com"})).json()
    one = await client.get("/crm/v3/owners/102")
    assert [o["id"] for o in first["results"] + rest["results"]] == ["100", "101", "102"]
    assert "paging" not in rest
    assert [o["id"] for o in by_email["results"]] == ["101"]
    assert one.json()["email"] == "o2@corp.com"


async def test_unknown_owner_id_is_rejected(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """Assigning an owner id the portal does not have fails that input."""
    (contact,) = _contacts(sandbox, 1)
    inputs = [{"id": contact, "properties": {"hubspot_owner_id": "31337"}}]
    body = (await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})).json()
    assert body["numErrors"] == 1


async def test_default_association_put(sandbox: HubSpotSandbox, client: httpx.AsyncClient) -> None:
    """PUT .../associations/default links a contact to a company both ways."""
    (contact,) = _contacts(sandbox, 1)
    company = sandbox.create("companies", {"name": "Acme", "domain": "acme.com"})
    response = await client.put(
        f"/crm/v4/objects/contacts/{contact}/associations/default/companies/{company}"
    )
    assert response.status_code == 200
    assert sandbox.associations[("companies", company, "contacts")] == {contact: {280}}


async def test_counters_track_requests_writes_and_records(
    sandbox: HubSpotSandbox, client: httpx.AsyncClient
) -> None:
    """Stats count requests by route, write calls, records written and status codes; reset clears them."""
    ids = _contacts(sandbox, 3)
    inputs = [{"id": i, "properties": {"leadrelay_band": "B"}} for i in ids]
    await client.post("/crm/v3/objects/contacts/batch/update", json={"inputs": inputs})
    await client.get(f"/crm/v3/objects/contacts/{ids[0]}")
    stats = sandbox.stats
    assert stats.requests["POST /crm/v3/objects/contacts/batch/update"] == 1
    assert stats.requests["GET /crm/v3/objects/contacts/{object_id}"] == 1
    assert stats.write_calls == 1
    assert stats.records_written["contacts"] == 3
    assert stats.status_codes[200] == 2
    sandbox.reset_stats()
    assert sandbox.stats.write_calls == 0
