"""The HubSpot sandbox as HubSpot's official Python SDK (``hubspot-api-client``) sees it, over loopback.

The SDK's generated models mirror the real API: deserialising an answer fails when a required field is
missing or an enum value is unknown. On top of that, every call here checks that each field the fake sent
is one the SDK's model declares, so the fake cannot invent fields a real portal never sends.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from typing import Any

import hubspot
import pytest
from hubspot.crm.associations.v4 import (
    AssociationSpec,
    BatchInputPublicAssociationMultiPost,
    BatchInputPublicFetchAssociationsBatchRequest,
)
from hubspot.crm.contacts import BatchInputSimplePublicObjectBatchInput, PublicObjectSearchRequest
from hubspot.crm.contacts.exceptions import ApiException, NotFoundException, UnauthorizedException
from hubspot.crm.objects.tasks import BatchInputSimplePublicObjectBatchInputForCreate
from hubspot.crm.objects.tasks import PublicObjectSearchRequest as TaskSearch
from hubspot.crm.properties.exceptions import ApiException as PropertiesApiException
from urllib3.util.retry import Retry

from connectors.sandbox import HubSpotLimits, HubSpotSandbox, generate_dataset, serve_on_loopback

TOKEN = "sdk-test-token"
MakeSandbox = Callable[..., HubSpotSandbox]


@contextmanager
def sdk(sandbox: HubSpotSandbox, token: str = TOKEN) -> Iterator[hubspot.Client]:
    """An SDK client pointed at ``sandbox`` on a loopback socket."""
    with serve_on_loopback(sandbox.app) as url:
        # no urllib3 retries: a 429 must reach the test, not be slept on behind Retry-After
        yield hubspot.Client.create(access_token=token, host=url, retry=Retry(total=0))


def undeclared(raw: Any, model: Any, path: str = "$") -> list[str]:
    """JSON paths of fields in ``raw`` that the SDK model ``model`` (deserialised from it) does not declare."""
    if isinstance(model, list):
        return [p for i, (r, m) in enumerate(zip(raw, model, strict=True)) for p in undeclared(r, m, f"{path}[{i}]")]
    if isinstance(model, dict):
        return [p for key, m in model.items() for p in undeclared(raw[key], m, f"{path}.{key}")]
    if not hasattr(model, "attribute_map"):
        return []
    names = {wire: attr for attr, wire in model.attribute_map.items()}
    found = [f"{path}.{key}" for key in raw if key not in names]
    return found + [p for key in raw if key in names for p in undeclared(raw[key], getattr(model, names[key]),
                                                                              f"{path}.{key}")]


def checked(api: Any, method: str, *args: Any, **kwargs: Any) -> Any:
    """Call ``api.method``; assert the answer holds no field the SDK's model lacks; return the model."""
    result = getattr(api, method)(*args, **kwargs)
    raw = json.loads(api.api_client.last_response.data)
    assert undeclared(raw, result) == []
    return result


def error_model(api: Any, error: ApiException) -> Any:
    """The error body deserialised into the SDK's ``Error`` model (required: message, correlationId, category)."""
    return api.api_client.deserialize(SimpleNamespace(data=error.body), "Error")


def test_contacts_list_pages_through_the_after_cursor(make_sandbox: MakeSandbox) -> None:
    """``get_page`` follows ``paging.next.after`` over every contact, and the last page has no paging."""
    sandbox = make_sandbox(token=TOKEN)
    expected = [(sandbox.create("contacts", {"email": f"p{i}@example.com"}), f"p{i}@example.com") for i in range(5)]
    with sdk(sandbox) as client:
        api, seen, pages, after = client.crm.contacts.basic_api, [], [], None
        while True:
            page = checked(api, "get_page", limit=2, after=after, properties=["email"])
            seen += [(c.id, c.properties["email"]) for c in page.results]
            pages.append(len(page.results))
            if page.paging is None:
                break
            after = page.paging.next.after
    assert seen == expected
    assert pages == [2, 2, 1]


def test_contact_by_id_by_email_and_missing(make_sandbox: MakeSandbox) -> None:
    """``get_by_id`` reads properties with history, looks up by ``idProperty`` and 404s with an Error body."""
    sandbox = make_sandbox(token=TOKEN)
    contact = sandbox.create("contacts", {"email": "ada@example.com", "firstname": "Ada"})
    with sdk(sandbox) as client:
        api = client.crm.contacts.basic_api
        one = checked(api, "get_by_id", contact, properties=["firstname"], properties_with_history=["firstname"])
        by_email = checked(api, "get_by_id", "ada@example.com", id_property="email", properties=["email"])
        with pytest.raises(NotFoundException) as missing:
            api.get_by_id("999999")
        error = error_model(api, missing.value)
    assert one.properties == {"firstname": "Ada"}
    assert [h.value for h in one.properties_with_history["firstname"]] == ["Ada"]
    assert by_email.id == contact
    assert (missing.value.status, error.category) == (404, "OBJECT_NOT_FOUND")


def test_search_filters_sorts_and_pages(make_sandbox: MakeSandbox) -> None:
    """A filtered, sorted search pages by ``after`` with a stable ``total`` and no paging on its last page."""
    sandbox = make_sandbox(token=TOKEN)
    for name, stage in [("Eve", "lead"), ("Bob", "customer"), ("Cy", "lead"), ("Al", "lead"), ("Di", "lead")]:
        sandbox.create("contacts", {"email": f"{name.lower()}@example.com", "firstname": name, "lifecyclestage": stage})
    request = {
        "filterGroups": [{"filters": [{"propertyName": "lifecyclestage", "operator": "EQ", "value": "lead"}]}],
        "sorts": [{"propertyName": "firstname", "direction": "DESCENDING"}],
        "properties": ["firstname"],
        "limit": 3,
    }
    with sdk(sandbox) as client:
        api = client.crm.contacts.search_api
        first = checked(api, "do_search", PublicObjectSearchRequest(**_snake(request)))
        second = checked(api, "do_search", PublicObjectSearchRequest(**_snake(request), after=first.paging.next.after))
    assert (first.total, second.total) == (4, 4)
    assert [c.properties["firstname"] for c in first.results + second.results] == ["Eve", "Di", "Cy", "Al"]
    assert second.paging is None


def _snake(request: dict[str, Any]) -> dict[str, Any]:
    return {"filter_groups": request["filterGroups"], "sorts": request["sorts"], "properties": request["properties"],
            "limit": request["limit"]}


def test_batch_update_reports_each_record(make_sandbox: MakeSandbox) -> None:
    """A batch update with bad inputs is a 207 the SDK reads as results plus per-record StandardErrors."""
    sandbox = make_sandbox(token=TOKEN)
    good, other = (sandbox.create("contacts", {"email": f"{n}@example.com"}) for n in ("good", "other"))
    inputs = [
        {"id": good, "properties": {"firstname": "Zed"}},
        {"id": "999999", "properties": {"firstname": "Nobody"}},
        {"id": other, "properties": {"no_such_property": "x"}},
    ]
    with sdk(sandbox) as client:
        api = client.crm.contacts.batch_api
        mixed = checked(api, "update", BatchInputSimplePublicObjectBatchInput(inputs=inputs))
        clean = checked(api, "update", BatchInputSimplePublicObjectBatchInput(inputs=inputs[:1]))
    assert type(mixed).__name__ == "BatchResponseSimplePublicObjectWithErrors"
    assert [r.id for r in mixed.results] == [good]
    assert mixed.num_errors == 2
    assert sorted(e.category for e in mixed.errors) == ["OBJECT_NOT_FOUND", "VALIDATION_ERROR"]
    assert ["999999"] in [e.context.get("ids") for e in mixed.errors]
    assert (type(clean).__name__, clean.status) == ("BatchResponseSimplePublicObject", "COMPLETE")
    assert sandbox.objects["contacts"][good]["properties"]["firstname"] == "Zed"


def test_properties_read(make_sandbox: MakeSandbox) -> None:
    """Property definitions deserialise into the SDK's Property model, unique flags and types included."""
    sandbox = make_sandbox(token=TOKEN)
    with sdk(sandbox) as client:
        api = client.crm.properties.core_api
        every = checked(api, "get_all", "contacts")
        email = checked(api, "get_by_name", "contacts", "email")
        with pytest.raises(PropertiesApiException) as missing:
            api.get_by_name("contacts", "no_such_property")
    types = {p.name: p.type for p in every.results}
    assert types["leadrelay_score"] == "number"
    assert types["lastmodifieddate"] == "datetime"
    assert (email.has_unique_value, email.modification_metadata.read_only_value) == (True, False)
    assert missing.value.status == 404


def test_owners_page_and_lookup(make_sandbox: MakeSandbox, clock: Any) -> None:
    """Generated owners page through ``after`` and read back by id and by e-mail as the SDK's PublicOwner."""
    sandbox = make_sandbox(token=TOKEN)
    dataset = generate_dataset(seed=4, contacts=8, owners=5, now=clock())
    sandbox.load(dataset)
    with sdk(sandbox) as client:
        api, ids, after = client.crm.owners.owners_api, [], None
        while True:
            page = checked(api, "get_page", limit=2, after=after)
            ids += [o.id for o in page.results]
            if page.paging is None:
                break
            after = page.paging.next.after
        first = dataset.owners[0]
        by_id = checked(api, "get_by_id", first["id"])
        by_email = checked(api, "get_page", email=first["email"])
    assert ids == [o["id"] for o in dataset.owners]
    assert (by_id.email, by_id.type) == (first["email"], "PERSON")
    assert [o.id for o in by_email.results] == [first["id"]]


def test_associations_v4_create_read_and_default(make_sandbox: MakeSandbox) -> None:
    """v4 batch create (207 for a bad pair), batch read, single create, default and list all deserialise."""
    sandbox = make_sandbox(token=TOKEN)
    contact = sandbox.create("contacts", {"email": "c@example.com"})
    company, other = (sandbox.create("companies", {"name": n}) for n in ("Acme", "Initech"))
    unlabelled = [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 279}]
    pairs = [{"from": {"id": contact}, "to": {"id": company}, "types": unlabelled},
             {"from": {"id": "999999"}, "to": {"id": company}, "types": unlabelled}]
    with sdk(sandbox) as client:
        batch, basic = client.crm.associations.v4.batch_api, client.crm.associations.v4.basic_api
        created = checked(batch, "create", "contacts", "companies", BatchInputPublicAssociationMultiPost(inputs=pairs))
        primary = checked(basic, "create", "contacts", contact, "companies", other,
                          [AssociationSpec(association_category="HUBSPOT_DEFINED", association_type_id=1)])
        default = checked(basic, "create_default", "companies", other, "contacts", contact)
        read = checked(batch, "get_page", "contacts", "companies",
                       BatchInputPublicFetchAssociationsBatchRequest(inputs=[{"id": contact}]))
        listed = checked(basic, "get_page", "contacts", contact, "companies")
    assert (type(created).__name__, created.num_errors) == ("BatchResponseLabelsBetweenObjectPairWithErrors", 1)
    assert [(r.from_object_id, r.to_object_id) for r in created.results] == [(contact, company)]
    assert (primary.from_object_type_id, primary.to_object_type_id) == ("0-1", "0-2")
    assert default.results[0].association_spec.association_type_id == 280
    found = {a.to_object_id: sorted(t.type_id for t in a.association_types) for a in read.results[0].to}
    assert found == {company: [279], other: [1, 279]}
    assert {a.to_object_id for a in listed.results} == {company, other}


def test_tasks_batch_create_carries_key_and_association(make_sandbox: MakeSandbox) -> None:
    """Tasks created in a batch echo their trace ids, are found by their key and are linked to the contact."""
    sandbox = make_sandbox(token=TOKEN)
    contact = sandbox.create("contacts", {"email": "t@example.com"})
    to_contact = [{"to": {"id": contact}, "types": [{"associationCategory": "HUBSPOT_DEFINED",
                                                       "associationTypeId": 204}]}]
    inputs = [{"objectWriteTraceId": key, "associations": to_contact,
               "properties": {"hs_timestamp": "2026-06-02T09:00:00.000Z", "hs_task_subject": f"Call ({key})",
                              "hs_task_priority": "HIGH", "leadrelay_operation_key": key}} for key in ("k-1", "k-2")]
    by_key = {"propertyName": "leadrelay_operation_key", "operator": "IN", "values": ["k-1", "k-2"]}
    key_filter = [{"filters": [by_key]}]
    with sdk(sandbox) as client:
        created = checked(client.crm.objects.tasks.batch_api, "create",
                          BatchInputSimplePublicObjectBatchInputForCreate(inputs=inputs))
        found = checked(client.crm.objects.tasks.search_api, "do_search",
                        TaskSearch(filter_groups=key_filter, properties=["leadrelay_operation_key"]))
        linked = checked(client.crm.associations.v4.basic_api, "get_page", "contacts", contact, "tasks")
    assert (created.status, sorted(r.object_write_trace_id for r in created.results)) == ("COMPLETE", ["k-1", "k-2"])
    assert sorted(t.properties["leadrelay_operation_key"] for t in found.results) == ["k-1", "k-2"]
    assert {a.to_object_id for a in linked.results} == {r.id for r in created.results}


def test_rate_limit_429_surfaces_with_hubspots_body(make_sandbox: MakeSandbox) -> None:
    """Past the burst, and past the search limit, the SDK raises ApiException 429 with HubSpot's body."""
    sandbox = make_sandbox(token=TOKEN, limits=HubSpotLimits(burst=2, window_ms=10_000, daily=1000,
                                                             search_per_second=1))
    with sdk(sandbox) as client:
        basic, search = client.crm.contacts.basic_api, client.crm.contacts.search_api
        basic.get_page(), basic.get_page()
        with pytest.raises(ApiException) as burst:
            basic.get_page()
        search.do_search(PublicObjectSearchRequest(limit=1))
        with pytest.raises(ApiException) as secondly:
            search.do_search(PublicObjectSearchRequest(limit=1))
    body = json.loads(burst.value.body)
    assert burst.value.status == 429
    assert {k: body[k] for k in ("status", "errorType", "policyName")} == {
        "status": "error", "errorType": "RATE_LIMIT", "policyName": "TEN_SECONDLY_ROLLING"}
    assert {"message", "correlationId", "requestId"} <= set(body)
    assert burst.value.headers["X-HubSpot-RateLimit-Remaining"] == "0"
    assert (secondly.value.status, json.loads(secondly.value.body)["policyName"]) == (429, "SECONDLY")
    assert "X-HubSpot-RateLimit-Remaining" not in secondly.value.headers


def test_bad_and_expired_tokens_are_401_error_bodies(make_sandbox: MakeSandbox) -> None:
    """A wrong token and an expired one raise UnauthorizedException whose body is the SDK's Error model."""
    sandbox = make_sandbox(token=TOKEN, expired_tokens=["expired-token"])
    categories = []
    for token in ("wrong-token", "expired-token"):
        with sdk(sandbox, token) as client, pytest.raises(UnauthorizedException) as refused:
            client.crm.contacts.basic_api.get_page()
        categories.append(error_model(client.crm.contacts.basic_api, refused.value).category)
        assert token not in refused.value.body
    assert categories == ["INVALID_AUTHENTICATION", "EXPIRED_AUTHENTICATION"]


def test_owners_and_events_answer_the_sdks_slashed_paths(make_sandbox: MakeSandbox, clock: Any) -> None:
    """``/crm/v3/owners/`` and ``/events/v3/events/`` (the SDK's paths) answer directly, not by redirect."""
    sandbox = make_sandbox(token=TOKEN)
    dataset = generate_dataset(seed=5, contacts=6, owners=2, now=clock())
    sandbox.load(dataset)
    contact = dataset.events[0]["objectId"]
    with sdk(sandbox) as client:  # the client follows no redirect: a 307 would fail the call
        owners = checked(client.crm.owners.owners_api, "get_page")
        events = checked(client.events.events_api, "get_page", object_type="contact", object_id=contact, limit=5)
    assert [o.id for o in owners.results] == [o["id"] for o in dataset.owners]
    assert events.results
    assert {(e.object_type, e.object_id) for e in events.results} == {("contact", contact)}
