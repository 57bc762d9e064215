"""The Google Ads connector against the Google Ads sandbox over real loopback sockets."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from connectors.base import FixConfiguration, Outcome, QuotaExhausted, RecordOutcome, WriteRecord
from connectors.google_ads import GoogleAdsConfig, GoogleAdsConnector
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.sandbox import FaultSettings, serve_on_loopback
from connectors.sandbox.faults import Fate, FaultInjector
from connectors.sandbox.google_ads import GoogleAdsLimits, GoogleAdsSandbox

pytestmark = pytest.mark.anyio

DEV_TOKEN = "planted-dev-token-7Q2x"
CLIENT_SECRET = "planted-client-secret-K9"
REFRESH = "1//planted-refresh-token-Zz"
CUSTOMER = "1234567890"
MANAGER = "9876543210"
START = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
GRANTED = {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}


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


def make_sandbox(clock: Clock, **options: Any) -> GoogleAdsSandbox:
    return GoogleAdsSandbox(developer_token=DEV_TOKEN, client_secret=CLIENT_SECRET, refresh_token=REFRESH,
                            customer_id=CUSTOMER, manager_id=MANAGER, clock=clock, **options)


@pytest.fixture
def sandbox(clock: Clock) -> GoogleAdsSandbox:
    return make_sandbox(clock)


@pytest.fixture
def base_url(sandbox: GoogleAdsSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield url


class Connectors:
    """Builds connectors against one base URL and closes their clients when the test ends."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.made: list[GoogleAdsConnector] = []

    def __call__(self, base_url: str, **options: Any) -> GoogleAdsConnector:
        options.setdefault("developer_token", DEV_TOKEN)
        options.setdefault("client_secret", CLIENT_SECRET)
        options.setdefault("refresh_token", REFRESH)
        options.setdefault("login_customer_id", "987-654-3210")
        options.setdefault("poll_interval_seconds", 30)
        options.setdefault("max_poll_seconds", 600)
        config = GoogleAdsConfig(base_url=base_url, token_url=f"{base_url}/token",
                                 client_id="sandbox-client.apps.googleusercontent.com",
                                 customer_id="123-456-7890", **options)
        client = build_client(base_url, headers=GoogleAdsConnector.client_headers(config))
        http = HttpLayer(client, name="google_ads", retry=RetrySettings(attempts=3, jitter=0.0),
                         sleep=self.clock.sleep)
        self.made.append(GoogleAdsConnector(config, http))
        return self.made[-1]


@pytest.fixture
async def connector(clock: Clock) -> AsyncIterator[Connectors]:
    made = Connectors(clock)
    yield made
    for google in made.made:
        await google.http.client.aclose()


def people(user_list: str, count: int, *, start: int = 0, consent: dict[str, str] | None = None,
           phone: bool = False) -> list[WriteRecord]:
    records = []
    for n in range(start, start + count):
        payload: dict[str, Any] = {"audience_id": user_list, "email": f"  Person{n}@Example.com ",
                                   "consent": consent or GRANTED}
        if phone:
            payload |= {"phone": f"(212) {500 + n // 10_000}-{n % 10_000:04d}", "country": "US"}
        records.append(WriteRecord(f"lead-{n}", f"{user_list}:{n}", payload))
    return records


def outcomes_of(results: list[RecordOutcome]) -> set[Outcome]:
    return {r.outcome for r in results}


def _seed_for(settings: FaultSettings, fates: list[Fate]) -> int:
    """A seed whose first API requests meet ``fates`` (the injector is deterministic per seed)."""
    for seed in range(10_000):
        injector = FaultInjector(settings, seed)
        if [injector.for_request().fate for _ in fates] == fates:
            return seed
    raise AssertionError("no seed found")


async def test_adds_and_removes_land_through_jobs(connector: Connectors, base_url: str,
                                                 sandbox: GoogleAdsSandbox, clock: Clock) -> None:
    """Adds put the people's e-mail hashes in the list once the job has run; removes take exactly those out;
    each write is a job of its own kind, watched through the injected sleep until SUCCESS."""
    google = connector(base_url)
    await google.check()
    user_list = sandbox.create_user_list("Hot leads")
    added = await google.write_batch("audience_add", people(user_list, 6))
    assert outcomes_of(added) == {Outcome.ACKNOWLEDGED}
    assert sandbox.member_values(user_list) == {sha(f"person{n}@example.com") for n in range(6)}
    job = sandbox.job(added[0].remote_id or "")
    assert (job.status, job.kind, job.consent) == ("SUCCESS", "create",
                                                  {"adUserData": "GRANTED", "adPersonalization": "GRANTED"})
    assert sum(clock.waits) >= sandbox.processing_seconds  # polled until the job ended, on the fake clock
    removed = await google.write_batch("audience_remove", people(user_list, 2))
    assert outcomes_of(removed) == {Outcome.ACKNOWLEDGED}
    assert sandbox.member_values(user_list) == {sha(f"person{n}@example.com") for n in range(2, 6)}
    assert [j.kind for j in sandbox.jobs.values()] == ["create", "remove"]


async def test_documented_normalisation_reaches_the_wire(connector: Connectors, base_url: str,
                                                         sandbox: GoogleAdsSandbox) -> None:
    """Google's rules, not Meta's: gmail dots kept, E.164 phone with '+', names trimmed and lowercased with
    punctuation kept, country and postal code unhashed (US ZIP+4 cut to 5 digits)."""
    user_list = sandbox.create_user_list("vectors")
    record = WriteRecord("lead-v", "v", {"audience_id": user_list, "consent": GRANTED,
                                         "email": " John.Doe@Gmail.COM ", "phone": "(212) 565-0000",
                                         "first_name": "  Mary  Ann ", "last_name": "O'Brien",
                                         "zip": "94107-1234", "country": "United States"})
    [result] = await connector(base_url).write_batch("audience_add", [record])
    assert result.outcome is Outcome.ACKNOWLEDGED
    assert sandbox.member_values(user_list, "hashedEmail") == {sha("john.doe@gmail.com")}
    assert sandbox.member_values(user_list, "hashedPhoneNumber") == {sha("+12125650000")}
    assert sandbox.member_values(user_list, "address") == {f"{sha('mary ann')}|{sha('o' + chr(39) + 'brien')}|US|94107"}


async def test_each_consent_gets_its_own_job(connector: Connectors, base_url: str, sandbox: GoogleAdsSandbox) -> None:
    """Google applies a job's consent to everyone in it, so people with different consent go in different jobs,
    and a record without consent is sent as UNSPECIFIED."""
    user_list = sandbox.create_user_list("consent")
    denied = {"ad_user_data": "GRANTED", "ad_personalization": "DENIED"}
    records = people(user_list, 2) + people(user_list, 1, start=2, consent=denied)
    records.append(WriteRecord("lead-x", "x", {"audience_id": user_list, "email": "x@example.com"}))
    results = await connector(base_url).write_batch("audience_add", records)
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert results[0].remote_id == results[1].remote_id != results[2].remote_id != results[3].remote_id
    consents = {r.remote_id: sandbox.job(r.remote_id or "").consent for r in results}
    assert sorted(tuple(c.values()) for c in consents.values()) == [
        ("GRANTED", "DENIED"), ("GRANTED", "GRANTED"), ("UNSPECIFIED", "UNSPECIFIED")]


async def test_identifier_limit_splits_requests(connector: Connectors, clock: Clock) -> None:
    """1,001 people with e-mail and phone are 2,002 identifiers: at a 2,000-identifier cap (the sandbox's and
    the connector's) they go as two addOperations requests of one job, none over the cap, all acknowledged.
    (Google's real cap, 100,000, is the config's upper bound and the sandbox's default: see the rule tests.)"""
    sandbox = make_sandbox(clock, limits=GoogleAdsLimits(max_identifiers_per_request=2_000))
    user_list = sandbox.create_user_list("big")
    with serve_on_loopback(sandbox.app) as url:
        google = connector(url, identifiers_per_request=2_000)
        results = await google.write_batch("audience_add", people(user_list, 1_001, phone=True))
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.requests["POST :addOperations"] == 2
    assert sandbox.stats.largest_request == 2_000
    assert sandbox.stats.identifiers_received == 2_002
    assert len(sandbox.jobs) == 1
    assert sandbox.member_count(user_list) == 1_001


def test_identifiers_per_request_cannot_exceed_googles_cap() -> None:
    """The config refuses more than 100,000 identifiers per request, Google's documented cap."""
    base = {"developer_token": "d", "client_id": "c", "client_secret": "s", "refresh_token": "r",
            "customer_id": CUSTOMER}
    assert GoogleAdsConfig(**base, identifiers_per_request=100_000).identifiers_per_request == 100_000
    with pytest.raises(ValueError, match="less than or equal to 100000"):
        GoogleAdsConfig(**base, identifiers_per_request=100_001)


async def test_partial_failures_reach_the_right_records(connector: Connectors, clock: Clock) -> None:
    """Operations the sandbox refuses for good (poison) are rejected with Google's reason and the transient
    ones are retryable, each on exactly the record it came from; the rest land."""
    faults = FaultSettings(partial_failure_rate=0.2, batch_rejection_share=0.2)
    sandbox = make_sandbox(clock, faults=faults, seed=7)
    user_list = sandbox.create_user_list("partial")
    records = people(user_list, 30)
    predictor = FaultInjector(faults, 7)
    expected = []
    for n in range(30):
        if predictor.poisoned(sha(f"person{n}@example.com")):
            expected.append(Outcome.REJECTED)
        else:
            expected.append(Outcome.RETRYABLE if predictor.input_fails() else Outcome.ACKNOWLEDGED)
    assert {Outcome.REJECTED, Outcome.RETRYABLE} <= set(expected)  # the seed exercises both kinds
    with serve_on_loopback(sandbox.app) as url:
        results = await connector(url).write_batch("audience_add", records)
    assert [r.outcome for r in results] == expected
    reasons = {r.reason for r in results if r.outcome is Outcome.REJECTED}
    assert all("INCOMPATIBLE_USER_IDENTIFIER" in (reason or "") for reason in reasons)
    landed = {sha(f"person{n}@example.com") for n, o in enumerate(expected) if o is Outcome.ACKNOWLEDGED}
    assert sandbox.member_values(user_list) == landed


async def test_resource_exhausted_waits_the_retry_delay(connector: Connectors, clock: Clock) -> None:
    """A RESOURCE_EXHAUSTED answer is waited out for its retryDelay (on the injected clock), then the upload
    goes through."""
    faults = FaultSettings(storm_429=0.3, retry_after="45")
    sandbox = make_sandbox(clock, faults=faults, seed=_seed_for(faults, [Fate.NORMAL, Fate.STORM_429, Fate.NORMAL]))
    user_list = sandbox.create_user_list("throttled")
    with serve_on_loopback(sandbox.app) as url:
        results = await connector(url).write_batch("audience_add", people(user_list, 3))
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.status_codes[429] == 1
    assert clock.waits[0] == 45.0


async def test_spent_daily_quota_ends_the_run(connector: Connectors, clock: Clock) -> None:
    """When the daily operations quota is spent, Google's retryDelay (to midnight Pacific) is too long to hold:
    the write raises QuotaExhausted with that delay and nothing is half-done."""
    sandbox = make_sandbox(clock, limits=GoogleAdsLimits(daily_operations=1))
    user_list = sandbox.create_user_list("quota")
    with serve_on_loopback(sandbox.app) as url, pytest.raises(QuotaExhausted) as raised:
        await connector(url).write_batch("audience_add", people(user_list, 2))
    local = START.astimezone(ZoneInfo("America/Los_Angeles"))
    midnight = datetime.combine(local.date() + timedelta(days=1), datetime.min.time(), local.tzinfo)
    assert raised.value.retry_after == pytest.approx((midnight - local).total_seconds(), abs=2)
    assert sandbox.member_count(user_list) == 0


async def test_failed_job_makes_its_records_retryable(connector: Connectors, base_url: str,
                                                      sandbox: GoogleAdsSandbox) -> None:
    """A job that ends FAILED leaves its records retryable with the job and Google's reason; another list's job
    in the same batch is unaffected."""
    broken, fine = sandbox.create_user_list("broken"), sandbox.create_user_list("fine")
    sandbox.fail_jobs(broken, "UNKNOWN")
    results = await connector(base_url).write_batch("audience_add", people(broken, 2) + people(fine, 2, start=2))
    assert [r.outcome for r in results] == [Outcome.RETRYABLE] * 2 + [Outcome.ACKNOWLEDGED] * 2
    assert "FAILED" in (results[0].reason or "")
    assert sandbox.member_count(broken) == 0
    assert sandbox.member_count(fine) == 2


async def test_job_still_running_counts_as_accepted(connector: Connectors, clock: Clock) -> None:
    """A job Google is still processing when the wait ends is accepted; its status can be read later, with the
    match-rate range against known people."""
    sandbox = make_sandbox(clock, processing_seconds=6 * 3600,
                           known_people=[[{"hashedEmail": sha(f"person{n}@example.com")}] for n in range(3)])
    user_list = sandbox.create_user_list("slow")
    with serve_on_loopback(sandbox.app) as url:
        google = connector(url, max_poll_seconds=120)
        results = await google.write_batch("audience_add", people(user_list, 10))
        assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
        assert (await google.job_status(results[0].remote_id or "")).status == "RUNNING"
        clock.now += timedelta(hours=6)
        status = await google.job_status(results[0].remote_id or "")
    assert (status.status, status.match_rate_range) == ("SUCCESS", "MATCH_RANGE_20_TO_30")
    assert sum(clock.waits) == 120


async def test_refused_access_token_is_refreshed_once(connector: Connectors, base_url: str,
                                                      sandbox: GoogleAdsSandbox) -> None:
    """When Google stops accepting the access token, the connector refreshes it once and carries on."""
    google = connector(base_url)
    user_list = sandbox.create_user_list("tokens")
    await google.write_batch("audience_add", people(user_list, 1))
    sandbox.expire_access_tokens()
    results = await google.write_batch("audience_add", people(user_list, 1, start=1))
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.tokens_issued == 2
    assert sandbox.stats.status_codes[401] == 1


async def test_run_answer_lost_is_not_an_error(connector: Connectors, clock: Clock) -> None:
    """A :run that took effect but whose answer was lost is resent, meets JOB_ALREADY_STARTED, and the upload
    still counts as done."""
    faults = FaultSettings(timeout_rate=0.3, timeout_applies_share=1.0)
    fates = [Fate.NORMAL, Fate.NORMAL, Fate.DROP_AFTER, Fate.NORMAL, Fate.NORMAL]  # create, add, run (lost), …
    sandbox = make_sandbox(clock, faults=faults, seed=_seed_for(faults, fates))
    user_list = sandbox.create_user_list("lost")
    with serve_on_loopback(sandbox.app) as url:
        results = await connector(url).write_batch("audience_add", people(user_list, 2))
    assert outcomes_of(results) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.dropped_connections == 1
    assert sandbox.stats.requests["POST :run"] == 2
    assert sandbox.member_count(user_list) == 2


async def test_unknown_list_rejects_only_its_records(connector: Connectors, base_url: str,
                                                     sandbox: GoogleAdsSandbox) -> None:
    """A user list Google does not know rejects its own records with Google's code; other lists still land."""
    fine = sandbox.create_user_list("fine")
    results = await connector(base_url).write_batch("audience_add", people("424242", 2) + people(fine, 2, start=2))
    assert [r.outcome for r in results] == [Outcome.REJECTED] * 2 + [Outcome.ACKNOWLEDGED] * 2
    assert "INVALID_USER_LIST_ID" in (results[0].reason or "")


@pytest.mark.parametrize(("option", "value", "hint"), [
    ("refresh_token", "1//revoked", "refresh token"),
    ("developer_token", "wrong-dev-token", "developer token"),
    ("login_customer_id", None, "login_customer_id"),
])
async def test_bad_credentials_need_fixing(connector: Connectors, base_url: str, option: str, value: str | None,
                                           hint: str) -> None:
    """A revoked refresh token, a wrong developer token or a missing manager id fail check() with
    FixConfiguration saying what to look at."""
    with pytest.raises(FixConfiguration) as raised:
        await connector(base_url, **{option: value}).check()
    assert hint in str(raised.value)


async def test_no_secret_or_raw_pii_in_logs_or_errors(connector: Connectors, base_url: str, sandbox: GoogleAdsSandbox,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """The developer token, client secret, refresh token, issued access tokens and a planted e-mail appear in no
    log line, exception, outcome or config repr."""
    planted = "Planted.Person@Secret-Example.org"
    caplog.set_level(logging.DEBUG)
    user_list = sandbox.create_user_list("private")
    google = connector(base_url)
    record = WriteRecord("lead-p", "p", {"audience_id": user_list, "email": planted, "consent": GRANTED})
    texts = [str(r) for r in await google.write_batch("audience_add", [record])]
    texts += [str(r) for r in await google.write_batch("audience_add", [WriteRecord("x", "x", {
        "audience_id": "77", "email": planted})])]
    for option, value in (("refresh_token", REFRESH + "x"), ("developer_token", DEV_TOKEN + "x")):
        with pytest.raises(FixConfiguration) as raised:
            await connector(base_url, **{option: value}).check()
        texts += [str(raised.value), repr(raised.value)]
    texts += [repr(google.config), str(google.config.model_dump()), caplog.text]
    texts += [r.getMessage() for r in caplog.records]
    access_tokens = list(sandbox._tokens)
    assert access_tokens
    assert sandbox.member_values(user_list) == {sha(planted.lower())}
    for text in texts:
        for secret in (DEV_TOKEN, CLIENT_SECRET, REFRESH, planted, planted.lower(), *access_tokens):
            assert secret not in text
    assert any("addOperations" in r.getMessage() for r in caplog.records)  # the HTTP requests were logged
