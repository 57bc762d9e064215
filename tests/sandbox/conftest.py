"""Fixtures for the sandbox tests: an injectable clock and an httpx client bound to a sandbox app."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from connectors.sandbox import HubSpotSandbox

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NOW = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    """A UTC clock that only moves when a test moves it."""

    def __init__(self, now: datetime = NOW) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


MakeSandbox = Callable[..., HubSpotSandbox]
MakeClient = Callable[[HubSpotSandbox], httpx.AsyncClient]


@pytest.fixture
def make_sandbox(clock: FakeClock) -> MakeSandbox:
    """A sandbox factory with the test token and clock; keyword arguments go to HubSpotSandbox."""

    def make(**kwargs: Any) -> HubSpotSandbox:
        kwargs.setdefault("token", TOKEN)
        kwargs.setdefault("clock", clock)
        return HubSpotSandbox(**kwargs)

    return make


@pytest.fixture
def sandbox(make_sandbox: MakeSandbox) -> HubSpotSandbox:
    return make_sandbox()


@pytest.fixture
def make_client() -> MakeClient:
    """An httpx client factory bound to a sandbox app in-process, authenticated with the test token."""

    def make(sandbox: HubSpotSandbox) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            transport=httpx.ASGITransport(app=sandbox.app), base_url="https://api.hubapi.com", headers=AUTH
        )

    return make


@pytest.fixture
async def client(sandbox: HubSpotSandbox, make_client: MakeClient) -> AsyncIterator[httpx.AsyncClient]:
    async with make_client(sandbox) as c:
        yield c
