"""update_account end to end over real loopback sockets: a cycle with a trained account model writes each
scored account's score, band and model version to the account object itself (a HubSpot company, a
Salesforce Account), sends nothing again while they stay the same, duplicates nothing when a delivery's
answer is lost, writes nothing on a dry run, and says once why it wrote nothing when it cannot."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.sandbox import SalesforceSandbox, generate_dataset
from connectors.testing import FaultyApp, RecordedCall
from sync import config
from sync.decision_store import account_scores
from sync.pipeline import run_cycle
from sync.store import Store
from tests.sync.conftest import RigFactory
from tests.sync.rig import T0, TOKEN, DropAfterEffect, FakeTime, Rig, outbox_rows
from tests.sync.test_accounts import account_model  # noqa: F401 - the module-scoped trained account model
from tests.sync.test_e2e_breadth import SF_CLIENT_ID, SF_REFRESH, SF_SECRET, World, make_world, serve

pytestmark = pytest.mark.anyio

OPERATION = "update_account"
COMPANY_UPDATE = "/crm/v3/objects/companies/batch/update"
PROPERTIES = {"leadrelay_account_score": "score", "leadrelay_account_band": "band",
              "leadrelay_account_model_version": "model_version"}
SF_FIELDS = {"Leadrelay_Account_Score__c": "score", "Leadrelay_Account_Band__c": "band",
             "Leadrelay_Account_Model_Version__c": "model_version"}
COMPOSITE = "/composite/sobjects"


def with_accounts(rig: Rig, account_dir: Path, *, pipeline: dict[str, Any] | None = None, **connection: Any) -> Rig:
    """The rig re-pointed at a config with ``[scoring.account]``; ``connection`` adds HubSpot options,
    ``pipeline`` pipeline options."""
    base = rig.settings
    conn = {"type": "hubspot", "token": TOKEN, "base_url": base.connections["hubspot"].options.base_url,
            "rate_limit_requests": 100_000, **connection}
    rig.settings = config.parse({
        "store": {"url": base.store.url},
        "scoring": {"model_dir": base.scoring.model_dir, "account": {"model_dir": str(account_dir)}},
        "connections": {"hubspot": conn},
        "pipelines": {"main": {"source": "hubspot", "destination": "hubspot", **(pipeline or {})}},
    }, env={})
    return rig


def stored_accounts(store: Store, source: str) -> dict[str, dict[str, Any]]:
    with store.unit(dry_run=True) as unit:
        return account_scores(unit, source)


def account_ops(store: Store) -> list[dict[str, Any]]:
    return [r for r in outbox_rows(store) if r["operation"] == OPERATION]


def planned(report: Any, operation: str = OPERATION) -> int:
    return sum(o["count"] for o in report.plan.get("operations", []) if o["operation"] == operation)


def rescore_everything(store: Store, source: str) -> None:
    """Mark every lead due for rescoring, so the next cycle scores every account again."""
    with store.unit() as unit:
        unit.mark_for_rescore(source, unit.lead_keys(source))


def held(record: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    return {field: record.get(field) for field in names}


def expected(row: dict[str, Any], names: dict[str, str], *, text: bool) -> dict[str, Any]:
    return {field: (str(row[key]) if text else row[key]) for field, key in names.items()}


# --------------------------------------------------------------------------------------------------
# HubSpot companies


async def test_hubspot_companies_carry_the_account_score_and_an_unchanged_score_is_not_sent_again(
        rig_factory: RigFactory, account_model: dict[str, Any]) -> None:  # noqa: F811
    """Every scored account's company holds its stored score, band and model version, each written by one
    acknowledged update_account; a cycle that scores every account again at the same state plans none and
    sends no companies update."""
    rig = with_accounts(rig_factory(contacts=150, scoring_clock=lambda: T0), account_model["dir"])
    reports = await rig.drain()
    assert not any(r.errors for r in reports), [r.errors for r in reports]
    stored = stored_accounts(rig.store, "hubspot")
    assert len(stored) >= 10
    companies = rig.sandbox.objects["companies"]
    for key, row in stored.items():
        assert held(companies[key]["properties"], PROPERTIES) == expected(row, PROPERTIES, text=True), key
    ops = account_ops(rig.store)
    assert sorted(r["target"] for r in ops) == sorted(stored)
    assert {r["status"] for r in ops} == {"acknowledged"}
    assert planned(reports[0]) == len(stored)
    sent = rig.sandbox.stats.requests[f"POST {COMPANY_UPDATE}"]
    assert sent == -(-len(stored) // 100)  # in batches of HubSpot's 100

    rescore_everything(rig.store, "hubspot")
    again = await rig.cycle()
    assert not again.errors
    assert again.account["scored"] > len(stored) // 2  # accounts scored again, at the same state
    assert planned(again) == 0
    assert again.plan["unchanged"] >= again.account["scored"]
    assert rig.sandbox.stats.requests[f"POST {COMPANY_UPDATE}"] == sent
    assert len(account_ops(rig.store)) == len(ops)


async def test_hubspot_lost_answer_then_rerun_duplicates_nothing(rig_factory: RigFactory,
                                                                 account_model: dict[str, Any]) -> None:  # noqa: F811
    """A companies update applied but whose answer is lost is sent again (it is idempotent): afterwards each
    account has exactly one update_account, acknowledged, one ledger entry, its company the right values and
    no company was created."""
    drops: list[DropAfterEffect] = []

    def wrap(app: Any) -> Any:
        drops.append(DropAfterEffect(app, "POST", COMPANY_UPDATE))
        return drops[0]

    rig = with_accounts(rig_factory(contacts=150, scoring_clock=lambda: T0, wrap=wrap), account_model["dir"])
    companies_before = len(rig.sandbox.objects["companies"])
    await rig.drain()
    assert drops[0].dropped == 1
    assert rig.open_operations() == 0
    stored = stored_accounts(rig.store, "hubspot")
    ops = account_ops(rig.store)
    assert len(ops) == len({r["target"] for r in ops}) == len(stored)
    assert {r["status"] for r in ops} == {"acknowledged"}
    with rig.store.unit(dry_run=True) as unit:
        assert len(unit.ledger("hubspot", OPERATION, list(stored))) == len(stored)
    assert len(rig.sandbox.objects["companies"]) == companies_before
    for key, row in stored.items():
        assert held(rig.sandbox.objects["companies"][key]["properties"], PROPERTIES) == expected(
            row, PROPERTIES, text=True)
    # The lost batch was sent twice; nothing else was.
    assert rig.sandbox.stats.requests[f"POST {COMPANY_UPDATE}"] == -(-len(stored) // 100) + 1


async def test_hubspot_dry_run_shows_account_updates_and_writes_nothing(rig_factory: RigFactory,
                                                                        account_model: dict[str, Any]) -> None:  # noqa: F811
    """A dry run lists an update_account per scored account, with its key and reason, and leaves the store and
    every company as they were."""
    rig = with_accounts(rig_factory(contacts=150, scoring_clock=lambda: T0), account_model["dir"])
    before = rig.snapshot()
    report = await rig.cycle(dry_run=True)
    assert report.account["scored"] > 0
    assert planned(report) == report.account["scored"]
    shown = [o for o in report.operations if o["operation"] == OPERATION]
    assert len(shown) == report.account["scored"]
    assert all(o["reason"].startswith("account scored ") and o["idempotency_key"].startswith("lr-") for o in shown)
    assert rig.snapshot() == before
    assert stored_accounts(rig.store, "hubspot") == {}
    assert rig.sandbox.stats.requests[f"POST {COMPANY_UPDATE}"] == 0
    assert not any(c["properties"].get("leadrelay_account_score") for c in rig.sandbox.objects["companies"].values())


async def test_hubspot_missing_company_property_is_one_clear_error_and_keeps_the_updates(
        rig_factory: RigFactory, account_model: dict[str, Any]) -> None:  # noqa: F811
    """Mapped to a company property the portal lacks, the run reports one configuration error naming it, the
    contacts' score updates are still delivered, and the account updates wait in the outbox (no dead letters)
    until the property exists."""
    rig = with_accounts(rig_factory(contacts=150, scoring_clock=lambda: T0), account_model["dir"],
                        account_score_properties={"account_band": "leadrelay_fit_band"})
    report = await rig.cycle()
    assert report.status == "partial"
    assert len(report.errors) == 1
    assert "'leadrelay_fit_band'" in report.errors[0]
    assert "account_score_properties" in report.errors[0]
    delivered = [d for d in report.delivery if d["destination"] == "hubspot"]
    assert delivered[0]["outcomes"].get("acknowledged", 0) >= 100  # the contacts' updates
    assert not delivered[0]["outcomes"].get("rejected")
    ops = account_ops(rig.store)
    assert ops
    assert {r["status"] for r in ops} == {"pending"}
    assert not any(c["properties"].get("leadrelay_account_score") for c in rig.sandbox.objects["companies"].values())

    rig.sandbox.add_property("companies", {"name": "leadrelay_fit_band", "label": "Fit band"})  # the admin acts
    fixed = await rig.cycle()
    assert not fixed.errors
    assert {r["status"] for r in account_ops(rig.store)} == {"acknowledged"}
    stored = stored_accounts(rig.store, "hubspot")
    assert {rig.sandbox.objects["companies"][k]["properties"].get("leadrelay_fit_band") for k in stored} == {
        row["band"] for row in stored.values()}


@pytest.mark.parametrize(("options", "why", "lead_updates"), [
    ({"account_score_properties": {"account_score": "", "account_band": "", "model_version": ""}},
     "destination 'hubspot' maps no account score field", True),
    ({"pipeline": {"push_scores": False}}, "push_scores is off", False),
])
async def test_no_account_update_is_planned_when_none_can_be_written_and_the_report_says_why_once(
        rig_factory: RigFactory, account_model: dict[str, Any], options: dict[str, Any], why: str,  # noqa: F811
        lead_updates: bool) -> None:
    """With every account score property unmapped (or scores not pushed at all), no update_account is planned,
    the report says why once (not a warning per batch), and the leads' updates go on as configured."""
    rig = with_accounts(rig_factory(contacts=150, scoring_clock=lambda: T0), account_model["dir"], **options)
    report = await rig.cycle()
    assert not report.errors
    assert report.account["scored"] > 0
    assert planned(report) == 0
    assert (planned(report, "update_lead") > 0) is lead_updates
    assert report.account["not_written"].startswith(f"account scores not written to accounts: {why}")
    assert not [w for w in report.warnings if "account" in w]
    assert account_ops(rig.store) == []


# --------------------------------------------------------------------------------------------------
# Salesforce Accounts


@pytest.fixture
def salesforce(tmp_path: Path, model_dir: Path, account_model: dict[str, Any]  # noqa: F811
               ) -> Iterator[tuple[World, SalesforceSandbox]]:
    time = FakeTime()
    sf = SalesforceSandbox(client_id=SF_CLIENT_ID, client_secret=SF_SECRET, refresh_token=SF_REFRESH,
                           clock=time.now, limits=None)
    sf.load(generate_dataset(seed=5, contacts=250, now=T0))
    apps: dict[str, FaultyApp] = {}
    with contextlib.ExitStack() as servers:
        url = serve(servers, apps, time, "salesforce", sf.app)
        world = servers.enter_context(make_world("salesforce-accounts", tmp_path, model_dir, time, apps, {
            "salesforce": {"type": "salesforce", "client_id": SF_CLIENT_ID, "client_secret": SF_SECRET,
                           "refresh_token": SF_REFRESH, "login_url": url, "rate_limit_requests": 100_000,
                           "lead_fields": {"account_key": "Account__c"}},
        }, pipelines={"main": {"source": "salesforce", "destination": "salesforce"}}))
        world.settings = world.settings.model_copy(update={"scoring": world.settings.scoring.model_copy(update={
            "account": config.AccountScoringSettings(model_dir=str(account_model["dir"]))})})
        yield world, sf


def account_patches(world: World) -> list[RecordedCall]:
    """PATCH /composite/sobjects requests carrying Account records."""
    return [c for c in world.calls("salesforce") if c.method == "PATCH" and c.path.endswith(COMPOSITE)
            and any(r.get("attributes", {}).get("type") == "Account" for r in (c.json_body() or {}).get("records", []))]


async def cycle_at_t0(world: World, *, dry_run: bool = False) -> Any:
    """A cycle whose scoring clock stays at T0 (same scores every time)."""
    return await run_cycle(world.settings, "main", world.store, dry_run=dry_run, clock=lambda: T0,
                           timing=world.time.timing(), model=world.model)


async def test_salesforce_accounts_carry_the_account_score_once_and_a_dry_run_writes_nothing(
        salesforce: tuple[World, SalesforceSandbox]) -> None:
    """A dry run lists the update_account operations and changes no Account; the real cycle writes each
    scored Account's score, band and model version with Sforce-Auto-Assign: FALSE; rescoring at the same
    state plans and sends none."""
    world, sf = salesforce
    dry = await cycle_at_t0(world, dry_run=True)
    assert planned(dry) > 0
    assert account_patches(world) == []
    assert not any(a.get("Leadrelay_Account_Score__c") is not None for a in sf.records["Account"].values())

    report = await cycle_at_t0(world)
    assert report.status == "succeeded", report.errors
    stored = stored_accounts(world.store, "salesforce")
    assert len(stored) >= 10
    assert planned(report) == len(stored) == planned(dry)
    for key, row in stored.items():
        assert held(sf.records["Account"][key], SF_FIELDS) == expected(row, SF_FIELDS, text=False), key
    patches = account_patches(world)
    assert len(patches) == -(-len(stored) // 200)
    assert {c.headers.get("sforce-auto-assign") for c in patches} == {"FALSE"}
    assert {r["status"] for r in account_ops(world.store)} == {"acknowledged"}

    rescore_everything(world.store, "salesforce")
    again = await cycle_at_t0(world)
    assert again.account["scored"] > len(stored) // 2  # accounts scored again, at the same state
    assert planned(again) == 0
    assert again.plan["unchanged"] >= again.account["scored"]
    assert len(account_patches(world)) == len(patches)


async def test_salesforce_lost_account_answer_then_rerun_duplicates_nothing(
        salesforce: tuple[World, SalesforceSandbox]) -> None:
    """The Account PATCH whose answer is lost is sent again: each account ends with one acknowledged
    update_account and its Account holds the score; no Account was created."""
    world, sf = salesforce
    faulty = world.apps["salesforce"]
    faulty.plan.drop_after(match=lambda c: c.method == "PATCH" and c.path.endswith(COMPOSITE)
                           and b'"Account"' in c.body)
    accounts_before = len(sf.records["Account"])
    for _ in range(5):
        await cycle_at_t0(world)
        if world.open_operations() == 0:
            break
        world.time.elapsed += 120
    assert [c.fault for c in faulty.calls].count("drop_after") == 1
    assert world.open_operations() == 0
    stored = stored_accounts(world.store, "salesforce")
    ops = account_ops(world.store)
    assert len(ops) == len({r["target"] for r in ops}) == len(stored)
    assert {r["status"] for r in ops} == {"acknowledged"}
    assert len(sf.records["Account"]) == accounts_before
    for key, row in stored.items():
        assert held(sf.records["Account"][key], SF_FIELDS) == expected(row, SF_FIELDS, text=False)
