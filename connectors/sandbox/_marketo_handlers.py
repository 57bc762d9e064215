"""The Marketo sandbox's endpoints (reference/apis.md §3.4–3.6): leads by filter and sync, activity paging
tokens, activities and lead changes, static-list membership. Each handler returns the success envelope's
content or raises :class:`~connectors.sandbox._marketo_wire.MarketoError`.

Per-record answers (sync, list add/remove) come back in input order with ``status`` and, for ``skipped``,
``reasons``; that order is the only way a client can attribute a skipped record without an id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.sandbox._marketo_store import ACTIVITY_TYPES, CHANGE_DATA_VALUE, DEFAULT_FIELDS, NEW_LEAD, READ_ONLY
from connectors.sandbox._marketo_wire import (
    MarketoError,
    Params,
    decode_offset,
    decode_token,
    encode_offset,
    encode_token,
    iso_s,
    parse_datetime_ms,
    reason,
)

if TYPE_CHECKING:
    from connectors.sandbox.marketo import MarketoSandbox

Result = dict[str, Any]
BATCH = 300          # lead ids per call, filter values, sync inputs, page size (apis.md §3.3)
MAX_TYPE_IDS = 10    # activityTypeIds per activities call
MAX_LEAD_IDS = 30    # leadIds per activities call
FILTER_MATCH_CAP = 1000  # "Too many results match the filter"


def _batch_size(params: Params) -> int:
    raw = params.get("batchSize")
    if raw is None or raw == "":
        return BATCH
    if not raw.isdigit() or not 1 <= int(raw) <= BATCH:
        raise MarketoError(1003, f"Invalid batchSize '{raw}': must be between 1 and {BATCH}")
    return int(raw)


def _fields(sb: MarketoSandbox, params: Params) -> list[str]:
    names = params.values("fields") or list(DEFAULT_FIELDS)
    for name in names:
        if name not in sb.state.fields:
            raise MarketoError(1006, f"Field '{name}' not found")
    return names


def render_lead(lead: dict[str, Any], names: list[str]) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for name in names:
        value = lead.get(name)
        row[name] = iso_s(value) if name in ("createdAt", "updatedAt") and isinstance(value, int) else value
    return row


async def leads_get(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    filter_type = params.get("filterType")
    values = params.values("filterValues")
    if not filter_type:
        raise MarketoError(701, "filterType cannot be blank")
    if not values:
        raise MarketoError(701, "filterValues cannot be blank")
    if len(values) > BATCH:
        raise MarketoError(1003, f"filterValues exceeds the maximum of {BATCH}")
    if filter_type not in sb.state.fields:
        raise MarketoError(1003, f"Invalid filterType '{filter_type}'")
    names = _fields(sb, params)
    size = _batch_size(params)
    matches: list[int] = []
    for value in values:
        matches.extend(lead_id for lead_id in sb.state.find(filter_type, value) if lead_id not in matches)
    if filter_type != "id" and len(matches) > FILTER_MATCH_CAP:
        raise MarketoError(1003, "Too many results match the filter")
    start = 0
    token = params.get("nextPageToken")
    if token:
        offset = decode_offset(token)
        if offset is None:
            raise MarketoError(1003, "Invalid nextPageToken")
        start = offset
    page = matches[start:start + size]
    result: Result = {"result": [render_lead(sb.state.leads[i], names) for i in page]}
    if start + size < len(matches):
        result["moreResult"] = True
        result["nextPageToken"] = encode_offset(start + size)
    return result


async def lead_by_id(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    lead = sb.state.leads.get(int(args["id"]))
    return {"result": [render_lead(lead, _fields(sb, params))] if lead else []}


async def describe(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    rows = [{"id": n, "displayName": name, "dataType": kind, "rest": {"name": name, "readOnly": name in READ_ONLY}}
            for n, (name, kind) in enumerate(sorted(sb.state.fields.items()), start=1)]
    return {"result": rows}


async def leads_sync(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    if not isinstance(body, dict):
        raise MarketoError(609)
    action = body.get("action") or "createOrUpdate"
    lookup = body.get("lookupField") or "email"
    inputs = body.get("input")
    if action not in ("createOrUpdate", "createOnly", "updateOnly", "createDuplicate"):
        raise MarketoError(1003, f"Invalid action '{action}'")
    if not isinstance(inputs, list) or not inputs:
        raise MarketoError(701, "input cannot be blank")
    if len(inputs) > BATCH:
        raise MarketoError(1003, f"Batch size exceeds the maximum of {BATCH}")
    if lookup == "id" and action != "updateOnly":
        raise MarketoError(1003, "lookupField 'id' is only allowed with action 'updateOnly'")
    now = sb.now_ms()
    results = []
    for item in inputs:
        results.append(_sync_one(sb, item, action, lookup, now))
    return {"result": results}


def _sync_one(sb: MarketoSandbox, item: Any, action: str, lookup: str, now: int) -> dict[str, Any]:
    state = sb.state
    if not isinstance(item, dict):
        return {"status": "skipped", "reasons": [reason(1003, "Invalid input")]}
    unknown = [name for name in item if name not in state.fields]
    if unknown:
        return {"status": "skipped", "reasons": [reason(1006, f"Field '{unknown[0]}' not found")]}
    key = item.get(lookup)
    if key is None:
        return {"status": "skipped", "reasons": [reason(1002, f"Value for lookup field '{lookup}' not found")]}
    matches = state.find(lookup, str(key))
    values = {name: value for name, value in item.items() if name not in READ_ONLY}
    if action == "createDuplicate" or (not matches and action in ("createOrUpdate", "createOnly")):
        return {"id": state.create_lead(values, now), "status": "created"}
    if not matches:
        return {"status": "skipped", "reasons": [reason(1004)]}
    if action == "createOnly":
        return {"status": "skipped", "reasons": [reason(1005, "Lead already exists")]}
    if len(matches) > 1:
        return {"status": "skipped", "reasons": [reason(1007, "Multiple lead match lookup criteria")]}
    state.update_lead(matches[0], values, now)
    return {"id": matches[0], "status": "updated"}


async def paging_token(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    since = params.get("sinceDatetime")
    if not since:
        raise MarketoError(701, "sinceDatetime cannot be blank")
    since_ms = parse_datetime_ms(since)
    if since_ms is None:
        raise MarketoError(704, f"Invalid date '{since}'")
    return {"nextPageToken": encode_token(sb.state.position_at(since_ms))}


def _position(params: Params) -> int:
    token = params.get("nextPageToken")
    if not token:
        raise MarketoError(701, "nextPageToken cannot be blank")
    position = decode_token(token)
    if position is None:
        raise MarketoError(1003, "Invalid nextPageToken")
    return position


def _activity(row: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"id": row.seq + 1, "marketoGUID": row.guid, "leadId": row.lead_id,
                           "activityDate": iso_s(row.at_ms), "activityTypeId": row.type_id}
    if row.primary_id is not None:
        out["primaryAttributeValueId"] = row.primary_id
    if row.primary is not None:
        out["primaryAttributeValue"] = row.primary
    out["attributes"] = [dict(a) for a in row.attributes]
    return out


def _scan(sb: MarketoSandbox, position: int, size: int, keep: Any) -> Result:
    """Walk the log from ``position``, at most ``activity_scan`` entries, collecting up to ``size`` rows
    ``keep`` accepts. Marketo pages the same way: a page may be short and still have ``moreResult``."""
    log = sb.state.log
    end = min(len(log), position + sb.activity_scan)
    found: list[dict[str, Any]] = []
    cursor = position
    while cursor < end and len(found) < size:
        row = log[cursor]
        cursor += 1
        shown = keep(row)
        if shown is not None:
            found.append(shown)
    result: Result = {"nextPageToken": encode_token(cursor), "moreResult": cursor < len(log)}
    if found:
        result["result"] = found
    return result


async def activities(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    position = _position(params)
    raw_types = params.values("activityTypeIds")
    if not raw_types:
        raise MarketoError(701, "activityTypeIds cannot be blank")
    if len(raw_types) > MAX_TYPE_IDS or not all(t.isdigit() for t in raw_types):
        raise MarketoError(1003, f"activityTypeIds must be at most {MAX_TYPE_IDS} integers")
    types = {int(t) for t in raw_types}
    lead_ids = params.values("leadIds")
    if len(lead_ids) > MAX_LEAD_IDS:
        raise MarketoError(1003, f"leadIds exceeds the maximum of {MAX_LEAD_IDS}")
    leads = {int(i) for i in lead_ids if i.isdigit()} or None
    members: set[int] | None = None
    list_id = params.get("listId")
    if list_id:
        found = sb.state.lists.get(int(list_id)) if list_id.isdigit() else None
        if found is None:
            raise MarketoError(1013, "Static list not found")
        members = found[1]

    def keep(row: Any) -> dict[str, Any] | None:
        if row.type_id not in types or (leads is not None and row.lead_id not in leads):
            return None
        if members is not None and row.lead_id not in members:
            return None
        return _activity(row)

    return _scan(sb, position, _batch_size(params), keep)


async def lead_changes(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    position = _position(params)
    wanted = params.values("fields")
    if not wanted:
        raise MarketoError(701, "fields cannot be blank")

    def keep(row: Any) -> dict[str, Any] | None:
        if row.type_id == NEW_LEAD:
            out = _activity(row)
            out["fields"] = []
            return out
        if row.type_id != CHANGE_DATA_VALUE:
            return None
        changed = [dict(f) for f in row.fields if f.get("name") in wanted]
        if not changed:
            return None
        out = _activity(row)
        out["fields"] = changed
        return out

    return _scan(sb, position, _batch_size(params), keep)


async def activity_types(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    return {"result": [{"id": type_id, "name": name, "description": name,
                        "primaryAttribute": {"name": primary, "dataType": "integer"}, "attributes": []}
                       for type_id, (name, primary) in sorted(ACTIVITY_TYPES.items())]}


def _list(sb: MarketoSandbox, args: dict[str, str]) -> set[int]:
    raw = args["list_id"]
    found = sb.state.lists.get(int(raw)) if raw.isdigit() else None
    if found is None:
        raise MarketoError(1013, "Static list not found")
    return found[1]


def _ids(params: Params, body: Any) -> list[str]:
    if isinstance(body, dict) and isinstance(body.get("input"), list):
        ids = [str(item.get("id")) if isinstance(item, dict) else "" for item in body["input"]]
    else:
        ids = params.values("id")
    if not ids:
        raise MarketoError(701, "id cannot be blank")
    if len(ids) > BATCH:
        raise MarketoError(1003, f"Lead ids exceed the maximum of {BATCH}")
    return ids


def _member_result(raw: str, status: str | None, code: int | None) -> dict[str, Any]:
    row: dict[str, Any] = {"id": int(raw) if raw.isdigit() else raw}
    if status is not None:
        row["status"] = status
    else:
        row["status"] = "skipped"
        row["reasons"] = [reason(code or 1004)]
    return row


async def list_add(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    members = _list(sb, args)
    results = []
    for raw in _ids(params, body):
        if not raw.isdigit() or int(raw) not in sb.state.leads:
            results.append(_member_result(raw, None, 1004))
            continue
        members.add(int(raw))  # set semantics: re-adding a member answers "added" again
        results.append(_member_result(raw, "added", None))
    return {"result": results}


async def list_remove(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    members = _list(sb, args)
    results = []
    for raw in _ids(params, body):
        if not raw.isdigit() or int(raw) not in sb.state.leads:
            results.append(_member_result(raw, None, 1004))
        elif int(raw) not in members:
            results.append(_member_result(raw, None, 1015))
        else:
            members.discard(int(raw))
            results.append(_member_result(raw, "removed", None))
    return {"result": results}


async def list_members(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    members = sorted(_list(sb, args))
    names = _fields(sb, params)
    size = _batch_size(params)
    token = params.get("nextPageToken")
    start = decode_offset(token) if token else 0
    if start is None:
        raise MarketoError(1003, "Invalid nextPageToken")
    result: Result = {"result": [render_lead(sb.state.leads[i], names) for i in members[start:start + size]]}
    if start + size < len(members):
        result["moreResult"] = True
        result["nextPageToken"] = encode_offset(start + size)
    return result


async def list_ismember(sb: MarketoSandbox, params: Params, body: Any, args: dict[str, str]) -> Result:
    members = _list(sb, args)
    results = []
    for raw in _ids(params, body):
        if not raw.isdigit() or int(raw) not in sb.state.leads:
            results.append(_member_result(raw, None, 1004))
        else:
            results.append(_member_result(raw, "memberof" if int(raw) in members else "notmemberof", None))
    return {"result": results}


__all__ = [
    "BATCH",
    "activities",
    "activity_types",
    "describe",
    "lead_by_id",
    "lead_changes",
    "leads_get",
    "leads_sync",
    "list_add",
    "list_ismember",
    "list_members",
    "list_remove",
    "paging_token",
    "render_lead",
]
