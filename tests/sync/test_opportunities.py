"""The opportunities stream end to end: stored set-based on both databases, pulled from the HubSpot and
Salesforce sandboxes over loopback into the store with their accounts, and the account model's label."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from connectors.base import Opportunity
from connectors.sandbox import HubSpotSandbox, SalesforceSandbox, generate_dataset, serve_on_loopback
from scoring.errors import ReleaseGateError
from sync import config
from sync.config import Settings
from sync.pipeline import CycleReport, run_cycle
from sync.store import OpportunityRow, Store, sqlite_file
from sync.subjects import build_account_subjects
from sync.training import (
    NothingToTrain,
    account_examples,
    account_feature_spec,
    account_question,
    train_accounts_from_store,
)
from tests.sync.rig import T0, TOKEN, build_settings, pull_history

DAY = timedelta(days=1)
SF_CLIENT_ID = "3MVG9-opps-test"
SF_SECRET = "opps-test-secret"
SF_REFRESH = "5Aep861-opps-test-refresh"


def opp(key: str, account: str | None, created: datetime, *, updated: datetime | None = None, **kw: Any) -> Opportunity:
    return Opportunity(key=key, updated_at=updated or created, created_at=created, account_key=account, **kw)


# --------------------------------------------------------------------------------------------------
# Store (SQLite and PostgreSQL)


def test_upsert_opportunities_reports_only_new_or_changed(store: Store) -> None:
    """Opportunities are stored by content hash: a re-read of the same state changes nothing, a stage change
    changes that one key; a page repeating a key keeps the last."""
    t = datetime(2026, 3, 1, tzinfo=UTC)
    first = [opp("o1", "a1", t, stage="qualifiedtobuy", amount=1000.0),
             opp("o2", "a2", t + DAY, stage="closedwon", closed_at=t + 9 * DAY, is_won=True)]
    with store.unit() as u:
        assert u.upsert_opportunities("hs", first) == {"o1", "o2"}
        assert u.upsert_opportunities("hs", first) == set()
        moved = opp("o1", "a1", t, updated=t + DAY, stage="contractsent", amount=1000.0)
        assert u.upsert_opportunities("hs", [first[0], moved]) == {"o1"}
        assert u.count("opportunity") == 2


def test_opportunities_of_accounts_reads_by_account_oldest_first_and_until(store: Store) -> None:
    """The read groups by account (oldest first, UTC-aware, booleans and amounts kept), skips opportunities on
    no account and other sources, narrows to named accounts, and ``until`` leaves out later creations."""
    t = datetime(2026, 3, 1, tzinfo=UTC)
    with store.unit() as u:
        u.upsert_opportunities("hs", [
            opp("o2", "a1", t + 2 * DAY, stage="closedlost", closed_at=t + 5 * DAY, is_won=False, amount=50.5),
            opp("o1", "a1", t, stage="appointmentscheduled"),
            opp("o3", "a2", t + DAY, is_won=True, closed_at=t + 3 * DAY),
            opp("o4", None, t),
        ])
        u.upsert_opportunities("sf", [opp("x1", "a1", t)])
        every = u.opportunities_of_accounts("hs")
        named = u.opportunities_of_accounts("hs", ["a2", "zz"])
        early = u.opportunities_of_accounts("hs", until=t + DAY)
    assert {k: [o["key"] for o in v] for k, v in every.items()} == {"a1": ["o1", "o2"], "a2": ["o3"]}
    lost = every["a1"][1]
    assert (lost["created_at"], lost["closed_at"], lost["is_won"], lost["amount"], lost["stage"]) == (
        t + 2 * DAY, t + 5 * DAY, False, 50.5, "closedlost")
    assert every["a1"][0]["is_won"] is None
    assert list(named) == ["a2"]
    assert {k: [o["key"] for o in v] for k, v in early.items()} == {"a1": ["o1"]}


def test_opportunities_of_many_accounts_are_read_in_chunks(store: Store) -> None:
    """More account keys than one statement carries (SQLite's 900, PostgreSQL's 5,000) are all read."""
    t = datetime(2026, 3, 1, tzinfo=UTC)
    with store.unit() as u:
        u.upsert_opportunities("hs", [opp(f"o{n}", f"a{n}", t) for n in range(6_000)])
        found = u.opportunities_of_accounts("hs", [f"a{n}" for n in range(6_000)] + ["missing"])
    assert len(found) == 6_000


# --------------------------------------------------------------------------------------------------
# Pulled end to end over loopback


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    with serve_on_loopback(app) as url:
        yield url


def _cycle(settings: Settings, store: Store, *, dry_run: bool = False) -> CycleReport:
    return asyncio.run(run_cycle(settings, "main", store, clock=lambda: T0, score=False, dry_run=dry_run))


def test_hubspot_deals_reach_the_store_with_their_companies(tmp_path: Path) -> None:
    """A first cycle pulls every deal from the HubSpot sandbox (search + associations over loopback) into the
    store with its company as account; each changed opportunity's account is counted; a dry run first stores
    nothing; a second cycle changes nothing."""
    sandbox = HubSpotSandbox(token=TOKEN, clock=lambda: T0, limits=None)
    dataset = generate_dataset(seed=5, contacts=250, now=T0)
    sandbox.load(dataset)
    companies = {d: c for d, kind, c, _ in dataset.deal_associations if kind == "companies"}
    with served(sandbox.app) as url:
        settings = build_settings(url, tmp_path, tmp_path / "model")
        store = Store(settings.store.url)
        store.create_all()
        dry = _cycle(settings, store, dry_run=True)
        with store.unit(dry_run=True) as u:
            assert u.count("opportunity") == 0
            assert u.get_cursor("main", "opportunities") is None
        first = _cycle(settings, store)
        second = _cycle(settings, store)
    assert dry.changed["opportunities"] == len(dataset.deals) > 0
    assert first.read["opportunities"] == first.changed["opportunities"] == len(dataset.deals)
    assert second.changed["opportunities"] == 0
    assert not first.errors
    with store.unit(dry_run=True) as u:
        stored = u.opportunities_of_accounts("hubspot")
    got = {o["key"]: o["account_key"] for rows in stored.values() for o in rows}
    assert got == {str(d["id"]): companies[str(d["id"])] for d in dataset.deals}
    won = {str(d["id"]) for d in dataset.deals if d["properties"]["hs_is_closed_won"] == "true"}
    assert {o["key"] for rows in stored.values() for o in rows if o["is_won"]} == won
    # one associations read per page of deals, never one per deal
    calls = sandbox.stats.requests
    assert calls["POST /crm/v4/associations/deals/companies/batch/read"] <= calls["POST /crm/v3/objects/deals/search"]
    store.close()


def test_salesforce_opportunities_reach_the_store_with_their_accounts(tmp_path: Path) -> None:
    """A cycle against the Salesforce sandbox (SOQL over loopback) stores every Opportunity on its Account,
    open ones without ``is_won``; a malformed one is quarantined naming the field and the rest flow on."""
    sf = SalesforceSandbox(client_id=SF_CLIENT_ID, client_secret=SF_SECRET, refresh_token=SF_REFRESH,
                           clock=lambda: T0, limits=None)
    loaded = sf.load(generate_dataset(seed=5, contacts=250, now=T0))
    bad = sf.insert("Opportunity", {"Name": "Broken", "StageName": "Prospecting", "Amount": "lots",
                                    "CloseDate": "2026-07-01", "IsClosed": False, "IsWon": False},
                    created_ms=int((T0 - DAY).timestamp() * 1000))
    with served(sf.app) as url:
        settings = config.parse({
            "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
            "scoring": {"model_dir": str(tmp_path / "model")},
            "connections": {"salesforce": {"type": "salesforce", "client_id": SF_CLIENT_ID, "client_secret": SF_SECRET,
                                           "refresh_token": SF_REFRESH, "login_url": url,
                                           "lead_fields": {"account_key": "Account__c"}}},
            "pipelines": {"main": {"source": "salesforce", "destination": "salesforce"}},
        }, env={})
        store = Store(settings.store.url)
        store.create_all()
        report = _cycle(settings, store)
    assert report.changed["opportunities"] == len(loaded.opportunities) > 0
    assert [(q["key"], q["reason"]) for q in report.quarantine_samples if q["stream"] == "opportunities"] == [
        (bad, "Opportunity.Amount: 'lots' is not a number")]
    with store.unit(dry_run=True) as u:
        stored = {o["key"]: o for rows in u.opportunities_of_accounts("salesforce").values() for o in rows}
    rows = sf.records["Opportunity"]
    assert set(stored) == set(loaded.opportunities.values())
    assert all(stored[k]["account_key"] == rows[k]["AccountId"] for k in stored)
    assert {k for k in stored if stored[k]["is_won"] is None} == {k for k in stored if not rows[k]["IsClosed"]}
    store.close()


# --------------------------------------------------------------------------------------------------
# The account model's label


def _history() -> tuple[dict[str, dict[str, Any]], dict[str, list[dict[str, Any]]], dict[str, Any], datetime]:
    c = datetime(2026, 5, 1, tzinfo=UTC)
    accounts = {a: {"employees": 200, "annual_revenue": 1e6, "industry": "Software", "country": "DE"}
                for a in ("a1", "a2", "a3")}
    leads = {a: [{"key": f"l-{a}", "created_at": c - 40 * DAY}] for a in accounts}
    activities: dict[str, Any] = {
        "l-a1": [("page_view", c - 2 * DAY, {}), ("pricing_page", c - DAY, {})],
        "l-a2": [("form_submit", c - 3 * DAY, {}), ("conversion", c + 5 * DAY, {})],
        "l-a3": [("email_open", c - 4 * DAY, {})],
    }
    return accounts, leads, activities, c


def test_account_label_comes_from_opportunities_not_conversions() -> None:
    """By default an account is positive when an opportunity is created on it within the horizon (a1), not
    when one of its leads converts (a2); the conversion proxy question labels the other way round."""
    accounts, leads, activities, c = _history()
    deals = {"a1": [{"key": "o1", "created_at": c + 4 * DAY, "stage": "qualifiedtobuy", "amount": 900.0,
                     "is_won": None}]}
    spec = account_feature_spec()
    question = account_question(config.parse({"connections": {}, "pipelines": {}}, env={}))
    assert question.target.event == "opportunity"
    labels = account_examples(spec, accounts, leads, activities, [c], question, deals)
    assert dict(zip(labels.keys, labels.y.tolist(), strict=True)) == {"a1": 1, "a2": 0, "a3": 0}
    proxy_settings = config.parse({"scoring": {"account": {"question": {"target": {"event": "conversion"}}}},
                                   "connections": {}, "pipelines": {}}, env={})
    proxy = account_examples(spec, accounts, leads, activities, [c], account_question(proxy_settings), deals)
    assert dict(zip(proxy.keys, proxy.y.tolist(), strict=True)) == {"a1": 0, "a2": 1, "a3": 0}
    event = next(e for e in build_account_subjects(accounts, leads, activities, opportunities=deals)[0].events
                 if e.type == "opportunity")
    assert (event.at, event.attributes["stage"], event.attributes["amount"]) == (c + 4 * DAY, "qualifiedtobuy", 900.0)


def test_an_opportunity_after_the_cutoff_changes_no_feature() -> None:
    """Planting an opportunity (won, large) on an account just after the cutoff flips its label and leaves every
    feature of every row exactly as it was; one before the cutoff takes the account out of the population."""
    accounts, leads, activities, c = _history()
    spec = account_feature_spec()
    question = account_question(config.parse({"connections": {}, "pipelines": {}}, env={}))
    plain = account_examples(spec, accounts, leads, activities, [c], question, {})
    planted = {"a3": [{"key": "late", "created_at": c + timedelta(hours=1), "stage": "closedwon",
                       "amount": 1e7, "is_won": True}]}
    after = account_examples(spec, accounts, leads, activities, [c], question, planted)
    assert plain.keys == after.keys
    assert np.array_equal(plain.frame.numeric, after.frame.numeric)
    assert np.array_equal(plain.frame.categorical, after.frame.categorical)
    assert dict(zip(after.keys, after.y.tolist(), strict=True))["a3"] == 1
    assert dict(zip(plain.keys, plain.y.tolist(), strict=True))["a3"] == 0
    earlier = {"a3": [{"key": "old", "created_at": c - DAY, "stage": "closedlost", "amount": 5.0, "is_won": False}]}
    assert "a3" not in account_examples(spec, accounts, leads, activities, [c], question, earlier).keys


@pytest.fixture(scope="module")
def pulled_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Store]:
    """A store holding a HubSpot sandbox's history (1,200 contacts, their companies and deals)."""
    return pull_history(tmp_path_factory.mktemp("opps"))


def test_account_model_trains_on_opportunities_from_the_store(pulled_store: tuple[Settings, Store]) -> None:
    """`train_accounts_from_store` labels with the stored opportunities by default: the card's target is an
    opportunity and the model beats chance."""
    settings, store = pulled_store
    result = train_accounts_from_store(settings, "main", store, now=T0)
    assert result.card.target_event == "opportunity"
    assert result.card.metrics["roc_auc"] > 0.6


def test_training_without_opportunities_names_the_way_out(pulled_store: tuple[Settings, Store],
                                                          tmp_path: Path) -> None:
    """With no opportunities stored (a pipeline without the stream), training the default account model fails
    naming the `opportunities` stream and the conversion proxy; the proxy question gets past that to the
    release gates (held shut here by an unreachable minimum, so that nothing is fitted)."""
    settings, _ = pulled_store
    source = sqlite_file(settings.store.url)
    assert source is not None
    shutil.copy(source, tmp_path / "bare.db")
    bare = Store(f"sqlite:///{tmp_path / 'bare.db'}")
    with bare.unit() as u:
        u.conn.execute(sa.delete(OpportunityRow.__table__))
    with pytest.raises(NothingToTrain) as refused:
        train_accounts_from_store(settings, "main", bare, now=T0)
    message = str(refused.value)
    assert "`opportunities` stream" in message
    assert 'target = { event = "conversion" }' in message
    proxy = settings.model_copy(update={"scoring": settings.scoring.model_copy(update={
        "min_examples": 10**9,
        "account": config.AccountScoringSettings(model_dir=str(tmp_path / "proxy"),
                                                 question={"target": {"event": "conversion"}})})})
    with pytest.raises(ReleaseGateError, match="at least 1000000000 needed"):
        train_accounts_from_store(proxy, "main", bare, now=T0)
    bare.close()
