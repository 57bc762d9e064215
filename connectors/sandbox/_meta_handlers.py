"""The Meta sandbox's handlers: one function per Graph route, each ``(sandbox, method, path params, request
parameters) -> (status, body)``. Errors are raised as :class:`~connectors.sandbox._meta_wire.GraphError`;
the pipeline in :mod:`connectors.sandbox.meta` (auth, faults, rate limits) runs before any of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from connectors.sandbox import _meta_wire as wire
from connectors.sandbox._meta_store import (
    FILE_SOURCES,
    Audience,
    BatchCount,
    Session,
    evaluate,
    open_session,
    parse_payload,
    parse_session,
    record_batch,
)

if TYPE_CHECKING:
    from connectors.sandbox.meta import MetaSandbox

Reply = tuple[int, dict[str, Any]]


def _audience(box: MetaSandbox, method: str, audience_id: str) -> Audience:
    audience = box.audiences.get(audience_id)
    if audience is None or audience.account_id not in box.accounts:
        raise wire.no_such_object(method, audience_id)
    return audience


def _account(box: MetaSandbox, method: str, account: str) -> str:
    if account not in box.accounts:
        raise wire.no_such_object(method, f"act_{account}")
    return account


async def me(box: MetaSandbox, method: str, params: dict[str, str], args: dict[str, Any]) -> Reply:
    return 200, {"id": "100000000000001", "name": "leadrelay sandbox system user"}


async def get_account(box: MetaSandbox, method: str, params: dict[str, str], args: dict[str, Any]) -> Reply:
    account = _account(box, method, params["account"])
    fields = {"id": f"act_{account}", "account_id": account, "name": f"Sandbox ad account {account}",
              "account_status": 1, "currency": "USD", "timezone_name": "Etc/UTC",
              "business": {"id": box.business_id}}
    return 200, _select(fields, args)


async def list_audiences(box: MetaSandbox, method: str, params: dict[str, str], args: dict[str, Any]) -> Reply:
    account = _account(box, method, params["account"])
    found = [_audience_fields(box, a) for a in box.audiences.values() if a.account_id == account]
    return 200, {"data": [_select(fields, args) for fields in found]}


async def create_audience(box: MetaSandbox, method: str, params: dict[str, str], args: dict[str, Any]) -> Reply:
    account = _account(box, method, params["account"])
    name = str(args.get("name") or "").strip()
    if not name:
        raise wire.invalid_parameter("The parameter name is required")
    if args.get("subtype") != "CUSTOM":
        raise wire.invalid_parameter("The sandbox creates customer-file audiences only: subtype must be CUSTOM")
    source = args.get("customer_file_source")
    if source not in FILE_SOURCES:
        raise wire.invalid_parameter(f"customer_file_source must be one of {sorted(FILE_SOURCES)}")
    audience_id = box.create_audience(name, account_id=account, description=str(args.get("description") or ""),
                                       customer_file_source=str(source))
    return 200, {"id": audience_id}


def _audience_fields(box: MetaSandbox, audience: Audience) -> dict[str, Any]:
    size = box.matched_people(audience.id)
    status = ({"code": 471, "description": "Audience is restricted"} if audience.flagged
              else {"code": 200, "description": "Normal"})
    return {"id": audience.id, "account_id": audience.account_id, "name": audience.name,
            "description": audience.description, "subtype": "CUSTOM",
            "customer_file_source": audience.customer_file_source,
            # Meta shows blurred bounds; the sandbox shows the exact matched size in both.
            "approximate_count_lower_bound": size, "approximate_count_upper_bound": size,
            "operation_status": status, "time_created": audience.created_ms // 1000,
            "time_updated": audience.updated_ms // 1000}


async def get_audience(box: MetaSandbox, method: str, params: dict[str, str], args: dict[str, Any]) -> Reply:
    return 200, _select(_audience_fields(box, _audience(box, method, params["audience"])), args)


async def users(box: MetaSandbox, method: str, params: dict[str, str], args: dict[str, Any]) -> Reply:
    """Add (POST) or remove (DELETE) people: validate the whole request first, then count row by row."""
    audience = _audience(box, method, params["audience"])
    if audience.flagged:
        raise wire.audience_blocked()
    upload = parse_payload(wire.json_param(args, "payload", required=True), box.max_rows)
    session = parse_session(wire.json_param(args, "session", required=False))
    operation = "add" if method == "POST" else "remove"
    now = box.now_ms()
    current = open_session(audience, operation, session, now)
    received = invalid = matched = 0
    samples: dict[str, str] = {}
    for row in upload.rows:
        if box.row_lost():
            continue  # lost on the way: not received, not applied
        received += 1
        values, sample, reason = evaluate(upload.schema, row)
        if values is None:
            invalid += 1
            if sample is not None and len(samples) < box.invalid_sample_limit:
                samples[sample] = reason
            continue
        if box.known.match(values) is not None:
            matched += 1
        if operation == "add":
            audience.membership.add(values)
        else:
            audience.membership.remove(values)
    audience.updated_ms = now
    count = BatchCount(received, invalid, matched)
    if current is None or session is None:
        current = Session(box.new_session_id(), operation, now, {1: count}, 1, received, now)
        audience.sessions[current.session_id] = current
    else:
        record_batch(current, session, count, now)
    box.stats.rows_received += received
    return 200, {"audience_id": audience.id, "session_id": str(current.session_id), "num_received": received,
                 "num_invalid_entries": invalid, "invalid_entry_samples": samples}


async def sessions(box: MetaSandbox, method: str, params: dict[str, str], args: dict[str, Any]) -> Reply:
    """The audience's upload sessions, newest first, or the one named by ``session_id``."""
    audience = _audience(box, method, params["audience"])
    wanted = str(args.get("session_id") or "")
    found = sorted(audience.sessions.values(), key=lambda s: (s.started_ms, s.session_id), reverse=True)
    views = [s.view() for s in found if not wanted or str(s.session_id) == wanted]
    return 200, {"data": views}


def _select(fields: dict[str, Any], args: dict[str, Any]) -> dict[str, Any]:
    """Graph returns ``id`` only unless ``fields=`` asks for more."""
    wanted = [name.strip() for name in str(args.get("fields") or "").split(",") if name.strip()]
    chosen = {name: fields[name] for name in wanted if name in fields}
    return {"id": fields["id"], **chosen}


__all__ = ["create_audience", "get_account", "get_audience", "list_audiences", "me", "sessions", "users"]
