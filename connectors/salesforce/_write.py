"""Writes through sObject Collections: scores and owners (``PATCH``), account scores on Accounts (``PATCH``),
follow-up tasks (``POST``), and the look-up of created tasks by their operation key.

Collections take up to 200 records with ``allOrNone: false`` and answer one result per record, in input
order (apis.md §2.5), so outcomes are attributed by position; an answer of another length proves nothing
and leaves every record ``UNKNOWN``. Per-record ``UNABLE_TO_LOCK_ROW`` and its kin are retryable; any other
per-record error is rejected with Salesforce's code, message and fields. Every update carries
``Sforce-Auto-Assign: FALSE``: the header defaults to TRUE, and the org's lead assignment rules would
otherwise overrule an owner just written, or reassign a lead whose score changed. A task carries its
idempotency key in a unique external-id field: a create refused as ``DUPLICATE_VALUE`` on that field was
already done, and is acknowledged with the existing task's id. An account score naming an Account field the
org lacks is refused whole (400 ``INVALID_FIELD``): a configuration error naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, date, datetime
from typing import Any

from connectors.base import (
    ACCOUNT_SCORE_KEYS,
    FixConfiguration,
    GiveUp,
    Outcome,
    RecordOutcome,
    WriteRecord,
    without_unmapped,
)

from ._config import SalesforceConfig
from ._errors import NAME, TRANSIENT_RECORD_CODES, code_of, describe, read_json
from ._session import Session

MAX_BATCH = 200
LOOKUP_CHUNK = 100  # keys per IN list: keeps the query URL well under the 16 KB Salesforce accepts
_PREFIXES = {"00Q": "Lead", "003": "Contact"}
_EXISTING = re.compile(r"record with id: ?([A-Za-z0-9]{15,18})")
_TASK_KEYS = frozenset({"subject", "body", "due_at", "priority", "owner_id"})


class BadPayload(ValueError):
    """A record's payload cannot be expressed as Salesforce fields; the message is the reason."""


def sf_datetime(key: str, value: Any) -> str:
    """An ISO-8601 value (or datetime) as Salesforce datetime text with milliseconds and ``Z``."""
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadPayload(f"{key}: {value!r} is not an ISO-8601 datetime") from None
    if not isinstance(value, datetime):
        raise BadPayload(f"{key}: {value!r} is not a datetime")
    moment = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sf_date(key: str, value: Any) -> str:
    if isinstance(value, date) and not isinstance(value, datetime):
        return value.isoformat()
    return sf_datetime(key, value)[:10]


def soql_string(value: str) -> str:
    """A SOQL string literal: backslashes and quotes escaped."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _score_value(key: str, value: Any) -> Any:
    if key == "scored_at":
        return sf_datetime(key, value)
    if key == "reasons":
        if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
            return "; ".join(value)  # short phrases read well in one text field
        raise BadPayload(f"reasons: {value!r} is not a list of text")
    if key == "score" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise BadPayload(f"score: {value!r} is not a number")
    if value is not None and not isinstance(value, str | int | float):
        raise BadPayload(f"{key}: {type(value).__name__} value cannot be sent to Salesforce")
    return value


def _account_value(key: str, value: Any) -> Any:
    if key == "account_score" and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise BadPayload(f"account_score: {value!r} is not a number")
    if key != "account_score" and value is not None and not isinstance(value, str):
        raise BadPayload(f"{key}: {type(value).__name__} value {value!r} is not text")
    return value


def settle(results: Any, sent: Sequence[int], records: Sequence[WriteRecord], *,
           key_field: str | None = None) -> dict[int, RecordOutcome]:
    """Outcomes by input index from a collections answer (positional)."""
    keys = [records[i].idempotency_key for i in sent]
    if not isinstance(results, list) or len(results) != len(sent):
        size = len(results) if isinstance(results, list) else "no"
        reason = f"Salesforce answered {size} results for {len(sent)} records: outcomes unknown"
        return {i: RecordOutcome(k, Outcome.UNKNOWN, reason) for i, k in zip(sent, keys, strict=True)}
    out: dict[int, RecordOutcome] = {}
    for index, key, result in zip(sent, keys, results, strict=True):
        if not isinstance(result, Mapping):
            out[index] = RecordOutcome(key, Outcome.UNKNOWN, "result is not an object")
            continue
        if result.get("success") is True:
            remote = result.get("id")
            out[index] = RecordOutcome(key, Outcome.ACKNOWLEDGED, remote_id=str(remote) if remote else None)
            continue
        errors = [e for e in result.get("errors") or () if isinstance(e, Mapping)]
        first = errors[0] if errors else {}
        code = code_of(first)
        existing = _EXISTING.search(str(first.get("message") or ""))
        if key_field and code == "DUPLICATE_VALUE" and existing and key_field in str(first):
            out[index] = RecordOutcome(key, Outcome.ACKNOWLEDGED, remote_id=existing.group(1))
            continue
        reason = "; ".join(describe(e) for e in errors) or "refused without a reason"
        transient = bool(errors) and all(code_of(e) in TRANSIENT_RECORD_CODES for e in errors)
        out[index] = RecordOutcome(key, Outcome.RETRYABLE if transient else Outcome.REJECTED, reason)
    return out


class Writer:
    """Sends write batches through one connector's session."""

    def __init__(self, session: Session, config: SalesforceConfig) -> None:
        self._session = session
        self._config = config

    def _person_type(self, target: str) -> str:
        return _PREFIXES.get(target[:3], self._config.default_object)

    async def update_leads(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        names = self._config.score_fields

        def build(record: WriteRecord) -> dict[str, Any]:
            payload = without_unmapped(record.payload, names)
            owner = payload.pop("owner_id", None)  # routing's owner rides on the score update
            unknown = sorted(set(payload) - set(names))
            if unknown:
                raise BadPayload(f"unknown payload key(s) {unknown}; expected some of {sorted([*names, 'owner_id'])}")
            fields = {names[k]: _score_value(k, v) for k, v in payload.items()}
            if isinstance(owner, str) and owner.strip():
                fields["OwnerId"] = owner.strip()
            return {"attributes": {"type": self._person_type(record.target)}, "id": record.target, **fields}

        # A score update must not re-run the org's lead assignment rules (the header defaults to TRUE).
        return await self._collection("PATCH", records, build, idempotent=True, by_target=True,
                                      headers={"Sforce-Auto-Assign": "FALSE"})

    async def update_accounts(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        """The account model's score on each Account (``target`` is the Account id), mapped by
        ``account_score_fields``; keys it does not map are not sent."""
        names = self._config.account_score_fields

        def build(record: WriteRecord) -> dict[str, Any]:
            payload = {k: v for k, v in record.payload.items() if k in names or k not in ACCOUNT_SCORE_KEYS}
            unknown = sorted(set(payload) - set(names))
            if unknown:
                raise BadPayload(f"unknown payload key(s) {unknown}; expected some of {sorted(names)}")
            return {"attributes": {"type": "Account"}, "id": record.target,
                    **{names[k]: _account_value(k, v) for k, v in payload.items()}}

        try:
            # Sforce-Auto-Assign defaults to TRUE on Accounts too: a score must not re-run territory rules.
            return await self._collection("PATCH", records, build, idempotent=True, by_target=True,
                                          headers={"Sforce-Auto-Assign": "FALSE"})
        except FixConfiguration as exc:
            missing = [name for name in names.values() if f"'{name}'" in exc.message]
            if "No such column" in exc.message and missing:
                shown = ", ".join(repr(name) for name in missing)
                raise FixConfiguration(
                    f"Salesforce Accounts have no field {shown}: create it (Setup › Object Manager › Account) and "
                    "give the integration user access, or change account_score_fields",
                    connector=NAME, status=exc.status, operation_only=True) from None
            raise

    async def assign_owners(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        def build(record: WriteRecord) -> dict[str, Any]:
            owner = record.payload.get("owner_id")
            if not isinstance(owner, str) or not owner.strip():
                raise BadPayload("owner_id: missing")
            return {"attributes": {"type": self._person_type(record.target)}, "id": record.target,
                    "OwnerId": owner.strip()}

        # Without this header the org's lead assignment rules may replace the owner just written.
        return await self._collection("PATCH", records, build, idempotent=True, by_target=True,
                                      headers={"Sforce-Auto-Assign": "FALSE"})

    async def create_tasks(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        cfg = self._config

        def build(record: WriteRecord) -> dict[str, Any]:
            payload = record.payload
            unknown = sorted(set(payload) - _TASK_KEYS)
            if unknown:
                raise BadPayload(f"unknown payload key(s) {unknown}; expected some of {sorted(_TASK_KEYS)}")
            priority = str(payload.get("priority") or "MEDIUM").upper()
            if priority not in cfg.task_priorities:
                raise BadPayload(f"priority: {payload.get('priority')!r} is not LOW, MEDIUM or HIGH")
            task: dict[str, Any] = {"attributes": {"type": "Task"}, "WhoId": record.target,
                                    "Subject": str(payload.get("subject") or "Follow up")[:255],
                                    "Status": cfg.task_status, "Priority": cfg.task_priorities[priority],
                                    cfg.task_key_field: record.idempotency_key}
            if payload.get("body") is not None:
                task["Description"] = str(payload["body"])
            if payload.get("due_at") is not None:
                task["ActivityDate"] = sf_date("due_at", payload["due_at"])
            if payload.get("owner_id"):
                task["OwnerId"] = str(payload["owner_id"])
            return task

        return await self._collection("POST", records, build, idempotent=False, by_target=False,
                                      key_field=cfg.task_key_field)

    async def _collection(self, method: str, records: Sequence[WriteRecord],
                          build: Callable[[WriteRecord], dict[str, Any]], *, idempotent: bool, by_target: bool,
                          headers: Mapping[str, str] | None = None,
                          key_field: str | None = None) -> list[RecordOutcome]:
        if len(records) > MAX_BATCH:
            raise GiveUp(f"batch of {len(records)} exceeds Salesforce's {MAX_BATCH}", connector=NAME)
        outcomes: dict[int, RecordOutcome] = {}
        bodies: list[dict[str, Any]] = []
        sent: list[int] = []
        seen: set[str] = set()
        for index, record in enumerate(records):
            key = record.idempotency_key
            if not record.target:
                outcomes[index] = RecordOutcome(key, Outcome.REJECTED, "target: missing")
                continue
            if by_target and record.target in seen:
                # Salesforce refuses a list holding one id twice; the next batch takes the second.
                outcomes[index] = RecordOutcome(key, Outcome.RETRYABLE,
                                                f"{record.target} already in this batch; send it in a later one")
                continue
            try:
                bodies.append(build(record))
            except BadPayload as exc:
                outcomes[index] = RecordOutcome(key, Outcome.REJECTED, str(exc))
                continue
            seen.add(record.target)
            sent.append(index)
        if bodies:
            response = await self._session.request(method, "/composite/sobjects", idempotent=idempotent,
                                                   headers=headers, json={"allOrNone": False, "records": bodies})
            outcomes.update(settle(read_json(response, idempotent=idempotent), sent, records, key_field=key_field))
        return [outcomes[i] for i in range(len(records))]

    async def lookup_tasks(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        """Tasks already created under these keys: ``SELECT Id, <key> FROM Task WHERE <key> IN (…)``."""
        key_field = self._config.task_key_field
        keys = list(dict.fromkeys(r.idempotency_key for r in records))
        found: dict[str, str] = {}
        for start in range(0, len(keys), LOOKUP_CHUNK):
            chunk = keys[start:start + LOOKUP_CHUNK]
            values = ", ".join(map(soql_string, chunk))  # escaped literals; the field is a validated API name
            soql = f"SELECT Id, {key_field} FROM Task WHERE {key_field} IN ({values}) ORDER BY CreatedDate, Id"  # noqa: S608
            path: str | None = None
            while True:
                if path is None:
                    response = await self._session.request("GET", "/query", params={"q": soql})
                else:
                    response = await self._session.request("GET", path)
                data = read_json(response)
                data = data if isinstance(data, Mapping) else {}
                for row in data.get("records") or ():
                    if isinstance(row, Mapping) and row.get(key_field) in chunk and row.get("Id"):
                        found.setdefault(str(row[key_field]), str(row["Id"]))  # the oldest wins
                following = data.get("nextRecordsUrl")
                if data.get("done", True) or not isinstance(following, str):
                    break
                path = following
        return [
            RecordOutcome(r.idempotency_key, Outcome.ACKNOWLEDGED, remote_id=found[r.idempotency_key])
            if r.idempotency_key in found
            else RecordOutcome(r.idempotency_key, Outcome.UNKNOWN, "no task carries this key yet")
            for r in records
        ]


__all__ = ["MAX_BATCH", "BadPayload", "Writer", "settle", "soql_string"]
