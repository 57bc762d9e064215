"""Alembic environment of the store.

At run time ``sync.store`` builds the alembic ``Config`` in code and passes its open connection in
``config.attributes["connection"]`` (no ``alembic.ini`` on disk). Authors of a new revision run alembic
against a scratch store: ``LEADRELAY_STORE_URL=sqlite:///scratch.db alembic -c sync/migrations/alembic.ini
revision --autogenerate -m "what changed"``.
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import context

from sync.store import driver_url, model_metadata

config = context.config
target_metadata = model_metadata()


def _configure(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        compare_type=True,
        # SQLite alters tables by copying them: alembic's batch mode does that when a revision asks for it.
        render_as_batch=connection.dialect.name == "sqlite",
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    url = os.environ.get("LEADRELAY_STORE_URL") or config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("set LEADRELAY_STORE_URL to the store to migrate")
    engine = sa.create_engine(driver_url(url))
    with engine.connect() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (SQL script) migrations are not supported; run them against the store")
run_migrations_online()
