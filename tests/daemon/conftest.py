"""Fixtures of the daemon tests: a PostgreSQL database of their own (so agents and lease tests never clash
with other tests on ``test``), SQLite files, and the session's trained model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.sync.conftest import model_dir, rig_factory  # noqa: F401 - shared fixtures
from tests.sync.pgdb import own_database


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test (dropped after it); its URL."""
    with own_database("leadrelay_daemon") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, then a fresh PostgreSQL database."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'store.db'}"
        return
    yield request.getfixturevalue("pg_database")
