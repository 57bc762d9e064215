"""Sales dispositions (``disposition_field``): a rep's lead status, pulled from the CRM, recorded as a
``disposition`` event when it changes, and usable as the training label of a predictive question."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from connectors.base import ActivityType, Lead
from scoring.features import FeatureSpec
from scoring.labels import build_examples
from scoring.question import PredictiveQuestion
from sync import config
from sync.audiences import AudienceSpec, Candidate, last_qualifying
from sync.dispositions import disposition_changes
from sync.subjects import build_subjects
from tests.sync.conftest import RigFactory
from tests.sync.rig import DESTINATION, TOKEN

pytestmark = pytest.mark.anyio
AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
STATUS = "hs_lead_status"


def lead(key: str, status: str | None, at: datetime = AT, **extra: Any) -> Lead:
    return Lead(key=key, updated_at=at, attributes={STATUS: status, **extra})


# --------------------------------------------------------------------------------------------------
# The change detector


def test_new_and_changed_values_make_one_event_each_and_unchanged_or_cleared_none() -> None:
    """A first-seen value and a changed value each give one event (with the previous value); the same
    value again, a cleared value and a lead without a value give none."""
    stored = {"same": {"attributes": {STATUS: "OPEN"}}, "moved": {"attributes": {STATUS: "OPEN"}},
              "cleared": {"attributes": {STATUS: "OPEN"}}}
    events, present = disposition_changes(STATUS, [
        lead("new", "UNQUALIFIED"), lead("same", "OPEN"), lead("moved", " OPEN_DEAL "), lead("cleared", ""),
        lead("none", None)], stored)
    assert present
    got = {e.lead_key: (e.attributes["value"], e.attributes["previous"]) for e in events}
    assert got == {"new": ("UNQUALIFIED", None), "moved": ("OPEN_DEAL", "OPEN")}
    assert all(e.type is ActivityType.DISPOSITION and e.occurred_at == AT for e in events)


def test_event_keys_are_stable_so_a_repeated_pull_adds_nothing() -> None:
    """The same lead, value and time give the same key; a later change of the same value a new one; a page
    repeating a lead counts its last record only."""
    (first,), _ = disposition_changes(STATUS, [lead("a", "OPEN")], {})
    (again,), _ = disposition_changes(STATUS, [lead("a", "OPEN")], {})
    (later,), _ = disposition_changes(STATUS, [lead("a", "OPEN", AT + timedelta(days=1))], {})
    assert first.key == again.key != later.key
    (last,), _ = disposition_changes(STATUS, [lead("a", "OPEN"), lead("a", "UNQUALIFIED")], {})
    assert last.attributes["value"] == "UNQUALIFIED"


def test_canonical_fields_are_read_from_the_lead_itself() -> None:
    """lifecycle_stage is read from the canonical field of the record and of the stored row."""
    record = Lead(key="a", updated_at=AT, lifecycle_stage="salesqualifiedlead")
    (event,), present = disposition_changes("lifecycle_stage", [record], {"a": {"lifecycle_stage": "lead"}})
    assert present
    assert event.attributes == {"value": "salesqualifiedlead", "previous": "lead",
                                            "field": "lifecycle_stage"}


def test_a_field_no_lead_carries_is_reported_absent() -> None:
    """When no lead of the page has the attribute at all, the detector says so (a property not pulled)."""
    events, present = disposition_changes(STATUS, [Lead(key="a", updated_at=AT, attributes={"x": 1})], {})
    assert events == []
    assert not present


def test_a_disposition_is_not_the_persons_activity_for_audience_time_to_live() -> None:
    """With "any activity" qualifying, a rep's disposition does not keep a person in an audience."""
    spec = AudienceSpec(name="a", destination="meta", audience_id="1", entry_threshold=50, exit_threshold=40,
                        ttl_days=30)
    now = AT + timedelta(days=40)
    person = Candidate(key="a", score=90, scored_at=now,
                       last_activity={"page_view": AT, "disposition": now - timedelta(days=1)})
    assert last_qualifying(person, spec, now) == AT


# --------------------------------------------------------------------------------------------------
# Over loopback, into labels


def _settings(rig: Any, **pipeline: Any) -> config.Settings:
    base = rig.settings.connections["hubspot"].options.base_url
    return config.parse({
        "store": {"url": rig.settings.store.url},
        "scoring": {"model_dir": str(rig.settings.scoring.model_dir)},
        "connections": {"hubspot": {"type": "hubspot", "token": TOKEN, "base_url": base,
                                    "rate_limit_requests": 100_000, "extra_contact_properties": [STATUS]}},
        "pipelines": {"main": {"source": "hubspot", "destination": DESTINATION, **pipeline}},
    }, env={})


def _dispositions(rig: Any) -> list[tuple[str, str, str | None, datetime]]:
    with rig.store.unit(dry_run=True) as u:
        rows = u.load_all_activities("hubspot")
    return sorted((key, attrs["value"], attrs["previous"], at) for key, events in rows.items()
                  for kind, at, attrs in events if kind == "disposition")


async def test_status_changes_in_the_crm_become_disposition_events_and_labels(rig_factory: RigFactory) -> None:
    """Statuses set by reps in the sandbox CRM are pulled as disposition events — once each, a change
    recorded with its previous value — and a disposition question labels exactly the leads with a positive
    or negative value in the window, by the first such verdict (an in-between status is not a verdict)."""
    rig = rig_factory(contacts=40)
    rig.settings = _settings(rig, disposition_field=STATUS, push_scores=False)
    ids = sorted(rig.sandbox.objects["contacts"], key=int)
    first = await rig.cycle(model=False)
    assert first.status == "succeeded", first.errors
    assert _dispositions(rig) == []  # nobody has a status yet
    assert not any("disposition_field" in w for w in first.warnings)

    rig.time.elapsed += 3600
    cutoff = rig.time.now()
    rig.time.elapsed += 86_400
    for cid in ids[:3]:
        rig.sandbox.update("contacts", cid, {STATUS: "OPEN_DEAL"})
    for cid in ids[3:5]:
        rig.sandbox.update("contacts", cid, {STATUS: "UNQUALIFIED"})
    rig.sandbox.update("contacts", ids[5], {STATUS: "IN_PROGRESS"})
    second = await rig.cycle(model=False)
    assert second.changed["dispositions"] == 6
    changed_at = rig.time.now()
    assert {(k, v) for k, v, _, _ in _dispositions(rig)} == {
        *((k, "OPEN_DEAL") for k in ids[:3]), *((k, "UNQUALIFIED") for k in ids[3:5]), (ids[5], "IN_PROGRESS")}

    again = await rig.cycle(model=False)  # the same records again: nothing new
    assert again.changed["dispositions"] == 0
    rig.time.elapsed += 86_400
    rig.sandbox.update("contacts", ids[5], {STATUS: "UNQUALIFIED"})
    await rig.cycle(model=False)
    moved = [d for d in _dispositions(rig) if d[0] == ids[5]]
    assert [(v, p) for _, v, p, _ in moved] == [("IN_PROGRESS", None), ("UNQUALIFIED", "IN_PROGRESS")]

    question = PredictiveQuestion.from_mapping({"horizon_days": 3, "target": {
        "event": "disposition", "positive": ["OPEN_DEAL"], "negative": ["UNQUALIFIED"]}})
    with rig.store.unit(dry_run=True) as u:
        leads = u.load_leads("hubspot", u.lead_keys("hubspot"))
        subjects = build_subjects(leads, u.load_accounts("hubspot", []), u.load_all_activities("hubspot"))
    examples = build_examples(FeatureSpec(), subjects, [cutoff], horizon_days=3, question=question)
    labels = dict(zip(examples.keys, examples.y.tolist(), strict=True))
    # ids[5]: IN_PROGRESS is neither value; its verdict in the window is the later UNQUALIFIED. The other
    # 34 contacts have no verdict in the window and are left out.
    assert labels == {**dict.fromkeys(ids[:3], 1), **dict.fromkeys(ids[3:6], 0)}
    assert changed_at > cutoff


async def test_a_field_the_source_does_not_pull_is_named_in_a_warning(rig_factory: RigFactory) -> None:
    """disposition_field naming a property not in the source's extra properties warns once, naming it and
    where to add it; the cycle succeeds."""
    rig = rig_factory(contacts=20, disposition_field="hs_rep_verdict")
    report = await rig.cycle(model=False)
    assert report.status == "succeeded", report.errors
    warned = [w for w in report.warnings if "disposition_field" in w]
    assert len(warned) == 1
    assert "'hs_rep_verdict'" in warned[0]
    assert "extra_contact_properties" in warned[0]
