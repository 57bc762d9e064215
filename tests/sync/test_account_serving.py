"""Scoring governance of the account model, as the lead model has it: which accounts a cycle scores (accounts
without leads included), its challenger in shadow, its drift against its own training reference (report, run,
alerts, metrics), `leadrelay explain --account` and `leadrelay model status --entity account` — with the real
account model (onnxruntime), the HubSpot sandbox on a loopback socket, and SQLite and PostgreSQL stores."""

from __future__ import annotations

import asyncio
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from connectors.base import Account, Activity, ActivityType, Lead
from connectors.sandbox import HubSpotSandbox
from connectors.sandbox._wire import iso_ms, to_ms
from scoring import ScoringModel, compute_features
from scoring.monitor import Reference, build_reference
from sync import audit, config
from sync.alerts import evaluate_run
from sync.cli import main
from sync.decision_store import (
    AccountShadowScoreRow,
    account_scores,
    account_shadow_scores,
    save_account_shadow_scores,
)
from sync.metrics import Metrics
from sync.pipeline import CycleReport
from sync.serving import compare_on_outcomes
from sync.store import AccountRow, ActivityRow, Store
from sync.subjects import build_account_subjects
from sync.training import train_accounts_from_store
from tests.sync.conftest import RigFactory
from tests.sync.rig import T0, Rig, build_settings, outbox_rows
from tests.sync.test_accounts import account_model, with_account

__all__ = ["account_model"]  # the trained account model fixture of test_accounts, shared here

DAY = timedelta(days=1)
IT = "INFORMATION_TECHNOLOGY_AND_SERVICES"  # a HubSpot industry value


# --------------------------------------------------------------------------------------------------
# Helpers


@pytest.fixture(scope="module")
def account_registry(account_model: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the account model's registry plus a challenger trained on the same history with a 14-day
    horizon (registered as challenger, not promoted)."""
    root = tmp_path_factory.mktemp("account-registry") / "account"
    shutil.copytree(account_model["dir"], root)
    work = Path(account_model["dir"]).parent  # the fixture's store lives beside its model folder
    settings = build_settings("http://unused", work, work / "model")
    settings = settings.model_copy(update={"scoring": settings.scoring.model_copy(update={
        "account": config.AccountScoringSettings(model_dir=str(root), horizon_days=14)})})
    store = Store(settings.store.url)
    result = train_accounts_from_store(settings, "main", store, now=T0, version="challenger", challenger=True)
    store.close()
    assert not result.promoted
    return root


def _scoring(rig: Rig, **changes: Any) -> Rig:
    if "drift" in changes:
        changes["drift"] = config.DriftSettings(**changes["drift"])
    rig.settings = rig.settings.model_copy(update={"scoring": rig.settings.scoring.model_copy(update=changes)})
    return rig


def _config(path: Path, rig: Rig, account_dir: Path | None) -> Path:
    """A leadrelay.toml for the CLI pointing at the rig's store, its models and its sandbox."""
    s = rig.settings
    account = f'[scoring.account]\nmodel_dir = "{account_dir}"\n' if account_dir is not None else ""
    path.write_text(f'[store]\nurl = "{rig.store.url}"\n\n[scoring]\nmodel_dir = "{s.scoring.model_dir}"\n'
                    f'{account}\n[connections.hubspot]\ntype = "hubspot"\ntoken = "test-token"\n'
                    f'base_url = "{s.connections["hubspot"].options.base_url}"\n\n'
                    '[pipelines.main]\nsource = "hubspot"\ndestination = "hubspot"\n')
    return path


def _writes(rig: Rig) -> list[tuple[str, str, str, str]]:
    return sorted((r["destination"], r["operation"], r["target"], json.dumps(r["payload"], sort_keys=True))
                  for r in outbox_rows(rig.store))


def _stored_account_scores(rig: Rig) -> dict[str, dict[str, Any]]:
    with rig.store.unit(dry_run=True) as unit:
        return account_scores(unit, "hubspot")


def _add_company(sandbox: HubSpotSandbox, company_id: str, *, contacts: int = 0, pricing_visits: int = 0,
                 **properties: str) -> list[str]:
    """Put a company (and ``contacts`` contacts of it, created 60 days before T0, each with ``pricing_visits``
    pricing-page visits in the week before T0) into the sandbox as if the portal had always held them."""
    created = iso_ms(to_ms(T0 - 60 * DAY))
    sandbox.put_object("companies", {"id": company_id, "createdAt": created, "updatedAt": iso_ms(to_ms(T0)),
                                     "properties": {"name": f"Company {company_id}",
                                                    "domain": f"c{company_id}.example", **properties}})
    ids = []
    for n in range(contacts):
        cid = f"{company_id}{n:02d}"
        sandbox.put_object("contacts", {"id": cid, "createdAt": created, "updatedAt": iso_ms(to_ms(T0)),
                                        "properties": {"email": f"p{n}@c{company_id}.example",
                                                       "associatedcompanyid": company_id}})
        sandbox.associate("contacts", cid, "companies", company_id, 279)
        sandbox.add_events([{"id": f"{cid}-v{k}", "eventType": "e_visited_page", "objectId": cid,
                             "objectType": "contact", "occurredAt": iso_ms(to_ms(T0 - (1 + k % 6) * DAY)),
                             "properties": {"hs_url": "https://www.example.com/pricing",
                                            "hs_page_title": "Pricing"}} for k in range(pricing_visits)])
        ids.append(cid)
    return ids


# --------------------------------------------------------------------------------------------------
# 1. Which accounts a cycle scores


def test_changed_accounts_are_scored_even_without_leads(rig_factory: RigFactory,
                                                        account_model: dict[str, Any]) -> None:
    """A second cycle scores exactly the accounts that changed since the first — a new account with no leads,
    an account whose row changed, the account of a changed lead — and no other; each score is in the audit log."""
    rig = with_account(rig_factory(contacts=150), account_model["dir"])
    first = asyncio.run(rig.cycle())
    assert not first.errors
    before = _stored_account_scores(rig)
    assert before
    assert first.account["scored"] == len(before)
    rig.time.elapsed += 3600  # an hour later: no lead is due for its daily rescore yet
    lonely = rig.sandbox.create("companies", {"name": "Lonely GmbH", "domain": "lonely.example", "industry": IT,
                                              "numberofemployees": "40", "country": "DE"})
    with rig.store.unit(dry_run=True) as unit:
        leads = unit.load_leads("hubspot", unit.lead_keys("hubspot"))
    companies = sorted({x["account_key"] for x in leads if x["account_key"] in before})
    moved, of_lead = companies[0], companies[1]
    rig.sandbox.update("companies", moved, {"numberofemployees": "9000"})
    lead = next(x["key"] for x in leads if x["account_key"] == of_lead)
    rig.sandbox.update("contacts", lead, {"jobtitle": "Chief Revenue Officer"})

    second = asyncio.run(rig.cycle())
    assert not second.errors
    after = _stored_account_scores(rig)
    rescored = {k for k, row in after.items() if row["scored_at"] > T0}  # the first cycle scored at T0
    assert rescored == {lonely, moved, of_lead}
    assert second.account["scored"] == 3
    assert lonely not in before
    assert after[lonely]["model_version"] == ScoringModel.load(account_model["dir"]).version
    with rig.store.unit(dry_run=True) as unit:
        audited = [e for e in audit.read(unit.conn, kind="account_score") if e.run_id == second.run_id]
    assert {e.subject for e in audited} == {lonely, moved, of_lead}
    assert {e.subject: e.data["score"] for e in audited} == {k: after[k]["score"] for k in (lonely, moved, of_lead)}


def test_a_dry_run_scores_accounts_and_keeps_nothing(rig_factory: RigFactory, account_model: dict[str, Any]) -> None:
    """A dry run reports the accounts it would score (an account without leads among them) and stores none."""
    rig = with_account(rig_factory(contacts=60, scoring_clock=lambda: T0), account_model["dir"])
    _add_company(rig.sandbox, "59000001", industry=IT, numberofemployees="40", country="DE")
    report = asyncio.run(rig.cycle(dry_run=True))
    assert report.account["scored"] > 0
    assert not _stored_account_scores(rig)
    real = asyncio.run(rig.cycle())
    assert real.account["scored"] == report.account["scored"]
    assert "59000001" in _stored_account_scores(rig)


# --------------------------------------------------------------------------------------------------
# 2. The challenger in shadow


def test_account_challenger_is_scored_in_shadow_and_never_planned(rig_factory: RigFactory,
                                                                  account_model: dict[str, Any],
                                                                  account_registry: Path) -> None:
    """The same portal with and without an account challenger gives the same outbox (account scores riding on
    the leads' updates); the challenger's scores are stored in account_shadow_score and compared in the report
    and the run's counts."""
    alone = with_account(rig_factory(contacts=150, scoring_clock=lambda: T0), account_model["dir"])
    shadow = with_account(rig_factory(contacts=150, scoring_clock=lambda: T0), account_registry)
    a = asyncio.run(alone.cycle())
    b = asyncio.run(shadow.cycle())
    assert a.status == b.status == "succeeded", (a.errors, b.errors)
    assert _writes(alone) == _writes(shadow)
    assert any("account_score" in json.loads(w[3]) for w in _writes(shadow))
    assert "challenger" not in a.account
    c = b.account["challenger"]
    assert c["version"] == "challenger"
    assert c["scored"] == b.account["scored"] == a.account["scored"] > 0
    assert c["mean_abs_delta"] > 0  # another question, other probabilities
    assert -1.0 <= c["rank_agreement"] <= 1.0
    assert 0.0 <= c["bands_differ"] <= 1.0
    assert b.challenger == {}  # the lead registry has no challenger: nothing mixed up
    with shadow.store.unit(dry_run=True) as unit:
        rows = account_shadow_scores(unit, "hubspot", "challenger")
        runs = unit.runs("main")
    assert {r["account_key"] for r in rows} == set(_stored_account_scores(shadow))
    assert runs[0]["counts"]["account"]["challenger"] == c
    assert "challenger: challenger in shadow on" in _rendered(b)


def test_account_shadow_scoring_follows_the_shadow_switch(rig_factory: RigFactory, account_registry: Path) -> None:
    """With scoring.shadow = false the account challenger is not scored either."""
    rig = _scoring(with_account(rig_factory(contacts=60, scoring_clock=lambda: T0), account_registry), shadow=False)
    report = asyncio.run(rig.cycle())
    assert report.account["scored"] > 0
    assert "challenger" not in report.account
    with rig.store.unit(dry_run=True) as unit:
        assert unit.conn.execute(sa.select(sa.func.count()).select_from(AccountShadowScoreRow.__table__)
                                 ).scalar_one() == 0


def _rendered(report: CycleReport) -> str:
    from sync.report import render_cycle

    return render_cycle(report)


@pytest.mark.parametrize("target", ["conversion", "opportunity"])
def test_account_challenger_is_compared_on_its_accounts_outcomes(store: Store, target: str) -> None:
    """Account shadow scores keep the first score; once the horizon has passed each account is labelled by its
    question's target on any of its leads (a conversion) or on itself (an opportunity created), and both
    models' ROC-AUC computed; open horizons stay unlabelled."""
    from connectors.base import Opportunity

    accounts = {"a": (0.9, 0.2), "b": (0.8, 0.3), "c": (0.1, 0.7), "d": (0.2, 0.6), "e": (0.5, 0.5)}
    with store.unit() as unit:
        unit.upsert_accounts("src", [Account(key=k, updated_at=T0, name=k) for k in accounts])
        unit.upsert_leads("src", [Lead(key=f"l{k}", updated_at=T0, email=f"{k}@x.example", account_key=k)
                                  for k in accounts])
        save_account_shadow_scores(unit, "src", "v2", [
            {"account_key": k, "probability": chal, "score": 50, "band": "B", "champion_probability": champ,
             "scored_at": T0 if k != "e" else T0 + 40 * DAY} for k, (chal, champ) in accounts.items()])
        if target == "conversion":
            unit.add_activities("src", [Activity(key=f"x{k}", lead_key=f"l{k}", type=ActivityType.CONVERSION,
                                                 occurred_at=T0 + 3 * DAY) for k in ("a", "b")])
        else:
            unit.upsert_opportunities("src", [Opportunity(key=f"o{k}", updated_at=T0 + 3 * DAY,
                                                          created_at=T0 + 3 * DAY, account_key=k)
                                              for k in ("a", "b")])
        # A conversion before the first shadow score is no outcome of it.
        unit.add_activities("src", [Activity(key="old", lead_key="lc", type=ActivityType.CONVERSION,
                                             occurred_at=T0 - 3 * DAY)])
        save_account_shadow_scores(unit, "src", "v2", [{"account_key": "a", "probability": 0.01, "score": 1,
                                                        "band": "D", "champion_probability": 0.5,
                                                        "scored_at": T0 + DAY}])
    with store.unit(dry_run=True) as unit:
        rows = {r["account_key"]: r for r in account_shadow_scores(unit, "src", "v2")}
        result = compare_on_outcomes(unit, "src", "v2", horizon_days=30, now=T0 + 45 * DAY, event=target,
                                     entity="account")
    assert (rows["a"]["probability"], rows["a"]["first_probability"]) == (0.01, 0.9)
    assert result["accounts"] == 5
    assert result["labelled"] == 4  # e's horizon is still open
    assert result["converted"] == 2
    assert result["roc_auc"] == {"champion": 0.0, "challenger": 1.0}


# --------------------------------------------------------------------------------------------------
# 3. Drift


def _with_reference_of(rig: Rig, root: Path) -> int:
    """Replace the account model's training reference in ``root`` with one binned from the accounts ``rig``
    serves (as of T0, through the serving path): a population the model is known to have been "trained" on —
    accounts with no opportunity yet, the population drift is judged on. Returns how many there are."""
    model = ScoringModel.load(root)
    old = Reference.read(root)
    assert old is not None
    with rig.store.unit(dry_run=True) as unit:
        leads = unit.load_leads("hubspot", unit.lead_keys("hubspot"))
        t = AccountRow.__table__
        accounts = unit.load_accounts("hubspot", unit.conn.execute(sa.select(t.c.key)).scalars().all())
        in_deals = unit.opportunities_of_accounts("hubspot", list(accounts), until=T0)
        activities = unit.load_activities("hubspot", [x["key"] for x in leads], T0 - 180 * DAY)
    assert len(accounts) > len({x["account_key"] for x in leads})  # accounts without leads are scored too
    assert in_deals  # the portal has accounts already in a deal: drift must leave them out
    accounts = {k: v for k, v in accounts.items() if k not in in_deals}
    members: dict[str, list[dict[str, Any]]] = {}
    for lead in leads:
        members.setdefault(lead["account_key"], []).append(lead)
    frame = compute_features(model.spec, build_account_subjects(accounts, members, activities, as_of=T0), T0)
    columns = {n: ("numeric", frame.numeric[:, j]) for j, n in enumerate(frame.numeric_names) if n in old.features}
    columns.update({n: ("categorical", frame.categorical[:, j]) for j, n in enumerate(frame.categorical_names)
                    if n in old.features})
    reference = build_reference(model.predict_proba(frame), columns)
    for folder in (root, root / "versions" / model.version):
        reference.write(folder)
    return len(accounts)


def test_account_drift_rises_on_a_shifted_portal_and_stays_low_on_an_unshifted_one(
        rig_factory: RigFactory, account_model: dict[str, Any], tmp_path: Path) -> None:
    """Against its training reference, the account model's run on the same population (accounts not yet in a
    deal: those in one are scored but left out of drift) reports PSI near 0 (status ok, no warning); on the
    same portal with its companies' industries and countries moved, the feature PSI rises over the alert
    threshold and the run warns — stored with the run like lead drift."""
    root = tmp_path / "account"
    shutil.copytree(account_model["dir"], root)
    seen = with_account(rig_factory(contacts=150, scoring_clock=lambda: T0), root)
    asyncio.run(seen.cycle(model=False))  # pull only: the population the reference is binned from
    population = _with_reference_of(seen, root)
    assert population > 10  # over min_rows: drift is judged
    reference = Reference.read(root)
    assert reference is not None

    calm = _scoring(with_account(rig_factory(contacts=150, scoring_clock=lambda: T0), root), drift={"min_rows": 10})
    shifted = _scoring(with_account(rig_factory(contacts=150, scoring_clock=lambda: T0), root),
                       drift={"min_rows": 10})
    for company in shifted.sandbox.objects["companies"].values():
        company["properties"].update(industry="MINING_AND_METALS", country="BR")
    low = asyncio.run(calm.cycle())
    high = asyncio.run(shifted.cycle())
    for report in (low, high):
        d = report.account["drift"]
        assert d["rows"] == population < report.account["scored"]
        assert set(d["features"]) == set(reference.features)
    assert low.account["drift"]["score_psi"] < 0.01
    assert max(low.account["drift"]["features"].values()) < 0.01
    assert low.account["drift"]["status"] == "ok"
    assert not [w for w in low.warnings if w.startswith("account model drift")]
    assert high.account["drift"]["features"]["industry"] > 0.25
    assert high.account["drift"]["features"]["country"] > 0.25
    assert high.account["drift"]["status"] == "alert"
    assert [w for w in high.warnings if w.startswith("account model drift alert")]
    with shifted.store.unit(dry_run=True) as unit:
        [run] = unit.runs("main")
    assert run["counts"]["account"]["drift"] == high.account["drift"]


def _report(account_drift: dict[str, Any] | None, lead_psi: float = 0.02) -> CycleReport:
    at = T0
    return CycleReport(pipeline="main", dry_run=False, started_at=at, status="succeeded", finished_at=at + DAY / 24,
                       drift={"score_psi": lead_psi, "status": "ok", "rows": 500},
                       account={"model_version": "v1", "scored": 300,
                                **({"drift": account_drift} if account_drift is not None else {})})


def test_account_drift_alerts_once_beside_lead_drift(store: Store) -> None:
    """Account model drift at the alert level starts its own condition (drift:account) once, naming the
    account model and how to retrain it; a run without account drift keeps it; ok clears it; the lead's drift
    condition is judged on its own."""
    settings = config.parse({"connections": {"h": {"type": "hubspot", "token": "x"}},
                             "pipelines": {"main": {"source": "h", "destination": "h"}}}, env={})
    alert = {"score_psi": 0.6, "status": "alert", "rows": 300, "features": {}}

    def judge(report: CycleReport) -> list[tuple[str, str, str]]:
        with store.unit() as unit:
            report.run_id = unit.start_run("main", report.started_at, dry_run=False)
            unit.finish_run(report.run_id, report.finished_at, "succeeded", {})
            return [(a.condition, a.state, a.message) for a in
                    evaluate_run(unit, settings, report, report.finished_at)]  # type: ignore[arg-type]

    [(condition, state, message)] = judge(_report(alert))
    assert (condition, state) == ("drift:account", "started")
    assert "account model" in message
    assert "--entity account" in message
    assert judge(_report(alert)) == []
    assert judge(_report(None)) == []
    assert [(c, s) for c, s, _ in judge(_report({**alert, "score_psi": 0.01, "status": "ok"}))] == [
        ("drift:account", "cleared")]


def test_metrics_expose_drift_per_model_with_an_entity_label() -> None:
    """/metrics carries the last run's score PSI of each model, told apart by an entity label."""
    metrics = Metrics()
    metrics.record_report(_report({"score_psi": 0.37, "status": "alert", "rows": 300, "features": {}},
                                  lead_psi=0.05), "schedule", 1.0)
    text = metrics.exposition()[0].decode()
    assert 'leadrelay_score_drift_psi{entity="account",pipeline="main"} 0.37' in text
    assert 'leadrelay_score_drift_psi{entity="lead",pipeline="main"} 0.05' in text


# --------------------------------------------------------------------------------------------------
# 5. explain --account


def test_explain_account_reasons_point_at_what_moved_the_score(rig_factory: RigFactory,
                                                               account_model: dict[str, Any], store: Store,
                                                               tmp_path: Path) -> None:
    """Two constructed accounts alike but for their leads' pricing-page visits: `explain --account` shows the
    stored score, band and version of each, reproduced through the serving path, and the busy account's
    reasons name the visits that lift it while the quiet one's do not; a changed record no longer reproduces."""
    rig = with_account(rig_factory(contacts=60, scoring_clock=lambda: T0), account_model["dir"], store=store)
    firmographics = {"industry": IT, "numberofemployees": "250", "annualrevenue": "20000000",
                     "country": "DE"}
    busy = _add_company(rig.sandbox, "59000001", contacts=3, pricing_visits=12, **firmographics)
    _add_company(rig.sandbox, "59000002", contacts=3, pricing_visits=0, **firmographics)
    assert not asyncio.run(rig.cycle()).errors
    cfg = _config(tmp_path / "leadrelay.toml", rig, Path(account_model["dir"]))

    def story(key: str) -> dict[str, Any]:
        result = CliRunner().invoke(main, ["-c", str(cfg), "explain", "--account", key, "--json"])
        assert result.exit_code == 0, result.output
        return dict(json.loads(result.output))

    hot, cold = story("59000001"), story("59000002")
    stored = _stored_account_scores(rig)
    for s, key in ((hot, "59000001"), (cold, "59000002")):
        assert s["account"] == key
        assert (s["score"]["score"], s["score"]["band"], s["score"]["model_version"]) == (
            stored[key]["score"], stored[key]["band"], stored[key]["model_version"])
        assert s["features"]["reproduces_score"] is True
        assert s["features"]["score"] == stored[key]["score"]
        assert len(s["leads"]) == 3
    assert hot["features"]["values"]["pricing_page_count_7d"] == 36
    assert cold["features"]["values"]["pricing_page_count_7d"] == 0
    assert hot["score"]["probability"] > cold["score"]["probability"]
    assert any("pricing-page" in r for r in hot["features"]["reasons_positive"]), hot["features"]
    assert not any("pricing-page" in r for r in cold["features"]["reasons_positive"]), cold["features"]
    text = CliRunner().invoke(main, ["-c", str(cfg), "explain", "--account", "59000001"]).output
    assert f"account score {hot['score']['score']} (band {hot['score']['band']}" in text
    assert "reproduces the stored score" in text

    with store.unit() as unit:  # its visits gone from the store: today's record no longer reproduces the score
        t = ActivityRow.__table__
        unit.conn.execute(sa.delete(t).where(t.c.source == "hubspot", t.c.lead_key.in_(busy)))
    again = story("59000001")["features"]
    assert again["reproduces_score"] is False
    assert again["probability_recomputed"] == pytest.approx(cold["score"]["probability"], abs=1e-6)
    assert "changed since it was scored" in again["note"]


def test_explain_needs_a_lead_or_an_account(tmp_path: Path, rig_factory: RigFactory,
                                            account_model: dict[str, Any]) -> None:
    """`explain` refuses neither or both of PERSON and --account, and names an unknown account."""
    rig = with_account(rig_factory(contacts=20, scoring_clock=lambda: T0), account_model["dir"])
    asyncio.run(rig.cycle())
    cfg = _config(tmp_path / "leadrelay.toml", rig, Path(account_model["dir"]))
    for args in ([], ["someone", "--account", "x"]):
        result = CliRunner().invoke(main, ["-c", str(cfg), "explain", *args])
        assert result.exit_code == 2
        assert "--account" in result.output
    result = CliRunner().invoke(main, ["-c", str(cfg), "explain", "--account", "nope"])
    assert result.exit_code == 1
    assert "no account 'nope'" in result.output


# --------------------------------------------------------------------------------------------------
# 4 and 6. model status --entity account, status --json


def test_model_status_for_the_account_model(rig_factory: RigFactory, account_registry: Path,
                                            tmp_path: Path) -> None:
    """`model status --entity account` shows the account champion, its challenger, the last run's account
    drift, the live spread of stored account scores and the challenger compared in shadow; `model list
    --entity account` lists both versions; `status --json` carries the account model's version and drift."""
    rig = _scoring(with_account(rig_factory(contacts=150, scoring_clock=lambda: T0), account_registry),
                   drift={"min_rows": 10})
    report = asyncio.run(rig.cycle())
    champion = ScoringModel.load(account_registry).version
    cfg = _config(tmp_path / "leadrelay.toml", rig, account_registry)
    result = CliRunner().invoke(main, ["-c", str(cfg), "model", "status", "--entity", "account", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert (status["entity"], status["champion"], status["challenger"]) == ("account", champion, "challenger")
    assert status["last_run"]["id"] == report.run_id
    assert status["last_run"]["drift"] == report.account["drift"]
    assert status["live"]["rows"] == len(_stored_account_scores(rig)) == report.account["scored"]
    assert status["drift"]["rows"] == report.account["scored"]
    compared = status["challenger_comparison"]
    assert compared["accounts"] == report.account["challenger"]["scored"]
    # Run at the real time, long after the fake T0: every horizon has passed.
    assert compared["labelled"] == compared["accounts"]
    text = CliRunner().invoke(main, ["-c", str(cfg), "model", "status", "--entity", "account"]).output
    assert f"account model champion {champion}" in text
    assert f"last run #{report.run_id}" in text
    assert "challenger challenger:" in text
    assert "account(s) scored in shadow" in text
    listed = CliRunner().invoke(main, ["-c", str(cfg), "model", "list", "--entity", "account"]).output
    roles = {line.split()[0]: line.split()[1] for line in listed.splitlines()}
    assert roles[champion] == "champion"
    assert roles["challenger"] == "challenger"
    lead = json.loads(CliRunner().invoke(main, ["-c", str(cfg), "model", "status", "--json"]).output)
    assert (lead["entity"], lead["challenger"]) == ("lead", None)  # the lead registry, which has no challenger

    overall = CliRunner().invoke(main, ["-c", str(cfg), "status", "--json"])
    assert overall.exit_code == 0, overall.output
    [row] = json.loads(overall.output)
    assert row["account_model"] == {"version": champion, "drift": report.account["drift"]}
    assert f"account model {champion}" in CliRunner().invoke(main, ["-c", str(cfg), "status"]).output


def test_model_commands_for_the_account_model_need_its_table(tmp_path: Path, rig_factory: RigFactory) -> None:
    """Without [scoring.account], `model status|list --entity account` exit 2 naming the table; `status` shows
    no account model."""
    rig = rig_factory(contacts=20)
    cfg = _config(tmp_path / "leadrelay.toml", rig, None)
    for command in ("status", "list"):
        result = CliRunner().invoke(main, ["-c", str(cfg), "model", command, "--entity", "account"])
        assert result.exit_code == 2
        assert "[scoring.account]" in result.output
    [row] = json.loads(CliRunner().invoke(main, ["-c", str(cfg), "status", "--json"]).output)
    assert "account_model" not in row


def test_help_tells_of_the_account_model() -> None:
    """--help of explain and of the model commands offers the account model."""
    runner = CliRunner()
    assert "--account" in runner.invoke(main, ["explain", "--help"]).output
    for command in ("status", "list", "promote", "rollback"):
        assert "--entity" in runner.invoke(main, ["model", command, "--help"]).output
