"""Writes: scores onto leads (sync leads, ``updateOnly`` by ``id``) and static-list membership.

Marketo answers each input in input order with a ``status`` (``updated``, ``added``, ``removed``…) or
``skipped`` plus ``reasons``; a record is acknowledged only on the status that proves the effect, and an
answer whose length differs from what was sent cannot be attributed: every record stays UNKNOWN (both
operations are idempotent, so resending is safe). Reason codes decide the rest: removing a lead that is not
in the list (1015) is the wanted state, acknowledged; a lead that does not exist (1004) is rejected; a busy
queue or lock (1016/1019/1022/1029) is retryable. A body Marketo finds too large (413) is split in halves
until it fits; a static list that does not exist (1013) rejects the records meant for it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.base import GiveUp, Outcome, RecordOutcome, WriteRecord, without_unmapped

from ._api import MarketoApi
from ._config import MarketoConfig
from ._errors import NAME, TRANSIENT_REASONS, ObjectNotFound, PayloadTooLarge, describe_reasons

MAX_BATCH = 300  # lead ids per sync or list call (apis.md §3.3)
AUDIENCE_OPERATIONS = {"audience_add": ("POST", "added"), "audience_remove": ("DELETE", "removed")}
NOT_IN_LIST = "1015"


class BadPayload(ValueError):
    """A record's payload cannot be expressed as Marketo field values; the message is the reason."""


def to_value(key: str, value: Any) -> Any:
    """A canonical payload value as a Marketo field value (JSON scalar)."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, list | tuple) and all(isinstance(item, str) for item in value):
        return "; ".join(value)  # reasons read well as one line in a text field
    raise BadPayload(f"{key}: {type(value).__name__} value cannot be sent to Marketo")


def _lead_id(record: WriteRecord) -> int:
    target = str(record.target).strip()
    if not target.isdigit():
        raise BadPayload(f"target: {record.target!r} is not a Marketo lead id")
    return int(target)


def _reason_outcome(codes: list[str]) -> Outcome:
    return Outcome.RETRYABLE if codes and all(code in TRANSIENT_REASONS for code in codes) else Outcome.REJECTED


class Writer:
    """Sends write batches through one connector's :class:`MarketoApi`."""

    def __init__(self, api: MarketoApi, config: MarketoConfig) -> None:
        self._api = api
        self._config = config

    async def update_leads(self, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        names = self._config.score_fields
        outcomes: dict[int, RecordOutcome] = {}
        inputs: list[tuple[int, dict[str, Any]]] = []
        seen: set[int] = set()
        for index, record in enumerate(records):
            try:
                lead_id = _lead_id(record)
                payload = without_unmapped(record.payload, names)
                unknown = sorted(set(payload) - set(names))
                if unknown:
                    raise BadPayload(f"unknown payload key(s) {unknown}; expected some of {sorted(names)}")
                values = {names[k]: to_value(k, v) for k, v in payload.items()}
            except BadPayload as exc:
                outcomes[index] = RecordOutcome(record.idempotency_key, Outcome.REJECTED, str(exc))
                continue
            if lead_id in seen:
                # Marketo refuses duplicates within one input (1036); the next batch takes this one.
                outcomes[index] = RecordOutcome(record.idempotency_key, Outcome.RETRYABLE,
                                                f"lead {lead_id} already in this batch; send it in a later one")
                continue
            seen.add(lead_id)
            inputs.append((index, {"id": lead_id, **values}))
        await self._sync(records, inputs, outcomes)
        return [outcomes[i] for i in range(len(records))]

    async def _sync(self, records: Sequence[WriteRecord], inputs: list[tuple[int, dict[str, Any]]],
                    outcomes: dict[int, RecordOutcome]) -> None:
        if not inputs:
            return
        body = {"action": "updateOnly", "lookupField": "id", "asyncProcessing": False,
                "input": [values for _, values in inputs]}
        try:
            answer = await self._api.call("POST", "/rest/v1/leads.json", json=body)
        except PayloadTooLarge:
            if len(inputs) == 1:
                index = inputs[0][0]
                outcomes[index] = RecordOutcome(records[index].idempotency_key, Outcome.REJECTED,
                                                "the record alone is over Marketo's 1 MB request limit")
                return
            half = len(inputs) // 2
            await self._sync(records, inputs[:half], outcomes)
            await self._sync(records, inputs[half:], outcomes)
            return
        self._settle(records, [index for index, _ in inputs], answer, ("updated", "created"), outcomes)

    def _settle(self, records: Sequence[WriteRecord], sent: list[int], answer: Mapping[str, Any],
                done: tuple[str, ...], outcomes: dict[int, RecordOutcome], *, ids: list[int] | None = None,
                absent_ok: bool = False) -> None:
        rows = answer.get("result")
        rows = rows if isinstance(rows, list) else []
        if len(rows) != len(sent):
            reason = f"Marketo answered {len(rows)} results for {len(sent)} inputs; cannot tell which landed"
            for index in sent:
                outcomes[index] = RecordOutcome(records[index].idempotency_key, Outcome.UNKNOWN, reason)
            return
        for position, (index, row) in enumerate(zip(sent, rows, strict=True)):
            key = records[index].idempotency_key
            row = row if isinstance(row, Mapping) else {}
            status = str(row.get("status") or "")
            if ids is not None and row.get("id") is not None and str(row.get("id")) != str(ids[position]):
                outcomes[index] = RecordOutcome(key, Outcome.UNKNOWN, "Marketo's results are not in input order")
            elif status in done:
                outcomes[index] = RecordOutcome(key, Outcome.ACKNOWLEDGED, remote_id=_text(row.get("id")))
            elif status == "skipped":
                codes, text = describe_reasons(row.get("reasons"))
                if absent_ok and codes == [NOT_IN_LIST]:
                    outcomes[index] = RecordOutcome(key, Outcome.ACKNOWLEDGED, reason=f"already out: {text}")
                else:
                    outcomes[index] = RecordOutcome(key, _reason_outcome(codes), f"Marketo skipped it: {text}")
            else:
                outcomes[index] = RecordOutcome(key, Outcome.UNKNOWN, f"unexpected status {status!r}")

    async def membership(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        method, done = AUDIENCE_OPERATIONS[operation]
        outcomes: dict[int, RecordOutcome] = {}
        by_list: dict[str, list[tuple[int, int]]] = {}
        for index, record in enumerate(records):
            list_id = str(record.payload.get("audience_id") or "").strip()
            try:
                if not list_id.isdigit():
                    raise BadPayload(f"audience_id: {list_id!r} is not a Marketo static list id")
                lead_id = _lead_id(record)  # the pipeline's stay gives its person: the lead id
            except BadPayload as exc:
                outcomes[index] = RecordOutcome(record.idempotency_key, Outcome.REJECTED, str(exc))
                continue
            group = by_list.setdefault(list_id, [])
            if any(lead_id == other for _, other in group):
                outcomes[index] = RecordOutcome(record.idempotency_key, Outcome.RETRYABLE,
                                                f"lead {lead_id} already in this batch; send it in a later one")
                continue
            group.append((index, lead_id))
        for list_id, members in by_list.items():
            for start in range(0, len(members), MAX_BATCH):
                await self._members(records, method, done, list_id, members[start:start + MAX_BATCH], outcomes)
        return [outcomes[i] for i in range(len(records))]

    async def _members(self, records: Sequence[WriteRecord], method: str, done: str, list_id: str,
                       members: list[tuple[int, int]], outcomes: dict[int, RecordOutcome]) -> None:
        body = {"input": [{"id": lead_id} for _, lead_id in members]}
        try:
            answer = await self._api.call(method, f"/rest/v1/lists/{list_id}/leads.json", json=body)
        except ObjectNotFound as exc:
            # One missing list must not stop the other audiences: its records are dead letters with the reason.
            for index, _ in members:
                outcomes[index] = RecordOutcome(records[index].idempotency_key, Outcome.REJECTED,
                                                f"static list {list_id}: {exc.message}")
            return
        self._settle(records, [index for index, _ in members], answer, (done,), outcomes,
                     ids=[lead_id for _, lead_id in members], absent_ok=method == "DELETE")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def check_batch(records: Sequence[WriteRecord]) -> None:
    if len(records) > MAX_BATCH:
        raise GiveUp(f"batch of {len(records)} exceeds Marketo's {MAX_BATCH}", connector=NAME)


__all__ = ["AUDIENCE_OPERATIONS", "MAX_BATCH", "BadPayload", "Writer", "check_batch", "to_value"]
