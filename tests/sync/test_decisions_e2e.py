"""Consent, routing and audiences end to end: HubSpot and Meta sandboxes on loopback sockets, a real model,
a SQLite store, the very cycle the CLI runs."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.sandbox import HubSpotSandbox, MetaSandbox, generate_dataset, serve_on_loopback
from sync import config
from sync.decision_store import MembershipRow
from sync.pipeline import CycleReport, load_model, run_cycle
from sync.store import OutboxRow, Store
from tests.sync.rig import T0, TOKEN, FakeTime

pytestmark = pytest.mark.anyio

META_TOKEN = "EAAG-decisions-e2e-token"
AD_ACCOUNT = "1000000000001"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass
class World:
    time: FakeTime
    hubspot: HubSpotSandbox
    meta: MetaSandbox
    audience_id: str
    settings: config.Settings
    store: Store
    model: Any

    async def cycle(self, *, dry_run: bool = False) -> CycleReport:
        return await run_cycle(self.settings, "main", self.store, dry_run=dry_run, clock=self.time.now,
                               timing=self.time.timing(), model=self.model)

    def emails_in_audience(self) -> set[str]:
        return self.meta.member_values(self.audience_id)

    def contact(self, key: str) -> dict[str, Any]:
        return dict(self.hubspot.objects["contacts"][key]["properties"])


@pytest.fixture
def world(tmp_path: Path, model_dir: Path) -> Iterator[World]:
    time = FakeTime()
    hubspot = HubSpotSandbox(token=TOKEN, clock=time.now)
    hubspot.load(generate_dataset(seed=5, contacts=250, now=T0))
    meta = MetaSandbox(token=META_TOKEN, ad_account_id=AD_ACCOUNT, clock=time.now)
    audience_id = meta.create_audience("Hot leads")
    reps = sorted(str(o["id"]) for o in hubspot.owners)[:3]
    with contextlib.ExitStack() as servers:
        hub_url = servers.enter_context(serve_on_loopback(hubspot.app))
        meta_url = servers.enter_context(serve_on_loopback(meta.app))
        settings = config.parse({
            "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
            "scoring": {"model_dir": str(model_dir)},
            "connections": {
                "hubspot": {"type": "hubspot", "token": TOKEN, "base_url": hub_url, "rate_limit_requests": 100_000},
                "meta": {"type": "meta", "access_token": META_TOKEN, "ad_account_id": AD_ACCOUNT,
                         "base_url": f"{meta_url}/v25.0", "rate_limit_requests": 100_000},
            },
            "audiences": {"hot": {"destination": "meta", "audience_id": audience_id, "entry_threshold": 40,
                                  "exit_threshold": 30}},
            "routing": {"sdr": {"reps": [{"id": r, "daily_capacity": 4} for r in reps],
                                "territories": [{"name": "all", "reps": reps}], "min_score": 40,
                                "take_owned_leads": True, "sla_hours": 24}},
            "pipelines": {"main": {"source": "hubspot", "destination": "hubspot", "audiences": ["hot"],
                                   "routing": "sdr"}},
        }, env={})
        store = Store(settings.store.url)
        store.create_all()
        yield World(time, hubspot, meta, audience_id, settings, store, load_model(settings))
        store.close()


def outbox_keys(store: Store) -> list[tuple[str, str, str, str]]:
    t = OutboxRow.__table__
    with store.unit(dry_run=True) as unit:
        return sorted(tuple(row) for row in unit.conn.execute(
            sa.select(t.c.destination, t.c.operation, t.c.target, t.c.idempotency_key)))


async def test_dry_run_predicts_every_operation_the_real_run_enqueues(world: World) -> None:
    """The dry run's plan and the real run's outbox hold the same operations, key for key."""
    dry = await world.cycle(dry_run=True)
    predicted = sorted((o["destination"], o["operation"], o["target"], o["idempotency_key"])
                       for o in dry.operations)
    assert outbox_keys(world.store) == []  # the dry run wrote nothing
    assert world.emails_in_audience() == set()
    real = await world.cycle()
    assert predicted == outbox_keys(world.store)
    kinds = {(d, o) for d, o, _, _ in predicted}
    assert {("hubspot", "update_lead"), ("hubspot", "create_task"), ("meta", "audience_add")} <= kinds
    assert dry.decisions == real.decisions


async def test_routing_writes_owners_and_tasks_and_respects_capacity(world: World) -> None:
    """Assigned leads get the rep as owner and one follow-up task each; no rep exceeds its daily capacity."""
    report = await world.cycle()
    assert report.status == "succeeded", report.errors
    assigned = report.decisions["routing"]["actions"].get("assign", 0)
    assert 0 < assigned <= 12
    owners: dict[str, int] = {}
    routed = 0
    for task in world.hubspot.objects["tasks"].values():
        owner = task["properties"]["hubspot_owner_id"]
        owners[owner] = owners.get(owner, 0) + 1
        routed += 1
    assert routed == assigned
    assert max(owners.values()) <= 4
    with world.store.unit(dry_run=True) as unit:
        from sync.decision_store import load_routing

        state = load_routing(unit, "sdr")
    for lead, assignment in state.assignments.items():
        if assignment.rep_id is not None:
            assert world.contact(lead)["hubspot_owner_id"] == assignment.rep_id


async def test_a_revocation_empties_the_person_from_the_meta_audience_in_the_same_cycle(world: World) -> None:
    """Withdrawing ads consent in the CRM removes the person's hash from the Meta audience on the next cycle."""
    await world.cycle()
    members = world.emails_in_audience()
    assert members, "the first cycle should have added people"
    with world.store.unit(dry_run=True) as unit:
        t = MembershipRow.__table__
        person = unit.conn.execute(sa.select(t.c.person).where(t.c.exited_at.is_(None)).order_by(t.c.person)
                                   ).scalars().first()
    email = world.contact(person)["email"]
    assert sha(email.strip().lower()) in members
    world.time.elapsed += 3600
    world.hubspot.update("contacts", person, {"leadrelay_ads_consent": "denied"})
    report = await world.cycle()
    assert report.decisions["audiences"]["hot"]["removed_for_consent"] == 1
    assert sha(email.strip().lower()) not in world.emails_in_audience()
    assert world.emails_in_audience() == members - {sha(email.strip().lower())}


async def test_nobody_without_granted_ads_consent_is_added(world: World) -> None:
    """Only people whose ads consent is recorded as granted reach the Meta audience."""
    await world.cycle()
    granted = {sha(p["properties"]["email"].strip().lower()) for p in world.hubspot.objects["contacts"].values()
               if p["properties"].get("leadrelay_ads_consent") == "granted" and p["properties"].get("email")}
    members = world.emails_in_audience()
    assert members
    assert members <= granted


async def test_a_second_cycle_at_the_same_state_changes_nothing(world: World) -> None:
    """Decisions are stable: a re-run with no new data and no time passed plans no operation."""
    await world.cycle()
    again = await world.cycle()
    assert again.plan["operations"] == []
    assert again.decisions["audiences"]["hot"]["adds"] == 0
    assert again.decisions["routing"]["actions"].get("assign", 0) == 0
    assert world.time.now() - T0 < timedelta(hours=1)


async def test_a_dry_run_on_a_store_from_before_decisions_creates_no_table(world: World) -> None:
    """A dry run against a store without the decision tables plans as usual and leaves the schema as it was."""
    with world.store.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE membership"))
        conn.execute(sa.text("DROP TABLE consent_event"))
    report = await world.cycle(dry_run=True)
    assert report.status == "succeeded", report.errors
    assert report.decisions["audiences"]["hot"]["adds"] > 0
    tables = set(sa.inspect(world.store.engine).get_table_names())
    assert "membership" not in tables
    assert "consent_event" not in tables


async def test_explain_tells_one_persons_story_masked_and_the_audit_log_verifies(world: World) -> None:
    """explain shows score, consent, audience stay and operations with the e-mail masked; the audit chain the
    cycle wrote verifies, and editing one entry is detected."""
    from sync import audit
    from sync.explain import explain

    await world.cycle()
    with world.store.unit(dry_run=True) as unit:
        t = MembershipRow.__table__
        person = unit.conn.execute(sa.select(t.c.person).order_by(t.c.person)).scalars().first()
        story = explain(unit, "hubspot", person)
        revealed = explain(unit, "hubspot", person, reveal=True)
        checked = audit.verify(unit.conn, unit.dialect)
    assert story is not None
    assert revealed is not None
    email = world.contact(person)["email"]
    assert email not in str(story)
    assert revealed["lead"]["email"] == email
    assert story["score"]["score"] >= 40
    assert [m["audience"] for m in story["audiences"]] == ["hot"]
    assert any(o["operation"] == "audience_add" and o["status"] == "acknowledged" for o in story["operations"])
    assert {c["channel"] for c in story["consent"]} >= {"ads"}
    assert checked.ok, checked.problems
    assert checked.checked > 0
    with world.store.engine.begin() as conn:
        conn.execute(sa.text("UPDATE audit_log SET data = replace(data, 'acknowledged', 'rejected') "
                             "WHERE id = (SELECT min(id) FROM audit_log WHERE kind = 'outcome')"))
    with world.store.unit(dry_run=True) as unit:
        tampered = audit.verify(unit.conn, unit.dialect)
    assert not tampered.ok
    assert any("altered" in p or "hash" in p for p in tampered.problems), tampered.problems


async def test_lift_report_compares_treated_and_control_of_a_routing_holdout(world: World) -> None:
    """With a routing holdout share, control leads are recorded and not routed, and the lift report counts
    both groups."""
    from sync.explain import lift_report

    rule = world.settings.routing["sdr"]
    routing = {**rule, "holdout_share": 0.5, "min_score": 5,
               "reps": [{**rep, "daily_capacity": 1000} for rep in rule["reps"]]}
    settings = world.settings.model_copy(update={"routing": {"sdr": routing}})
    world.settings = settings
    report = await world.cycle()
    actions = report.decisions["routing"]["actions"]
    assert actions.get("holdout", 0) > 10
    assert actions.get("assign", 0) > 10
    with world.store.unit(dry_run=True) as unit:
        rows = lift_report(unit, "hubspot", rule="routing:sdr")
    [row] = rows
    assert row["rule"] == "routing:sdr"
    assert row["control"] == actions["holdout"]
    assert row["treated"] == actions.get("assign", 0)  # treated are the leads routed; skips enter no group
    assert sum(1 for t in world.hubspot.objects["tasks"].values()) == actions.get("assign", 0)


async def test_dry_run_report_masks_personal_data(world: World) -> None:
    """The dry-run report's samples never carry a person's e-mail address in clear."""
    dry = await world.cycle(dry_run=True)
    adds = [s for s in dry.samples if s["operation"] == "audience_add"]
    text = str(dry.as_dict())
    emails = [p["properties"]["email"] for p in world.hubspot.objects["contacts"].values()
              if p["properties"].get("email")]
    assert not [e for e in emails if e in text]
    assert adds or dry.decisions["audiences"]["hot"]["adds"] > 0


async def test_an_email_change_swaps_the_hash_in_the_meta_audience_and_keeps_the_person(world: World) -> None:
    """A member whose e-mail changes in the CRM keeps their key, consent and place in the audience: the next
    cycle removes the old hash from the Meta audience and adds the new one."""
    from sync.decision_store import consent_history, membership_history

    await world.cycle()
    with world.store.unit(dry_run=True) as unit:
        t = MembershipRow.__table__
        person = unit.conn.execute(sa.select(t.c.person).where(t.c.exited_at.is_(None)).order_by(t.c.person)
                                   ).scalars().first()
        consent_before = consent_history(unit, "hubspot", person)
    old = world.contact(person)["email"]
    local, _, domain = old.partition("@")
    new = f"moved.{local}@{domain}"  # same domain: same features, so the person stays a member
    members = world.emails_in_audience()
    assert sha(old.strip().lower()) in members
    world.time.elapsed += 3600
    world.hubspot.update("contacts", person, {"email": new})
    report = await world.cycle()
    assert report.status == "succeeded", report.errors
    assert report.decisions["audiences"]["hot"]["email_changed"] == 1
    after = world.emails_in_audience()
    assert sha(old.strip().lower()) not in after
    assert sha(new.lower()) in after
    assert after == (members - {sha(old.strip().lower())}) | {sha(new.lower())}
    with world.store.unit(dry_run=True) as unit:
        assert consent_history(unit, "hubspot", person) == consent_before
        stays = membership_history(unit, person)
        assert unit.load_leads("hubspot", [person])[0]["email"] == new
    assert [s["audience"] for s in stays] == ["hot", "hot"]
    assert stays[0]["exited_at"] is not None
    assert "e-mail changed" in stays[0]["exit_reason"]
    assert stays[1]["exited_at"] is None
    assert old not in str(report.as_dict())  # the reason masks both addresses
    again = await world.cycle()
    assert again.decisions["audiences"]["hot"]["email_changed"] == 0
    assert again.plan["operations"] == []


async def test_duplicates_are_reported_never_merged_and_company_domains_match_accounts(world: World) -> None:
    """Two leads with one mailbox are reported (masked) and both kept; a lead without an account whose e-mail is
    at a company's domain is matched to it with a confidence; free-mail addresses never match."""
    contacts = world.hubspot.objects["contacts"]
    unattached = sorted((cid for cid in contacts if not world.hubspot.associations.get(("contacts", cid, "companies"))),
                        key=int)
    company = next(iter(world.hubspot.objects["companies"].values()))["properties"]
    matched = unattached[-1]
    first, second = [cid for cid in sorted(contacts, key=int) if cid != matched][:2]
    shared = world.contact(first)["email"]
    world.hubspot.update("contacts", second, {"email": f"  {shared.upper()} "})
    world.hubspot.update("contacts", matched, {"email": f"pat@{company['domain']}"})
    report = await world.cycle()
    identity = report.decisions["identity"]
    dup = identity["duplicates"]
    assert dup["groups"] == 1
    assert dup["samples"][0]["leads"] == sorted([first, second])
    assert shared not in str(report.as_dict())
    with world.store.unit(dry_run=True) as unit:
        assert len(unit.load_leads("hubspot", [first, second])) == 2  # never merged
        assert set(unit.scores("hubspot", [first, second])) == {first, second}
    accounts = identity["accounts"]
    assert accounts["without_account"] == len(unattached)
    assert accounts["matched"] == 1
    assert accounts["unmatched"] == len(unattached) - 1  # the rest are free mail
    [sample] = accounts["samples"]
    assert sample["lead"] == matched
    assert sample["confidence"] == 0.95
    assert sample["account"] == company["hs_object_id"]


async def test_explain_shows_the_features_behind_the_score(world: World) -> None:
    """explain recomputes the features as of the score's time with the model that scored it, and they
    reproduce the stored probability; after the record changes it says the values are no longer what the
    model saw."""
    from sync.explain import explain

    await world.cycle()
    person = next(iter(sorted(world.hubspot.objects["contacts"], key=int)))
    with world.store.unit(dry_run=True) as unit:
        story = explain(unit, "hubspot", person, model_dir=world.settings.scoring.model_dir)
    assert story is not None
    features = story["features"]
    assert features["reproduces_score"] is True
    assert features["model_version"] == story["score"]["model_version"]
    assert features["as_of"] == story["score"]["scored_at"]
    assert set(features["values"]) == set(world.model.spec.numeric_names + world.model.spec.categorical_names)
    assert abs(features["probability_recomputed"] - story["score"]["probability"]) < 1e-6
    with world.store.engine.begin() as conn:  # the account's record changes after the score
        conn.execute(sa.text("UPDATE account SET industry = 'CHANGED', employees = 123456"))
        conn.execute(sa.text("UPDATE lead SET title = 'Chief Executive Officer', account_key = "
                             "(SELECT min(key) FROM account)"))
    with world.store.unit(dry_run=True) as unit:
        changed = explain(unit, "hubspot", person, model_dir=world.settings.scoring.model_dir)
    assert changed is not None
    assert changed["features"]["reproduces_score"] is False
    assert "changed since" in changed["features"]["note"]
