"""Shared fixtures: the async backend for anyio-marked tests."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"
