"""Pipeline cycles with Marketo as the source: the Marketo sandbox, loaded from a generated dataset, on a
loopback port; the agent's own cycle pulls leads and activities into its store. Until ``marketo`` is
registered in pyproject's entry points, the test resolves the connector name itself. (Scoring Marketo leads
end to end waits on sync.subjects reading firmographics from lead attributes: see the helper notes.)"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors import registry
from connectors.base import Connector
from connectors.marketo import MarketoConnector
from connectors.sandbox import generate_dataset, serve_on_loopback
from connectors.sandbox.marketo import SANDBOX_ACTIVITY_TYPES, MarketoSandbox
from sync import config
from sync.pipeline import run_cycle
from sync.store import Store
from tests.connectors.test_marketo_rig import CLIENT_ID, SECRET, Clock, make_sandbox
from tests.sync.rig import T0

CONTACTS = 200

pytestmark = pytest.mark.anyio


@pytest.fixture
def marketo_registered(monkeypatch: pytest.MonkeyPatch) -> None:
    original = registry.get

    def get(name: str) -> type[Connector]:
        return MarketoConnector if name == "marketo" else original(name)

    monkeypatch.setattr(registry, "get", get)


def settings_for(url: str, work: Path) -> config.Settings:
    return config.parse({
        "store": {"url": f"sqlite:///{work / 'store.db'}"},
        "scoring": {"model_dir": str(work / "model")},
        "connections": {"marketo": {
            "type": "marketo", "base_url": url, "client_id": CLIENT_ID, "client_secret": SECRET,
            "start_date": "2020-01-01T00:00:00Z",
            "activity_types": {str(k): v for k, v in SANDBOX_ACTIVITY_TYPES.items()},
            "conversion_date_field": "opportunityDate", "rate_limit_calls": 100_000}},
        "pipelines": {"main": {"source": "marketo", "destination": "marketo"}},
    }, env={})


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def served(clock: Clock) -> Iterator[tuple[MarketoSandbox, str]]:
    sandbox = make_sandbox(clock)
    sandbox.load(generate_dataset(seed=21, contacts=CONTACTS, now=T0))
    with contextlib.ExitStack() as stack:
        yield sandbox, stack.enter_context(serve_on_loopback(sandbox.app))


@pytest.mark.usefixtures("marketo_registered")
async def test_backfill_and_incremental_cycles_through_the_pipeline(served: tuple[MarketoSandbox, str],
                                                                    clock: Clock, tmp_path: Path) -> None:
    """A backfill cycle stores every Marketo lead with a valid email, every mapped activity and the cursors;
    the next cycle, after one lead changed and one activity was logged, pulls exactly those."""
    sandbox, url = served
    settings = settings_for(url, tmp_path)
    store = Store(settings.store.url)
    store.create_all()
    try:
        backfill = await run_cycle(settings, "main", store, clock=clock, score=False)
        with store.unit(dry_run=True) as unit:
            leads, activities = unit.count("lead"), unit.count("activity")
            cursor = unit.get_cursor("main", "leads")
        lead_id = next(iter(sandbox.state.leads))
        clock.advance(minutes=10)
        sandbox.update_lead(lead_id, title="Head of Growth")
        sandbox.add_activity(lead_id, 1, primary="Pricing", attributes={"Webpage URL": "https://x.test/pricing"})
        sandbox.reset_stats()
        later = await run_cycle(settings, "main", store, clock=clock, score=False)
        with store.unit(dry_run=True) as unit:
            leads_after, activities_after = unit.count("lead"), unit.count("activity")
    finally:
        store.close()
    valid = sum(1 for lead in sandbox.state.leads.values() if "@" in str(lead.get("email")))
    mapped = sum(1 for row in sandbox.state.log if row.type_id in SANDBOX_ACTIVITY_TYPES)
    converted = sum(1 for lead in sandbox.state.leads.values()
                    if lead.get("opportunityDate") and "@" in str(lead.get("email")))
    assert backfill.errors == []
    assert later.errors == []
    assert cursor is not None
    assert leads == valid
    assert activities == mapped - 1 + converted  # the activity added later is not in the backfill
    assert (leads_after, activities_after) == (leads, activities + 1)
    assert sandbox.stats.requests["GET /rest/v1/leads.json"] == 1  # only the changed lead is fetched
