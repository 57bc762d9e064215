"""The rig the Marketo connector tests share (no tests here): a fake clock whose sleeps move time, and
connectors built the way the framework builds them, pointed at a Marketo sandbox."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from connectors.base import Page, Quarantined, Record
from connectors.http import HttpLayer, RateLimiter, RetrySettings, build_client
from connectors.marketo import MarketoConfig, MarketoConnector
from connectors.sandbox.marketo import MarketoSandbox

CLIENT_ID = "planted-client-id-3c1f"
SECRET = "planted-marketo-secret-77aa19"
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


class Clock:
    """The one clock of a test: the sandbox reads it, the connector's waits move it instead of sleeping."""

    def __init__(self, start: datetime = START) -> None:
        self.now = start
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)
        await yield_a_little(seconds)  # as a real sleep would, let the other tasks run meanwhile

    def monotonic(self) -> float:
        return self.now.timestamp()


async def yield_a_little(seconds: float) -> None:
    """The sandbox's injected latency in-process: hand the loop to every other request a few times, so
    concurrent calls overlap without any real waiting."""
    for _ in range(10):
        await asyncio.sleep(0)


def make_sandbox(clock: Clock, **options: Any) -> MarketoSandbox:
    options.setdefault("credentials", {CLIENT_ID: SECRET})
    return MarketoSandbox(clock=clock, **options)


def make_connector(base_url: str, clock: Clock, *, transport: httpx.AsyncBaseTransport | None = None,
                   attempts: int = 3, paced: bool = False, **options: Any) -> MarketoConnector:
    """A connector as ``sync.pipeline.build_connector`` makes one; ``paced`` adds the rate limiter with the
    config's budget on the test clock."""
    options.setdefault("client_id", CLIENT_ID)
    options.setdefault("client_secret", SECRET)
    options.setdefault("start_date", datetime(2020, 1, 1, tzinfo=UTC))
    config = MarketoConfig(base_url=base_url, **options)
    client = build_client(base_url, headers=MarketoConnector.client_headers(config), transport=transport)
    limiter = None
    if paced:
        limiter = RateLimiter(MarketoConnector.rate_limit_for(config), clock=clock.monotonic, sleep=clock.sleep,
                              now=clock)
    http = HttpLayer(client, name="marketo", retry=RetrySettings(attempts=attempts, jitter=0.0),
                     limiter=limiter, sleep=clock.sleep)
    return MarketoConnector(config, http, now=clock)


async def collect(pages: AsyncIterator[Page]) -> tuple[list[Record], list[Quarantined], list[str | None]]:
    """Every record, quarantined row and cursor of a pull."""
    records: list[Record] = []
    bad: list[Quarantined] = []
    cursors: list[str | None] = []
    async for page in pages:
        records.extend(page.records)
        bad.extend(page.quarantined)
        cursors.append(page.cursor)
    return records, bad, cursors
