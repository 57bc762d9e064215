"""Fixtures of the sync tests: every store test runs on SQLite and on the real PostgreSQL server; the
pipeline, fault and crash tests share one trained model and the rig of ``tests/sync/rig.py``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sync.store import Store
from tests.sync.pgdb import own_database
from tests.sync.rig import Rig, make_rig, train_model


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database of this test session's own (created on the server at ``PG_URL``, dropped at
    the end), so concurrent test runs on one server never drop each other's tables."""
    with own_database(f"leadrelay_test_{os.getpid()}") as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    s.drop_all()
    s.create_all()
    yield s
    s.drop_all()
    s.close()


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model trained once per test session from a sandbox history."""
    return train_model(tmp_path_factory.mktemp("train"))


RigFactory = Callable[..., Rig]


@pytest.fixture
def rig_factory(tmp_path: Path, model_dir: Path) -> Iterator[RigFactory]:
    """Makes rigs (see ``rig.make_rig``): each a seeded sandbox on its own loopback port, with its own store."""
    with contextlib.ExitStack() as servers:
        made = 0

        def make(contacts: int = 250, **options: Any) -> Rig:
            nonlocal made
            made += 1
            return make_rig(servers, tmp_path / f"rig{made}", model_dir, contacts, **options)

        yield make
