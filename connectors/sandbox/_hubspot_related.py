"""The HubSpot sandbox's handlers beyond objects: properties, owners, v4 associations and events.

Same shape as :mod:`connectors.sandbox._hubspot_handlers`: ``(sandbox, request, params)`` to
``(status, body)``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from connectors.sandbox._hubspot_handlers import Params, Reply, _batch_reply, _inputs, _json, _query_int
from connectors.sandbox._hubspot_schema import DEFAULT_ASSOCIATION, SINGULAR, TYPE_IDS
from connectors.sandbox._hubspot_store import EVENTS_MAX_LIMIT
from connectors.sandbox._wire import iso_ms, not_found, parse_time, standard_error, validation_error

if TYPE_CHECKING:
    from connectors.sandbox.hubspot import HubSpotSandbox

OWNERS_LIMIT = 500


# --------------------------------------------------------------------------------------------------
# Properties and owners


async def list_properties(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    return 200, {"results": list(sandbox.schema[params["object_type"]].values())}


async def get_property(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    definition = sandbox.schema[params["object_type"]].get(params["name"])
    if definition is None:
        raise not_found(f"Unable to find property {params['name']} for object type {params['object_type']}")
    return 200, definition


async def create_property(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    return 201, sandbox.add_property(params["object_type"], await _json(request))


async def list_owners(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    limit = _query_int(request, "limit", 100, OWNERS_LIMIT)
    email = request.query_params.get("email")
    archived = request.query_params.get("archived", "false").lower() == "true"
    owners = [
        o
        for o in sandbox.owners
        if o.get("archived", False) == archived
        and (email is None or o.get("email", "").lower() == email.lower())
    ]
    after = request.query_params.get("after") or "0"
    if not after.isdigit():
        raise validation_error(f"Invalid paging cursor: {after}")
    start = int(after)
    reply: dict[str, Any] = {"results": owners[start : start + limit]}
    if start + limit < len(owners):
        cursor = str(start + limit)
        reply["paging"] = {
            "next": {"after": cursor, "link": f"{request.url.replace(query='')}?after={cursor}"}
        }
    return 200, reply


async def get_owner(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    field = "userId" if request.query_params.get("idProperty") == "userId" else "id"
    for owner in sandbox.owners:
        if str(owner.get(field)) == params["owner_id"]:
            return 200, owner
    raise not_found()


# --------------------------------------------------------------------------------------------------
# Associations (v4)


def _association_record(from_kind: str, from_id: str, to_kind: str, to_id: str) -> dict[str, Any]:
    # HubSpot's LabelsBetweenObjectPair: the pair and its labels, no type id (the SDK model has none)
    return {
        "fromObjectTypeId": TYPE_IDS[from_kind],
        "fromObjectId": int(from_id),
        "toObjectTypeId": TYPE_IDS[to_kind],
        "toObjectId": int(to_id),
        "labels": [],
    }


async def associations_batch_create(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    from_kind, to_kind = params["from_type"], params["to_type"]
    inputs = _inputs(await _json(request))
    started = iso_ms(sandbox.now_ms())
    results, errors = [], []
    for item in inputs:
        from_id = str((item.get("from") or {}).get("id", ""))
        to_id = str((item.get("to") or {}).get("id", ""))
        types = item.get("types") or []
        problems = (
            [] if sandbox.find(from_kind, from_id) else [f"No {SINGULAR[from_kind]} with id {from_id} exists"]
        )
        problems += [
            p
            for t in types
            if (p := sandbox.check_association(from_kind, to_kind, to_id, t.get("associationTypeId")))
        ]
        if not types:
            problems.append("At least one association type is required")
        if problems:
            errors.append(standard_error("VALIDATION_ERROR", problems[0], {"fromObjectId": [from_id]}))
            continue
        for spec in types:
            sandbox.associate(from_kind, from_id, to_kind, to_id, spec["associationTypeId"])
        results.append(_association_record(from_kind, from_id, to_kind, to_id))
    return _batch_reply(sandbox, started, results, errors, 201)


def _associated(sandbox: HubSpotSandbox, from_kind: str, from_id: str, to_kind: str) -> list[dict[str, Any]]:
    found = sandbox.associations.get((from_kind, from_id, to_kind), {})
    return [
        {
            "toObjectId": int(to_id),
            "associationTypes": [
                {"category": "HUBSPOT_DEFINED", "typeId": t, "label": None} for t in sorted(types)
            ],
        }
        for to_id, types in sorted(found.items(), key=lambda kv: int(kv[0]))
    ]


async def associations_batch_read(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    from_kind, to_kind = params["from_type"], params["to_type"]
    inputs = _inputs(await _json(request))
    started = iso_ms(sandbox.now_ms())
    results, errors = [], []
    for item in inputs:
        from_id = str(item.get("id", ""))
        found = _associated(sandbox, from_kind, from_id, to_kind)
        if found:
            results.append({"from": {"id": from_id}, "to": found})
        else:
            errors.append(
                standard_error(
                    "OBJECT_NOT_FOUND",
                    f"No {SINGULAR[to_kind]} is associated with {SINGULAR[from_kind]} {from_id}.",
                    {"fromObjectId": [from_id]},
                )
            )
    return _batch_reply(sandbox, started, results, errors, 200)


async def associate_default(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    from_kind, to_kind = params["from_type"], params["to_type"]
    from_id, to_id = params["object_id"], params["to_id"]
    type_id = DEFAULT_ASSOCIATION.get((from_kind, to_kind))
    if type_id is None:
        raise validation_error(f"No default association from {from_kind} to {to_kind}")
    if sandbox.find(from_kind, from_id) is None:
        raise not_found()
    problem = sandbox.check_association(from_kind, to_kind, to_id, type_id)
    if problem:
        raise validation_error(problem)
    started = iso_ms(sandbox.now_ms())
    sandbox.associate(from_kind, from_id, to_kind, to_id, type_id)
    result = {
        "from": {"id": from_id},
        "to": {"id": to_id},
        "associationSpec": {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": type_id},
    }
    return _batch_reply(sandbox, started, [result], [], 200)


async def associate_labelled(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    from_kind, to_kind = params["from_type"], params["to_type"]
    from_id, to_id = params["object_id"], params["to_id"]
    specs = json.loads(await request.body() or b"[]")
    if not isinstance(specs, list) or not specs:
        raise validation_error("The body must be a non-empty list of association specs")
    if sandbox.find(from_kind, from_id) is None:
        raise not_found()
    for spec in specs:
        problem = sandbox.check_association(from_kind, to_kind, to_id, spec.get("associationTypeId"))
        if problem:
            raise validation_error(problem)
    for spec in specs:
        sandbox.associate(from_kind, from_id, to_kind, to_id, spec["associationTypeId"])
    return 201, _association_record(from_kind, from_id, to_kind, to_id)


async def list_associations(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    return 200, {"results": _associated(sandbox, params["from_type"], params["object_id"], params["to_type"])}


# --------------------------------------------------------------------------------------------------
# Events


async def list_events(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    query = request.query_params
    object_type = query.get("objectType")
    if not object_type:
        raise validation_error("objectType is required")
    object_id = query.get("objectId")
    if sandbox.events_require_object_id and not object_id:
        raise validation_error("objectId or objectProperty is required")
    bounds = {}
    for name in ("occurredAfter", "occurredBefore"):
        raw = query.get(name)
        bounds[name] = parse_time(raw) if raw else None
        if raw and bounds[name] is None:
            raise validation_error(f"{name} must be an ISO-8601 date-time, got {raw!r}")
    sort = query.get("sort", "-occurredAt")
    if sort not in ("occurredAt", "-occurredAt"):
        raise validation_error(f"sort must be occurredAt or -occurredAt, got {sort!r}")
    limit = _query_int(request, "limit", 100, EVENTS_MAX_LIMIT)
    singular = SINGULAR.get(object_type, object_type)  # "contacts" and "contact" both name contacts
    page, cursor = sandbox.query_events(
        object_type=singular,
        object_id=object_id,
        event_type=query.get("eventType"),
        after_ms=bounds["occurredAfter"],
        before_ms=bounds["occurredBefore"],
        descending=sort.startswith("-"),
        limit=limit,
        cursor=query.get("after"),
    )
    reply: dict[str, Any] = {"results": page}
    if cursor is not None:
        link = str(request.url.include_query_params(after=cursor))
        reply["paging"] = {"next": {"after": cursor, "link": link}}
    return 200, reply
