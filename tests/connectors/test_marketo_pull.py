"""The Marketo connector's streams against the Marketo sandbox over real loopback sockets: paging through
lead changes and activities to the end, resuming from the stored cursor, consent, and the 414 cure."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, timedelta

import pytest

from connectors.base import Activity, ActivityType, ConsentChange, ConsentStatus, GiveUp, Lead
from connectors.marketo import MarketoConnector
from connectors.sandbox import generate_dataset, serve_on_loopback
from connectors.sandbox.marketo import SANDBOX_ACTIVITY_TYPES, MarketoSandbox
from tests.connectors.test_marketo_rig import Clock, collect, make_connector, make_sandbox

pytestmark = pytest.mark.anyio

ALL_TYPES = {type_id: ActivityType(kind) for type_id, kind in SANDBOX_ACTIVITY_TYPES.items()}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> MarketoSandbox:
    # A short scan makes short pages with moreResult: true, as Marketo's do.
    sb = make_sandbox(clock, activity_scan=120)
    sb.load(generate_dataset(seed=7, contacts=80, now=clock.now - timedelta(days=1), malformed_share=0.1))
    return sb


@pytest.fixture
def base_url(sandbox: MarketoSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield url


@pytest.fixture
async def connectors(clock: Clock) -> AsyncIterator[list[MarketoConnector]]:
    made: list[MarketoConnector] = []
    yield made
    for connector in made:
        await connector.http.client.aclose()


def leads_of(records: list) -> dict[str, Lead]:
    return {r.key: r for r in records if isinstance(r, Lead)}


async def test_leads_page_through_every_lead_change(
    clock: Clock, sandbox: MarketoSandbox, base_url: str, connectors: list[MarketoConnector]
) -> None:
    """A first pull walks lead changes page by page until moreResult is false and yields every lead as it is
    now, fetched by id in one call per page at most (not again for changes it already shows); a lead with an
    invalid email is quarantined with the field named."""
    connectors.append(make_connector(base_url, clock, conversion_date_field="opportunityDate"))
    records, bad, cursors = await collect(connectors[0].pull("leads", None))
    leads = leads_of(records)
    yielded = [r for r in records if isinstance(r, Lead)]
    assert all(r == leads[r.key] for r in yielded)
    pages = sandbox.stats.requests["GET /rest/v1/activities/leadchanges.json"]
    assert sandbox.stats.requests["GET /rest/v1/leads.json"] <= pages
    assert len(yielded) < sum(1 for row in sandbox.state.log if row.type_id in (12, 13))
    bad_emails = {str(lead_id) for lead_id, lead in sandbox.state.leads.items()
                  if "@" not in str(lead.get("email"))}
    assert bad_emails, "the dataset should hold a malformed email"
    assert set(leads) == {str(i) for i in sandbox.state.leads} - bad_emails
    assert {q.key for q in bad} == bad_emails
    assert all(q.reason.startswith("email:") for q in bad)
    assert sandbox.stats.requests["GET /rest/v1/activities/leadchanges.json"] == len(cursors) > 3
    one = sandbox.lead(int(next(iter(leads))))
    assert leads[str(one["id"])].email == one["email"]
    assert leads[str(one["id"])].attributes["industry"] == one.get("industry")
    conversions = [r for r in records if isinstance(r, Activity) and r.type is ActivityType.CONVERSION]
    assert {c.lead_key for c in conversions} == {str(i) for i, lead in sandbox.state.leads.items()
                                                 if lead.get("opportunityDate") and "@" in str(lead.get("email"))}


async def test_leads_resume_from_the_cursor_with_only_what_changed(
    clock: Clock, sandbox: MarketoSandbox, base_url: str, connectors: list[MarketoConnector]
) -> None:
    """From the stored cursor, a pull yields just the leads changed or created since, and our own score
    fields (not tracked) do not bring a lead back."""
    connectors.append(make_connector(base_url, clock))
    _, _, cursors = await collect(connectors[0].pull("leads", None))
    clock.advance(minutes=5)
    changed = next(i for i, lead in sandbox.state.leads.items() if "@" in str(lead.get("email")))
    scored = next(i for i in sandbox.state.leads if i != changed)
    sandbox.update_lead(changed, title="VP Revenue")
    sandbox.update_lead(scored, leadrelayScore=88)
    created = sandbox.add_lead(email="new.person@example.org", firstName="New")
    records, _, later = await collect(connectors[0].pull("leads", cursors[-1]))
    leads = leads_of(records)
    assert set(leads) == {str(changed), str(created)}
    assert leads[str(changed)].title == "VP Revenue"
    again, _, _ = await collect(connectors[0].pull("leads", later[-1]))
    assert again == []


async def test_activities_map_types_and_resume(
    clock: Clock, sandbox: MarketoSandbox, base_url: str, connectors: list[MarketoConnector]
) -> None:
    """Every activity of the configured types arrives once, mapped to its canonical type (pricing pages
    recognised); a resumed pull yields only activities logged after the cursor."""
    connectors.append(make_connector(base_url, clock, activity_types=ALL_TYPES))
    records, bad, cursors = await collect(connectors[0].pull("activities", None))
    expected = [row for row in sandbox.state.log if row.type_id in ALL_TYPES]
    assert bad == []
    assert sorted(r.key for r in records) == sorted(row.guid for row in expected)
    kinds = {r.type for r in records if isinstance(r, Activity)}
    assert ActivityType.PRICING_PAGE in kinds
    assert ActivityType.WEBINAR in kinds
    pricing = next(r for r in records if isinstance(r, Activity) and r.type is ActivityType.PRICING_PAGE)
    assert "/pricing" in str(pricing.attributes["url"])
    lead_id = next(iter(sandbox.state.leads))
    guid = sandbox.add_activity(lead_id, 11, primary="May newsletter", attributes={"Link": "https://x.test/a"})
    sandbox.add_activity(lead_id, 22, primary="not configured")
    more, _, _ = await collect(connectors[0].pull("activities", cursors[-1]))
    assert [(r.key, r.type) for r in more] == [(guid, ActivityType.EMAIL_CLICK)]


async def test_more_than_ten_activity_types_walk_in_groups(
    clock: Clock, sandbox: MarketoSandbox, base_url: str, connectors: list[MarketoConnector]
) -> None:
    """Eleven configured type ids go as two walks (Marketo takes at most ten per call), each with its own
    position in the cursor."""
    types = {**ALL_TYPES, **dict.fromkeys((3, 9, 22, 23, 24), ActivityType.SALES_TOUCH)}
    assert len(types) == 11
    connectors.append(make_connector(base_url, clock, activity_types=types))
    records, _, cursors = await collect(connectors[0].pull("activities", None))
    groups = json.loads(cursors[-1] or "{}")["tokens"]
    assert sorted(len(group.split(",")) for group in groups) == [1, 10]
    assert len(records) == sum(1 for row in sandbox.state.log if row.type_id in types)


async def test_consent_follows_the_unsubscribed_field(
    clock: Clock, sandbox: MarketoSandbox, base_url: str, connectors: list[MarketoConnector]
) -> None:
    """Setting unsubscribed to true is an email opt-out, setting it back is a grant, each at its change time."""
    connectors.append(make_connector(base_url, clock))
    _, _, cursors = await collect(connectors[0].pull("consent", None))
    lead_id = next(iter(sandbox.state.leads))
    clock.advance(hours=1)
    sandbox.update_lead(lead_id, unsubscribed=True)
    out_at = clock.now
    clock.advance(hours=1)
    sandbox.update_lead(lead_id, unsubscribed=False)
    records, _, _ = await collect(connectors[0].pull("consent", cursors[-1]))
    changes = [r for r in records if isinstance(r, ConsentChange)]
    assert [(c.lead_key, c.channel, c.status) for c in changes] == [
        (str(lead_id), "email", ConsentStatus.DENIED), (str(lead_id), "email", ConsentStatus.GRANTED)]
    assert changes[0].effective_at == out_at.replace(microsecond=0)


async def test_overlong_lead_lookup_falls_back_to_post_method_get(
    clock: Clock, connectors: list[MarketoConnector]
) -> None:
    """A lead fetch whose URL Marketo refuses with 414 is resent as POST with _method=GET and still returns
    every lead; with the URL limit configured, the connector goes straight to the POST form."""
    sandbox = make_sandbox(clock, max_url_bytes=1500)
    for n in range(250):
        sandbox.add_lead(email=f"person{n}@example.com")
    with serve_on_loopback(sandbox.app) as url:
        connectors.append(make_connector(url, clock))
        records, _, _ = await collect(connectors[0].pull("leads", None))
        assert len(leads_of(records)) == 250
        assert sandbox.stats.status_codes[414] >= 1
        assert sandbox.stats.method_get_posts >= 1
        sandbox.reset_stats()
        connectors.append(make_connector(url, clock, max_url_bytes=1500))
        records, _, _ = await collect(connectors[1].pull("leads", None))
        assert len(leads_of(records)) == 250
        assert sandbox.stats.status_codes[414] == 0
        assert sandbox.stats.method_get_posts >= 1


async def test_first_pull_starts_history_days_back(
    clock: Clock, sandbox: MarketoSandbox, base_url: str, connectors: list[MarketoConnector]
) -> None:
    """Without start_date, a first pull asks for a paging token history_days before now."""
    connectors.append(make_connector(base_url, clock, start_date=None, history_days=30, activity_types=ALL_TYPES))
    records, _, _ = await collect(connectors[0].pull("activities", None))
    floor = clock.now - timedelta(days=30)
    expected = [row for row in sandbox.state.log
                if row.type_id in ALL_TYPES and row.at_ms >= int(floor.timestamp()) * 1000]
    assert 0 < len(records) == len(expected)
    assert min(r.occurred_at for r in records if isinstance(r, Activity)) >= floor.astimezone(UTC) - timedelta(
        seconds=1)


async def test_unknown_stream_is_refused(clock: Clock, base_url: str, connectors: list[MarketoConnector]) -> None:
    """Asking for a stream Marketo does not offer raises GiveUp naming the streams it does."""
    connectors.append(make_connector(base_url, clock))
    with pytest.raises(GiveUp, match="leads, activities, consent"):
        await collect(connectors[0].pull("accounts", None))
