"""Writes: score and owner updates on contacts, account scores on companies, follow-up tasks, and the look-up
of created tasks.

Every answer becomes one :class:`RecordOutcome` per input, in input order. Only what HubSpot confirms is
acknowledged: an input missing from both ``results`` and ``errors`` (a known quirk of batch update is a
207 with ``numErrors: 0`` and no results) stays ``UNKNOWN``. Errors of a 207 are attributed to inputs by
the ids (or ``objectWriteTraceId``) in their ``context``, else by an id named in their message. A task
whose key property (unique in the portal) conflicts with an existing task was already created: acknowledged.
An account score naming a company property the portal lacks (``PROPERTY_DOESNT_EXIST``, per input in a 207 or
for the whole request in a 400) is a configuration error naming the property, not a bad record: every
company would be refused alike, so the operations stay queued until the property exists or is unmapped.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
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
from connectors.http import Classify, HttpLayer, Observe

from ._config import SEARCH_BUDGET, HubSpotConfig
from ._errors import describe, is_transient_record_error, read_json

NAME = "hubspot"
MAX_BATCH = 100
TASK_TO_CONTACT = 204  # HUBSPOT_DEFINED association type: task → contact

# Canonical task payload keys → HubSpot task properties.
TASK_PROPERTIES: dict[str, str] = {
    "due_at": "hs_timestamp",
    "subject": "hs_task_subject",
    "body": "hs_task_body",
    "status": "hs_task_status",
    "priority": "hs_task_priority",
    "owner_id": "hubspot_owner_id",
    "type": "hs_task_type",
}
# HubSpot's own enums, for tasks whose canonical payload does not say (it names subject, body, due date,
# priority and owner): a new to-do, not started.
TASK_DEFAULTS: dict[str, str] = {"hs_task_status": "NOT_STARTED", "hs_task_type": "TODO"}


class BadPayload(ValueError):
    """A record's payload cannot be expressed as HubSpot properties; the message is the reason."""


def to_property(key: str, value: Any) -> str:
    """A canonical value as HubSpot property text (``""`` clears the property)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(value, str | int | float):
        return str(value)
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        # Reasons are short phrases; "; " reads well in a single-line text property.
        return "; ".join(value)
    raise BadPayload(f"{key}: {type(value).__name__} value {value!r} cannot be sent to HubSpot")


def _properties(payload: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str]:
    unknown = sorted(set(payload) - set(names))
    if unknown:
        raise BadPayload(f"unknown payload key(s) {unknown}; expected some of {sorted(names)}")
    return {names[key]: to_property(key, value) for key, value in payload.items()}


def missing_properties(text: str, names: Iterable[str]) -> list[str]:
    """Which of ``names`` a HubSpot error text reports as ``PROPERTY_DOESNT_EXIST`` (``Property "x" does not
    exist``, possibly JSON-escaped inside the message)."""
    if "PROPERTY_DOESNT_EXIST" not in text and "does not exist" not in text:
        return []
    return [name for name in dict.fromkeys(names)
            if re.search(rf'Property \\*"{re.escape(name)}\\*" does not exist', text)]


def _tokens_in(error: Mapping[str, Any]) -> Iterable[str]:
    """Every string an error names in ``id`` and ``context`` (``{"ids": [...]}`` and the like)."""
    if error.get("id") is not None:
        yield str(error["id"])
    context = error.get("context")
    if isinstance(context, Mapping):
        for value in context.values():
            if isinstance(value, list | tuple):
                yield from (str(item) for item in value)
            elif value is not None:
                yield str(value)


def _attribute(error: Mapping[str, Any], sent: Mapping[str, int]) -> set[int]:
    found = {sent[token] for token in _tokens_in(error) if token in sent}
    if found:
        return found
    message = str(error.get("message") or "")
    return {
        index for token, index in sent.items()
        if re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", message)
    }


_EXISTING_ID = re.compile(r"Existing ID: ?(\w+)")


def _already_exists(error: Mapping[str, Any], unique_property: str | None) -> str | None:
    """The existing object's id when the error is a unique-value conflict on ``unique_property``."""
    if unique_property is None or str(error.get("category") or "").upper() != "CONFLICT":
        return None
    message = str(error.get("message") or "")
    found = _EXISTING_ID.search(message)
    return found.group(1) if found and unique_property in message else None


def settle(
    data: Any,
    sent: Mapping[str, int],
    result_tokens: Callable[[Mapping[str, Any]], Iterable[str]],
    *,
    unique_property: str | None = None,
) -> dict[int, tuple[Outcome, str | None, str | None]]:
    """Per sent index: (outcome, reason, remote id) from a 200/201/207 batch answer.

    With ``unique_property`` (the task key, when the portal marks it unique), a conflict on it means the
    object already exists: that input is acknowledged with the existing id instead of rejected.
    """
    body = data if isinstance(data, Mapping) else {}
    acked: dict[int, str | None] = {}
    for row in body.get("results") or ():
        if isinstance(row, Mapping):
            for token in result_tokens(row):
                if token in sent:
                    acked[sent[token]] = str(row["id"]) if row.get("id") is not None else None
    failed: dict[int, tuple[Outcome, str]] = {}
    loose: list[Mapping[str, Any]] = []
    for error in body.get("errors") or ():
        if not isinstance(error, Mapping):
            continue
        outcome = Outcome.RETRYABLE if is_transient_record_error(error) else Outcome.REJECTED
        indices = _attribute(error, sent)
        if not indices:
            loose.append(error)
        existing = _already_exists(error, unique_property)
        for index in indices:
            if existing is not None:
                acked[index] = existing
            else:
                failed[index] = (outcome, describe(error))
    unsettled = [i for i in sent.values() if i not in acked and i not in failed]
    if len(unsettled) == 1 and len(loose) == 1:
        # One error nobody claims and one input nobody answered: they belong together.
        outcome = Outcome.RETRYABLE if is_transient_record_error(loose[0]) else Outcome.REJECTED
        failed[unsettled[0]] = (outcome, describe(loose[0]))
    answered = sum(1 for i in sent.values() if i in acked or i in failed)
    settled: dict[int, tuple[Outcome, str | None, str | None]] = {}
    for index in sent.values():
        if index in failed:  # an error wins over a contradicting result
            settled[index] = (failed[index][0], failed[index][1], None)
        elif index in acked:
            settled[index] = (Outcome.ACKNOWLEDGED, None, acked[index])
        else:
            reason = f"not acknowledged by HubSpot ({answered} of {len(sent)} inputs answered)"
            settled[index] = (Outcome.UNKNOWN, reason, None)
    return settled


class Writer:
    """Sends write batches through one connector's HTTP layer."""

    def __init__(self, http: HttpLayer, config: HubSpotConfig, classify: Classify, observe: Observe) -> None:
        self._http = http
        self._config = config
        self._classify = classify
        self._observe = observe

    async def _post(
        self, path: str, body: Mapping[str, Any], *, idempotent: bool, budgets: tuple[str, ...] | None = None
    ) -> Any:
        response = await self._http.request(
            "POST", path, classify=self._classify, observe=self._observe, idempotent=idempotent,
            budgets=budgets, json=body,
        )
        return read_json(response, idempotent=idempotent)

    async def update_leads(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        names = {**self._config.score_properties, "owner_id": self._config.contact_fields["owner_id"]}
        return await self._batch(
            records, "/crm/v3/objects/contacts/batch/update", idempotent=True,
            token=lambda r: r.target,
            build=lambda r: {"id": r.target, "properties": _properties(without_unmapped(r.payload, names), names)},
            result_tokens=lambda row: [str(row.get("id"))],
        )

    async def update_accounts(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        """The account model's score on each company (``target`` is the company id) through companies
        ``batch/update``, mapped by ``account_score_properties``; keys it does not map are not sent."""
        names = self._config.account_score_properties
        try:
            outcomes = await self._batch(
                records, "/crm/v3/objects/companies/batch/update", idempotent=True,
                token=lambda r: r.target,
                build=lambda r: {"id": r.target, "properties": _properties(
                    {k: v for k, v in r.payload.items() if k in names or k not in ACCOUNT_SCORE_KEYS}, names)},
                result_tokens=lambda row: [str(row.get("id"))],
            )
        except GiveUp as exc:
            self._refuse_missing(exc.message, names)
            raise
        for outcome in outcomes:
            if outcome.outcome is Outcome.REJECTED and outcome.reason:
                self._refuse_missing(outcome.reason, names)
        return outcomes

    @staticmethod
    def _refuse_missing(text: str, names: Mapping[str, str]) -> None:
        missing = missing_properties(text, names.values())
        if missing:
            shown = ", ".join(repr(name) for name in missing)
            raise FixConfiguration(
                f"HubSpot companies have no property {shown}: create it in the portal (Settings › Properties › "
                "Company) or change account_score_properties", connector=NAME, operation_only=True)

    async def create_tasks(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        key_property = self._config.task_key_property

        def build(record: WriteRecord) -> dict[str, Any]:
            if record.payload.get("due_at") is None:
                raise BadPayload("due_at: missing (HubSpot requires hs_timestamp on a task)")
            properties = {**TASK_DEFAULTS, **_properties(record.payload, TASK_PROPERTIES)}
            properties[key_property] = record.idempotency_key
            return {
                "properties": properties,
                "associations": [{
                    "to": {"id": record.target},
                    "types": [
                        {"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": TASK_TO_CONTACT}
                    ],
                }],
                # HubSpot echoes the trace id in a 207's errors: that is how a failure finds its input.
                "objectWriteTraceId": record.idempotency_key,
            }

        def result_tokens(row: Mapping[str, Any]) -> list[str]:
            props = row.get("properties")
            key = props.get(key_property) if isinstance(props, Mapping) else None
            return [str(token) for token in (row.get("objectWriteTraceId"), key) if token]

        return await self._batch(
            records, "/crm/v3/objects/tasks/batch/create", idempotent=False,
            token=lambda r: r.idempotency_key, build=build, result_tokens=result_tokens,
            unique_property=key_property,
        )

    async def _batch(
        self,
        records: Sequence[WriteRecord],
        path: str,
        *,
        idempotent: bool,
        token: Callable[[WriteRecord], str],
        build: Callable[[WriteRecord], dict[str, Any]],
        result_tokens: Callable[[Mapping[str, Any]], Iterable[str]],
        unique_property: str | None = None,
    ) -> list[RecordOutcome]:
        if len(records) > MAX_BATCH:
            raise GiveUp(f"batch of {len(records)} exceeds HubSpot's {MAX_BATCH}", connector=NAME)
        outcomes: list[RecordOutcome | None] = [None] * len(records)
        inputs: list[dict[str, Any]] = []
        sent: dict[str, int] = {}
        for index, record in enumerate(records):
            key = token(record)
            if not record.target:
                outcomes[index] = RecordOutcome(record.idempotency_key, Outcome.REJECTED, "target: missing")
                continue
            if key in sent:
                # Attribution is by id, so one id may appear once per batch; the next batch takes it.
                reason = f"{key!r} already in this batch; send it in a later one"
                outcomes[index] = RecordOutcome(record.idempotency_key, Outcome.RETRYABLE, reason)
                continue
            try:
                inputs.append(build(record))
            except BadPayload as exc:
                outcomes[index] = RecordOutcome(record.idempotency_key, Outcome.REJECTED, str(exc))
                continue
            sent[key] = index
        if inputs:
            data = await self._post(path, {"inputs": inputs}, idempotent=idempotent)
            answers = settle(data, sent, result_tokens, unique_property=unique_property)
            for index, (outcome, reason, remote) in answers.items():
                outcomes[index] = RecordOutcome(records[index].idempotency_key, outcome, reason, remote)
        return [outcome for outcome in outcomes if outcome is not None]

    async def lookup_tasks(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        """Tasks already created under these keys, found by searching ``task_key_property IN [keys]``."""
        key_property = self._config.task_key_property
        keys = list(dict.fromkeys(r.idempotency_key for r in records))
        found: dict[str, str] = {}
        for start in range(0, len(keys), MAX_BATCH):  # one IN filter takes up to 100 values
            chunk = keys[start:start + MAX_BATCH]
            after: str | None = None
            while True:
                body: dict[str, Any] = {
                    "filterGroups": [{"filters": [
                        {"propertyName": key_property, "operator": "IN", "values": chunk},
                    ]}],
                    "sorts": [{"propertyName": "hs_createdate", "direction": "ASCENDING"}],
                    "properties": [key_property],
                    "limit": 100,
                }
                if after is not None:
                    body["after"] = after
                data = await self._post(
                    "/crm/v3/objects/tasks/search", body, idempotent=True, budgets=(SEARCH_BUDGET,)
                )
                rows = data.get("results") if isinstance(data, Mapping) else None
                for row in rows or ():
                    props = row.get("properties") or {}
                    key = props.get(key_property)
                    if key in chunk and key not in found and row.get("id") is not None:
                        found[key] = str(row["id"])  # the oldest wins if a duplicate ever slipped in
                paging = data.get("paging") if isinstance(data, Mapping) else None
                after = ((paging or {}).get("next") or {}).get("after")
                if not after or not rows:
                    break
        return [
            RecordOutcome(r.idempotency_key, Outcome.ACKNOWLEDGED, remote_id=found[r.idempotency_key])
            if r.idempotency_key in found
            else RecordOutcome(r.idempotency_key, Outcome.UNKNOWN, "no task carries this key yet")
            for r in records
        ]


__all__ = ["TASK_PROPERTIES", "BadPayload", "Writer", "missing_properties", "settle", "to_property"]
