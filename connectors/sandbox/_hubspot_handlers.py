"""The HubSpot sandbox's request handlers: one function per endpoint, each ``(sandbox, request, params)``
to ``(status, body)``. Auth, rate limits, faults and counting happen before, in the sandbox's pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request

from connectors.sandbox._hubspot_schema import (
    ASSOCIATION_TYPES,
    DEFAULT_PROPERTIES,
    MODIFIED_PROPERTY,
    SINGULAR,
)
from connectors.sandbox._hubspot_search import compile_search
from connectors.sandbox._hubspot_store import HubSpotObject, InputError
from connectors.sandbox._wire import (
    HubSpotError,
    iso_ms,
    not_found,
    parse_time,
    standard_error,
    validation_error,
)

if TYPE_CHECKING:
    from connectors.sandbox.hubspot import HubSpotSandbox

Reply = tuple[int, dict[str, Any] | None]
Params = dict[str, str]

BATCH_LIMIT = 100
HISTORY_BATCH_LIMIT = 50
LIST_LIMIT = 100
OWNERS_LIMIT = 500
_BATCH_MESSAGE = (
    "The maximum number of inputs supported in a batch is 100. "
    "Please reduce the number of items and try again"
)
_HISTORY_MESSAGE = "The maximum number of inputs supported in a batch request for property histories is 50"


# --------------------------------------------------------------------------------------------------
# Shared pieces


async def _json(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        body = orjson.loads(raw or b"{}")
    except ValueError:
        raise validation_error("Invalid input JSON on line 1: the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise validation_error("Invalid input JSON: expected an object")
    return body


def _query_int(request: Request, name: str, default: int, maximum: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise validation_error(f"{name} must be an integer, got {raw!r}") from None
    if not 1 <= value <= maximum:
        raise validation_error(f"{name} must be between 1 and {maximum}, got {value}")
    return value


def _csv(request: Request, name: str) -> list[str] | None:
    values = [v for raw in request.query_params.getlist(name) for v in raw.split(",") if v]
    return values or None


def _render(
    sandbox: HubSpotSandbox,
    kind: str,
    obj: HubSpotObject,
    names: Iterable[str] | None,
    history: Iterable[str] | None = None,
) -> dict[str, Any]:
    schema, props = sandbox.schema[kind], obj["properties"]
    wanted = DEFAULT_PROPERTIES[kind] if names is None else names
    out: dict[str, Any] = {
        "id": obj["id"],
        "properties": {n: props.get(n) for n in wanted if n in schema},
        "createdAt": obj["createdAt"],
        "updatedAt": obj["updatedAt"],
        "archived": obj["archived"],
    }
    if obj["archived"]:
        out["archivedAt"] = obj.get("archivedAt")
    if history:
        # The sandbox keeps no history: the current value is the whole history.
        out["propertiesWithHistory"] = {
            n: (
                [{"value": props[n], "timestamp": obj["updatedAt"], "sourceType": "API"}]
                if n in props
                else []
            )
            for n in history
            if n in schema
        }
    return out


def _written(kind: str, names: Iterable[str]) -> list[str]:
    return [
        *names,
        "hs_object_id",
        MODIFIED_PROPERTY[kind],
        "createdate" if kind != "tasks" else "hs_createdate",
    ]


def _batch_reply(
    sandbox: HubSpotSandbox, started: str, results: list[Any], errors: list[Any], ok: int
) -> Reply:
    body: dict[str, Any] = {
        "status": "COMPLETE",
        "results": sandbox.order(results),
        "startedAt": started,
        "completedAt": iso_ms(sandbox.now_ms()),
    }
    if errors:
        body["numErrors"] = len(errors)
        body["errors"] = errors
        return 207, body
    return ok, body


def _inputs(body: Mapping[str, Any], limit: int = BATCH_LIMIT, message: str = _BATCH_MESSAGE) -> list[Any]:
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise validation_error("Invalid input JSON: 'inputs' must be a list")
    if len(inputs) > limit:
        raise validation_error(message)
    return inputs


def _injected(ids: list[str]) -> dict[str, Any]:
    return standard_error(
        "INTERNAL_ERROR", "Unable to process this input right now; try again.", {"ids": ids}
    )


def _stable_key(item: Any) -> str:
    """An input's identity for fault injection when it carries no id: its properties, in a fixed order."""
    properties = item.get("properties") if isinstance(item, dict) else None
    return json.dumps(properties or {}, sort_keys=True, separators=(",", ":"))


def _no_duplicates(ids: list[str]) -> None:
    seen: set[str] = set()
    dupes = sorted({i for i in ids if i in seen or seen.add(i)})  # type: ignore[func-returns-value]
    if dupes:
        raise validation_error(f"Duplicate IDs found in batch input: {dupes}. IDs must be unique")


# --------------------------------------------------------------------------------------------------
# Objects


async def list_objects(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    limit = _query_int(request, "limit", 10, LIST_LIMIT)
    archived = request.query_params.get("archived", "false").lower() == "true"
    names = _csv(request, "properties")
    after = request.query_params.get("after")
    ids = sandbox.sorted_ids(kind)
    start = 0
    if after:
        from bisect import bisect_left

        if not after.isdigit():
            raise validation_error(f"Invalid paging cursor: {after}")
        start = bisect_left(ids, int(after))
    results: list[dict[str, Any]] = []
    objects = sandbox.objects[kind]
    position = start
    while position < len(ids):
        obj = objects[str(ids[position])]
        if obj["archived"] == archived:
            if len(results) == limit:
                cursor = str(ids[position])
                link = f"{request.url.replace(query='')}?after={cursor}"
                return 200, {"results": results, "paging": {"next": {"after": cursor, "link": link}}}
            results.append(_render(sandbox, kind, obj, names))
        position += 1
    return 200, {"results": results}


async def get_one(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    id_property = request.query_params.get("idProperty")
    sandbox.check_id_property(kind, id_property)
    obj = sandbox.find(kind, params["object_id"], id_property)
    if obj is None:
        raise not_found()
    return 200, _render(
        sandbox, kind, obj, _csv(request, "properties"), _csv(request, "propertiesWithHistory")
    )


async def create_one(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    body = await _json(request)
    try:
        obj = sandbox.create_object(kind, body.get("properties") or {})
    except InputError as error:
        raise _as_request_error(error) from None
    _associate_on_create(sandbox, kind, obj["id"], body.get("associations") or [])
    sandbox.stats.records_written[kind] += 1
    return 201, _render(sandbox, kind, obj, _written(kind, body.get("properties") or {}))


async def update_one(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    body = await _json(request)
    id_property = request.query_params.get("idProperty")
    sandbox.check_id_property(kind, id_property)
    try:
        obj = sandbox.update_object(kind, params["object_id"], body.get("properties") or {}, id_property)
    except InputError as error:
        if error.error["category"] == "OBJECT_NOT_FOUND":
            raise not_found() from None
        raise _as_request_error(error) from None
    sandbox.stats.records_written[kind] += 1
    return 200, _render(sandbox, kind, obj, _written(kind, body.get("properties") or {}))


def _as_request_error(error: InputError) -> HubSpotError:
    status = 409 if error.error["category"] == "CONFLICT" else 400
    return HubSpotError(status, error.error["category"], error.error["message"])


async def search(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    body = await _json(request)
    types = {name: d["type"] for name, d in sandbox.schema[kind].items()}
    modified = MODIFIED_PROPERTY[kind]
    plan = compile_search(body, types, modified, sandbox.filter_limits)
    objects = sandbox.objects[kind]
    if plan.index_range is not None:
        index = sandbox._modified[kind]
        lo, hi = plan.index_range
        if not plan.residual:
            total = index.count(lo, hi)
            page = [objects[str(i)] for i in islice(index.scan(lo, hi, plan.after), plan.limit)]
        else:
            matched = [objects[str(i)] for i in index.scan(lo, hi)]
            matched = [o for o in matched if all(f(o["properties"]) for f in plan.residual)]
            total, page = len(matched), matched[plan.after : plan.after + plan.limit]
    else:
        matched = [o for o in objects.values() if not o["archived"] and plan.matches(o["properties"])]
        matched.sort(key=lambda o: int(o["id"]))
        for name, descending in reversed(plan.sorts):
            key = _sort_key(types.get(name, "string"), name)
            present = [o for o in matched if o["properties"].get(name) not in (None, "")]
            absent = [o for o in matched if o["properties"].get(name) in (None, "")]
            present.sort(key=key, reverse=descending)
            matched = present + absent
        total, page = len(matched), matched[plan.after : plan.after + plan.limit]
    reply: dict[str, Any] = {
        "total": total,
        "results": [_render(sandbox, kind, o, plan.properties) for o in page],
    }
    if plan.after + len(page) < total:
        reply["paging"] = {"next": {"after": str(plan.after + len(page))}}
    return 200, reply


def _sort_key(prop_type: str, name: str) -> Any:
    if prop_type in ("datetime", "date"):
        return lambda o: parse_time(o["properties"][name]) or 0
    if prop_type == "number":

        def number(o: HubSpotObject) -> float:
            try:
                return float(o["properties"][name])
            except ValueError:
                return 0.0

        return number
    return lambda o: o["properties"][name].lower()


# --------------------------------------------------------------------------------------------------
# Batches


async def batch_read(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    body = await _json(request)
    history = body.get("propertiesWithHistory") or None
    inputs = _inputs(body, HISTORY_BATCH_LIMIT, _HISTORY_MESSAGE) if history else _inputs(body)
    id_property = body.get("idProperty")
    sandbox.check_id_property(kind, id_property)
    archived = request.query_params.get("archived", "false").lower() == "true"
    started = iso_ms(sandbox.now_ms())
    results, missing = [], []
    for item in inputs:
        object_id = str(item.get("id", "")) if isinstance(item, dict) else ""
        obj = (
            sandbox.find(kind, object_id, id_property)
            if not archived
            else sandbox.objects[kind].get(object_id)
        )
        if obj is None or obj["archived"] != archived:
            missing.append(object_id)
        else:
            results.append(_render(sandbox, kind, obj, body.get("properties"), history))
    errors = (
        [
            standard_error(
                "OBJECT_NOT_FOUND",
                f"Could not get some {SINGULAR[kind].upper()} objects, they may be deleted or not exist. "
                "Check that ids are valid.",
                {"ids": missing},
            )
        ]
        if missing
        else []
    )
    return _batch_reply(sandbox, started, results, errors, 200)


async def batch_create(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    body = await _json(request)
    inputs = _inputs(body)
    started = iso_ms(sandbox.now_ms())
    traces = [i.get("objectWriteTraceId") if isinstance(i, dict) else None for i in inputs]
    sandbox.refuse_poisoned(kind, [str(t) if t else _stable_key(i) for t, i in zip(traces, inputs, strict=True)])
    # HubSpot reports per-input failures of a create only when every input carries a distinct trace id;
    # otherwise one bad input fails the whole request and nothing is created.
    per_input = bool(inputs) and all(traces) and len(set(traces)) == len(traces)
    if not per_input:
        try:
            for item in inputs:
                _check_create(sandbox, kind, item, None)
        except InputError as error:
            raise _as_request_error(error) from None
    results, errors = [], []
    for item, trace in zip(inputs, traces, strict=True):
        context = {"objectWriteTraceId": [str(trace)]} if per_input else None
        try:
            if per_input and sandbox.input_fails():
                raise InputError({**_injected([]), "context": context})
            _check_create(sandbox, kind, item, context)
            obj = sandbox.create_object(kind, item.get("properties") or {}, context=context)
        except InputError as error:
            if not per_input:
                raise _as_request_error(error) from None
            errors.append(error.error)
            continue
        _associate_on_create(sandbox, kind, obj["id"], item.get("associations") or [])
        rendered = _render(sandbox, kind, obj, _written(kind, item.get("properties") or {}))
        if trace:
            rendered["objectWriteTraceId"] = trace
        results.append(rendered)
    sandbox.stats.records_written[kind] += len(results)
    return _batch_reply(sandbox, started, results, errors, 201)


def _check_create(
    sandbox: HubSpotSandbox, kind: str, item: Any, context: dict[str, list[str]] | None
) -> None:
    if not isinstance(item, dict):
        raise validation_error("Invalid input JSON: each input must be an object")
    sandbox.validate(kind, item.get("properties") or {}, None, context=context)
    for association in item.get("associations") or []:
        to_id = str((association.get("to") or {}).get("id", ""))
        for spec in association.get("types") or [{}]:
            type_id = spec.get("associationTypeId")
            to_kind = ASSOCIATION_TYPES.get(type_id, (kind, "?"))[1] if isinstance(type_id, int) else "?"
            problem = (
                sandbox.check_association(kind, to_kind, to_id, type_id)
                if to_kind in sandbox.objects
                else f"{type_id!r} is not a valid association type id for {kind}"
            )
            if problem:
                raise InputError(standard_error("VALIDATION_ERROR", problem, context or {"ids": [to_id]}))


def _associate_on_create(sandbox: HubSpotSandbox, kind: str, object_id: str, associations: list[Any]) -> None:
    for association in associations:
        to_id = str(association["to"]["id"])
        for spec in association.get("types") or []:
            type_id = spec["associationTypeId"]
            sandbox.associate(kind, object_id, ASSOCIATION_TYPES[type_id][1], to_id, type_id)


async def batch_update(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    body = await _json(request)
    inputs = _inputs(body)
    started = iso_ms(sandbox.now_ms())
    _no_duplicates([str(i.get("id")) for i in inputs if isinstance(i, dict)])
    sandbox.refuse_poisoned(kind, [str(i.get("id", "")) if isinstance(i, dict) else "" for i in inputs])
    results, errors = [], []
    for item in inputs:
        object_id = str(item.get("id", ""))
        id_property = item.get("idProperty")
        sandbox.check_id_property(kind, id_property)
        if sandbox.input_fails():
            errors.append(_injected([object_id]))
            continue
        try:
            obj = sandbox.update_object(kind, object_id, item.get("properties") or {}, id_property)
        except InputError as error:
            errors.append(error.error)
            continue
        results.append(_render(sandbox, kind, obj, _written(kind, item.get("properties") or {})))
    sandbox.stats.records_written[kind] += len(results)
    return _batch_reply(sandbox, started, results, errors, 200)


async def batch_upsert(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    body = await _json(request)
    inputs = _inputs(body)
    started = iso_ms(sandbox.now_ms())
    _no_duplicates([str(i.get("id")).lower() for i in inputs if isinstance(i, dict)])
    sandbox.refuse_poisoned(kind, [str(i.get("id", "")) if isinstance(i, dict) else "" for i in inputs])
    results, errors = [], []
    for item in inputs:
        value = str(item.get("id", ""))
        id_property = item.get("idProperty")
        sandbox.check_id_property(kind, id_property)
        properties = dict(item.get("properties") or {})
        if sandbox.input_fails():
            errors.append(_injected([value]))
            continue
        try:
            existing = sandbox.find(kind, value, id_property)
            if existing is not None:
                obj, new = sandbox.update_object(kind, existing["id"], properties), False
            elif not id_property or id_property == "hs_object_id":
                raise InputError(
                    standard_error(
                        "OBJECT_NOT_FOUND", f"No {SINGULAR[kind]} with id {value}", {"ids": [value]}
                    )
                )
            else:
                properties.setdefault(id_property, value)
                obj, new = sandbox.create_object(kind, properties, context={"ids": [value]}), True
        except InputError as error:
            errors.append(error.error)
            continue
        rendered = _render(sandbox, kind, obj, _written(kind, properties))
        rendered["new"] = new
        results.append(rendered)
    sandbox.stats.records_written[kind] += len(results)
    return _batch_reply(sandbox, started, results, errors, 200)


async def batch_archive(sandbox: HubSpotSandbox, request: Request, params: Params) -> Reply:
    kind = params["object_type"]
    body = await _json(request)
    archived = sum(
        sandbox.archive_object(kind, str(i.get("id", ""))) for i in _inputs(body) if isinstance(i, dict)
    )
    sandbox.stats.records_written[kind] += archived
    return 204, None  # HubSpot answers 204 whatever the ids' prior state
