"""Audience writes: rows hashed and grouped by audience, sent as sessions, answered record by record.

Meta does not answer row by row; it counts (``num_received``, ``num_invalid_entries``) and shows a few
``invalid_entry_samples``. Outcomes are mapped from those counts and nothing more generous:

* a record without a usable identifier is rejected here, before anything is sent;
* a request whose ``num_received`` differs from the rows sent is a failure (the HTTP layer retries it with
  the same session and batch number, which is harmless: adds and removes are set operations);
* rows holding a value named in the invalid samples are rejected with Meta's reason; if Meta counts
  invalid rows it does not name, they are rejected when that accounts for every remaining row, and
  otherwise the batch fails as a whole (GiveUp) so that the framework splits it until they stand alone;
* everything else Meta received is acknowledged, with the session id as ``remote_id``.

A refused audience (flagged, deleted) rejects its own rows and leaves the other audiences' rows alone.
When a later request of a batch fails after earlier ones were acknowledged, the acknowledged rows keep
their outcome and the rest are reported retryable rather than the whole batch raising.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from connectors.base import (
    GiveUp,
    Outcome,
    OutcomeUnknown,
    RecordOutcome,
    RetryLater,
    WriteRecord,
)
from connectors.http import Classify, HttpLayer, Observe
from connectors.meta._config import MetaConfig
from connectors.meta._errors import NAME, AudienceUnavailable, as_int, json_object
from connectors.meta._sessions import session_id_for
from connectors.meta.hashing import SCHEMA_KEYS, BadIdentifier, wire_row

logger = logging.getLogger(__name__)

METHODS = {"audience_add": "POST", "audience_remove": "DELETE"}
MAX_BATCH = 50_000  # records per write_batch: five full requests of one session
PAYLOAD_KEYS = frozenset({"audience_id", *SCHEMA_KEYS})
_COLUMN_ORDER = tuple(SCHEMA_KEYS.values())
_STRONG = ("EMAIL", "PHONE", "EXTERN_ID")  # enough on their own for Meta to match a person


@dataclass(slots=True)
class _Row:
    """One distinct row of an audience's upload and the input records it stands for."""

    values: dict[str, str]
    indices: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Group:
    audience_id: str
    rows: list[_Row] = field(default_factory=list)
    by_values: dict[tuple[tuple[str, str], ...], _Row] = field(default_factory=dict)

    def add(self, values: dict[str, str], index: int) -> None:
        # Two records for the same person and audience go as one row: Meta's counts then match our rows.
        key = tuple(sorted(values.items()))
        row = self.by_values.get(key)
        if row is None:
            row = self.by_values[key] = _Row(values)
            self.rows.append(row)
        row.indices.append(index)


def _audience_id(value: Any) -> str | None:
    text = str(value).strip() if isinstance(value, str | int) and not isinstance(value, bool) else ""
    return text if text.isdigit() else None


def _samples(body: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``invalid_entry_samples`` as (value, reason) pairs; a map (as documented) or a bare list."""
    raw = body.get("invalid_entry_samples")
    if isinstance(raw, Mapping):
        return [(str(value), str(reason or "")) for value, reason in raw.items()]
    if isinstance(raw, list):
        return [(str(value), "") for value in raw if isinstance(value, str | int)]
    return []


class Writer:
    """Sends audience batches through one connector's HTTP layer."""

    def __init__(
        self,
        http: HttpLayer,
        config: MetaConfig,
        classify: Classify,
        observe: Observe,
        *,
        proof: str | None,
    ) -> None:
        self._http = http
        self._config = config
        self._classify = classify
        self._observe = observe
        self._proof = proof

    async def write(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        """One outcome per record, in order (see the module docstring for how counts become outcomes)."""
        if len(records) > MAX_BATCH:
            raise GiveUp(f"batch of {len(records)} exceeds {MAX_BATCH}", connector=NAME)
        settled: dict[int, RecordOutcome] = {}
        groups = self._prepare(records, settled)
        for number, group in enumerate(groups):
            try:
                await self._send_group(operation, group, records, settled)
            except AudienceUnavailable as exc:
                self._settle_rest([group], records, settled, Outcome.REJECTED, exc.message)
            except GiveUp as exc:
                if not settled:
                    raise  # nothing settled yet: the framework splits the batch to isolate the cause
                self._settle_rest([group], records, settled, Outcome.RETRYABLE, f"batch interrupted: {exc}")
            except RetryLater as exc:
                if not settled:
                    raise
                # Earlier requests were acknowledged: keep them, and give the rest back to be sent again.
                outcome = Outcome.UNKNOWN if isinstance(exc, OutcomeUnknown) else Outcome.RETRYABLE
                self._settle_rest(groups[number:], records, settled, outcome, f"batch interrupted: {exc}")
                break
        return [
            settled.get(i) or RecordOutcome(r.idempotency_key, Outcome.UNKNOWN, "not sent")
            for i, r in enumerate(records)
        ]

    # ------------------------------------------------------------------------------------------------

    def _prepare(self, records: Sequence[WriteRecord], settled: dict[int, RecordOutcome]) -> list[_Group]:
        groups: dict[str, _Group] = {}
        for index, record in enumerate(records):
            reason = None
            payload = record.payload
            unknown = sorted(set(payload) - PAYLOAD_KEYS)
            audience = _audience_id(payload.get("audience_id"))
            values: dict[str, str] = {}
            if unknown:
                reason = f"unknown payload key(s) {unknown}; expected audience_id and some of {sorted(SCHEMA_KEYS)}"
            elif audience is None:
                reason = "audience_id: missing or not a numeric Meta audience id"
            else:
                identifiers = {k: v for k, v in payload.items() if k in SCHEMA_KEYS}
                try:
                    values = wire_row(identifiers, default_country=self._config.default_country)
                except BadIdentifier as exc:
                    reason = str(exc)
                else:
                    if not any(key in values for key in _STRONG) and not {"FN", "LN"} <= values.keys():
                        reason = ("no identifier Meta can match on: needs email, phone, external_id, or first "
                                  "and last name (empty or unusable values are left out)")
            if reason is not None or audience is None:
                settled[index] = RecordOutcome(record.idempotency_key, Outcome.REJECTED, reason)
                continue
            groups.setdefault(audience, _Group(audience)).add(values, index)
        return list(groups.values())

    async def _send_group(
        self, operation: str, group: _Group, records: Sequence[WriteRecord], settled: dict[int, RecordOutcome]
    ) -> None:
        size = self._config.rows_per_request
        schema = [key for key in _COLUMN_ORDER if any(key in row.values for row in group.rows)]
        keys = [records[i].idempotency_key for row in group.rows for i in row.indices]
        session_id = session_id_for(operation, group.audience_id, keys, size)
        chunks = [group.rows[start:start + size] for start in range(0, len(group.rows), size)]
        for seq, chunk in enumerate(chunks, start=1):
            payload = {"schema": schema, "data": [[row.values.get(key, "") for key in schema] for row in chunk]}
            session = {"session_id": session_id, "batch_seq": seq, "last_batch_flag": seq == len(chunks),
                       "estimated_num_total": len(group.rows)}
            # Form fields holding JSON text, as the official SDKs send them; DELETE carries them in the body
            # too, because in the query string 10,000 rows overflow any URL limit.
            form = {"payload": json.dumps(payload, separators=(",", ":")),
                    "session": json.dumps(session, separators=(",", ":"))}
            if self._proof is not None:
                form["appsecret_proof"] = self._proof
            response = await self._http.request(
                METHODS[operation], f"/{group.audience_id}/users", classify=self._expecting(len(chunk)),
                observe=self._observe, idempotent=True, data=form,
            )
            body = json_object(response) or {}
            logger.debug("meta: %s audience %s session %d batch %d/%d: %s rows received, %s invalid",
                         operation, group.audience_id, session_id, seq, len(chunks), body.get("num_received"),
                         body.get("num_invalid_entries"))
            self._settle_chunk(chunk, body, records, settled, str(session_id))

    def _expecting(self, sent: int) -> Classify:
        """``classify`` for one upload: an answer that did not receive every row sent is not a success."""

        def classify(response: httpx.Response) -> None:
            self._classify(response)
            body = json_object(response) or {}
            received = as_int(body.get("num_received"))
            if received != sent:
                raise RetryLater(f"Meta received {received} of {sent} rows sent; the request is not acknowledged",
                                 connector=NAME, status=response.status_code)

        return classify

    @staticmethod
    def _settle_chunk(
        chunk: Sequence[_Row],
        body: Mapping[str, Any],
        records: Sequence[WriteRecord],
        settled: dict[int, RecordOutcome],
        session: str,
    ) -> None:
        samples = _samples(body)
        named: dict[int, str] = {}
        for position, row in enumerate(chunk):
            sent = set(row.values.values())
            for value, why in samples:
                if value in sent:
                    # Meta's reason only: the sample's value may be a person's identifier.
                    named[position] = f"Meta counted this row as invalid: {why or 'no reason given'}"
                    break
        rest = [position for position in range(len(chunk)) if position not in named]
        unexplained = (as_int(body.get("num_invalid_entries")) or 0) - len(named)
        if 0 < unexplained < len(rest):
            for position, reason in named.items():
                for index in chunk[position].indices:
                    settled[index] = RecordOutcome(records[index].idempotency_key, Outcome.REJECTED, reason, session)
            raise GiveUp(f"Meta counted {unexplained} invalid entries among {len(rest)} rows without naming them; "
                         "smaller batches will isolate them", connector=NAME)
        # Here the unnamed invalid entries are either none or every remaining row.
        leftover = "Meta counted this row as an invalid entry without naming why" if unexplained > 0 else None
        for position, row in enumerate(chunk):
            reason = named.get(position, leftover)
            outcome = Outcome.REJECTED if reason is not None else Outcome.ACKNOWLEDGED
            for index in row.indices:
                settled[index] = RecordOutcome(records[index].idempotency_key, outcome, reason, session)

    @staticmethod
    def _settle_rest(
        groups: Sequence[_Group],
        records: Sequence[WriteRecord],
        settled: dict[int, RecordOutcome],
        outcome: Outcome,
        reason: str,
    ) -> None:
        for group in groups:
            for row in group.rows:
                for index in row.indices:
                    if index not in settled:
                        settled[index] = RecordOutcome(records[index].idempotency_key, outcome, reason)


__all__ = ["MAX_BATCH", "METHODS", "PAYLOAD_KEYS", "Writer"]
