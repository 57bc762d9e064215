"""The HubSpot connector against the HubSpot sandbox over real loopback sockets."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import Account, Activity, FixConfiguration, GiveUp, Lead, Outcome, Page, WriteRecord
from connectors.http import HttpLayer, RetrySettings, build_client
from connectors.hubspot import HubSpotConfig, HubSpotConnector
from connectors.sandbox import HubSpotSandbox, generate_dataset, serve_on_loopback

TOKEN = "pat-na1-sandbox-token"
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
UPDATE = "POST /crm/v3/objects/contacts/batch/update"


class Clock:
    """The sandbox's clock, moved by tests instead of sleeping."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def no_sleep(seconds: float) -> None:
    """Waits asked for by the HTTP layer are skipped (the sandbox's limits are off here)."""


@dataclass
class Dataset:
    """A small hand-made portal: contacts an hour apart, so the overlap window holds exactly one."""

    owners: list[dict[str, Any]] = field(default_factory=list)
    companies: list[dict[str, Any]] = field(default_factory=list)
    contacts: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def small_dataset(contacts: int = 150) -> Dataset:
    data = Dataset(owners=[{"id": "7", "email": "sdr@example.com", "firstName": "Sam", "lastName": "Ray",
                            "userId": 70, "archived": False}])
    for n in range(1, 4):
        data.companies.append({"id": str(9000 + n), "properties": {
            "name": f"Company {n}", "domain": f"company{n}.example", "numberofemployees": str(10 * n),
            "hs_lastmodifieddate": iso(START - timedelta(days=10, hours=n))}})
    for n in range(1, contacts + 1):
        data.contacts.append({"id": str(n), "properties": {
            "email": f"person{n}@example.com", "firstname": f"P{n}", "lastname": "Test",
            "associatedcompanyid": str(9000 + n % 3 + 1),
            "lastmodifieddate": iso(START - timedelta(hours=contacts + 1 - n))}})
    for n in range(1, 11):
        kind = "e_visited_page" if n % 2 else "e_submitted_form"
        data.events.append({"id": f"ev{n}", "eventType": kind, "objectType": "contact", "objectId": str(n),
                            "occurredAt": iso(START - timedelta(hours=n)),
                            "properties": {"hs_url": "https://acme.example/pricing" if n == 1 else "/blog"}})
    return data


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
def sandbox(clock: Clock) -> HubSpotSandbox:
    box = HubSpotSandbox(token=TOKEN, clock=clock, limits=None)
    box.load(small_dataset())
    return box


@pytest.fixture
def base_url(sandbox: HubSpotSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield url


class Connectors:
    """Builds connectors against one base URL and closes their clients when the test ends."""

    def __init__(self) -> None:
        self.made: list[HubSpotConnector] = []

    def __call__(self, base_url: str, token: str = TOKEN) -> HubSpotConnector:
        config = HubSpotConfig(token=token, base_url=base_url, page_size=50)
        client = build_client(base_url, headers=HubSpotConnector.client_headers(config))
        http = HttpLayer(client, name="hubspot", retry=RetrySettings(attempts=2, jitter=0.0), sleep=no_sleep)
        self.made.append(HubSpotConnector(config, http))
        return self.made[-1]


@pytest.fixture
async def connector() -> AsyncIterator[Connectors]:
    made = Connectors()
    yield made
    for hub in made.made:
        await hub.http.client.aclose()


async def drain(pages: AsyncIterator[Page]) -> list[Page]:
    return [page async for page in pages]


def records(pages: list[Page]) -> list[Any]:
    return [r for p in pages for r in p.records]


@pytest.mark.anyio
async def test_pulls_every_stream_from_the_sandbox(
    connector: Connectors, base_url: str, sandbox: HubSpotSandbox
) -> None:
    """All contacts, companies and events come through over HTTP, mapped to canonical records."""
    hub = connector(base_url)
    leads = [r for r in records(await drain(hub.pull("leads", None))) if isinstance(r, Lead)]
    accounts = records(await drain(hub.pull("accounts", None)))
    activities = records(await drain(hub.pull("activities", None)))
    assert sorted(lead.key for lead in leads) == sorted(sandbox.objects["contacts"])
    assert all(isinstance(a, Account) for a in accounts)
    assert sorted(a.key for a in accounts) == sorted(sandbox.objects["companies"])
    assert {a.key for a in activities if isinstance(a, Activity)} == {f"ev{n}" for n in range(1, 11)}
    assert next(a for a in activities if a.key == "ev1").type == "pricing_page"


@pytest.mark.anyio
async def test_incremental_pull_returns_changed_rows_and_overlap(connector: Connectors,
    base_url: str, sandbox: HubSpotSandbox, clock: Clock
) -> None:
    """After an update, a pull from the stored cursor returns the changed row plus the overlap window."""
    hub = connector(base_url)
    cursor = (await drain(hub.pull("leads", None)))[-1].cursor
    clock.now = START + timedelta(hours=2)
    sandbox.update("contacts", "17", {"jobtitle": "CEO"})
    pages = await drain(hub.pull("leads", cursor))
    changed = [r for r in records(pages) if isinstance(r, Lead)]
    # Contact 150 is the newest seeded row, modified at the cursor's instant: the overlap re-reads it.
    assert [lead.key for lead in changed] == ["150", "17"]
    assert changed[1].title == "CEO"
    assert sandbox.stats.requests["POST /crm/v3/objects/contacts/search"] >= 2


@pytest.mark.anyio
async def test_overlap_window_catches_late_rows(connector: Connectors,
    base_url: str, sandbox: HubSpotSandbox, clock: Clock
) -> None:
    """A row that shows up after the pull, stamped shortly before its cursor, is still read next time."""
    hub = connector(base_url)
    cursor = (await drain(hub.pull("leads", None)))[-1].cursor
    clock.now = START - timedelta(hours=1, seconds=100)  # 100 s before the newest row the cursor saw
    sandbox.update("contacts", "42", {"jobtitle": "VP"})
    keys = [r.key for r in records(await drain(hub.pull("leads", cursor))) if isinstance(r, Lead)]
    assert keys == ["42", "150"]


@pytest.mark.anyio
async def test_150_updates_go_in_two_batches(connector: Connectors, base_url: str, sandbox: HubSpotSandbox) -> None:
    """Split by max_batch_size, 150 score updates take two calls and are all acknowledged and stored."""
    hub = connector(base_url)
    size = hub.capabilities.operations["update_lead"].max_batch_size
    writes = [WriteRecord(str(n), f"score-{n}", {"score": n % 99 + 1, "band": "B", "reasons": ["r1", "r2"],
                                                   "scored_at": START, "owner_id": "7"})
              for n in range(1, 151)]
    outcomes = []
    for start in range(0, len(writes), size):
        outcomes += await hub.write_batch("update_lead", writes[start:start + size])
    assert [o.idempotency_key for o in outcomes] == [w.idempotency_key for w in writes]
    assert all(o.outcome is Outcome.ACKNOWLEDGED for o in outcomes)
    assert sandbox.stats.requests[UPDATE] == 2
    stored = sandbox.objects["contacts"]["42"]["properties"]
    assert (stored["leadrelay_score"], stored["hubspot_owner_id"], stored["leadrelay_reasons"]) == (
        "43", "7", "r1; r2")


@pytest.mark.anyio
async def test_oversized_batch_is_refused(connector: Connectors, base_url: str, sandbox: HubSpotSandbox) -> None:
    """The connector refuses 101 inputs itself; sent anyway, the sandbox answers 400, classified GiveUp."""
    hub = connector(base_url)
    writes = [WriteRecord(str(n), f"k{n}", {"band": "A"}) for n in range(1, 102)]
    with pytest.raises(GiveUp):
        await hub.write_batch("update_lead", writes)
    assert sandbox.stats.requests[UPDATE] == 0
    body = {"inputs": [{"id": str(n), "properties": {"leadrelay_band": "A"}} for n in range(1, 102)]}
    with pytest.raises(GiveUp, match="maximum number of inputs"):
        await hub.http.request("POST", UPDATE.split()[1], classify=hub.classify, json=body)


@pytest.mark.anyio
async def test_207_rejects_only_the_bad_record(connector: Connectors, base_url: str) -> None:
    """An unknown contact id in a batch is rejected; its neighbours are acknowledged."""
    hub = connector(base_url)
    writes = [WriteRecord("1", "a", {"band": "A"}), WriteRecord("999999", "b", {"band": "A"}),
              WriteRecord("2", "c", {"band": "B"})]
    outcomes = await hub.write_batch("update_lead", writes)
    assert [o.outcome for o in outcomes] == [Outcome.ACKNOWLEDGED, Outcome.REJECTED, Outcome.ACKNOWLEDGED]


@pytest.mark.anyio
async def test_created_task_is_found_by_key(connector: Connectors, base_url: str, sandbox: HubSpotSandbox) -> None:
    """create_task then lookup finds the task by its key; creating it again does not duplicate it."""
    hub = connector(base_url)
    task = WriteRecord("17", "route:17:v1", {"due_at": START + timedelta(hours=4), "subject": "Call P17",
                                            "priority": "HIGH", "owner_id": "7"})
    other = WriteRecord("18", "route:18:v1", {"due_at": START})
    created = await hub.write_batch("create_task", [task])
    assert created[0].outcome is Outcome.ACKNOWLEDGED
    found = await hub.lookup("create_task", [task, other])
    assert [(f.outcome, f.remote_id) for f in found] == [
        (Outcome.ACKNOWLEDGED, created[0].remote_id), (Outcome.UNKNOWN, None)]
    again = await hub.write_batch("create_task", [task])
    assert (again[0].outcome, again[0].remote_id) == (Outcome.ACKNOWLEDGED, created[0].remote_id)
    assert len(sandbox.objects["tasks"]) == 1


@pytest.mark.anyio
async def test_check_and_owners(connector: Connectors, base_url: str) -> None:
    """check passes with the right token, asks for configuration with a wrong one; owners are listed."""
    await connector(base_url).check()
    with pytest.raises(FixConfiguration, match="INVALID_AUTHENTICATION"):
        await connector(base_url, token="pat-na1-wrong").check()
    assert [o["id"] for o in await connector(base_url).list_owners()] == ["7"]


@pytest.mark.anyio
async def test_generated_dataset_pulls_completely(connector: Connectors, clock: Clock) -> None:
    """A generated portal pulls every contact across several search pages."""
    box = HubSpotSandbox(token=TOKEN, clock=clock, limits=None)
    box.load(generate_dataset(seed=7, contacts=600, now=START))
    with serve_on_loopback(box.app) as url:
        leads = [r for r in records(await drain(connector(url).pull("leads", None))) if isinstance(r, Lead)]
    assert len({lead.key for lead in leads}) == len(box.objects["contacts"])
