"""The Meta sandbox's state: ad accounts' audiences, their members, upload sessions and "known people".

Membership follows Meta's set semantics: a row is a person, merged with the member sharing any strong
identifier (EMAIL, PHONE, MADID, EXTERN_ID, and the app-scoped UID/APPUID); adding someone twice or removing
a non-member changes nothing. "Known people" stand for Meta's users: a row whose strong identifier belongs
to one of them *matches*, which is what the session's ``num_matched`` (and so the connector's match rate)
counts.

Uploads are validated as Meta does (apis.md §4.3): the payload's ``schema``/``data`` shape, one entry per
schema key in every row, at most ``max_rows`` rows, ``app_ids`` whenever UID or APPUID is in the schema.
Rows are counted, not refused one by one: a value that is not a SHA-256 digest under a hashed key (a plain
e-mail address, say) makes its row an invalid entry, counted in ``num_invalid_entries`` and sampled in
``invalid_entry_samples`` (value → reason).

A session's counts are kept per ``batch_seq``: a batch sent again (a retry after a lost answer) replaces
its earlier count instead of adding to it, while its rows are applied again (harmless, set semantics).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.sandbox._meta_wire import invalid_parameter

STRONG_KEYS = ("EMAIL", "PHONE", "MADID", "EXTERN_ID", "UID", "APPUID")
HASHED_KEYS = frozenset({"EMAIL", "PHONE", "FN", "LN", "ZIP", "CT", "ST", "COUNTRY", "DOBY", "DOBM", "DOBD",
                         "GEN", "FI"})
EXTRA_COLUMNS = frozenset({"DATA_PROCESSING_OPTIONS", "LOOKALIKE_VALUE"})  # not identifiers
APP_KEYS = frozenset({"UID", "APPUID"})  # user ids scoped to the apps named in the payload's app_ids
MULTI_KEYS = HASHED_KEYS | {"MADID", "EXTERN_ID", "APPUID"} | EXTRA_COLUMNS
SINGLE_KEY_SCHEMAS = {"EMAIL_SHA256": "EMAIL", "PHONE_SHA256": "PHONE", "MOBILE_ADVERTISER_ID": "MADID",
                      "UID": "UID"}
FILE_SOURCES = frozenset({"USER_PROVIDED_ONLY", "PARTNER_PROVIDED_ONLY", "BOTH_USER_AND_PARTNER_PROVIDED"})

_SHA256 = re.compile(r"[0-9a-f]{64}")
_MADID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

Pair = tuple[str, str]


def identity_pairs(values: Mapping[str, str]) -> list[Pair]:
    """The strong identifiers of a row; a row without any is identified by all its values together."""
    pairs = [(key, values[key]) for key in STRONG_KEYS if key in values]
    return pairs or [("ROW", json.dumps(sorted(values.items())))]


class Membership:
    """One audience's members, merged by strong identifier."""

    def __init__(self) -> None:
        self.members: dict[int, dict[str, str]] = {}
        self._index: dict[Pair, int] = {}
        self._next = 0

    def add(self, values: Mapping[str, str]) -> None:
        found = sorted({self._index[p] for p in identity_pairs(values) if p in self._index})
        merged: dict[str, str] = {}
        for member in found:
            merged.update(self._forget(member))
        merged.update(values)
        if found:
            member = found[0]
        else:
            member, self._next = self._next, self._next + 1
        self.members[member] = merged
        for pair in identity_pairs(merged):
            self._index[pair] = member

    def remove(self, values: Mapping[str, str]) -> int:
        found = {self._index[p] for p in identity_pairs(values) if p in self._index}
        for member in found:
            self._forget(member)
        return len(found)

    def _forget(self, member: int) -> dict[str, str]:
        values = self.members.pop(member)
        for pair in identity_pairs(values):
            if self._index.get(pair) == member:
                del self._index[pair]
        return values


@dataclass(slots=True)
class BatchCount:
    received: int
    invalid: int
    matched: int


@dataclass(slots=True)
class Session:
    """One upload session of one audience; counts per batch_seq so that a resent batch is counted once."""

    session_id: int
    operation: str
    started_ms: int
    batches: dict[int, BatchCount] = field(default_factory=dict)
    last_seq: int | None = None
    estimated_total: int | None = None
    finished_ms: int | None = None

    @property
    def complete(self) -> bool:
        return self.last_seq is not None and all(seq in self.batches for seq in range(1, self.last_seq + 1))

    def view(self) -> dict[str, str]:
        """As ``GET /{audience_id}/sessions`` shows it: every field a (numeric) string, as the SDK types say."""
        received = sum(b.received for b in self.batches.values())
        if self.complete:
            progress = 100
        elif self.estimated_total:
            progress = min(99, received * 100 // self.estimated_total)
        else:
            progress = 0
        return {
            "session_id": str(self.session_id),
            "start_time": str(self.started_ms // 1000),
            "end_time": str((self.finished_ms or 0) // 1000),
            "num_received": str(received),
            "num_matched": str(sum(b.matched for b in self.batches.values())),
            "num_invalid_entries": str(sum(b.invalid for b in self.batches.values())),
            "progress": str(progress),
            # Meta does not document its stage names; these two say what a client needs to know.
            "stage": "finished" if self.complete else "uploading",
        }


@dataclass(slots=True)
class Audience:
    id: str
    account_id: str
    name: str
    description: str
    customer_file_source: str
    created_ms: int
    updated_ms: int
    flagged: bool = False  # operation_status 471: edits are refused with 100/1713230
    membership: Membership = field(default_factory=Membership)
    sessions: dict[int, Session] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Upload:
    """A validated ``payload``: the schema keys (single-key schemas mapped to their column) and rows."""

    schema: list[str]
    rows: list[list[Any]]


def parse_payload(payload: Any, max_rows: int) -> Upload:
    """Validate ``payload`` as Meta does, or raise the ``(#100)`` error it would answer."""
    if not isinstance(payload, Mapping):
        raise invalid_parameter("Param payload must be a JSON object")
    schema, data = payload.get("schema"), payload.get("data")
    if isinstance(schema, str):
        if schema not in SINGLE_KEY_SCHEMAS:
            raise invalid_parameter(f"Invalid schema: {schema}")
        if not isinstance(data, list):
            raise invalid_parameter("Data is missing or does not match schema")
        keys = [SINGLE_KEY_SCHEMAS[schema]]
        rows = [row if isinstance(row, list) else [row] for row in data]
    elif isinstance(schema, list) and schema and all(isinstance(key, str) for key in schema):
        unknown = [key for key in schema if key not in MULTI_KEYS]
        if unknown or len(set(schema)) != len(schema):
            raise invalid_parameter(f"Invalid schema: {unknown or schema}")
        if not isinstance(data, list) or not all(isinstance(row, list) for row in data):
            raise invalid_parameter("Data is missing or does not match schema")
        keys, rows = list(schema), data
    else:
        raise invalid_parameter("The parameter schema is required")
    if not rows or any(len(row) != len(keys) for row in rows):
        raise invalid_parameter("Data is missing or does not match schema")
    app_ids = payload.get("app_ids")
    if APP_KEYS & set(keys) and not (isinstance(app_ids, list) and app_ids):
        # the SDK refuses UID without app_ids before sending; Meta's own wording for it is not documented
        raise invalid_parameter("app_ids is required for the schema keys UID and APPUID")
    if len(rows) > max_rows:
        # Meta documents the cap (10,000 a request) but not the words of this error.
        raise invalid_parameter(f"Too many entries in one request: {len(rows)} received, the maximum is {max_rows}")
    return Upload(keys, rows)


def evaluate(schema: list[str], row: list[Any]) -> tuple[dict[str, str] | None, str | None, str]:
    """``(values, None, "")`` for a usable row, else ``(None, sample value or None, reason)``."""
    values: dict[str, str] = {}
    for key, value in zip(schema, row, strict=True):
        if key in EXTRA_COLUMNS or value is None or value == "":
            continue
        if not isinstance(value, str):
            return None, str(value), f"{key}: expected a string"
        if key in HASHED_KEYS and not _SHA256.fullmatch(value):
            return None, value, f"{key}: not a SHA-256 hash of a normalised value"
        if key == "MADID" and not _MADID.fullmatch(value):
            return None, value, "MADID: not a lowercase advertising id"
        values[key] = value
    if not values:
        return None, None, "no identifier in this row"
    return values, None, ""


class KnownPeople:
    """Meta's users as far as the sandbox knows them: strong identifier → person number."""

    def __init__(self) -> None:
        self._index: dict[Pair, int] = {}
        self.count = 0

    def add(self, people: Iterable[Mapping[str, str]]) -> None:
        for person in people:
            unknown = set(person) - set(STRONG_KEYS)
            if unknown:
                raise ValueError(f"known people are identified by {STRONG_KEYS}, not {sorted(unknown)}")
            for pair in person.items():
                self._index[pair] = self.count
            self.count += 1

    def match(self, values: Mapping[str, str]) -> int | None:
        for pair in identity_pairs(values):
            if pair in self._index:
                return self._index[pair]
        return None


def open_session(audience: Audience, operation: str, session: Mapping[str, Any] | None, now_ms: int) -> Session | None:
    """The session a batch belongs to (created on first sight), validated before any row is applied."""
    if session is None:
        return None
    session_id, seq = session["session_id"], session["batch_seq"]
    current = audience.sessions.get(session_id)
    if current is None:
        current = audience.sessions[session_id] = Session(session_id, operation, now_ms)
    if current.operation != operation:
        raise invalid_parameter(f"Upload session {session_id} belongs to another operation")
    if current.last_seq is not None and seq > current.last_seq:
        raise invalid_parameter(f"Upload session {session_id} has already received its last batch")
    if session["last_batch_flag"] and any(existing > seq for existing in current.batches):
        raise invalid_parameter(f"Invalid session: batch {seq} cannot be the last of session {session_id}")
    return current


def record_batch(current: Session, session: Mapping[str, Any], count: BatchCount, now_ms: int) -> None:
    """Store one batch's counts in its session; a resent batch replaces its earlier count."""
    seq = session["batch_seq"]
    current.batches[seq] = count
    if session["last_batch_flag"]:
        current.last_seq = seq
    if session.get("estimated_num_total") is not None:
        current.estimated_total = session["estimated_num_total"]
    if current.complete and current.finished_ms is None:
        current.finished_ms = now_ms


def parse_session(value: Any) -> dict[str, Any] | None:
    """Validate the ``session`` parameter: ``session_id`` (int64), ``batch_seq`` ≥ 1, ``last_batch_flag``."""
    if value is None:
        return None

    def integer(name: str, minimum: int) -> int:
        raw = value.get(name)
        if isinstance(raw, str) and raw.isdigit():
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool) or not minimum <= raw < 2**63:
            raise invalid_parameter(f"Invalid session: {name} must be an integer of at least {minimum}")
        return raw

    if not isinstance(value, Mapping):
        raise invalid_parameter("Param session must be a JSON object")
    flag = value.get("last_batch_flag", False)
    if not isinstance(flag, bool):
        raise invalid_parameter("Invalid session: last_batch_flag must be a boolean")
    parsed: dict[str, Any] = {"session_id": integer("session_id", 1), "batch_seq": integer("batch_seq", 1),
                              "last_batch_flag": flag}
    if value.get("estimated_num_total") is not None:
        parsed["estimated_num_total"] = integer("estimated_num_total", 0)
    return parsed


__all__ = [
    "Audience",
    "BatchCount",
    "KnownPeople",
    "Membership",
    "Session",
    "Upload",
    "evaluate",
    "identity_pairs",
    "open_session",
    "parse_payload",
    "parse_session",
    "record_batch",
]
