"""The Meta connector against the Meta sandbox over real loopback sockets."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import FixConfiguration, Outcome, RecordOutcome, WriteRecord
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.meta import MetaConfig, MetaConnector
from connectors.sandbox import FaultSettings, serve_on_loopback
from connectors.sandbox.faults import Fate, FaultInjector
from connectors.sandbox.meta import MetaLimits, MetaSandbox

pytestmark = pytest.mark.anyio

TOKEN = "EAAG-planted-loopback-token-9f8e7d"
APP_SECRET = "planted-loopback-app-secret-42"
ACCOUNT = "1000000000001"
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class Clock:
    """The sandbox's clock; the connector's waits move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = START
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> MetaSandbox:
    return MetaSandbox(token=TOKEN, app_secret=APP_SECRET, ad_account_id=ACCOUNT, clock=clock)


@pytest.fixture
def base_url(sandbox: MetaSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield f"{url}/v25.0"


class Connectors:
    """Builds connectors against one base URL and closes their clients when the test ends."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.made: list[MetaConnector] = []

    def __call__(self, base_url: str, **options: Any) -> MetaConnector:
        options.setdefault("access_token", TOKEN)
        options.setdefault("app_secret", APP_SECRET)
        config = MetaConfig(base_url=base_url, ad_account_id=f"act_{ACCOUNT}", **options)
        client = build_client(base_url, headers=MetaConnector.client_headers(config))
        http = HttpLayer(client, name="meta", retry=RetrySettings(attempts=3, jitter=0.0), sleep=self.clock.sleep)
        self.made.append(MetaConnector(config, http))
        return self.made[-1]


@pytest.fixture
async def connector(clock: Clock) -> AsyncIterator[Connectors]:
    made = Connectors(clock)
    yield made
    for meta in made.made:
        await meta.http.client.aclose()


def people(audience: str, count: int, *, start: int = 0, operation: str = "add") -> list[WriteRecord]:
    return [WriteRecord(f"lead-{n}", f"{operation}:{audience}:{n}",
                        {"audience_id": audience, "email": f"  Person{n}@Example.com ", "country": "US"})
            for n in range(start, start + count)]


def outcomes_of(results: list[RecordOutcome]) -> set[Outcome]:
    return {r.outcome for r in results}


async def test_adds_and_removes_land(connector: Connectors, base_url: str, sandbox: MetaSandbox) -> None:
    """Adds put the people's e-mail hashes in the audience; removes take exactly those out again."""
    meta = connector(base_url)
    await meta.check()
    audience = await meta.create_audience("Hot leads", description="score band A")
    added = await meta.write_batch("audience_add", people(audience, 6))
    assert outcomes_of(added) == {Outcome.ACKNOWLEDGED}
    assert sandbox.member_values(audience) == {sha(f"person{n}@example.com") for n in range(6)}
    removed = await meta.write_batch("audience_remove", people(audience, 2, operation="remove"))
    assert outcomes_of(removed) == {Outcome.ACKNOWLEDGED}
    assert sandbox.member_values(audience) == {sha(f"person{n}@example.com") for n in range(2, 6)}
    assert sandbox.members(audience)[0]["COUNTRY"] == sha("us")


async def test_batch_over_10000_rows_is_split_into_one_session(connector: Connectors, base_url: str,
                                                               sandbox: MetaSandbox) -> None:
    """10,001 records go as two requests of one session; every row is received and acknowledged once."""
    meta = connector(base_url)
    audience = sandbox.create_audience("big")
    results = await meta.write_batch("audience_add", people(audience, 10_001))
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.requests["POST /{audience_id}/users"] == 2
    session = sandbox.session(audience, int(results[0].remote_id or 0))
    assert (session["num_received"], session["stage"]) == ("10001", "finished")
    assert len(sandbox.members(audience)) == 10_001


async def test_session_fields_across_batches(connector: Connectors, base_url: str, sandbox: MetaSandbox) -> None:
    """With 4 rows a request, 10 rows make batches 1-3 of one session, finished by the last; a second
    audience in the same write batch gets its own session."""
    meta = connector(base_url, rows_per_request=4)
    first, second = sandbox.create_audience("first"), sandbox.create_audience("second")
    results = await meta.write_batch("audience_add", people(first, 10) + people(second, 3))
    ids = {r.remote_id for r in results[:10]}
    assert len(ids) == 1
    assert results[10].remote_id not in ids
    session = sandbox.audiences[first].sessions[int(results[0].remote_id or 0)]
    assert (sorted(session.batches), session.last_seq, session.estimated_total) == ([1, 2, 3], 3, 10)
    assert [b.received for _, b in sorted(session.batches.items())] == [4, 4, 2]
    assert sandbox.stats.requests["POST /{audience_id}/users"] == 4


def _seed_for(settings: FaultSettings, fates: list[Fate]) -> int:
    """A seed whose first requests meet ``fates`` (the injector is deterministic per seed)."""
    for seed in range(10_000):
        injector = FaultInjector(settings, seed)
        if [injector.for_request().fate for _ in fates] == fates:
            return seed
    raise AssertionError("no seed found")


async def test_retry_after_a_dropped_connection_does_not_double_count(connector: Connectors, clock: Clock) -> None:
    """An upload applied but unanswered is resent with the same session batch: members and Meta's counts
    stay single, and the match rate is right."""
    faults = FaultSettings(timeout_rate=0.5, timeout_applies_share=1.0)
    sandbox = MetaSandbox(token=TOKEN, app_secret=APP_SECRET, ad_account_id=ACCOUNT, clock=clock, faults=faults,
                          seed=_seed_for(faults, [Fate.DROP_AFTER, Fate.NORMAL, Fate.NORMAL]),
                          known_people=[{"EMAIL": sha(f"person{n}@example.com")} for n in range(0, 8, 2)])
    audience = sandbox.create_audience("retry")
    with serve_on_loopback(sandbox.app) as url:
        meta = connector(f"{url}/v25.0")
        results = await meta.write_batch("audience_add", people(audience, 8))
        assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
        assert sandbox.stats.dropped_connections == 1
        assert sandbox.stats.rows_received == 16  # the row traffic arrived twice…
        rate = await meta.match_rate(audience, results[0].remote_id or "")
    assert (rate.received, rate.matched, rate.invalid) == (8, 4, 0)  # …but the session counts it once
    assert rate.rate == 0.5
    assert len(sandbox.members(audience)) == 8


async def test_match_rate_counts_every_row_sent(connector: Connectors, base_url: str, sandbox: MetaSandbox) -> None:
    """matched ÷ rows sent: 3 of 10 people are known to Meta, so the rate is 0.3; unmatched rows still count."""
    audience = sandbox.create_audience("rate")
    sandbox.add_known_people([{"EMAIL": sha(f"person{n}@example.com")} for n in (1, 4, 7)])
    meta = connector(base_url)
    results = await meta.write_batch("audience_add", people(audience, 10))
    rate = await meta.match_rate(audience, results[0].remote_id or "")
    assert (rate.received, rate.matched, rate.rate, rate.stage) == (10, 3, 0.3, "finished")
    assert sandbox.matched_people(audience) == 3


async def test_flagged_audience_surfaces_clearly(connector: Connectors, base_url: str, sandbox: MetaSandbox) -> None:
    """A flagged audience's rows are rejected with Meta's title and what to do; other audiences still land."""
    blocked, fine = sandbox.create_audience("blocked"), sandbox.create_audience("fine")
    sandbox.flag_audience(blocked)
    meta = connector(base_url)
    results = await meta.write_batch("audience_add", people(blocked, 2) + people(fine, 2))
    assert [r.outcome for r in results] == [Outcome.REJECTED] * 2 + [Outcome.ACKNOWLEDGED] * 2
    reason = results[0].reason or ""
    assert "Meta error 100/1713230" in reason
    assert "Audience Upload Blocked" in reason
    assert "Audience Manager" in reason
    assert sandbox.members(blocked) == []


async def test_throttle_waits_for_the_estimate_then_succeeds(connector: Connectors, clock: Clock) -> None:
    """Over the ad account's budget, the connector waits Meta's estimate (on the injected clock) and goes on."""
    sandbox = MetaSandbox(token=TOKEN, app_secret=APP_SECRET, ad_account_id=ACCOUNT, clock=clock,
                          limits=MetaLimits(calls_per_hour=2, per_audience=0, window_seconds=240))
    audience = sandbox.create_audience("throttled")
    with serve_on_loopback(sandbox.app) as url:
        meta = connector(f"{url}/v25.0", rows_per_request=2)
        results = await meta.write_batch("audience_add", people(audience, 6))
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert 240.0 in clock.waits  # 4 minutes, from estimated_time_to_regain_access
    assert sandbox.stats.status_codes[400] >= 1
    assert len(sandbox.members(audience)) == 6


async def test_no_secret_or_raw_pii_in_logs_or_errors(connector: Connectors, base_url: str,
                                                       sandbox: MetaSandbox, caplog: pytest.LogCaptureFixture) -> None:
    """The token, the app secret and a planted e-mail appear in no log line, exception or outcome."""
    planted = "Planted.Person@Secret-Example.org"
    caplog.set_level(logging.DEBUG)
    texts: list[str] = []
    audience = sandbox.create_audience("private")
    meta = connector(base_url)
    record = WriteRecord("lead-x", "add:x", {"audience_id": audience, "email": planted, "first_name": "Planted"})
    texts += [str(r) for r in await meta.write_batch("audience_add", [record])]
    sandbox.flag_audience(audience)
    texts += [str(r) for r in await meta.write_batch("audience_remove", [record])]
    with pytest.raises(FixConfiguration) as bad_token:
        await connector(base_url, access_token=TOKEN + "-wrong").check()
    with pytest.raises(FixConfiguration) as bad_proof:
        await connector(base_url, app_secret=APP_SECRET + "-wrong").check()
    texts += [str(bad_token.value), str(bad_proof.value), repr(bad_token.value)]
    texts += [caplog.text, *(r.getMessage() for r in caplog.records)]
    assert sandbox.member_values(audience) == {sha(planted.lower())}
    for text in texts:
        for secret in (TOKEN, APP_SECRET, planted, planted.lower(), "planted.person"):
            assert secret not in text
    assert any("users" in r.getMessage() for r in caplog.records)  # the HTTP requests were logged
