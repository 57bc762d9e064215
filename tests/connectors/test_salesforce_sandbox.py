"""The Salesforce connector against the Salesforce sandbox over real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import (
    Account,
    Activity,
    ActivityType,
    ConsentChange,
    ConsentStatus,
    FixConfiguration,
    Lead,
    Outcome,
    OutcomeUnknown,
    Page,
    QuotaExhausted,
    WriteRecord,
)
from connectors.http import HttpLayer, RateLimiter, RetrySettings, build_client
from connectors.salesforce import SalesforceConfig, SalesforceConnector
from connectors.sandbox import FaultSettings, serve_on_loopback
from connectors.sandbox.faults import Fate, FaultInjector
from connectors.sandbox.salesforce import SalesforceLimits, SalesforceSandbox

pytestmark = pytest.mark.anyio

CLIENT_ID = "3MVG9-loopback-consumer-key"
CLIENT_SECRET = "planted-client-secret-5e6f"
REFRESH = "5Aep861-planted-refresh-token-77aa"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


class Clock:
    """The sandbox's clock; the HTTP layer's waits move it instead of sleeping."""

    def __init__(self) -> None:
        self.now = START
        self.waits: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return (self.now - START).total_seconds()

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += timedelta(seconds=seconds)


def fill(box: SalesforceSandbox, leads: int = 450) -> list[str]:
    """Leads modified an hour apart (the last one hour before START), three accounts, some activities."""
    accounts = [box.insert("Account", {"Name": f"Acme {n}", "Website": f"https://www.acme{n}.example/about",
                                       "NumberOfEmployees": 10 * n, "AnnualRevenue": 1e6 * n,
                                       "Industry": "Software", "BillingCountry": "DE"},
                           modified_ms=int((START - timedelta(days=30, hours=n)).timestamp() * 1000))
                for n in range(1, 4)]
    ids = []
    for n in range(leads):
        stamp = int((START - timedelta(hours=leads - n)).timestamp() * 1000)
        ids.append(box.insert("Lead", {"FirstName": f"P{n}", "LastName": "Test", "Company": "Acme",
                                       "Email": f"person{n}@acme.example", "Status": "Open - Not Contacted",
                                       "Country": "DE", "OwnerId": box.integration_user,
                                       "Account__c": accounts[n % 3], "HasOptedOutOfEmail": n % 10 == 0},
                              created_ms=stamp, modified_ms=stamp))
    return ids


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> SalesforceSandbox:
    return SalesforceSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH, clock=clock)


@pytest.fixture
def base_url(sandbox: SalesforceSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield url


class Connectors:
    """Builds connectors against one base URL and closes their clients when the test ends."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.made: list[SalesforceConnector] = []

    def __call__(self, base_url: str, *, limiter: bool = False, **options: Any) -> SalesforceConnector:
        options.setdefault("client_secret", CLIENT_SECRET)
        options.setdefault("refresh_token", REFRESH)
        config = SalesforceConfig(client_id=CLIENT_ID, login_url=base_url, **options)
        client = build_client(SalesforceConnector.client_base_url(config),
                              headers=SalesforceConnector.client_headers(config))
        rate = (RateLimiter(config.rate_limit(), clock=self.clock.monotonic, sleep=self.clock.sleep)
                if limiter else None)
        http = HttpLayer(client, name="salesforce", retry=RetrySettings(attempts=3, jitter=0.0), limiter=rate,
                         sleep=self.clock.sleep)
        self.made.append(SalesforceConnector(config, http, now=self.clock))
        return self.made[-1]


@pytest.fixture
async def connector(clock: Clock) -> AsyncIterator[Connectors]:
    made = Connectors(clock)
    yield made
    for salesforce in made.made:
        await salesforce.http.client.aclose()


async def pages(salesforce: SalesforceConnector, stream: str, cursor: str | None = None) -> list[Page]:
    return [page async for page in salesforce.pull(stream, cursor)]


def leads_of(found: list[Page]) -> list[Lead]:
    return [r for page in found for r in page.records if isinstance(r, Lead)]


def scores(targets: list[str]) -> list[WriteRecord]:
    return [WriteRecord(t, f"score:{t}", {"score": 70 + i, "band": "A", "reasons": ["visited pricing", "ICP"],
                                          "model_version": "m1", "scored_at": "2026-03-02T09:00:00.123456+00:00"})
            for i, t in enumerate(targets)]


async def test_pull_pages_to_the_end(connector: Connectors, base_url: str, sandbox: SalesforceSandbox) -> None:
    """450 leads at 200 a page arrive as three pages of one query, each lead once, with its fields mapped."""
    ids = fill(sandbox)
    found = await pages(connector(base_url, page_size=200), "leads")
    assert [len(p.records) for p in found] == [200, 200, 50]
    assert [lead.key for lead in leads_of(found)] == ids
    assert sandbox.stats.requests["GET /query"] == 1
    assert sandbox.stats.requests["GET /query/{locator}"] == 2
    first = leads_of(found)[0]
    assert (first.email, first.first_name, first.owner_id, first.lifecycle_stage) == (
        "person0@acme.example", "P0", sandbox.integration_user, "Open - Not Contacted")
    assert first.updated_at == START - timedelta(hours=450)


async def test_cursor_advances_per_page_and_overlap_rereads(connector: Connectors, base_url: str,
                                                            sandbox: SalesforceSandbox, clock: Clock) -> None:
    """Each page's cursor covers its rows; a pull from the last cursor re-reads the overlap (the lead modified
    within 5 minutes before it) plus what changed since, and nothing older."""
    ids = fill(sandbox, leads=10)
    # one more lead 2 minutes before the last: inside the overlap window of the final cursor
    late = sandbox.insert("Lead", {"LastName": "Late", "Company": "Acme"},
                          modified_ms=int((START - timedelta(hours=1, minutes=2)).timestamp() * 1000))
    salesforce = connector(base_url, page_size=200)
    first = await pages(salesforce, "leads")
    cursor = first[-1].cursor
    assert cursor is not None
    assert all(page.cursor is not None for page in first)
    clock.now += timedelta(minutes=30)
    changed = sandbox.records["Lead"][ids[3]]
    sandbox.commit("Lead", {**changed, "Title": "CTO"})
    again = await pages(salesforce, "leads", cursor)
    assert sorted(lead.key for lead in leads_of(again)) == sorted([late, ids[-1], ids[3]])
    assert next(lead.title for lead in leads_of(again) if lead.key == ids[3]) == "CTO"


async def test_expired_session_is_refreshed_once_and_resent(connector: Connectors, base_url: str,
                                                            sandbox: SalesforceSandbox, clock: Clock) -> None:
    """A token past the org's session timeout gets 401 INVALID_SESSION_ID; the connector refreshes and the
    pull completes, with one more token issued."""
    fill(sandbox, leads=5)
    salesforce = connector(base_url)
    assert len(leads_of(await pages(salesforce, "leads"))) == 5
    clock.now += timedelta(hours=3)  # past the sandbox's 2-hour session timeout
    assert len(leads_of(await pages(salesforce, "leads"))) == 5
    assert sandbox.stats.tokens_issued == 2
    assert sandbox.stats.status_codes[401] == 1


async def test_refused_fresh_session_is_fix_configuration(connector: Connectors, base_url: str,
                                                          sandbox: SalesforceSandbox) -> None:
    """When even a just-issued token is refused, the connector stops after one refresh: FixConfiguration."""
    sandbox.session_ms = 0  # every token is expired the moment it is issued
    with pytest.raises(FixConfiguration, match="freshly refreshed"):
        await pages(connector(base_url), "leads")
    assert sandbox.stats.tokens_issued == 2


async def test_check_validates_credentials(connector: Connectors, base_url: str, sandbox: SalesforceSandbox) -> None:
    """check() passes with the right refresh token and raises FixConfiguration (invalid_grant) without it."""
    await connector(base_url).check()
    with pytest.raises(FixConfiguration, match="invalid_grant"):
        await connector(base_url, refresh_token="revoked-token").check()


async def test_update_outcomes_in_input_order(connector: Connectors, base_url: str,
                                              sandbox: SalesforceSandbox) -> None:
    """One collection: acknowledged, a lock (retryable), a converted lead and a validation rule (rejected with
    Salesforce's words), acknowledged — in input order; acknowledged scores land, refused ones do not."""
    ids = fill(sandbox, leads=5)
    sandbox.records["Lead"][ids[2]]["IsConverted"] = True
    sandbox.lock(ids[1])
    sandbox.add_validation_rule("Lead", lambda row: row.get("Email", "").startswith("person3"),
                                "Scores may not be set on partner leads", ("Leadrelay_Score__c",))
    results = await connector(base_url).write_batch("update_lead", scores(ids))
    assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED, Outcome.RETRYABLE, Outcome.REJECTED,
                                            Outcome.REJECTED, Outcome.ACKNOWLEDGED]
    assert [r.idempotency_key for r in results] == [f"score:{t}" for t in ids]
    assert "UNABLE_TO_LOCK_ROW" in (results[1].reason or "")
    assert results[2].reason == "CANNOT_UPDATE_CONVERTED_LEAD: cannot reference converted lead (fields: Id)"
    assert "FIELD_CUSTOM_VALIDATION_EXCEPTION: Scores may not be set on partner leads" in (results[3].reason or "")
    lead = sandbox.records["Lead"]
    assert (lead[ids[0]]["Leadrelay_Score__c"], lead[ids[0]]["Leadrelay_Reasons__c"]) == (70, "visited pricing; ICP")
    assert lead[ids[1]].get("Leadrelay_Score__c") is None
    assert sandbox.stats.requests["PATCH /composite/sobjects"] == 1
    assert sandbox.stats.auto_assign == ["FALSE"]  # a score update must not re-run assignment rules


async def test_locked_row_succeeds_on_retry(connector: Connectors, base_url: str, sandbox: SalesforceSandbox) -> None:
    """UNABLE_TO_LOCK_ROW is retryable: the same record sent again once the lock is gone is acknowledged."""
    ids = fill(sandbox, leads=2)
    sandbox.lock(ids[0])
    salesforce = connector(base_url)
    first = await salesforce.write_batch("update_lead", scores(ids[:1]))
    second = await salesforce.write_batch("update_lead", scores(ids[:1]))
    assert (first[0].outcome, second[0].outcome) == (Outcome.RETRYABLE, Outcome.ACKNOWLEDGED)
    assert sandbox.records["Lead"][ids[0]]["Leadrelay_Score__c"] == 70


async def test_owner_assignment_bypasses_assignment_rules(connector: Connectors, base_url: str, clock: Clock) -> None:
    """Owners are written with Sforce-Auto-Assign: FALSE, so the org's assignment rule does not overrule
    them; an owner that is not a user is rejected with INVALID_CROSS_REFERENCE_KEY."""
    box = SalesforceSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH, clock=clock)
    queue_owner = box.insert("User", {"Name": "Round robin queue", "IsActive": True})
    rep = box.insert("User", {"Name": "Sam Rep", "IsActive": True})
    box.assignment_rule_owner = queue_owner
    ids = fill(box, leads=2)
    with serve_on_loopback(box.app) as url:
        results = await connector(url).write_batch("assign_owner", [
            WriteRecord(ids[0], "own:0", {"owner_id": rep}),
            WriteRecord(ids[1], "own:1", {"owner_id": "005000000000000AAA"}),
        ])
    assert [r.outcome for r in results] == [Outcome.ACKNOWLEDGED, Outcome.REJECTED]
    assert results[1].reason == "INVALID_CROSS_REFERENCE_KEY: invalid cross reference id (fields: OwnerId)"
    assert box.records["Lead"][ids[0]]["OwnerId"] == rep
    assert box.stats.auto_assign == ["FALSE"]


def seed_for(settings: FaultSettings, fates: list[Fate]) -> int:
    """A seed whose first requests meet ``fates`` (the injector is deterministic per seed)."""
    for seed in range(10_000):
        injector = FaultInjector(settings, seed)
        if [injector.for_request().fate for _ in fates] == fates:
            return seed
    raise AssertionError("no seed found")


async def test_task_lost_answer_is_found_by_lookup(connector: Connectors, clock: Clock) -> None:
    """A task created but unanswered raises OutcomeUnknown; lookup by the operation key finds it, and a
    resend is answered DUPLICATE_VALUE on the key field — acknowledged with the same id, one task in all."""
    faults = FaultSettings(timeout_rate=0.5, timeout_applies_share=1.0)
    seed = seed_for(faults, [Fate.NORMAL, Fate.DROP_AFTER, Fate.NORMAL, Fate.NORMAL])
    box = SalesforceSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH, clock=clock,
                            faults=faults, seed=seed, sleep=clock.sleep)
    lead = fill(box, leads=1)[0]
    task = WriteRecord(lead, "task:op-1", {"subject": "Call back", "body": "Score reached A", "priority": "HIGH",
                                           "due_at": "2026-03-03T17:00:00+00:00"})
    with serve_on_loopback(box.app) as url:
        salesforce = connector(url)
        with pytest.raises(OutcomeUnknown):
            await salesforce.write_batch("create_task", [task])
        found = await salesforce.lookup("create_task", [task, WriteRecord(lead, "task:op-2", {})])
        resent = await salesforce.write_batch("create_task", [task])
    (task_id, row), = box.records["Task"].items()
    assert (found[0].outcome, found[0].remote_id, found[1].outcome) == (Outcome.ACKNOWLEDGED, task_id, Outcome.UNKNOWN)
    assert (resent[0].outcome, resent[0].remote_id) == (Outcome.ACKNOWLEDGED, task_id)
    assert (row["WhoId"], row["Priority"], row["ActivityDate"], row["Leadrelay_Operation_Key__c"]) == (
        lead, "High", "2026-03-03", "task:op-1")


async def test_daily_limit_refusal_is_quota_exhausted(connector: Connectors, clock: Clock) -> None:
    """Salesforce's 403 REQUEST_LIMIT_EXCEEDED (TotalRequests) ends the pull with QuotaExhausted, to look again
    after the configured hour (the limit is a rolling 24 hours with no reset time)."""
    box = SalesforceSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH, clock=clock,
                            limits=SalesforceLimits(daily_requests=2))
    fill(box, leads=450)
    with serve_on_loopback(box.app) as url, pytest.raises(QuotaExhausted, match="TotalRequests") as raised:
        await pages(connector(url, page_size=200), "leads")
    assert raised.value.retry_after == 3600
    assert raised.value.resets_at == START + timedelta(hours=1)
    assert (box.stats.status_codes[403], box.stats.requests["GET /query/{locator}"]) == (1, 2)


async def test_daily_limit_learned_from_headers_stops_before_sending(connector: Connectors, clock: Clock) -> None:
    """With a rate limiter the org's budget comes from Sforce-Limit-Info (not the configured million): the
    request that would exceed it is never sent, and the run stops with QuotaExhausted."""
    box = SalesforceSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH, clock=clock,
                            limits=SalesforceLimits(daily_requests=2))
    fill(box, leads=450)
    with serve_on_loopback(box.app) as url:
        salesforce = connector(url, page_size=200, limiter=True, daily_limit=1_000_000)
        with pytest.raises(QuotaExhausted):
            await pages(salesforce, "leads")
    assert salesforce.http.limiter is not None
    assert salesforce.http.limiter.daily_remaining == 0
    assert box.stats.status_codes[403] == 0
    assert box.stats.requests["GET /query"] + box.stats.requests["GET /query/{locator}"] == 2


async def test_limit_header_feeds_the_rate_budget(connector: Connectors, clock: Clock) -> None:
    """After one answer the limiter's daily figures are the org's (api-usage=N/M), not the configured ones."""
    box = SalesforceSandbox(client_id=CLIENT_ID, client_secret=CLIENT_SECRET, refresh_token=REFRESH, clock=clock,
                            limits=SalesforceLimits(daily_requests=5_000))
    with serve_on_loopback(box.app) as url:
        salesforce = connector(url, limiter=True)
        await salesforce.check()
    assert salesforce.http.limiter is not None
    assert (salesforce.http.limiter.limit.daily, salesforce.http.limiter.daily_remaining) == (100_000, 5_000 - 1)


async def test_accounts_activities_and_consent(connector: Connectors, base_url: str,
                                               sandbox: SalesforceSandbox) -> None:
    """Accounts map with a normalised domain; tasks, campaign responses and lead conversions become
    activities of the right type; opt-out flags become consent changes."""
    ids = fill(sandbox, leads=3)
    at = int((START - timedelta(hours=2)).timestamp() * 1000)
    sandbox.insert("Task", {"WhoId": ids[0], "Type": "Web Visit", "Subject": "Pricing",
                            "Description": "https://acme.example/pricing"}, created_ms=at)
    sandbox.insert("Task", {"WhoId": ids[1], "Type": "Call", "Subject": "Intro call"}, created_ms=at)
    sandbox.insert("Task", {"WhoId": ids[1], "Type": "Call", "Leadrelay_Operation_Key__c": "ours"}, created_ms=at)
    campaign = sandbox.insert("Campaign", {"Name": "Webinar", "Type": "Webinar"})
    sandbox.insert("CampaignMember", {"CampaignId": campaign, "LeadId": ids[2], "Status": "Attended"}, created_ms=at)
    sandbox.insert("CampaignMember", {"CampaignId": campaign, "LeadId": ids[1], "Status": "Sent"}, created_ms=at)
    sandbox.records["Lead"][ids[2]].update(IsConverted=True, ConvertedDate="2026-03-01")
    salesforce = connector(base_url)
    accounts = [r for p in await pages(salesforce, "accounts") for r in p.records]
    assert isinstance(accounts[0], Account)
    assert (accounts[0].domain, accounts[0].employees) == ("acme3.example", 30)
    activities = [r for p in await pages(salesforce, "activities") for r in p.records]
    kinds = sorted((a.lead_key, a.type) for a in activities if isinstance(a, Activity))
    assert kinds == sorted([(ids[0], ActivityType.PRICING_PAGE), (ids[1], ActivityType.SALES_TOUCH),
                            (ids[2], ActivityType.WEBINAR)])
    leads = [r for p in await pages(salesforce, "leads") for r in p.records]
    conversions = [r for r in leads if isinstance(r, Activity)]
    assert [(c.lead_key, c.type, c.occurred_at) for c in conversions] == [
        (ids[2], ActivityType.CONVERSION, datetime(2026, 3, 1, tzinfo=UTC))]
    consent = [r for p in await pages(salesforce, "consent") for r in p.records]
    assert [(c.lead_key, c.channel, c.status) for c in consent if isinstance(c, ConsentChange)] == [
        (ids[0], "email", ConsentStatus.DENIED), (ids[1], "email", ConsentStatus.GRANTED),
        (ids[2], "email", ConsentStatus.GRANTED)]


async def test_rows_breaking_the_contract_are_quarantined(connector: Connectors, base_url: str,
                                                          sandbox: SalesforceSandbox) -> None:
    """A lead with a bad e-mail and an account with employees as text are quarantined naming the field;
    the rest of their pages flows on."""
    ids = fill(sandbox, leads=3)
    sandbox.records["Lead"][ids[1]]["Email"] = "jane.doe.example.com"
    account = next(iter(sandbox.records["Account"]))
    sandbox.records["Account"][account]["NumberOfEmployees"] = "50-200"
    salesforce = connector(base_url)
    lead_pages = await pages(salesforce, "leads")
    assert [q.reason for p in lead_pages for q in p.quarantined] == [
        "Lead.Email: 'jane.doe.example.com' is not a valid email"]
    assert [lead.key for lead in leads_of(lead_pages)] == [ids[0], ids[2]]
    account_pages = await pages(salesforce, "accounts")
    assert [(q.key, q.reason) for p in account_pages for q in p.quarantined] == [
        (account, "Account.NumberOfEmployees: '50-200' is not a whole number")]


async def test_secrets_never_leak(connector: Connectors, base_url: str, sandbox: SalesforceSandbox,
                                  caplog: pytest.LogCaptureFixture) -> None:
    """Client secret, refresh token and access token appear in no exception, repr or log line."""
    caplog.set_level("DEBUG")
    fill(sandbox, leads=2)
    good = connector(base_url)
    await good.check()
    access = await good.session.token()
    sandbox.session_ms = 0
    errors: list[BaseException] = []
    for salesforce in (good, connector(base_url, client_secret="wrong-" + CLIENT_SECRET)):
        try:
            await pages(salesforce, "leads")
        except FixConfiguration as exc:
            errors.append(exc)
    assert len(errors) == 2
    shown = " ".join([*(f"{e!s} {e!r}" for e in errors), repr(good), repr(good.session), repr(good.config),
                      str(good.config.model_dump()), caplog.text])
    for secret in (CLIENT_SECRET, REFRESH, access):
        assert secret not in shown
