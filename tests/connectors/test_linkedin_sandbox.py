"""The LinkedIn connector against the LinkedIn sandbox over real loopback sockets."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import FixConfiguration, Outcome, QuotaExhausted, RecordOutcome, WriteRecord
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.linkedin import LinkedInConfig, LinkedInConnector
from connectors.sandbox import FaultSettings, serve_on_loopback
from connectors.sandbox.faults import FaultInjector
from connectors.sandbox.linkedin import LinkedInLimits, LinkedInSandbox

pytestmark = pytest.mark.anyio

TOKEN = "AQV-planted-linkedin-token-77"
ACCOUNT = "500000001"
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
def sandbox(clock: Clock) -> LinkedInSandbox:
    return LinkedInSandbox(token=TOKEN, ad_account_id=ACCOUNT, clock=clock)


@pytest.fixture
def base_url(sandbox: LinkedInSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield f"{url}/rest"


class Connectors:
    """Builds connectors against one base URL and closes their clients when the test ends."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.made: list[LinkedInConnector] = []

    def __call__(self, base_url: str, **options: Any) -> LinkedInConnector:
        options.setdefault("access_token", TOKEN)
        options.setdefault("linkedin_version", "202605")
        config = LinkedInConfig(base_url=base_url, ad_account_id=f"urn:li:sponsoredAccount:{ACCOUNT}", **options)
        client = build_client(base_url, headers=LinkedInConnector.client_headers(config))
        http = HttpLayer(client, name="linkedin", retry=RetrySettings(attempts=3, jitter=0.0), sleep=self.clock.sleep)
        self.made.append(LinkedInConnector(config, http, now=self.clock))
        return self.made[-1]


@pytest.fixture
async def connector(clock: Clock) -> AsyncIterator[Connectors]:
    made = Connectors(clock)
    yield made
    for linkedin in made.made:
        await linkedin.http.client.aclose()


def people(segment: str, count: int, *, start: int = 0) -> list[WriteRecord]:
    return [WriteRecord(f"lead-{n}", f"{segment}:{n}", {"audience_id": segment, "email": f" Person{n}@Example.com"})
            for n in range(start, start + count)]


def outcomes_of(results: list[RecordOutcome]) -> set[Outcome]:
    return {r.outcome for r in results}


async def test_adds_and_removes_land_with_the_required_headers(connector: Connectors, base_url: str,
                                                              sandbox: LinkedInSandbox) -> None:
    """Adds put the people's normalised e-mail hashes in the segment and removes take them out, each sent as a
    BATCH_CREATE with LinkedIn-Version and Rest.li 2.0.0 headers."""
    linkedin = connector(base_url)
    await linkedin.check()
    segment = sandbox.create_segment("Hot leads", account_id=ACCOUNT)
    added = await linkedin.write_batch("audience_add", people(segment, 5))
    assert outcomes_of(added) == {Outcome.ACKNOWLEDGED}
    assert sandbox.member_values(segment) == {sha(f"person{n}@example.com") for n in range(5)}
    removed = await linkedin.write_batch("audience_remove", people(segment, 2))
    assert outcomes_of(removed) == {Outcome.ACKNOWLEDGED}
    assert sandbox.member_values(segment) == {sha(f"person{n}@example.com") for n in range(2, 5)}
    for headers in sandbox.stats.headers_seen:
        assert (headers["x-restli-method"], headers["x-restli-protocol-version"], headers["linkedin-version"]) == (
            "BATCH_CREATE", "2.0.0", "202605")


async def test_batches_split_at_the_element_limit(connector: Connectors, clock: Clock) -> None:
    """5,001 people go as two requests when the limit is 5,000 elements; none is larger; all land."""
    sandbox = LinkedInSandbox(token=TOKEN, ad_account_id=ACCOUNT, clock=clock)
    segment = sandbox.create_segment("big")
    with serve_on_loopback(sandbox.app) as url:
        results = await connector(f"{url}/rest").write_batch("audience_add", people(segment, 5_001))
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.requests["POST /rest/dmpSegments/{id}/users"] == 2
    assert sandbox.stats.largest_batch == 5_000
    assert sandbox.member_count(segment) == 5_001


async def test_element_statuses_map_to_the_right_records(connector: Connectors, clock: Clock) -> None:
    """Elements LinkedIn refuses (400) are rejected with LinkedIn's message, elements answered 500 stay
    retryable, and the rest are acknowledged, each on exactly its own record."""
    faults = FaultSettings(partial_failure_rate=0.25, batch_rejection_share=0.2)
    sandbox = LinkedInSandbox(token=TOKEN, ad_account_id=ACCOUNT, clock=clock, faults=faults, seed=3)
    segment = sandbox.create_segment("partial")
    predictor = FaultInjector(faults, 3)
    expected = []
    for n in range(20):
        if predictor.poisoned(sha(f"person{n}@example.com")):
            expected.append(Outcome.REJECTED)
        else:
            expected.append(Outcome.RETRYABLE if predictor.input_fails() else Outcome.ACKNOWLEDGED)
    assert {Outcome.REJECTED, Outcome.RETRYABLE} <= set(expected)  # the seed exercises both kinds
    with serve_on_loopback(sandbox.app) as url:
        results = await connector(f"{url}/rest").write_batch("audience_add", people(segment, 20))
    assert [r.outcome for r in results] == expected
    assert all("status 400" in (r.reason or "") for r in results if r.outcome is Outcome.REJECTED)
    landed = {sha(f"person{n}@example.com") for n, o in enumerate(expected) if o is Outcome.ACKNOWLEDGED}
    assert sandbox.member_values(segment) == landed


async def test_names_are_sent_only_when_enabled(connector: Connectors, base_url: str, sandbox: LinkedInSandbox) -> None:
    """With send_names, a person without an e-mail goes by first and last name (cut to LinkedIn's 35
    characters); without it such a person is rejected before anything is sent."""
    segment = sandbox.create_segment("names")
    record = WriteRecord("a", "a", {"audience_id": segment, "first_name": "Ann" * 20, "last_name": "Lee",
                                    "country": "us"})
    [plain] = await connector(base_url).write_batch("audience_add", [record])
    assert plain.outcome is Outcome.REJECTED
    assert "no identifier LinkedIn can match on" in (plain.reason or "")
    assert sandbox.stats.elements_received == 0
    [named] = await connector(base_url, send_names=True).write_batch("audience_add", [record])
    assert named.outcome is Outcome.ACKNOWLEDGED
    assert sandbox.member_values(segment, "NAME") == {f"{('ann' * 20)[:35]}|lee|US"}


async def test_429_without_headers_backs_off_on_its_own_schedule(connector: Connectors, clock: Clock) -> None:
    """Over the per-minute limit LinkedIn answers a bare 429; the connector waits its own back-off (a minute,
    on the injected clock) and the rest of the batch goes through."""
    sandbox = LinkedInSandbox(token=TOKEN, ad_account_id=ACCOUNT, clock=clock,
                              limits=LinkedInLimits(users_per_minute=2))
    segment = sandbox.create_segment("throttled")
    with serve_on_loopback(sandbox.app) as url:
        results = await connector(f"{url}/rest", elements_per_request=2).write_batch("audience_add",
                                                                                     people(segment, 6))
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.status_codes[429] == 1
    assert clock.waits == [60.0]
    assert sandbox.member_count(segment) == 6


async def test_429_that_does_not_end_is_taken_as_the_daily_limit(connector: Connectors, clock: Clock) -> None:
    """429s that outlast the back-off schedule end the run with QuotaExhausted until midnight UTC, after waits of
    60 s and 120 s (a streak past five minutes is no per-minute limit)."""
    sandbox = LinkedInSandbox(token=TOKEN, ad_account_id=ACCOUNT, clock=clock, limits=LinkedInLimits(daily=1))
    segment = sandbox.create_segment("daily")
    with serve_on_loopback(sandbox.app) as url:
        linkedin = connector(f"{url}/rest", elements_per_request=2)
        first = await linkedin.write_batch("audience_add", people(segment, 2))  # spends the day's one call
        with pytest.raises(QuotaExhausted) as raised:
            await linkedin.write_batch("audience_add", people(segment, 2, start=2))
    assert outcomes_of(first) == {Outcome.ACKNOWLEDGED}
    assert clock.waits == [60.0, 120.0]
    assert raised.value.resets_at == datetime(2026, 6, 2, tzinfo=UTC)
    assert raised.value.retry_after == pytest.approx((raised.value.resets_at - clock.now).total_seconds())


async def test_unknown_segment_rejects_only_its_records(connector: Connectors, base_url: str,
                                                        sandbox: LinkedInSandbox) -> None:
    """A segment LinkedIn does not know (404) rejects its own records; another segment's records land."""
    fine = sandbox.create_segment("fine")
    results = await connector(base_url).write_batch("audience_add", people("999", 2) + people(fine, 2, start=2))
    assert [r.outcome for r in results] == [Outcome.REJECTED] * 2 + [Outcome.ACKNOWLEDGED] * 2
    assert "NOT_FOUND" in (results[0].reason or "")


@pytest.mark.parametrize(("option", "value", "hint"), [
    ("access_token", "wrong-token", "access token"),
    ("linkedin_version", "202401", "linkedin_version"),
])
async def test_bad_token_or_sunset_version_needs_fixing(connector: Connectors, base_url: str, option: str, value: str,
                                                         hint: str) -> None:
    """A wrong token or a version LinkedIn no longer serves fails check() with FixConfiguration saying what to fix."""
    with pytest.raises(FixConfiguration) as raised:
        await connector(base_url, **{option: value}).check()
    assert hint in str(raised.value)


async def test_no_secret_or_raw_pii_in_logs_or_errors(connector: Connectors, base_url: str, sandbox: LinkedInSandbox,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The access token and a planted e-mail appear in no log line, exception, outcome or config repr."""
    planted = "Planted.Person@Secret-Example.org"
    caplog.set_level(logging.DEBUG)
    segment = sandbox.create_segment("private")
    linkedin = connector(base_url)
    texts = [str(r) for r in await linkedin.write_batch("audience_add", [
        WriteRecord("p", "p", {"audience_id": segment, "email": planted}),
        WriteRecord("q", "q", {"audience_id": "31337", "email": planted})])]
    with pytest.raises(FixConfiguration) as raised:
        await connector(base_url, access_token=TOKEN + "x").check()
    texts += [str(raised.value), repr(raised.value), repr(linkedin.config), caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    assert sandbox.member_values(segment) == {sha(planted.lower())}
    for text in texts:
        for secret in (TOKEN, planted, planted.lower()):
            assert secret not in text
    assert any("dmpSegments" in r.getMessage() for r in caplog.records)
