"""The Salesforce sandbox's org in memory: records per sObject, the write rules, and query cursors.

Writes follow the rules a connector meets on the real service (apis.md §2.4-2.5): read-only and unknown
fields, required fields on create, references that must point at an existing record of the right type
(``INVALID_CROSS_REFERENCE_KEY`` for a bad owner), unique external ids (``DUPLICATE_VALUE`` naming the
existing record), converted leads that cannot be updated, validation rules
(``FIELD_CUSTOM_VALIDATION_EXCEPTION``) and row locks (``UNABLE_TO_LOCK_ROW``) that tests plant.

Queries are evaluated once; the matching ids are kept under a query locator and served page by page
(``nextRecordsUrl`` = ``/services/data/vXX.X/query/<locator>-<offset>``); a locator left unused for
``locator_ttl_seconds`` of the injected clock is gone (``INVALID_QUERY_LOCATOR``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from connectors.sandbox._salesforce_schema import ObjectSchema, default_schemas
from connectors.sandbox._salesforce_soql import Compiled, compile_query, parse, sort_key
from connectors.sandbox._salesforce_wire import (
    SalesforceError,
    make_id,
    normalise_id,
    parse_date_literal,
    parse_datetime_literal,
    record_error,
    sf_datetime,
    to_ms,
)

Clock = Callable[[], datetime]
Check = Callable[[Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class ValidationRule:
    """A validation rule: records of ``sobject`` for which ``fails`` is true are refused with ``message``."""

    sobject: str
    fails: Check
    message: str
    fields: tuple[str, ...] = ()


@dataclass(slots=True)
class Cursor:
    sobject: str
    fields: tuple[str, ...]
    rows: list[dict[str, Any]]  # a snapshot taken when the query ran, as Salesforce's cursors are
    used_ms: int


class RecordFailure(Exception):
    """One record refused; becomes an entry of a collections answer (or a single-record error body)."""

    def __init__(self, status_code: str, message: str, fields: list[str] | None = None) -> None:
        super().__init__(message)
        self.entry = record_error(status_code, message, fields)


class SalesforceState:
    """An org's data and rules, independent of HTTP."""

    def __init__(self, clock: Clock | None, *, locator_ttl_seconds: float = 900.0) -> None:
        self.clock: Clock = clock or (lambda: datetime.now(UTC))
        self.schemas: dict[str, ObjectSchema] = default_schemas()
        self.records: dict[str, dict[str, dict[str, Any]]] = {name: {} for name in self.schemas}
        self.validation_rules: list[ValidationRule] = []
        self.locked: dict[str, int] = {}  # record id → how many more writes meet UNABLE_TO_LOCK_ROW
        self.cursors: dict[str, Cursor] = {}
        self.locator_ttl_ms = int(locator_ttl_seconds * 1000)
        self._numbers = itertools.count(1)
        self._cursor_numbers = itertools.count(1)
        self._unique_index: dict[tuple[str, str, Any], str] = {}  # (object, field, value) → record id
        self.integration_user = self.insert("User", {"Name": "Leadrelay Integration", "IsActive": True,
                                                     "Email": "integration@leadrelay-demo.com"})

    def now_ms(self) -> int:
        return to_ms(self.clock())

    # ------------------------------------------------------------------------------------------------
    # Set-up and inspection (no rules applied)

    def insert(self, sobject: str, values: Mapping[str, Any], *, modified_ms: int | None = None,
               created_ms: int | None = None) -> str:
        """Store a record as given (datetimes as epoch ms); returns its new id."""
        schema = self.schemas[sobject]
        record_id = make_id(schema.prefix, next(self._numbers))
        created = created_ms if created_ms is not None else self.now_ms()
        modified = modified_ms if modified_ms is not None else created
        row = {"Id": record_id, "IsDeleted": False, "CreatedDate": created, "LastModifiedDate": modified,
               "SystemModstamp": modified}
        row.update(values)
        self.records[sobject][record_id] = row
        self._index(sobject, row)
        return record_id

    def _index(self, sobject: str, row: Mapping[str, Any]) -> None:
        for name in self.schemas[sobject].unique or ():
            if row.get(name) not in (None, ""):
                self._unique_index[(sobject, name, row[name])] = row["Id"]

    def get(self, record_id: str) -> dict[str, Any] | None:
        """The stored row of ``record_id`` (any object type), or ``None``."""
        sobject = self.type_of(record_id)
        return self.records[sobject].get(record_id) if sobject is not None else None

    def type_of(self, record_id: str) -> str | None:
        normal = normalise_id(record_id) if record_id else None
        if normal is None:
            return None
        for name, schema in self.schemas.items():
            if normal.startswith(schema.prefix) and normal in self.records[name]:
                return name
        return None

    def add_field(self, sobject: str, name: str, kind: str = "string", *, unique: bool = False) -> None:
        """Add a custom field (``__c``) to an object, as an admin would."""
        self.schemas[sobject].add(name, kind, unique=unique)

    def lock(self, record_id: str, times: int = 1) -> None:
        """The next ``times`` writes of ``record_id`` fail with ``UNABLE_TO_LOCK_ROW``."""
        self.locked[record_id] = self.locked.get(record_id, 0) + times

    def render(self, sobject: str, row: Mapping[str, Any], fields: tuple[str, ...], version: str) -> dict[str, Any]:
        """A record as the REST API shows it: ``attributes`` first, datetimes in Salesforce's format."""
        schema = self.schemas[sobject]
        out: dict[str, Any] = {"attributes": {"type": sobject,
                                              "url": f"/services/data/v{version}/sobjects/{sobject}/{row['Id']}"}}
        for name in fields:
            value = row.get(name)
            if schema.fields[name] == "datetime" and isinstance(value, int):
                value = sf_datetime(value)
            out[name] = value
        return out

    # ------------------------------------------------------------------------------------------------
    # Queries

    def query(self, soql: str) -> tuple[Compiled, list[dict[str, Any]]]:
        """The rows ``soql`` selects, in its order: copies, so later writes do not show through a cursor."""
        compiled = compile_query(parse(soql), self.schemas)
        rows = [row for row in self.records[compiled.schema.name].values() if compiled.matches(row)]
        if compiled.order:
            rows.sort(key=sort_key(compiled.order))
        if compiled.limit is not None:
            rows = rows[: compiled.limit]
        return compiled, [{name: row.get(name) for name in ("Id", *compiled.fields)} for row in rows]

    def open_cursor(self, sobject: str, fields: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
        locator = f"01g5g{next(self._cursor_numbers):08d}AAA"
        self.cursors[locator] = Cursor(sobject, fields, rows, self.now_ms())
        return locator

    def cursor(self, locator: str) -> Cursor:
        found = self.cursors.get(locator)
        now = self.now_ms()
        if found is not None and now - found.used_ms > self.locator_ttl_ms:
            del self.cursors[locator]
            found = None
        if found is None:
            raise SalesforceError(400, "INVALID_QUERY_LOCATOR", "invalid query locator")
        found.used_ms = now
        return found

    # ------------------------------------------------------------------------------------------------
    # Writes

    def coerce(self, sobject: str, values: Mapping[str, Any]) -> dict[str, Any]:
        """Request field values → stored values; unknown fields and undecodable values refuse the request."""
        schema = self.schemas[sobject]
        out: dict[str, Any] = {}
        for raw_name, value in values.items():
            if raw_name == "attributes":
                continue
            name = schema.resolve(raw_name)
            if name is None:
                raise SalesforceError(400, "INVALID_FIELD", f"No such column '{raw_name}' on sobject of type {sobject}")
            out[name] = _decode(sobject, name, schema.fields[name], value)
        return out

    def create(self, sobject: str, values: dict[str, Any], pending: dict[tuple[str, str, Any], str]) -> str:
        """Apply the rules and store a new record; ``pending`` holds unique values used earlier in the
        same request. Raises :class:`RecordFailure`."""
        schema = self.schemas[sobject]
        self._writable(schema, values, creating=True)
        missing = [name for name in schema.required if values.get(name) in (None, "")]
        if missing:
            raise RecordFailure("REQUIRED_FIELD_MISSING", f"Required fields are missing: [{', '.join(missing)}]",
                                missing)
        values = {**_defaults(sobject, self.integration_user), **values}
        self._references(schema, values)
        self._unique(schema, values, None, pending)
        self._validate(sobject, values)
        now = self.now_ms()
        record_id = self.insert(sobject, values, created_ms=now, modified_ms=now)
        for name in schema.unique:
            if values.get(name) is not None:
                pending[(sobject, name, values[name])] = record_id
        return record_id

    def update(self, record_id: str, sobject: str | None, values: dict[str, Any],
               pending: dict[tuple[str, str, Any], str]) -> tuple[str, dict[str, Any]]:
        """Apply the rules to an update; returns the object type and the row as it would become (the caller
        stores it with :meth:`commit`, so all-or-none requests can roll back)."""
        normal = normalise_id(record_id) if isinstance(record_id, str) else None
        if normal is None:
            raise RecordFailure("MALFORMED_ID", f"malformed id {record_id}", ["Id"])
        found = self.type_of(normal)
        if found is None or (sobject is not None and found != sobject):
            raise RecordFailure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", ["Id"])
        schema = self.schemas[found]
        row = self.records[found][normal]
        if found == "Lead" and row.get("IsConverted"):
            raise RecordFailure("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", ["Id"])
        self._writable(schema, values, creating=False)
        self._references(schema, values)
        self._unique(schema, values, normal, pending)
        merged = {**row, **values}
        self._validate(found, merged)
        return found, merged

    def commit(self, sobject: str, row: dict[str, Any]) -> None:
        now = self.now_ms()
        row["LastModifiedDate"] = row["SystemModstamp"] = now
        self.records[sobject][row["Id"]] = row
        self._index(sobject, row)

    def take_lock(self, record_id: str | None) -> None:
        """Meet a planted lock on ``record_id`` (or on the lead a task points at)."""
        if record_id and self.locked.get(record_id, 0) > 0:
            self.locked[record_id] -= 1
            raise RecordFailure("UNABLE_TO_LOCK_ROW",
                                f"unable to obtain exclusive access to this record or 1 records: {record_id}")

    def _writable(self, schema: ObjectSchema, values: Mapping[str, Any], *, creating: bool) -> None:
        blocked = [name for name in values if not schema.writable(name)]
        if blocked:
            verb = "create" if creating else "create/update"
            raise RecordFailure("INVALID_FIELD_FOR_INSERT_UPDATE",
                                f"Unable to {verb} fields: {', '.join(blocked)}. Please check the security settings "
                                "of this field and verify that it is read/write for your profile or permission set.",
                                blocked)

    def _references(self, schema: ObjectSchema, values: Mapping[str, Any]) -> None:
        for name, targets in schema.references.items():
            value = values.get(name)
            if value in (None, ""):
                continue
            normal = normalise_id(str(value))
            label = name[:-2] if name.endswith("Id") else name
            if normal is None:
                raise RecordFailure("MALFORMED_ID", f"{label} ID: id value of incorrect type: {value}", [name])
            if self.type_of(normal) not in targets:
                raise RecordFailure("INVALID_CROSS_REFERENCE_KEY", "invalid cross reference id", [name])
            if self.type_of(normal) == "Lead" and self.records["Lead"][normal].get("IsConverted"):
                # A converted Lead cannot be referenced either (a Task's WhoId, a CampaignMember's LeadId).
                raise RecordFailure("CANNOT_UPDATE_CONVERTED_LEAD", "cannot reference converted lead", [name])
            if self.type_of(normal) == "User" and not self.records["User"][normal].get("IsActive", True):
                raise RecordFailure("INACTIVE_OWNER_OR_USER", "owner or user is inactive", [name])

    def _unique(self, schema: ObjectSchema, values: Mapping[str, Any], own_id: str | None,
                pending: dict[tuple[str, str, Any], str]) -> None:
        for name in schema.unique:
            value = values.get(name)
            if value in (None, ""):
                continue
            holder = pending.get((schema.name, name, value))
            if holder is None:
                holder = self._unique_index.get((schema.name, name, value))
                held = self.records[schema.name].get(holder) if holder is not None else None
                if held is None or held.get(name) != value:  # the index entry went stale on an update
                    holder = None
            if holder is not None and holder != own_id:
                raise RecordFailure("DUPLICATE_VALUE",
                                    f"duplicate value found: {name} duplicates value on record with id: {holder}",
                                    [name])

    def _validate(self, sobject: str, row: Mapping[str, Any]) -> None:
        for rule in self.validation_rules:
            if rule.sobject == sobject and rule.fails(row):
                raise RecordFailure("FIELD_CUSTOM_VALIDATION_EXCEPTION", rule.message, list(rule.fields))


def _defaults(sobject: str, user: str) -> dict[str, Any]:
    if sobject == "Task":
        return {"Status": "Not Started", "Priority": "Normal", "IsClosed": False, "OwnerId": user}
    if sobject in ("Lead", "Contact", "Account", "Event"):
        return {"OwnerId": user}
    return {}


def _decode(sobject: str, name: str, kind: str, value: Any) -> Any:
    if value is None:
        return None
    ok = True
    if kind == "datetime":
        parsed = parse_datetime_literal(value) if isinstance(value, str) else None
        ok, value = parsed is not None, parsed
    elif kind == "date":
        parsed_date = parse_date_literal(value) if isinstance(value, str) else None
        ok, value = parsed_date is not None, parsed_date
    elif kind == "boolean":
        ok = isinstance(value, bool)
    elif kind in ("int", "double"):
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    elif not isinstance(value, str):
        ok = False
    if not ok:
        type_name = {"datetime": "datetime", "date": "date", "boolean": "boolean", "int": "int",
                     "double": "double"}.get(kind, "String")
        raise SalesforceError(400, "JSON_PARSER_ERROR",
                              f"Cannot deserialize instance of {type_name} from {type(value).__name__} value "
                              f"for field {name} of {sobject}")
    return value


__all__ = ["Cursor", "RecordFailure", "SalesforceState", "ValidationRule"]
