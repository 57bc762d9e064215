"""A cycle on the records a trigger named (``run_cycle(only=...)``): read by id over loopback, scored, planned
and delivered like any cycle, with no cursor moved."""

from __future__ import annotations

import httpx
import pytest

from sync.pipeline import run_cycle
from tests.sync.rig import TOKEN, Rig, contact_scores, outbox_rows

STREAMS = ("accounts", "leads", "activities")


def cursors(rig: Rig) -> list[str | None]:
    with rig.store.unit(dry_run=True) as unit:
        return [unit.get_cursor("main", s) for s in STREAMS]


def create_contacts(rig: Rig, count: int) -> list[str]:
    """New contacts in the sandbox, through its API (so its modified dates move as HubSpot's would)."""
    base = rig.settings.connections["hubspot"].options.base_url  # type: ignore[attr-defined]
    ids = []
    with httpx.Client(base_url=base, headers={"authorization": f"Bearer {TOKEN}"}) as client:
        for n in range(count):
            answer = client.post("/crm/v3/objects/contacts", json={"properties": {
                "email": f"new{n}@example.com", "firstname": f"New{n}", "jobtitle": "VP Marketing"}})
            answer.raise_for_status()
            ids.append(answer.json()["id"])
    return ids


@pytest.mark.anyio
async def test_targeted_cycle_writes_only_the_named_leads_and_moves_no_cursor(rig_factory) -> None:  # type: ignore[no-untyped-def]
    """Three new contacts, one named (plus an unknown id): only its operations are planned and delivered, by
    batch/read and no search; no cursor moves; the next incremental cycle brings the other two."""
    rig = rig_factory(contacts=60)
    await rig.drain()
    before = cursors(rig)
    assert all(before)
    named, *others = create_contacts(rig, 3)
    rig.sandbox.reset_stats()
    rig.time.elapsed += 5

    seen: list[dict[str, int]] = []
    report = await run_cycle(rig.settings, "main", rig.store, clock=rig.clock, timing=rig.time.timing(),
                             model=rig.model, only={"leads": [named, "99999999"]}, progress=seen.append)

    assert report.status == "succeeded", report.errors
    assert report.targeted == {"leads": 2}
    assert report.read["leads"] == 1
    assert any("1 leads key(s) named by the trigger not found" in w and "99999999" in w for w in report.warnings)
    assert rig.sandbox.stats.requests["POST /crm/v3/objects/contacts/batch/read"] == 1
    assert not any("search" in k or "events" in k for k in rig.sandbox.stats.requests)
    assert cursors(rig) == before
    written = {r["target"] for r in outbox_rows(rig.store) if r["run_id"] == report.run_id}
    assert written == {named}
    scores = contact_scores(rig.sandbox)
    assert scores[named]
    assert not any(scores[o] for o in others)
    assert seen[0] == {"pages": 1, "read": report.read["leads"], "scored": 0, "delivered": 0}
    assert seen[-1]["scored"] == report.scored
    assert seen[-1]["delivered"] >= 1

    rig.time.elapsed += 5
    follow = await rig.cycle()
    assert not follow.targeted
    assert all(contact_scores(rig.sandbox)[o] for o in others)
    assert cursors(rig) != before


@pytest.mark.anyio
async def test_targeted_cycle_falls_back_when_the_source_cannot_read_by_id(rig_factory, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A source that declares no reads by id gets an incremental pull instead, with a warning saying so."""
    from connectors.base import Capabilities
    from connectors.hubspot import HubSpotConnector

    caps = HubSpotConnector.capabilities
    monkeypatch.setattr(HubSpotConnector, "capabilities", Capabilities(
        streams=caps.streams, operations=caps.operations, rate_limit=caps.rate_limit))
    rig = rig_factory(contacts=40)
    await rig.drain()
    new = create_contacts(rig, 2)
    rig.time.elapsed += 5
    report = await run_cycle(rig.settings, "main", rig.store, clock=rig.clock, timing=rig.time.timing(),
                             model=rig.model, only={"leads": new[:1]})
    assert not report.targeted
    assert any("cannot read leads by key" in w for w in report.warnings)
    assert all(contact_scores(rig.sandbox)[c] for c in new)
