"""Store upgrades: versioned schema, migrated on start, on SQLite and PostgreSQL (a database of its own).

A store made by leadrelay before migrations existed (the DDL of commit 94c39f6, kept in tests/sync/data) is
recognised, stamped and upgraded with its data kept; the models and the migrations never differ (the
``alembic check`` of CI: a table change without a revision fails here)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner

from sync import migrations
from sync.leases import ensure_tables
from sync.store import Store, model_metadata
from tests.sync import pgdb

empty_url = pgdb.empty_url  # the fixture: SQLite, and a PostgreSQL database of its own

DATA = Path(__file__).parent / "data"


def create_94c39f6_store(url: str) -> None:
    """The schema exactly as leadrelay's create_all made it at commit 94c39f6, with a little data in it."""
    dialect = "postgresql" if url.startswith("postgresql") else "sqlite"
    lines = (DATA / f"store_94c39f6.{dialect}.sql").read_text().splitlines()
    ddl = "\n".join(line for line in lines if not line.startswith("--"))
    statements = [s.strip() for s in ddl.split(";") if s.strip()]
    engine = sa.create_engine(url)
    at = datetime(2026, 5, 1, 12, 0)
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
        conn.execute(sa.text("INSERT INTO leadrelay_meta (key, value) VALUES ('schema_version', '1')"))
        conn.execute(sa.text(
            "INSERT INTO lead (source, key, email, updated_at, attributes, content_hash) "
            "VALUES ('hubspot', '101', 'jane@acme.com', :at, :attrs, 'h1')"), {"at": at, "attrs": json.dumps({"x": 1})})
        conn.execute(sa.text(
            "INSERT INTO run (pipeline, dry_run, started_at, finished_at, status, counts) "
            "VALUES ('main', false, :at, :at, 'succeeded', :counts)"), {"at": at, "counts": json.dumps({"scored": 3})})
        conn.execute(sa.text(
            "INSERT INTO outbox (idempotency_key, pipeline, destination, operation, target, payload_hash, payload, "
            "reason, status, attempts, created_at, updated_at) VALUES ('k1', 'main', 'hubspot', 'update_lead', "
            "'101', 'p1', :payload, 'scored', 'rejected', 1, :at, :at)"),
            {"at": at, "payload": json.dumps({"score": 9})})
    engine.dispose()


def schema_diff(url: str) -> list[object]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), model_metadata())
    engine.dispose()
    return diff


def tables(url: str) -> set[str]:
    engine = sa.create_engine(url)
    try:
        return set(sa.inspect(engine).get_table_names())
    finally:
        engine.dispose()


def test_store_from_before_migrations_is_stamped_and_upgraded_with_data_kept(empty_url: str) -> None:
    """A 94c39f6 store is recognised as the baseline, upgraded to the newest revision, keeps its rows, gains the
    new tables and columns, and then matches the models exactly."""
    create_94c39f6_store(empty_url)
    store = Store(empty_url)
    assert store.schema_revision() == (None, migrations.head())
    before, after = store.migrate()
    assert (before, after) == (None, migrations.head())
    with store.unit(dry_run=True) as unit:
        runs = unit.runs("main")
        assert [(r["status"], r["counts"], r["agent"]) for r in runs] == [("succeeded", {"scored": 3}, None)]
        assert unit.load_leads("hubspot", ["101"])[0]["email"] == "jane@acme.com"
        assert [d["idempotency_key"] for d in unit.dead_letters()] == ["k1"]
        unit.start_run("main", datetime(2026, 6, 1), dry_run=False, agent="agent-a")
    assert {"audit_log", "consent_event", "membership", "lease", "alert_state", "source_fields"} <= tables(empty_url)
    assert store.schema_revision() == (migrations.head(), migrations.head())
    assert store.migrate() == (migrations.head(), migrations.head())  # a second start changes nothing
    store.close()
    assert schema_diff(empty_url) == []


def test_unversioned_store_with_decision_tables_is_stamped_at_their_revision(empty_url: str) -> None:
    """A store made by create_all after the decisions landed (audit_log present, no alembic_version) is stamped
    at that revision, not the baseline, so its tables are not created twice; tables a later version already
    created on its own (the agents' leases) are kept, not created again."""
    engine = sa.create_engine(empty_url)
    with engine.connect() as conn:
        command.upgrade(migrations.config(conn), migrations.DECISIONS)
        conn.execute(sa.text("DROP TABLE alembic_version"))
        conn.commit()
        assert migrations.unversioned_revision(conn) == migrations.DECISIONS
    engine.dispose()
    store = Store(empty_url)
    ensure_tables(store)
    assert store.migrate() == (None, migrations.head())
    store.close()
    assert schema_diff(empty_url) == []


def test_models_and_migrations_do_not_differ(empty_url: str) -> None:
    """Running every revision from nothing gives exactly the models' schema (autogenerate finds no change), and
    an empty store created from the models is stamped at the newest revision."""
    engine = sa.create_engine(empty_url)
    with engine.connect() as conn:
        command.upgrade(migrations.config(conn), "head")
        conn.commit()
    engine.dispose()
    assert schema_diff(empty_url) == []
    fresh = empty_url.replace("old.db", "fresh.db") if empty_url.startswith("sqlite") else None
    if fresh is not None:
        store = Store(fresh)
        assert store.migrate() == (None, migrations.head())
        store.close()
        assert schema_diff(fresh) == []


def test_dry_run_sees_the_new_schema_and_leaves_the_old_store_untouched(empty_url: str) -> None:
    """ensure_schema in a dry run's unit migrates inside the transaction (the run can use new columns) and the
    rollback leaves the old store exactly as it was: no alembic_version, no new table."""
    create_94c39f6_store(empty_url)
    before = tables(empty_url)
    store = Store(empty_url)
    with store.unit(dry_run=True) as unit:
        unit.ensure_schema()
        run_id = unit.start_run("main", datetime(2026, 6, 1), dry_run=True, agent="dry")
        assert run_id > 0
        assert "alert_state" in sa.inspect(unit.conn).get_table_names()
    assert store.schema_revision()[0] is None
    store.close()
    assert tables(empty_url) == before


def test_store_commands(tmp_path: Path) -> None:
    """`leadrelay store version` says how far behind a store is; `store upgrade` brings it to the newest."""
    from sync.cli import main

    url = f"sqlite:///{tmp_path / 'old.db'}"
    create_94c39f6_store(url)
    config = tmp_path / "leadrelay.toml"
    config.write_text(f'[store]\nurl = "{url}"\n[connections.h]\ntype = "hubspot"\ntoken = "t"\n'
                      '[pipelines.main]\nsource = "h"\ndestination = "h"\n')
    runner = CliRunner()
    version = runner.invoke(main, ["-c", str(config), "store", "version"])
    assert version.exit_code == 0, version.output
    assert "unversioned" in version.output
    assert migrations.head() in version.output
    upgraded = runner.invoke(main, ["-c", str(config), "store", "upgrade"])
    assert upgraded.exit_code == 0, upgraded.output
    assert f"-> {migrations.head()}" in upgraded.output
    again = runner.invoke(main, ["-c", str(config), "store", "version"])
    assert "up to date" in again.output
