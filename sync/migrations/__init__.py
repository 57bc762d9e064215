"""The store's schema migrations (alembic). ``sync.store.Store.migrate`` runs them; see ``env.py``."""

from __future__ import annotations

import functools
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

HERE = Path(__file__).parent
BASELINE = "0001"   # the store as of leadrelay's first releases (commit 94c39f6): store tables only
DECISIONS = "0002"  # + consent timeline, memberships, assignments, holdouts and the audit log
# A table every leadrelay store has had since the baseline: its presence says "a store, unversioned".
_STORE_MARK = "run"
_PG_LOCK = 0x1EAD_0001  # advisory lock key: one agent migrates at a time


def config(connection: sa.Connection | None = None) -> Config:
    """The alembic configuration, built in code (no ``alembic.ini`` needed at run time)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(HERE))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def head() -> str:
    """The newest revision (the revisions ship with the package, so it never changes while running)."""
    heads = ScriptDirectory.from_config(config()).get_heads()
    if len(heads) != 1:
        raise RuntimeError(f"the store's migrations have {len(heads)} heads ({', '.join(heads)}); merge them")
    return heads[0]


def current(conn: sa.Connection) -> str | None:
    """The revision the store is at (``None``: empty, or made before migrations existed)."""
    return MigrationContext.configure(conn).get_current_revision()


def unversioned_revision(conn: sa.Connection) -> str | None:
    """The revision a store made without alembic matches, told by its tables; ``None`` for an empty one."""
    tables = set(sa.inspect(conn).get_table_names())
    if _STORE_MARK not in tables:
        return None
    return DECISIONS if "audit_log" in tables else BASELINE


def begin(conn: sa.Connection, *, lock: bool) -> None:
    """Open the transaction the migration runs in. SQLite's Python driver starts transactions only before
    data changes, so DDL would commit statement by statement: a savepoint opens a real transaction (the
    whole migration lands or none of it, and a dry run rolls it back). On PostgreSQL an advisory lock
    makes agents starting together migrate one after the other."""
    if conn.dialect.name == "sqlite":
        if not getattr(conn.connection.dbapi_connection, "in_transaction", False):
            conn.exec_driver_sql("SAVEPOINT leadrelay_migrate")
    elif conn.dialect.name == "postgresql" and lock:
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_LOCK})


def upgrade(conn: sa.Connection, target: str = "head", *, lock: bool = True) -> tuple[str | None, str | None]:
    """Migrate the store behind ``conn`` to ``target`` inside the connection's transaction (the caller
    commits or rolls back). Returns (revision before, revision after). ``lock=False`` (a dry run, which
    rolls back) skips PostgreSQL's advisory lock so it never waits for, or holds up, other agents."""
    from sync.store import model_metadata

    before = current(conn)
    if before is not None and target == "head" and before == head():
        return before, before  # the common case: nothing to do, no lock taken
    begin(conn, lock=lock)
    before = current(conn)  # another agent may have migrated while this one waited for the lock
    cfg = config(conn)
    if before is None:
        found = unversioned_revision(conn)
        if found is None and target == "head":
            # An empty store: the models are the newest schema (a test keeps them equal to the migrations).
            model_metadata().create_all(conn)
            command.stamp(cfg, "head")
            return None, current(conn)
        if found is not None:
            command.stamp(cfg, found)
    command.upgrade(cfg, target)
    return before, current(conn)


__all__ = ["BASELINE", "DECISIONS", "begin", "config", "current", "head", "unversioned_revision", "upgrade"]
