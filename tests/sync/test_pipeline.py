"""One cycle end to end over real loopback sockets: HubSpot sandbox -> store -> ONNX score -> HubSpot."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors.sandbox import (
    FaultSettings,
    HubSpotLimits,
    HubSpotSandbox,
    generate_dataset,
    serve_on_loopback,
)
from sync import config
from sync.config import Settings
from sync.pipeline import CycleReport, Timing, load_model, run_cycle
from sync.store import Store
from sync.training import train_from_store

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TOKEN = "test-token"
UPDATE = "POST /crm/v3/objects/contacts/batch/update"


class FakeTime:
    """One injected clock for the sandbox and the agent: waiting moves it forward instantly."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.waits: list[float] = []

    def now(self) -> datetime:
        return T0 + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.elapsed += seconds

    def timing(self) -> Timing:
        return Timing(sleep=self.sleep, monotonic=self.monotonic)


def _settings(base_url: str, work: Path, model_dir: Path, **pipeline: Any) -> Settings:
    return config.parse({
        "store": {"url": f"sqlite:///{work / 'store.db'}"},
        "scoring": {"model_dir": str(model_dir)},
        "connections": {"hubspot": {"type": "hubspot", "token": TOKEN, "base_url": base_url,
                                    "rate_limit_requests": 100_000}},
        "pipelines": {"main": {"source": "hubspot", "destination": "hubspot", **pipeline}},
    }, env={})


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model trained once from a sandbox history (in-process transport, to keep the suite fast)."""
    work = tmp_path_factory.mktemp("train")
    sandbox = HubSpotSandbox(token=TOKEN, clock=lambda: T0)
    sandbox.load(generate_dataset(seed=11, contacts=1200, now=T0))
    settings = _settings("http://sandbox", work, work / "model")
    store = Store(settings.store.url)
    store.create_all()
    import asyncio

    asyncio.run(run_cycle(settings, "main", store, clock=lambda: T0,
                          transports={"hubspot": httpx.ASGITransport(app=sandbox.app)}))
    train_from_store(settings, "main", store, now=T0)
    store.close()
    return work / "model"


class Rig:
    """A seeded sandbox on a loopback port, a store and settings pointing at it."""

    def __init__(self, sandbox: HubSpotSandbox, base_url: str, work: Path, model_dir: Path, time: FakeTime,
                 **pipeline: Any) -> None:
        self.sandbox = sandbox
        self.time = time
        self.settings = _settings(base_url, work, model_dir, **pipeline)
        self.store = Store(self.settings.store.url)
        self.store.create_all()
        self.model = load_model(self.settings)

    async def cycle(self, *, dry_run: bool = False, model: bool = True) -> CycleReport:
        return await run_cycle(self.settings, "main", self.store, dry_run=dry_run, clock=self.time.now,
                               timing=self.time.timing(), model=self.model, score=model)

    def snapshot(self) -> dict[str, Any]:
        """Everything a dry run must leave untouched."""
        with self.store.unit(dry_run=True) as u:
            return {
                "counts": {t: u.count(t) for t in ("lead", "account", "activity", "score", "ledger", "outbox",
                                                   "run", "quarantine", "cursor")},
                "cursors": [u.get_cursor("main", s) for s in ("accounts", "leads", "activities")],
                "outbox": u.outbox_counts(),
                "scores": u.scores("hubspot"),
            }


@pytest.fixture
def rig_factory(tmp_path: Path, model_dir: Path) -> Iterator[Any]:
    servers: list[Any] = []

    def make(contacts: int = 250, *, seed: int = 5, limits: HubSpotLimits | None = None,
             faults: FaultSettings | None = None, malformed_share: float = 0.0, **pipeline: Any) -> Rig:
        time = FakeTime()
        sandbox = HubSpotSandbox(token=TOKEN, clock=time.now, limits=limits, faults=faults)
        sandbox.load(generate_dataset(seed=seed, contacts=contacts, now=T0, malformed_share=malformed_share))
        server = serve_on_loopback(sandbox.app)
        base_url = server.__enter__()
        servers.append(server)
        return Rig(sandbox, base_url, tmp_path, model_dir, time, **pipeline)

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def _contact_scores(sandbox: HubSpotSandbox) -> dict[str, str]:
    return {cid: rec["properties"].get("leadrelay_score") or "" for cid, rec in sandbox.objects["contacts"].items()}


@pytest.mark.anyio
async def test_scores_land_in_the_crm_and_an_unchanged_rerun_writes_nothing(rig_factory: Any) -> None:
    """Every stored lead's score reaches the sandbox; a second run with no source change makes zero writes."""
    rig = rig_factory()
    first = await rig.cycle()
    assert first.status == "succeeded", first.errors
    assert first.scored == first.changed["leads"] > 0
    with rig.store.unit(dry_run=True) as u:
        stored = {k: str(v["score"]) for k, v in u.scores("hubspot").items()}
    pushed = _contact_scores(rig.sandbox)
    assert stored
    assert all(pushed[k] == v for k, v in stored.items())
    writes = rig.sandbox.stats.write_calls
    rig.time.elapsed += 60
    again = await rig.cycle()
    assert rig.sandbox.stats.write_calls == writes
    assert again.plan["operations"] == []


@pytest.mark.anyio
async def test_incremental_pull_picks_up_only_changes(rig_factory: Any) -> None:
    """After a change to one contact, the next cycle stores and rescores that contact only."""
    rig = rig_factory()
    await rig.cycle()
    rig.time.elapsed += 3600
    cid = next(iter(rig.sandbox.objects["contacts"]))
    rig.sandbox.update("contacts", cid, {"jobtitle": "Chief Revenue Officer"})
    report = await rig.cycle()
    assert report.changed["leads"] == 1
    assert report.scored == 1
    with rig.store.unit(dry_run=True) as u:
        assert u.load_leads("hubspot", [cid])[0]["title"] == "Chief Revenue Officer"


@pytest.mark.anyio
async def test_dry_run_writes_nothing_and_predicts_the_real_run(rig_factory: Any) -> None:
    """A dry run sends no write, leaves cursors, ledger, outbox and scores as they were, and plans
    exactly the operations the real run then enqueues."""
    rig = rig_factory()
    await rig.cycle(model=False)  # pull only: history in the store, nothing scored yet
    before = rig.snapshot()
    writes = rig.sandbox.stats.write_calls
    dry = await rig.cycle(dry_run=True)
    assert rig.sandbox.stats.write_calls == writes
    assert rig.snapshot() == before
    real = await rig.cycle()
    assert dry.plan == real.plan
    assert dry.plan["operations"][0]["count"] == real.delivery[0]["outcomes"]["acknowledged"]
    assert [s["target"] for s in dry.samples] == [s["target"] for s in real.samples]
    assert [s["payload"]["score"] for s in dry.samples] == [s["payload"]["score"] for s in real.samples]


@pytest.mark.anyio
async def test_batches_over_one_hundred_are_split(rig_factory: Any) -> None:
    """250 score updates go out as three batch calls of at most 100 inputs (the sandbox refuses 101)."""
    rig = rig_factory(contacts=250)
    report = await rig.cycle()
    acked = report.delivery[0]["outcomes"]["acknowledged"]
    assert acked == report.scored
    assert rig.sandbox.stats.requests[UPDATE] == -(-acked // 100)
    assert rig.sandbox.stats.status_codes.get(400, 0) == 0


@pytest.mark.anyio
async def test_partial_failure_acknowledges_only_the_successes(rig_factory: Any) -> None:
    """Contacts deleted in the CRM before delivery are rejected with HubSpot's reason; the rest land."""
    rig = rig_factory(contacts=120)
    await rig.cycle(model=False)
    gone = sorted(rig.sandbox.objects["contacts"])[:3]
    for cid in gone:
        rig.sandbox.archive_object("contacts", cid)
    report = await rig.cycle()
    outcomes = report.delivery[0]["outcomes"]
    assert outcomes["rejected"] == 3
    assert outcomes["acknowledged"] == report.scored - 3
    with rig.store.unit(dry_run=True) as u:
        assert set(u.ledger("hubspot", "update_lead", gone)) == set()
        dead = u.dead_letters()
    assert sorted(d["target"] for d in dead) == gone
    assert all(d["last_error"] for d in dead)


@pytest.mark.anyio
async def test_rate_limit_429_is_waited_out(rig_factory: Any) -> None:
    """With a tight burst limit the sandbox answers 429s; the agent waits them out and delivers everything."""
    rig = rig_factory(contacts=150, limits=HubSpotLimits(burst=3, window_ms=10_000, daily=1_000_000))
    report = await rig.cycle()
    assert report.status == "succeeded", report.errors
    assert rig.sandbox.stats.status_codes[429] >= 1
    assert report.delivery[0]["outcomes"]["acknowledged"] == report.scored
    assert rig.time.waits  # the agent waited (on the injected clock), it did not fail


@pytest.mark.anyio
async def test_malformed_records_are_quarantined_and_the_rest_sync(rig_factory: Any) -> None:
    """Rows that break the data contract are kept with a reason naming the field; the others are scored."""
    rig = rig_factory(contacts=200, malformed_share=0.05)
    report = await rig.cycle()
    assert report.quarantined > 0
    assert all(":" in q["reason"] for q in report.quarantine_samples)
    assert report.scored > 0
    assert report.delivery[0]["outcomes"]["acknowledged"] == report.scored
    with rig.store.unit(dry_run=True) as u:
        assert len(u.quarantined()) == report.quarantined
