"""One cycle end to end over real loopback sockets: HubSpot sandbox -> store -> ONNX score -> HubSpot."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.sandbox import FaultSettings, HubSpotLimits
from tests.sync.rig import contact_scores

UPDATE = "POST /crm/v3/objects/contacts/batch/update"


@pytest.mark.anyio
async def test_scores_land_in_the_crm_and_an_unchanged_rerun_writes_nothing(rig_factory: Any) -> None:
    """Every stored lead's score reaches the sandbox; a second run with no source change makes zero writes."""
    rig = rig_factory()
    first = await rig.cycle()
    assert first.status == "succeeded", first.errors
    assert first.scored == first.changed["leads"] > 0
    with rig.store.unit(dry_run=True) as u:
        stored = {k: str(v["score"]) for k, v in u.scores("hubspot").items()}
    pushed = contact_scores(rig.sandbox)
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
    """429 storms (the budget spent by someone else) are waited out on the injected clock and everything is
    delivered; with a tight but honest budget the agent paces itself and provokes no 429 at all."""
    paced = rig_factory(contacts=150, limits=HubSpotLimits(burst=3, window_ms=10_000, daily=1_000_000))
    report = await paced.cycle()
    assert report.status == "succeeded", report.errors
    assert paced.sandbox.stats.status_codes.get(429, 0) == 0
    assert paced.time.waits  # it waited for the window instead
    rig = rig_factory(contacts=150, faults=FaultSettings(storm_429=0.2, storm_429_length=3))
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


@pytest.mark.anyio
async def test_follow_up_tasks_are_created_once_per_hot_lead(rig_factory: Any) -> None:
    """Leads at or over the threshold get exactly one follow-up task, associated with them; later runs,
    rescoring included, create no second one."""
    rig = rig_factory(contacts=300, follow_up={"min_score": 50, "due_hours": 4})
    first = await rig.cycle()
    assert first.status == "succeeded", first.errors
    with rig.store.unit(dry_run=True) as u:
        hot = {k for k, v in u.scores("hubspot").items() if v["score"] >= 50}
    assert hot, "the threshold should catch some leads in this dataset"
    tasks = list(rig.sandbox.objects["tasks"].values())
    assert len(tasks) == len(hot)
    linked = [list(rig.sandbox.associations.get(("tasks", t["id"], "contacts"), {})) for t in tasks]
    assert all(len(ids) == 1 for ids in linked)
    assert {ids[0] for ids in linked} == hot
    due = {t["properties"]["hs_timestamp"] for t in tasks}
    assert len(due) == 1  # all due four hours after this run
    rig.time.elapsed += 30 * 3600  # a day later: everything rescored, nothing new created
    again = await rig.cycle()
    assert again.status == "succeeded", again.errors
    assert len(rig.sandbox.objects["tasks"]) == len(hot)


@pytest.mark.anyio
async def test_overlapping_trigger_is_recorded_as_skipped(rig_factory: Any) -> None:
    """A run that finds its pipeline already running does nothing and is recorded as skipped."""
    from sync.locks import pipeline_lock

    rig = rig_factory(contacts=20)
    with pipeline_lock(rig.store, "main"):
        report = await rig.cycle()
    assert report.status == "skipped"
    assert "already running" in report.errors[0]
    assert sum(rig.sandbox.stats.requests.values()) == 0
    with rig.store.unit(dry_run=True) as u:
        assert [r["status"] for r in u.runs("main")] == ["skipped"]
