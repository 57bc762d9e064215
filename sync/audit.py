"""The audit log: every decision and operation, appended to a hash chain that shows any edit.

Each entry (``audit_log``) carries ``hash = sha256(prev_hash + canonical JSON of {id, at, pipeline, run_id,
kind, subject, data})`` — canonical meaning sorted keys, no whitespace, times as UTC ISO-8601 with
microseconds and ``Z``; ``data`` is stored as exactly that canonical text and embedded in the hashed object
as it is stored. The first entry's ``prev_hash`` is :data:`GENESIS`. Changing an entry breaks its hash;
deleting one leaves a gap in the ids and a ``prev_hash`` that no longer matches; rewriting every hash after
an edit changes the chain's head.

Deleting the *newest* entries leaves a shorter chain that is still valid, so :func:`anchor` records the
head (how many entries, the head's hash) in ``audit_anchor`` — itself hash-chained, so an edited anchor is
seen too. Call it at the end of every run; :func:`verify` checks every anchor against the log. An operator
can also copy :func:`head`'s hash somewhere the store's users cannot write (a ticket, a WORM bucket) and
pass it back as ``known_head``: the hashes are not keyed, so someone who can rewrite the whole store can
rewrite the whole chain and its anchors — only a copy kept elsewhere catches that.

Ids are assigned here, not by a sequence: the id is part of the hash, so it must be known before the insert,
and a sequence would leave gaps on rollback (a dry run) that would look like removed entries. Appending
takes ``pg_advisory_xact_lock`` on PostgreSQL (SQLite: ``BEGIN IMMEDIATE``) before it reads the head, so two
pipelines appending at once queue instead of forking the chain; the lock ends with the transaction. Write to
these tables only through :func:`append` and :func:`anchor`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlmodel import Field, SQLModel

GENESIS = "0" * 64
CHUNK = 10_000  # rows per read while verifying: memory stays flat however long the log
MAX_PROBLEMS = 1_000
# One lock for the whole log (every pipeline appends to the same chain).
LOCK_KEY = int.from_bytes(hashlib.sha256(b"leadrelay:audit-log").digest()[:8], "big", signed=True)


class AuditRow(SQLModel, table=True):
    __tablename__ = "audit_log"
    id: int = Field(primary_key=True, sa_type=sa.BigInteger(), sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=sa.DateTime())
    pipeline: str
    run_id: int | None = Field(default=None, index=True)
    kind: str
    subject: str = Field(index=True)
    data: str = Field(sa_type=sa.Text())
    prev_hash: str
    hash: str


class AuditAnchorRow(SQLModel, table=True):
    __tablename__ = "audit_anchor"
    id: int = Field(primary_key=True, sa_type=sa.BigInteger(), sa_column_kwargs={"autoincrement": False})
    at: datetime = Field(sa_type=sa.DateTime())
    # The id of the head entry when anchored: how many entries had been appended.
    entries: int = Field(sa_type=sa.BigInteger())
    head_hash: str
    prev_hash: str
    hash: str


_LOG: sa.Table = AuditRow.__table__  # type: ignore[attr-defined]
_ANCHORS: sa.Table = AuditAnchorRow.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One decision or operation: ``kind`` (consent, audience, routing, holdout, operation, score…),
    ``subject`` (a person's key or an operation's key), what was decided and why (``data``), and when."""

    kind: str
    subject: str
    data: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class StoredEntry:
    id: int
    at: datetime
    pipeline: str
    run_id: int | None
    kind: str
    subject: str
    data: dict[str, Any]
    hash: str


@dataclass(frozen=True, slots=True)
class Anchor:
    id: int
    at: datetime
    entries: int
    head_hash: str


@dataclass(frozen=True)
class Verification:
    ok: bool
    checked: int  # entries read
    problems: list[str] = field(default_factory=list)
    anchors: int = 0
    head_hash: str = GENESIS


# --------------------------------------------------------------------------------------------------
# Canonical form


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def iso(value: datetime) -> str:
    """UTC ISO-8601 with microseconds and ``Z``: one spelling per instant (naive times count as UTC)."""
    return _utc(value).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, date | time):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=canonical_json)  # sets have no order of their own
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot put a {type(value).__name__} into the audit log")


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, UTC times: equal content gives equal text, on every machine."""
    options = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME
    return orjson.dumps(value, default=_default, option=options).decode()


def _digest(prev_hash: str, body: Mapping[str, Any]) -> str:
    return hashlib.sha256((prev_hash + canonical_json(body)).encode()).hexdigest()


def entry_hash(prev_hash: str, id: int, at: datetime, pipeline: str, run_id: int | None, kind: str,
               subject: str, data: str) -> str:
    """The hash of one entry; ``data`` is its stored canonical JSON text."""
    return _digest(prev_hash, {"id": id, "at": iso(at), "pipeline": pipeline, "run_id": run_id, "kind": kind,
                               "subject": subject, "data": orjson.Fragment(data)})


def anchor_hash(prev_hash: str, id: int, at: datetime, entries: int, head_hash: str) -> str:
    return _digest(prev_hash, {"id": id, "at": iso(at), "entries": entries, "head_hash": head_hash})


# --------------------------------------------------------------------------------------------------
# Writing


def _lock(conn: Connection, dialect: str) -> None:
    """Hold the log's write lock until this transaction ends, before anything reads the head."""
    if dialect == "postgresql":
        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(LOCK_KEY)))
    # pysqlite opens its transaction lazily, at the first write — after we would have read the head. Take the
    # write lock now, unless an earlier write of this transaction already holds it.
    elif dialect == "sqlite" and not conn.connection.dbapi_connection.in_transaction:  # type: ignore[union-attr]
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _last(conn: Connection, table: sa.Table) -> tuple[int, str]:
    row = conn.execute(sa.select(table.c.id, table.c.hash).order_by(table.c.id.desc()).limit(1)).first()
    return (row.id, row.hash) if row else (0, GENESIS)


def append(conn: Connection, dialect: str, pipeline: str, run_id: int | None,
           entries: Sequence[AuditEntry]) -> str:
    """Append ``entries`` in order, in the caller's transaction; returns the chain's new head hash.

    One query for the head and one executemany for the rows, however many entries.
    """
    _lock(conn, dialect)
    last_id, prev = _last(conn, _LOG)
    rows = []
    for number, entry in enumerate(entries, start=last_id + 1):
        at = _utc(entry.at)
        data = canonical_json(dict(entry.data))
        digest = entry_hash(prev, number, at, pipeline, run_id, entry.kind, entry.subject, data)
        rows.append({"id": number, "at": at.replace(tzinfo=None), "pipeline": pipeline, "run_id": run_id,
                     "kind": entry.kind, "subject": entry.subject, "data": data, "prev_hash": prev,
                     "hash": digest})
        prev = digest
    if rows:
        conn.execute(_LOG.insert(), rows)
    return prev


def anchor(conn: Connection, dialect: str, now: datetime) -> Anchor:
    """Record the log's current head (count and hash) in ``audit_anchor``; call it at the end of each run."""
    _lock(conn, dialect)
    entries, head_hash = _last(conn, _LOG)
    last_anchor, prev = _last(conn, _ANCHORS)
    at = _utc(now)
    number = last_anchor + 1
    conn.execute(_ANCHORS.insert(), [{"id": number, "at": at.replace(tzinfo=None), "entries": entries,
                                      "head_hash": head_hash, "prev_hash": prev,
                                      "hash": anchor_hash(prev, number, at, entries, head_hash)}])
    return Anchor(number, at, entries, head_hash)


# --------------------------------------------------------------------------------------------------
# Reading


def head(conn: Connection) -> tuple[int, str]:
    """(entries appended, head hash): what an operator copies elsewhere to catch a rewrite of the store."""
    return _last(conn, _LOG)


def _chunks(conn: Connection, table: sa.Table) -> Iterator[Sequence[sa.Row[Any]]]:
    last = 0
    while True:
        # Keyset pages: bounded memory, no server-side cursor held open across a long verification.
        rows = conn.execute(sa.select(table).where(table.c.id > last).order_by(table.c.id).limit(CHUNK)).all()
        if not rows:
            return
        yield rows
        last = rows[-1].id


def read(conn: Connection, *, subject: str | None = None, run_id: int | None = None,
         kind: str | None = None, limit: int | None = None) -> list[StoredEntry]:
    """Entries in order, narrowed by subject, run and kind (``leadrelay explain`` reads one person's)."""
    stmt = sa.select(_LOG).order_by(_LOG.c.id)
    for column, value in (("subject", subject), ("run_id", run_id), ("kind", kind)):
        if value is not None:
            stmt = stmt.where(_LOG.c[column] == value)
    if limit is not None:
        stmt = stmt.limit(limit)
    return [StoredEntry(r.id, _utc(r.at), r.pipeline, r.run_id, r.kind, r.subject, orjson.loads(r.data), r.hash)
            for r in conn.execute(stmt)]


# --------------------------------------------------------------------------------------------------
# Verifying


class _Problems:
    """Problems found, kept to :data:`MAX_PROBLEMS` (a rewritten log would otherwise fill memory)."""

    def __init__(self) -> None:
        self.found: list[str] = []
        self.dropped = 0

    def add(self, problem: str) -> None:
        if len(self.found) < MAX_PROBLEMS:
            self.found.append(problem)
        else:
            self.dropped += 1

    def done(self) -> list[str]:
        return [*self.found, f"… and {self.dropped} more problems"] if self.dropped else list(self.found)


def _span(what: str, first: int, last: int) -> str:
    plural = {"entry": "entries", "anchor": "anchors"}[what]
    return f"{what} {first}" if first == last else f"{plural} {first}–{last}"


def _check_anchors(conn: Connection, problems: _Problems) -> dict[int, list[tuple[int, str]]]:
    """Check the anchors' own chain; returns what each expects of the log: entries → [(anchor id, head)]."""
    expected: dict[int, list[tuple[int, str]]] = {}
    previous_id, previous_hash = 0, GENESIS
    for rows in _chunks(conn, _ANCHORS):
        for r in rows:
            if r.id != previous_id + 1:
                problems.add(f"{_span('anchor', previous_id + 1, r.id - 1)} missing: removed from audit_anchor")
            elif r.prev_hash != previous_hash:
                problems.add(f"anchor {r.id}: prev_hash does not match anchor {previous_id}: an anchor before it "
                             "was removed or rewritten")
            if anchor_hash(r.prev_hash, r.id, r.at, r.entries, r.head_hash) != r.hash:
                problems.add(f"anchor {r.id}: altered — its hash does not match its content")
            expected.setdefault(r.entries, []).append((r.id, r.head_hash))
            previous_id, previous_hash = r.id, r.hash
    return expected


def verify(conn: Connection, dialect: str | None = None, *, known_head: str | None = None) -> Verification:
    """Walk the whole log in id order and report every altered, removed or truncated entry and edited anchor.

    ``known_head``: a head hash copied elsewhere earlier; it must still be in the chain.
    """
    del dialect  # the same portable queries on every backend; kept for a uniform call shape
    problems = _Problems()
    expected = _check_anchors(conn, problems)
    anchors = sum(len(v) for v in expected.values())
    for anchor_id, head_hash in expected.pop(0, []):
        if head_hash != GENESIS:
            problems.add(f"anchor {anchor_id}: recorded an empty log with a head hash: the anchor was edited")
    previous_id, previous_hash, checked, seen_known = 0, GENESIS, 0, known_head is None
    for rows in _chunks(conn, _LOG):
        for r in rows:
            checked += 1
            if r.id != previous_id + 1:
                problems.add(f"{_span('entry', previous_id + 1, r.id - 1)} missing: removed from the log")
            elif r.prev_hash != previous_hash:
                problems.add(f"entry {r.id}: prev_hash does not match the hash of entry {previous_id}: entry "
                             f"{previous_id} was rewritten or entries between them removed")
            if entry_hash(r.prev_hash, r.id, r.at, r.pipeline, r.run_id, r.kind, r.subject, r.data) != r.hash:
                problems.add(f"entry {r.id}: altered — its hash does not match its content")
            for anchor_id, head_hash in expected.pop(r.id, []):
                if head_hash != r.hash:
                    problems.add(f"anchor {anchor_id}: recorded {head_hash[:12]}… as the hash of entry {r.id}, "
                                 f"which is {r.hash[:12]}…: the entry or the anchor was changed")
            seen_known = seen_known or r.hash == known_head
            previous_id, previous_hash = r.id, r.hash
    for entries, recorded in sorted(expected.items()):
        for anchor_id, _ in recorded:
            if entries > previous_id:
                problems.add(f"anchor {anchor_id} recorded {entries} entries but the log ends at entry "
                             f"{previous_id}: {_span('entry', previous_id + 1, entries)} removed from the tail")
            else:
                problems.add(f"anchor {anchor_id} names entry {entries}, which is missing from the log")
    if not seen_known:
        problems.add(f"the head hash kept elsewhere ({(known_head or '')[:12]}…) is not in the log: entries were "
                     "removed or rewritten")
    found = problems.done()
    return Verification(not found, checked, found, anchors, previous_hash)


__all__ = [
    "CHUNK", "GENESIS", "LOCK_KEY", "Anchor", "AuditAnchorRow", "AuditEntry", "AuditRow", "StoredEntry",
    "Verification", "anchor", "anchor_hash", "append", "canonical_json", "entry_hash", "head", "iso", "read",
    "verify",
]
