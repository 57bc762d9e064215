"""The Salesforce sandbox's handlers: one function per REST route, ``(sandbox, request, path params, body)
-> (status, body)``. Whole-request errors are raised as :class:`SalesforceError`; the pipeline in
:mod:`connectors.sandbox.salesforce` (auth, faults, the API limit) has run before any of them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.requests import Request

from connectors.sandbox._salesforce_store import RecordFailure
from connectors.sandbox._salesforce_wire import SalesforceError, malformed_query, not_found, record_error

if TYPE_CHECKING:
    from connectors.sandbox.salesforce import SalesforceSandbox

Reply = tuple[int, Any]
MAX_COLLECTION = 200
_BATCH_SIZE = re.compile(r"batchSize\s*=\s*(\d+)", re.IGNORECASE)
_ROLLED_BACK = ("Record rolled back because not all records were valid and the request was using AllOrNone "
                "header")


class OAuthError(Exception):
    """The token endpoint's error: ``{"error", "error_description"}`` with HTTP 400 (or 401)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.status, self.error, self.description = status, error, description


async def token(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    """``POST /services/oauth2/token``: the refresh-token and client-credentials grants (form-encoded)."""
    form = dict(parse_qsl(raw.decode("utf-8", "replace")))
    client_id, client_secret = form.get("client_id"), form.get("client_secret")
    scheme, _, basic = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "basic":
        try:
            client_id, _, client_secret = base64.b64decode(basic).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            raise OAuthError("invalid_client", "invalid client credentials") from None
    grant = form.get("grant_type")
    if grant not in ("refresh_token", "client_credentials"):
        raise OAuthError("unsupported_grant_type", "grant type not supported")
    if client_id != box.client_id:
        raise OAuthError("invalid_client_id", "client identifier invalid")
    if not hmac.compare_digest(str(client_secret or ""), box.client_secret):
        raise OAuthError("invalid_client", "invalid client credentials")
    if grant == "refresh_token" and form.get("refresh_token") not in box.refresh_tokens:
        raise OAuthError("invalid_grant", "expired access/refresh token")
    access, issued = box.issue_token()
    instance = box.instance_url or str(request.base_url).rstrip("/")
    identity = f"{instance}/id/{box.org_id}/{box.integration_user}"
    signature = base64.b64encode(
        hmac.new(box.client_secret.encode(), f"{identity}{issued}".encode(), hashlib.sha256).digest()).decode()
    # No expires_in: the lifetime is the org's session timeout, which the answer does not say (apis.md §2.1).
    return 200, {"access_token": access, "signature": signature, "scope": "api refresh_token",
                 "instance_url": instance, "id": identity, "token_type": "Bearer", "issued_at": str(issued)}


async def versions(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    return 200, [{"label": "Sandbox", "url": f"/services/data/v{box.api_version}", "version": box.api_version}]


async def limits(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    used, most = box.api_usage()
    return 200, {"DailyApiRequests": {"Max": most, "Remaining": max(most - used, 0)}}


def _batch_size(request: Request) -> int:
    found = _BATCH_SIZE.search(request.headers.get("sforce-query-options", ""))
    return min(max(int(found.group(1)), 200), 2000) if found else 2000


async def query(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    soql = request.query_params.get("q")
    if not soql:
        raise malformed_query("A query string must be provided with the q parameter")
    compiled, rows = box.query(soql)
    size = _batch_size(request)
    locator = box.open_cursor(compiled.schema.name, compiled.fields, rows) if len(rows) > size else None
    return 200, _page(box, params, locator, compiled.schema.name, compiled.fields, rows, 0, size)


async def query_more(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    locator, _, offset = params["locator"].rpartition("-")
    cursor = box.cursor(locator)
    if not offset.isdigit() or int(offset) > len(cursor.rows):
        raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
    return 200, _page(box, params, locator, cursor.sobject, cursor.fields, cursor.rows, int(offset),
                      _batch_size(request))


def _page(box: SalesforceSandbox, params: dict[str, str], locator: str | None, sobject: str,
          fields: tuple[str, ...], rows: list[dict[str, Any]], offset: int, size: int) -> dict[str, Any]:
    records = [box.render(sobject, row, fields, box.api_version) for row in rows[offset:offset + size]]
    body: dict[str, Any] = {"totalSize": len(rows), "done": offset + size >= len(rows)}
    if not body["done"] and locator is not None:
        kind = params.get("kind", "query")
        body["nextRecordsUrl"] = f"/services/data/v{params['version']}/{kind}/{locator}-{offset + size}"
    elif locator is not None:
        box.cursors.pop(locator, None)  # a finished cursor is closed
    body["records"] = records
    return body


# --------------------------------------------------------------------------------------------------
# Writes


def _json(box: SalesforceSandbox, raw: bytes) -> Any:
    import json

    try:
        return json.loads(raw or b"null")
    except ValueError:
        raise SalesforceError(400, "JSON_PARSER_ERROR", "Unexpected character: was expecting a JSON value") from None


def _type_of(record: dict[str, Any], box: SalesforceSandbox) -> str:
    attributes = record.get("attributes")
    kind = attributes.get("type") if isinstance(attributes, dict) else None
    if not kind:
        raise SalesforceError(400, "INVALID_TYPE", "Must send a concrete entity type.")
    found = next((name for name in box.schemas if name.lower() == str(kind).lower()), None)
    if found is None:
        raise SalesforceError(400, "INVALID_TYPE", f"sObject type '{kind}' is not supported.")
    return found


async def collections(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    """``POST`` (create) or ``PATCH`` (update) ``/composite/sobjects``: per-record results in input order."""
    body = _json(box, raw)
    records = body.get("records") if isinstance(body, dict) else None
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "records: a list of sObjects is required")
    if len(records) > MAX_COLLECTION:
        raise SalesforceError(400, "EXCEEDED_ID_LIMIT",
                              "record limit reached. cannot submit more than 200 records into this call")
    all_or_none = bool(body.get("allOrNone", False))
    creating = request.method == "POST"
    box.refuse_poisoned(records, creating)
    # The whole body is deserialised before any record is written: unknown fields refuse the request.
    prepared: list[tuple[str, str | None, dict[str, Any]]] = []
    for record in records:
        sobject = _type_of(record, box)
        fields = {k: v for k, v in record.items() if k not in ("id", "Id")}
        record_id = record.get("id", record.get("Id")) if not creating else None
        if creating and ("id" in record or "Id" in record):
            record_id = "__given__"
        prepared.append((sobject, record_id, box.coerce(sobject, fields)))
    auto_assign = request.headers.get("sforce-auto-assign")
    box.stats.auto_assign.append(auto_assign)
    results: list[dict[str, Any]] = []
    staged: list[tuple[str, dict[str, Any]]] = []
    created: list[tuple[str, str]] = []
    pending: dict[tuple[str, str, Any], str] = {}
    for sobject, record_id, values in prepared:
        try:
            if box.input_fails():
                raise RecordFailure("UNABLE_TO_LOCK_ROW",
                                    "unable to obtain exclusive access to this record or 1 records: "
                                    f"{record_id or values.get('WhoId') or ''}")
            if creating:
                if record_id is not None:
                    raise RecordFailure("INVALID_FIELD", "cannot specify Id in an insert call", ["Id"])
                box.take_lock(values.get("WhoId"))
                new_id = box.create(sobject, values, pending)
                created.append((sobject, new_id))
                results.append({"id": new_id, "success": True, "errors": []})
            else:
                box.take_lock(str(record_id) if record_id else None)
                found, row = box.update(str(record_id or ""), sobject, values, pending)
                staged.append((found, row))
                results.append({"id": row["Id"], "success": True, "errors": []})
        except RecordFailure as failure:
            entry: dict[str, Any] = {"success": False, "errors": [failure.entry]}
            if not creating and record_id:
                entry = {"id": record_id, **entry}
            results.append(entry)
    if all_or_none and any(not r["success"] for r in results):
        for sobject, new_id in created:
            box.records[sobject].pop(new_id, None)
        rolled = record_error("ALL_OR_NONE_OPERATION_ROLLED_BACK", _ROLLED_BACK)
        return 200, [r if not r["success"] else {"id": r["id"], "success": False, "errors": [rolled]}
                     for r in results]
    for found, row in staged:
        box.commit(found, row, auto_assign=auto_assign)
    for sobject, _ in created:
        box.stats.records_written[sobject] += 1
    return 200, results


async def create_one(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    sobject = box.sobject(params["sobject"])
    body = _json(box, raw)
    if not isinstance(body, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "an sObject is required")
    try:
        new_id = box.create(sobject, box.coerce(sobject, body), {})
    except RecordFailure as failure:
        raise _single(failure) from None
    box.stats.records_written[sobject] += 1
    return 201, {"id": new_id, "success": True, "errors": []}


async def get_one(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    sobject = box.sobject(params["sobject"])
    row = box.records[sobject].get(box.normal_id(params["id"]))
    if row is None:
        raise not_found()
    wanted = request.query_params.get("fields")
    schema = box.schemas[sobject]
    names = tuple(schema.resolve(n) or n for n in wanted.split(",")) if wanted else tuple(schema.fields)
    if any(n not in schema.fields for n in names):
        raise SalesforceError(400, "INVALID_FIELD", f"No such column on entity '{sobject}'")
    return 200, box.render(sobject, row, names, box.api_version)


async def update_one(box: SalesforceSandbox, request: Request, params: dict[str, str], raw: bytes) -> Reply:
    sobject = box.sobject(params["sobject"])
    record_id = box.normal_id(params["id"])
    if record_id not in box.records[sobject]:
        raise not_found()
    body = _json(box, raw)
    if not isinstance(body, dict):
        raise SalesforceError(400, "JSON_PARSER_ERROR", "an sObject is required")
    try:
        box.take_lock(record_id)
        found, row = box.update(record_id, sobject, box.coerce(sobject, body), {})
    except RecordFailure as failure:
        raise _single(failure) from None
    auto_assign = request.headers.get("sforce-auto-assign")
    box.stats.auto_assign.append(auto_assign)
    box.commit(found, row, auto_assign=auto_assign)
    return 204, None


def _single(failure: RecordFailure) -> SalesforceError:
    entry = failure.entry
    return SalesforceError(400, entry["statusCode"], entry["message"], fields=entry["fields"])


__all__ = [
    "MAX_COLLECTION",
    "OAuthError",
    "collections",
    "create_one",
    "get_one",
    "limits",
    "query",
    "query_more",
    "token",
    "update_one",
    "versions",
]
