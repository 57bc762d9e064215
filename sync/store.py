"""The agent's own store: what scoring, planning and delivery need, in sqlmodel tables.

SQLite (WAL) by default, PostgreSQL by URL; the same code and the same tests run on both. Reads and
writes are set-based (one statement per page or chunk, never one round trip per record).

Everything one cycle does happens inside one :class:`Unit` (one connection, one transaction).
``checkpoint()`` commits what is done so far — the cursor is moved in the same transaction as the page it
covers, so a crash never advances a cursor past unstored rows. A dry run opens the same unit with
``dry_run=True``: it runs the very same code, sees its own writes, and rolls everything back at the end,
so nothing is changed anywhere. (On SQLite a dry run therefore holds the write lock while it runs.)
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Connection, Engine
from sqlmodel import JSON, Column, Field, SQLModel

from connectors.base import Account, Activity, ActivityType, Lead, Opportunity, Quarantined

SCHEMA_VERSION = 1
_CHUNK = 900  # bound parameters per IN clause: safe on every SQLite build
_PG_CHUNK = 5_000  # keys per ANY(array) on PostgreSQL


# --------------------------------------------------------------------------------------------------
# Tables


class CursorRow(SQLModel, table=True):
    __tablename__ = "cursor"
    pipeline: str = Field(primary_key=True)
    stream: str = Field(primary_key=True)
    value: str
    updated_at: datetime = Field(sa_type=sa.DateTime())


class LeadRow(SQLModel, table=True):
    __tablename__ = "lead"
    source: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    email: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    account_key: str | None = Field(default=None, index=True)
    owner_id: str | None = None
    country: str | None = None
    title: str | None = None
    lifecycle_stage: str | None = None
    created_at: datetime | None = Field(default=None, sa_type=sa.DateTime())
    updated_at: datetime = Field(sa_type=sa.DateTime())
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    content_hash: str
    # The source refuses writes to it (Lead.read_only, e.g. a converted Salesforce Lead): scored, never written.
    read_only: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false()))


class AccountRow(SQLModel, table=True):
    __tablename__ = "account"
    source: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    name: str | None = None
    domain: str | None = Field(default=None, index=True)
    industry: str | None = None
    employees: int | None = None
    country: str | None = None
    annual_revenue: float | None = None
    updated_at: datetime = Field(sa_type=sa.DateTime())
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    content_hash: str


class OpportunityRow(SQLModel, table=True):
    """An opportunity (``connectors.base.Opportunity``): the account model's label ("an opportunity created
    within N days"); its account and creation time are what training reads."""

    __tablename__ = "opportunity"
    __table_args__ = (sa.Index("ix_opportunity_account", "source", "account_key", "created_at"),)
    source: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    account_key: str | None = None
    lead_key: str | None = None
    name: str | None = None
    stage: str | None = None
    amount: float | None = None
    created_at: datetime = Field(sa_type=sa.DateTime())
    closed_at: datetime | None = Field(default=None, sa_type=sa.DateTime())
    is_won: bool | None = None
    updated_at: datetime = Field(sa_type=sa.DateTime())
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    content_hash: str


class ActivityRow(SQLModel, table=True):
    __tablename__ = "activity"
    __table_args__ = (sa.Index("ix_activity_lead_time", "source", "lead_key", "occurred_at"),)
    source: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    lead_key: str
    type: str
    occurred_at: datetime = Field(sa_type=sa.DateTime())
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class QuarantineRow(SQLModel, table=True):
    __tablename__ = "quarantine"
    id: int | None = Field(default=None, primary_key=True)
    run_id: int | None = Field(default=None, index=True)
    source: str
    stream: str
    record_key: str | None = None
    reason: str
    raw: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    created_at: datetime = Field(sa_type=sa.DateTime())


class ScoreRow(SQLModel, table=True):
    """The latest score of each lead (one row per lead)."""

    __tablename__ = "score"
    source: str = Field(primary_key=True)
    lead_key: str = Field(primary_key=True)
    probability: float
    score: int
    band: str
    reasons_positive: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    reasons_negative: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    model_version: str
    scored_at: datetime = Field(sa_type=sa.DateTime())


class RescoreRow(SQLModel, table=True):
    """A scored lead whose inputs (its record, its account, its activities) changed since its score.

    Written in the transaction that stores the change and deleted in the one that saves the new score, so a
    run that dies in between leaves the lead due for the next run instead of stale until its decay tick.
    """

    __tablename__ = "rescore"
    source: str = Field(primary_key=True)
    lead_key: str = Field(primary_key=True)


class LedgerRow(SQLModel, table=True):
    """What each destination has *acknowledged* — never what was merely attempted."""

    __tablename__ = "ledger"
    destination: str = Field(primary_key=True)
    operation: str = Field(primary_key=True)
    target: str = Field(primary_key=True)
    payload_hash: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    remote_id: str | None = None
    acknowledged_at: datetime = Field(sa_type=sa.DateTime())


class OutboxRow(SQLModel, table=True):
    __tablename__ = "outbox"
    __table_args__ = (sa.Index("ix_outbox_due", "destination", "status"),)
    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(unique=True)
    pipeline: str
    destination: str
    operation: str
    target: str
    payload_hash: str
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    reason: str = ""
    # pending | acknowledged | retryable | rejected (a dead letter) | unknown | superseded | discarded
    status: str = "pending"
    attempts: int = 0
    last_error: str | None = None
    remote_id: str | None = None
    run_id: int | None = None
    created_at: datetime = Field(sa_type=sa.DateTime())
    updated_at: datetime = Field(sa_type=sa.DateTime())


class RunRow(SQLModel, table=True):
    __tablename__ = "run"
    id: int | None = Field(default=None, primary_key=True)
    pipeline: str = Field(index=True)
    dry_run: bool = False
    started_at: datetime = Field(sa_type=sa.DateTime())
    finished_at: datetime | None = Field(default=None, sa_type=sa.DateTime())
    status: str = "running"  # running | succeeded | failed | partial | skipped | abandoned
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    error: str | None = None
    agent: str | None = None  # the `leadrelay run` agent that ran it (several agents may share one store)


class MetaRow(SQLModel, table=True):
    __tablename__ = "leadrelay_meta"
    key: str = Field(primary_key=True)
    value: str


OPEN_STATUSES = ("pending", "retryable", "unknown")
SUPERSEDABLE = (*OPEN_STATUSES, "rejected")


# --------------------------------------------------------------------------------------------------
# Helpers


def utc(value: datetime | None) -> datetime | None:
    """SQLite hands datetimes back naive; everything in leadrelay is UTC-aware."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _naive(value: datetime | None) -> datetime | None:
    # Stored as naive UTC on every backend, so comparisons never depend on the driver's tz handling.
    if value is None:
        return None
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


def content_hash(values: Mapping[str, Any]) -> str:
    blob = json.dumps(values, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.blake2b(blob.encode(), digest_size=16).hexdigest()


def _chunks(items: Sequence[Any], size: int = _CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _lead_values(source: str, lead: Lead) -> dict[str, Any]:
    values = {
        "email": lead.email, "first_name": lead.first_name, "last_name": lead.last_name,
        "account_key": lead.account_key, "owner_id": lead.owner_id, "country": lead.country,
        "title": lead.title, "lifecycle_stage": lead.lifecycle_stage,
        "created_at": _naive(lead.created_at), "attributes": dict(lead.attributes),
    }
    # Hashed only when set, so leads stored before the flag existed keep their hash (no mass "changed").
    digest = content_hash({**values, "read_only": True} if lead.read_only else values)
    return {"source": source, "key": lead.key, **values, "updated_at": _naive(lead.updated_at),
            "content_hash": digest, "read_only": lead.read_only}


def _account_values(source: str, account: Account) -> dict[str, Any]:
    values = {
        "name": account.name, "domain": account.domain, "industry": account.industry,
        "employees": account.employees, "country": account.country,
        "annual_revenue": account.annual_revenue, "attributes": dict(account.attributes),
    }
    digest = content_hash(values)
    return {"source": source, "key": account.key, **values, "updated_at": _naive(account.updated_at),
            "content_hash": digest}


def _opportunity_values(source: str, opportunity: Opportunity) -> dict[str, Any]:
    values = {
        "account_key": opportunity.account_key, "lead_key": opportunity.lead_key, "name": opportunity.name,
        "stage": opportunity.stage, "amount": opportunity.amount, "created_at": _naive(opportunity.created_at),
        "closed_at": _naive(opportunity.closed_at), "is_won": opportunity.is_won,
        "attributes": dict(opportunity.attributes),
    }
    digest = content_hash(values)
    return {"source": source, "key": opportunity.key, **values, "updated_at": _naive(opportunity.updated_at),
            "content_hash": digest}


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    payload_hash: str
    payload: Mapping[str, Any]
    remote_id: str | None


@dataclass(frozen=True, slots=True)
class OutboxOp:
    """An operation as the planner hands it to the outbox."""

    idempotency_key: str
    destination: str
    operation: str
    target: str
    payload_hash: str
    payload: Mapping[str, Any]
    reason: str


@dataclass(frozen=True, slots=True)
class StoredOp:
    id: int
    idempotency_key: str
    destination: str
    operation: str
    target: str
    payload_hash: str
    payload: Mapping[str, Any]
    status: str
    attempts: int


# --------------------------------------------------------------------------------------------------
# The store and its unit of work


class Store:
    """Owns the engine. ``unit()`` gives the transaction one cycle works in."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self.engine = _make_engine(url, echo=echo)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def create_all(self) -> None:
        """Bring the store to the current schema: create it when empty, migrate it when older (see
        :meth:`migrate`)."""
        self.migrate()

    def migrate(self, target: str = "head") -> tuple[str | None, str | None]:
        """Upgrade the schema to ``target`` (alembic revisions in ``sync/migrations``), in one transaction.

        An empty store is created at the newest schema; a store from before migrations existed is recognised
        by its tables and stamped at its revision first. Returns (revision before, revision after).
        """
        from sync import migrations

        with self.engine.connect() as conn:
            result = migrations.upgrade(conn, target)
            stmt = _upsert(self.dialect, MetaRow.__table__, [{"key": "schema_version",
                                                               "value": str(SCHEMA_VERSION)}], ["key"])
            conn.execute(stmt)
            conn.commit()
        return result

    def schema_revision(self) -> tuple[str | None, str]:
        """(the store's alembic revision or ``None`` when unversioned/empty, the newest revision known)."""
        from sync import migrations

        with self.engine.connect() as conn:
            return migrations.current(conn), migrations.head()

    def drop_all(self) -> None:
        model_metadata().drop_all(self.engine)
        with self.engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))

    @contextmanager
    def unit(self, *, dry_run: bool = False) -> Iterator[Unit]:
        with self.engine.connect() as conn:
            unit = Unit(conn, self.dialect, dry_run=dry_run)
            try:
                yield unit
            except BaseException:
                conn.rollback()
                raise
            if dry_run:
                conn.rollback()
            else:
                conn.commit()

    def close(self) -> None:
        self.engine.dispose()


def sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (``None`` for in-memory stores and other backends)."""
    if not url.startswith("sqlite"):
        return None
    path = url.split("///", 1)[1] if "///" in url else ""
    return Path(path) if path and path != ":memory:" else None


def driver_url(url: str) -> str:
    """Plain ``postgresql://`` URLs use psycopg 3, the driver leadrelay installs."""
    if url.startswith("postgresql://"):
        return "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return url


_driver_url = driver_url


def model_metadata() -> sa.MetaData:
    """The metadata of every table leadrelay keeps: the store's, the decisions', the audit log's, the
    agents' leases and the alerts' (their modules register them on import)."""
    import sync.alerts
    import sync.audit
    import sync.decision_store
    import sync.leases  # noqa: F401 - each registers its tables

    return SQLModel.metadata


def store_ready(url: str) -> bool:
    """Whether a store with leadrelay's tables exists at ``url`` — asked without creating anything."""
    if url.startswith("sqlite"):
        file = sqlite_file(url)
        if file is None or not file.exists():
            return False
    engine = sa.create_engine(_driver_url(url))
    try:
        return bool(sa.inspect(engine).has_table(RunRow.__tablename__))
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _json_dumps(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# The JSON columns (activity attributes, payloads, reasons) are on the bulk path: orjson, not the stdlib.
_JSON: dict[str, Any] = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}


def _make_engine(url: str, *, echo: bool) -> Engine:
    if url.startswith("sqlite"):
        file = sqlite_file(url)
        if file is not None:
            file.parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(url, echo=echo, connect_args={"timeout": 60}, **_JSON)

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    # psycopg prepares a statement after five runs, and PostgreSQL then plans it generically: for our
    # "key IN (900 values)" lookups the generic plan is a sequential scan, which made bulk loads quadratic.
    return sa.create_engine(_driver_url(url), echo=echo, pool_pre_ping=True,
                            connect_args={"prepare_threshold": None}, **_JSON)


def _upsert(dialect: str, table: sa.Table, rows: list[dict[str, Any]], keys: list[str],
            update: Iterable[str] | None = None) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    stmt = insert(table).values(rows) if len(rows) == 1 else insert(table)
    columns = update if update is not None else [c for c in rows[0] if c not in keys]
    if not columns:
        return stmt.on_conflict_do_nothing(index_elements=keys)
    return stmt.on_conflict_do_update(index_elements=keys,
                                      set_={c: getattr(stmt.excluded, c) for c in columns})


@dataclass(frozen=True)
class DeadLetterFilter:
    """Which dead letters a command applies to; every field narrows, none given means all."""

    ids: tuple[int, ...] = ()
    pipeline: str | None = None
    destination: str | None = None
    operation: str | None = None
    target: str | None = None
    reason_contains: str | None = None
    since: datetime | None = None

    @property
    def narrowed(self) -> bool:
        return bool(self.ids) or any(v is not None for v in (self.pipeline, self.destination, self.operation,
                                                              self.target, self.reason_contains, self.since))

    def clauses(self, t: sa.Table) -> list[Any]:
        out: list[Any] = [t.c.status == "rejected"]
        if self.ids:
            out.append(t.c.id.in_(self.ids))
        for column, value in (("pipeline", self.pipeline), ("destination", self.destination),
                              ("operation", self.operation), ("target", self.target)):
            if value is not None:
                out.append(t.c[column] == value)
        if self.reason_contains:
            out.append(sa.func.lower(t.c.last_error).contains(self.reason_contains.lower(), autoescape=True))
        if self.since is not None:
            out.append(t.c.updated_at >= _naive(self.since))
        return out


class Unit:
    """One connection and one open transaction; every store operation of a cycle goes through it."""

    def __init__(self, conn: Connection, dialect: str, *, dry_run: bool) -> None:
        self.conn = conn
        self.dialect = dialect
        self.dry_run = dry_run
        # (pipeline, run id) once a cycle runs in this unit: what it records goes to the audit log too.
        self.audit_context: tuple[str, int | None] | None = None

    def audit(self, entries: Sequence[tuple[str, str, Mapping[str, Any]]], now: datetime) -> None:
        """Append (kind, subject, data) entries to the hash-chained audit log, in this transaction."""
        if self.audit_context is None or not entries:
            return
        from sync import audit

        pipeline, run_id = self.audit_context
        audit.append(self.conn, self.dialect, pipeline, run_id,
                     [audit.AuditEntry(kind, subject, data, now) for kind, subject, data in entries])

    def _chunks(self, items: Sequence[Any]) -> Iterator[Sequence[Any]]:
        """Key lists in slices one statement can carry: a few thousand on PostgreSQL (one array parameter),
        900 on SQLite (one bound parameter each, within every build's limit)."""
        return _chunks(items, _PG_CHUNK if self.dialect == "postgresql" else _CHUNK)

    def _among(self, column: Any, values: Sequence[Any]) -> Any:
        """``column IN values``; on PostgreSQL as ``= ANY(array)``: one parameter instead of thousands,
        which PostgreSQL parses and plans ~3× faster (measured on 100k-row existence checks)."""
        if self.dialect == "postgresql":
            return column == sa.any_(sa.literal(list(values), postgresql.ARRAY(column.type)))
        return column.in_(values)

    def ensure_schema(self) -> None:
        """Migrate the schema inside this unit's transaction (a dry run against a store from an older
        version: the run sees the current schema, and the migration is rolled back with everything else).
        Tables still missing after that (dropped by hand) are created the same way."""
        from sync import migrations

        migrations.begin(self.conn, lock=False)  # on SQLite: a real transaction, so the DDL rolls back too
        migrations.upgrade(self.conn, "head", lock=False)
        model_metadata().create_all(self.conn)

    def checkpoint(self) -> None:
        """Make what is done durable (a real run) — a dry run keeps everything for the final rollback."""
        if not self.dry_run:
            self.conn.commit()

    def _exec_many(self, table: sa.Table, rows: list[dict[str, Any]], keys: list[str],
                   update: Iterable[str] | None = None) -> None:
        if not rows:
            return
        # executemany: the drivers' own batch path (sqlite3 in C, psycopg in pipeline mode) beats one huge
        # multi-VALUES statement, which SQLAlchemy must compile afresh for every chunk.
        stmt = _upsert(self.dialect, table, rows, keys, update)
        if len(rows) == 1:
            self.conn.execute(stmt)
        else:
            self.conn.execute(stmt, rows)

    def _insert_many(self, table: sa.Table, rows: list[dict[str, Any]]) -> None:
        if rows:
            self.conn.execute(table.insert(), rows)

    # -- cursors ------------------------------------------------------------------------------------

    def get_cursor(self, pipeline: str, stream: str) -> str | None:
        t = CursorRow.__table__
        return self.conn.execute(
            sa.select(t.c.value).where(t.c.pipeline == pipeline, t.c.stream == stream)
        ).scalar_one_or_none()

    def set_cursor(self, pipeline: str, stream: str, value: str, now: datetime) -> None:
        self._exec_many(CursorRow.__table__,
                        [{"pipeline": pipeline, "stream": stream, "value": value, "updated_at": _naive(now)}],
                        ["pipeline", "stream"])

    # -- entities -----------------------------------------------------------------------------------

    def _existing_hashes(self, table: sa.Table, source: str, keys: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for chunk in self._chunks(list(keys)):
            rows = self.conn.execute(
                sa.select(table.c.key, table.c.content_hash)
                .where(table.c.source == source, self._among(table.c.key, chunk))
            )
            found.update((key, digest) for key, digest in rows)
        return found

    def upsert_leads(self, source: str, leads: Sequence[Lead]) -> set[str]:
        """Store leads; return the keys that are new or whose content changed."""
        return self._upsert_entities(LeadRow.__table__, source, [_lead_values(source, x) for x in leads])

    def upsert_accounts(self, source: str, accounts: Sequence[Account]) -> set[str]:
        return self._upsert_entities(AccountRow.__table__, source,
                                     [_account_values(source, x) for x in accounts])

    def upsert_opportunities(self, source: str, opportunities: Sequence[Opportunity]) -> set[str]:
        """Store opportunities; return the keys that are new or whose content changed."""
        return self._upsert_entities(OpportunityRow.__table__, source,
                                     [_opportunity_values(source, x) for x in opportunities])

    def _upsert_entities(self, table: sa.Table, source: str, rows: list[dict[str, Any]]) -> set[str]:
        latest = {row["key"]: row for row in rows}  # a page may repeat a key: the last one wins
        existing = self._existing_hashes(table, source, list(latest))
        changed = [row for key, row in latest.items() if existing.get(key) != row["content_hash"]]
        self._exec_many(table, changed, ["source", "key"])
        return {row["key"] for row in changed}

    def add_activities(self, source: str, activities: Sequence[Activity]) -> tuple[int, set[str]]:
        """Store activities not seen before; return how many were new and the lead keys they touch."""
        t = ActivityRow.__table__
        latest = {a.key: a for a in activities}
        seen: set[str] = set()
        for chunk in self._chunks(list(latest)):
            seen.update(self.conn.execute(
                sa.select(t.c.key).where(t.c.source == source, self._among(t.c.key, chunk))).scalars())
        fresh = [a for key, a in latest.items() if key not in seen]
        rows = [{"source": source, "key": a.key, "lead_key": a.lead_key, "type": str(a.type),
                 "occurred_at": _naive(a.occurred_at), "attributes": dict(a.attributes)} for a in fresh]
        self._exec_many(t, rows, ["source", "key"], update=())
        return len(fresh), {a.lead_key for a in fresh}

    def quarantine(self, source: str, items: Sequence[Quarantined], run_id: int | None, now: datetime) -> None:
        if not items:
            return
        self._insert_many(QuarantineRow.__table__, [
            {"run_id": run_id, "source": source, "stream": q.stream, "record_key": q.key,
             "reason": q.reason, "raw": json.loads(json.dumps(q.raw, default=str)),
             "created_at": _naive(now)} for q in items
        ])

    def quarantined(self, run_id: int | None = None) -> list[dict[str, Any]]:
        t = QuarantineRow.__table__
        query = sa.select(t).order_by(t.c.id)
        if run_id is not None:
            query = query.where(t.c.run_id == run_id)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def lead_keys(self, source: str) -> list[str]:
        t = LeadRow.__table__
        return list(self.conn.execute(sa.select(t.c.key).where(t.c.source == source).order_by(t.c.key))
                    .scalars())

    def leads_of_accounts(self, source: str, account_keys: Iterable[str]) -> set[str]:
        t = LeadRow.__table__
        out: set[str] = set()
        for chunk in self._chunks(sorted(set(account_keys))):
            out.update(self.conn.execute(
                sa.select(t.c.key).where(t.c.source == source, self._among(t.c.account_key, chunk))).scalars())
        return out

    def existing_leads(self, source: str, keys: Iterable[str]) -> set[str]:
        t = LeadRow.__table__
        out: set[str] = set()
        for chunk in self._chunks(sorted(set(keys))):
            out.update(self.conn.execute(
                sa.select(t.c.key).where(t.c.source == source, self._among(t.c.key, chunk))).scalars())
        return out

    def leads_scored_before(self, source: str, before: datetime) -> set[str]:
        """Leads never scored, or scored before ``before`` (due for a decay tick)."""
        lead, score = LeadRow.__table__, ScoreRow.__table__
        query = (
            sa.select(lead.c.key)
            .select_from(lead.outerjoin(score, sa.and_(score.c.source == lead.c.source,
                                                       score.c.lead_key == lead.c.key)))
            .where(lead.c.source == source,
                   sa.or_(score.c.scored_at.is_(None), score.c.scored_at < _naive(before)))
        )
        return set(self.conn.execute(query).scalars())

    def load_leads(self, source: str, keys: Sequence[str]) -> list[dict[str, Any]]:
        t = LeadRow.__table__
        out: list[dict[str, Any]] = []
        for chunk in self._chunks(sorted(keys)):
            out.extend(dict(r._mapping) for r in self.conn.execute(
                sa.select(t).where(t.c.source == source, self._among(t.c.key, chunk))))
        for row in out:
            row["created_at"], row["updated_at"] = utc(row["created_at"]), utc(row["updated_at"])
        return out

    def load_accounts(self, source: str, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        t = AccountRow.__table__
        out: dict[str, dict[str, Any]] = {}
        for chunk in self._chunks(sorted(set(keys))):
            for r in self.conn.execute(sa.select(t).where(t.c.source == source, self._among(t.c.key, chunk))):
                out[r.key] = dict(r._mapping)
        return out

    def opportunities_of_accounts(self, source: str, account_keys: Iterable[str] | None = None, *,
                                  until: datetime | None = None) -> dict[str, list[dict[str, Any]]]:
        """Opportunities by account, oldest first (datetimes UTC-aware): of these accounts, or of every account
        when ``account_keys`` is ``None`` (training); with ``until``, only those created before it.
        Opportunities on no account are left out: nothing to attach them to."""
        t = OpportunityRow.__table__
        columns = (t.c.key, t.c.account_key, t.c.name, t.c.stage, t.c.amount, t.c.created_at, t.c.closed_at,
                   t.c.is_won, t.c.attributes)
        base = sa.select(*columns).where(t.c.source == source, t.c.account_key.is_not(None))
        if until is not None:
            base = base.where(t.c.created_at < _naive(until))
        base = base.order_by(t.c.account_key, t.c.created_at, t.c.key)
        if account_keys is None:
            queries = [base]
        else:
            queries = [base.where(self._among(t.c.account_key, chunk))
                       for chunk in self._chunks(sorted(set(account_keys)))]
        out: dict[str, list[dict[str, Any]]] = {}
        for query in queries:
            for row in self.conn.execute(query):
                item = dict(row._mapping)
                item["created_at"], item["closed_at"] = utc(item["created_at"]), utc(item["closed_at"])
                out.setdefault(item["account_key"], []).append(item)
        return out

    def load_activities(self, source: str, lead_keys: Sequence[str], since: datetime
                        ) -> dict[str, list[tuple[str, datetime, dict[str, Any]]]]:
        """Activities of these leads since ``since`` (the retention window), oldest first."""
        t = ActivityRow.__table__
        out: dict[str, list[tuple[str, datetime, dict[str, Any]]]] = {}
        lower = _naive(since)
        for chunk in self._chunks(sorted(lead_keys)):
            rows = self.conn.execute(
                sa.select(t.c.lead_key, t.c.type, t.c.occurred_at, t.c.attributes)
                .where(t.c.source == source, self._among(t.c.lead_key, chunk), t.c.occurred_at >= lower)
                .order_by(t.c.lead_key, t.c.occurred_at)
            )
            for lead_key, kind, at, attrs in rows:
                out.setdefault(lead_key, []).append((kind, at.replace(tzinfo=UTC), attrs))
        return out

    def load_all_activities(self, source: str) -> dict[str, list[tuple[str, datetime, dict[str, Any]]]]:
        """Every stored activity by lead (for training over the whole history)."""
        t = ActivityRow.__table__
        out: dict[str, list[tuple[str, datetime, dict[str, Any]]]] = {}
        rows = self.conn.execute(
            sa.select(t.c.lead_key, t.c.type, t.c.occurred_at, t.c.attributes)
            .where(t.c.source == source).order_by(t.c.lead_key, t.c.occurred_at))
        for lead_key, kind, at, attrs in rows:
            out.setdefault(lead_key, []).append((kind, at.replace(tzinfo=UTC), attrs))
        return out

    def activity_span(self, source: str) -> tuple[datetime, datetime] | None:
        t = ActivityRow.__table__
        low, high = self.conn.execute(
            sa.select(sa.func.min(t.c.occurred_at), sa.func.max(t.c.occurred_at)).where(t.c.source == source)
        ).one()
        if low is None:
            return None
        return utc(low), utc(high)  # type: ignore[return-value]

    def count(self, table: str) -> int:
        return int(self.conn.execute(sa.text(f'SELECT count(*) FROM "{table}"')).scalar_one())  # noqa: S608 - table names are ours

    # -- scores -------------------------------------------------------------------------------------

    def save_scores(self, source: str, rows: Sequence[Mapping[str, Any]]) -> None:
        self._exec_many(ScoreRow.__table__, [
            {"source": source, "lead_key": r["lead_key"], "probability": float(r["probability"]),
             "score": int(r["score"]), "band": r["band"], "reasons_positive": list(r["reasons_positive"]),
             "reasons_negative": list(r["reasons_negative"]), "model_version": r["model_version"],
             "scored_at": _naive(r["scored_at"])} for r in rows
        ], ["source", "lead_key"])
        marks = RescoreRow.__table__
        for chunk in self._chunks(sorted({r["lead_key"] for r in rows})):
            self.conn.execute(marks.delete().where(marks.c.source == source, self._among(marks.c.lead_key, chunk)))

    def mark_for_rescore(self, source: str, keys: Iterable[str]) -> None:
        """Record that these leads' inputs changed (call in the transaction that stores the change). Only
        leads with a score are marked: the others are due anyway."""
        score, marks = ScoreRow.__table__, RescoreRow.__table__
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        for chunk in self._chunks(sorted(set(keys))):
            scored = sa.select(score.c.source, score.c.lead_key).where(score.c.source == source,
                                                                        self._among(score.c.lead_key, chunk))
            self.conn.execute(insert(marks).from_select(["source", "lead_key"], scored)
                              .on_conflict_do_nothing(index_elements=["source", "lead_key"]))

    def marked_for_rescore(self, source: str) -> set[str]:
        """Leads whose inputs changed since their score (see :class:`RescoreRow`)."""
        t = RescoreRow.__table__
        return set(self.conn.execute(sa.select(t.c.lead_key).where(t.c.source == source)).scalars())

    def scores(self, source: str, keys: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
        t = ScoreRow.__table__
        out: dict[str, dict[str, Any]] = {}
        chunks = self._chunks(sorted(keys)) if keys is not None else [None]
        for chunk in chunks:
            query = sa.select(t).where(t.c.source == source)
            if chunk is not None:
                query = query.where(self._among(t.c.lead_key, chunk))
            for r in self.conn.execute(query):
                row = dict(r._mapping)
                row["scored_at"] = utc(row["scored_at"])
                out[r.lead_key] = row
        return out

    # -- ledger -------------------------------------------------------------------------------------

    def ledger(self, destination: str, operation: str, targets: Sequence[str]) -> dict[str, LedgerEntry]:
        t = LedgerRow.__table__
        out: dict[str, LedgerEntry] = {}
        for chunk in self._chunks(sorted(targets)):
            for r in self.conn.execute(sa.select(t.c.target, t.c.payload_hash, t.c.payload, t.c.remote_id)
                                       .where(t.c.destination == destination, t.c.operation == operation,
                                              self._among(t.c.target, chunk))):
                out[r.target] = LedgerEntry(r.payload_hash, r.payload, r.remote_id)
        return out

    def acknowledge(self, acks: Sequence[tuple[StoredOp, str | None]], now: datetime) -> None:
        """Move the ledger for acknowledged operations and close them in the outbox, in one go."""
        if not acks:
            return
        self._exec_many(LedgerRow.__table__, [
            {"destination": op.destination, "operation": op.operation, "target": op.target,
             "payload_hash": op.payload_hash, "payload": dict(op.payload), "remote_id": remote_id,
             "acknowledged_at": _naive(now)} for op, remote_id in acks
        ], ["destination", "operation", "target"])
        t = OutboxRow.__table__
        plain = [op.id for op, remote_id in acks if remote_id is None]
        for chunk in self._chunks(plain):
            self.conn.execute(t.update().where(self._among(t.c.id, chunk)).values(
                status="acknowledged", updated_at=_naive(now), last_error=None))
        with_remote = [{"op_id": op.id, "rid": remote_id} for op, remote_id in acks if remote_id is not None]
        if with_remote:  # one executemany, not a round trip per record
            self.conn.execute(t.update().where(t.c.id == sa.bindparam("op_id")).values(
                status="acknowledged", remote_id=sa.bindparam("rid"), updated_at=_naive(now), last_error=None),
                with_remote)
        self.audit([("outcome", op.target, {"key": op.idempotency_key, "destination": op.destination,
                                            "operation": op.operation, "outcome": "acknowledged",
                                            "remote_id": remote_id}) for op, remote_id in acks], now)

    # -- outbox -------------------------------------------------------------------------------------

    def enqueue(self, pipeline: str, ops: Sequence[OutboxOp], run_id: int | None, now: datetime) -> int:
        """Add operations (a key already in the outbox is not added twice); supersede older open
        operations for the same target. Returns how many were added."""
        if not ops:
            return 0
        t = OutboxRow.__table__
        keys = [op.idempotency_key for op in ops]
        present: set[str] = set()
        for chunk in self._chunks(keys):
            present.update(self.conn.execute(sa.select(t.c.idempotency_key)
                                             .where(self._among(t.c.idempotency_key, chunk))).scalars())
        fresh = [op for op in ops if op.idempotency_key not in present]
        if not fresh:
            return 0
        # An open or dead-lettered operation for the same target with another payload is now stale: sending
        # it later would put old data back. (Create-once operations never reach here twice for a target:
        # the planner refuses a second one while the first exists in any state.)
        by_slot: dict[tuple[str, str], list[str]] = {}
        for op in fresh:
            by_slot.setdefault((op.destination, op.operation), []).append(op.target)
        for (destination, operation), targets in by_slot.items():
            for chunk in self._chunks(targets):
                self.conn.execute(
                    t.update().where(t.c.destination == destination, t.c.operation == operation,
                                     self._among(t.c.target, chunk), t.c.status.in_(SUPERSEDABLE))
                    .values(status="superseded", updated_at=_naive(now)))
        self._insert_many(t, [
            {"idempotency_key": op.idempotency_key, "pipeline": pipeline, "destination": op.destination,
             "operation": op.operation, "target": op.target, "payload_hash": op.payload_hash,
             "payload": dict(op.payload), "reason": op.reason, "status": "pending", "attempts": 0,
             "run_id": run_id, "created_at": _naive(now), "updated_at": _naive(now)} for op in fresh
        ])
        return len(fresh)

    def open_operations(self, destination: str, operation: str | None = None, *, after_id: int = 0,
                        limit: int | None = None) -> list[StoredOp]:
        """Open operations in outbox order; ``after_id``/``limit`` page through a large outbox."""
        t = OutboxRow.__table__
        query = sa.select(t).where(t.c.destination == destination, t.c.status.in_(OPEN_STATUSES),
                                   t.c.id > after_id)
        if operation is not None:
            query = query.where(t.c.operation == operation)
        if limit is not None:
            query = query.limit(limit)
        return [StoredOp(r.id, r.idempotency_key, r.destination, r.operation, r.target, r.payload_hash,
                         r.payload, r.status, r.attempts)
                for r in self.conn.execute(query.order_by(t.c.id))]

    def open_targets(self, destination: str, operation: str, targets: Iterable[str]) -> dict[str, str]:
        """Open operations' payload hashes for these targets: what is already queued."""
        t = OutboxRow.__table__
        found: dict[str, str] = {}
        for chunk in self._chunks(sorted(set(targets))):
            found.update((target, digest) for target, digest in self.conn.execute(
                sa.select(t.c.target, t.c.payload_hash).where(
                    t.c.destination == destination, t.c.operation == operation, self._among(t.c.target, chunk),
                    t.c.status.in_(OPEN_STATUSES)).order_by(t.c.id)))
        return found

    def planned_targets(self, destination: str, operation: str, targets: Iterable[str]) -> set[str]:
        """Targets with an operation in the outbox in any state but superseded (for create-once operations)."""
        t = OutboxRow.__table__
        found: set[str] = set()
        for chunk in self._chunks(sorted(set(targets))):
            found.update(self.conn.execute(
                sa.select(t.c.target).where(t.c.destination == destination, t.c.operation == operation,
                                            self._among(t.c.target, chunk), t.c.status != "superseded")).scalars())
        return found

    def mark(self, updates: Sequence[tuple[StoredOp, str, str | None]], now: datetime) -> None:
        """Record non-acknowledged outcomes: (operation, status, reason)."""
        if not updates:
            return
        t = OutboxRow.__table__
        self.audit([("outcome", op.target, {"key": op.idempotency_key, "destination": op.destination,
                                            "operation": op.operation, "outcome": status, "reason": reason})
                    for op, status, reason in updates], now)
        groups: dict[tuple[str, str | None], list[int]] = {}
        for op, status, reason in updates:  # one statement per distinct outcome, not per record
            groups.setdefault((status, reason), []).append(op.id)
        for (status, reason), ids in groups.items():
            for chunk in self._chunks(ids):
                self.conn.execute(t.update().where(self._among(t.c.id, chunk)).values(
                    status=status, last_error=reason, attempts=t.c.attempts + 1, updated_at=_naive(now)))

    def outbox_counts(self) -> dict[str, int]:
        t = OutboxRow.__table__
        return {s: int(n) for s, n in self.conn.execute(
            sa.select(t.c.status, sa.func.count()).group_by(t.c.status))}

    def dead_letters(self, where: DeadLetterFilter | None = None, *, limit: int | None = None
                     ) -> list[dict[str, Any]]:
        """Rejected operations (the destination refused them, with its reason), oldest first."""
        t = OutboxRow.__table__
        query = sa.select(t).where(*(where or DeadLetterFilter()).clauses(t)).order_by(t.c.id)
        if limit is not None:
            query = query.limit(limit)
        return [dict(r._mapping) for r in self.conn.execute(query)]

    def replay_dead_letters(self, where: DeadLetterFilter, now: datetime) -> int:
        """Put matching dead letters back in the queue (fresh attempts); they go out on the next run."""
        t = OutboxRow.__table__
        result = self.conn.execute(t.update().where(*where.clauses(t)).values(
            status="pending", attempts=0, last_error=None, updated_at=_naive(now)))
        return int(result.rowcount or 0)

    def discard_dead_letters(self, where: DeadLetterFilter, now: datetime) -> int:
        """Give up on matching dead letters; kept as ``discarded`` for the record, never sent."""
        t = OutboxRow.__table__
        result = self.conn.execute(t.update().where(*where.clauses(t)).values(
            status="discarded", updated_at=_naive(now)))
        return int(result.rowcount or 0)

    # -- runs ---------------------------------------------------------------------------------------

    def close_abandoned_runs(self, pipeline: str, now: datetime) -> int:
        """Runs of ``pipeline`` still marked running: called by the lock holder, so their process is gone
        (killed, or its machine lost). They are closed as ``abandoned``; their work resumes from the store."""
        t = RunRow.__table__
        result = self.conn.execute(t.update().where(
            t.c.pipeline == pipeline, t.c.status == "running", t.c.dry_run.is_(False)).values(
            status="abandoned", finished_at=_naive(now),
            error="the process running it stopped before it finished (killed or lost)"))
        return int(result.rowcount or 0)

    def start_run(self, pipeline: str, now: datetime, *, dry_run: bool, agent: str | None = None) -> int:
        result = self.conn.execute(RunRow.__table__.insert().values(
            pipeline=pipeline, dry_run=dry_run, started_at=_naive(now), status="running", counts={}, agent=agent))
        run_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        self.checkpoint()
        return int(run_id)  # type: ignore[arg-type]

    def finish_run(self, run_id: int, now: datetime, status: str, counts: Mapping[str, Any],
                   error: str | None = None) -> None:
        t = RunRow.__table__
        self.conn.execute(t.update().where(t.c.id == run_id).values(
            finished_at=_naive(now), status=status, counts=dict(counts), error=error))
        self.checkpoint()

    def runs(self, pipeline: str | None = None, limit: int = 20) -> list[dict[str, Any]]:
        t = RunRow.__table__
        query = sa.select(t).order_by(t.c.id.desc()).limit(limit)
        if pipeline:
            query = query.where(t.c.pipeline == pipeline)
        return [dict(r._mapping) for r in self.conn.execute(query)]


__all__ = [
    "SCHEMA_VERSION",
    "ActivityType",
    "DeadLetterFilter",
    "LedgerEntry",
    "OutboxOp",
    "Store",
    "StoredOp",
    "Unit",
    "content_hash",
    "driver_url",
    "model_metadata",
    "store_ready",
    "utc",
]
