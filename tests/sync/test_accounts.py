"""The account model beside the lead model: account subjects, training, serving in the cycle, config."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from scoring import ScoringModel, build_examples
from sync import config
from sync.config import ConfigError, Settings
from sync.decision_store import account_scores
from sync.report import render_training
from sync.store import Store
from sync.subjects import build_account_subjects
from sync.training import account_examples, account_feature_spec, account_question, train_accounts_from_store
from tests.sync.conftest import RigFactory
from tests.sync.rig import T0, TOKEN, Rig, pull_history

DAY = timedelta(days=1)


def with_account(rig: Rig, account_dir: Path, *, store: Store | None = None, mapped: bool = True,
                 **pipeline: Any) -> Rig:
    """The rig re-pointed at a config with ``[scoring.account]`` (and, if ``mapped``, the account score mapped
    to HubSpot properties); ``store`` replaces the rig's store."""
    base = rig.settings
    conn: dict[str, Any] = {"type": "hubspot", "token": TOKEN, "base_url": base.connections["hubspot"].options.base_url,
                            "rate_limit_requests": 100_000}
    if mapped:
        conn["score_properties"] = {"account_score": "leadrelay_account_score",
                                    "account_band": "leadrelay_account_band"}
    rig.settings = config.parse({
        "store": {"url": base.store.url},
        "scoring": {"model_dir": base.scoring.model_dir, "account": {"model_dir": str(account_dir)}},
        "connections": {"hubspot": conn},
        "pipelines": {"main": {"source": "hubspot", "destination": "hubspot", **pipeline}},
    }, env={})
    if store is not None:
        rig.store = store
    return rig


@pytest.fixture(scope="module")
def account_model(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A real account model trained from the sandbox history the lead model fixture learns from."""
    work = tmp_path_factory.mktemp("account")
    settings, store = pull_history(work)
    mark = time.perf_counter()
    result = train_accounts_from_store(settings, "main", store, now=T0)
    seconds = time.perf_counter() - mark
    store.close()
    return {"dir": work / "account", "result": result, "seconds": seconds}


def test_account_subject_counts_leads_known_before_the_cutoff_and_labels_any_leads_conversion() -> None:
    """An account's ``leads`` counts only leads known before as_of, its events are all its leads' (keyed), and
    a conversion of any one lead in the horizon labels the account positive."""
    c = datetime(2026, 5, 1, tzinfo=UTC)
    accounts = {"a1": {"employees": 250, "annual_revenue": 1e6, "industry": "Software", "country": "DE"},
                "a2": {"employees": None, "annual_revenue": None, "industry": "", "country": None}}
    leads = {"a1": [{"key": "l1", "created_at": c - 20 * DAY}, {"key": "l2", "created_at": c + 3 * DAY}],
             "a2": [{"key": "l3", "created_at": c - 40 * DAY}]}
    activities = {"l1": [("page_view", c - 2 * DAY, {})], "l2": [("conversion", c + 5 * DAY, {})],
                  "l3": [("form_submit", c - 1 * DAY, {})]}
    subjects = build_account_subjects(accounts, leads, activities, as_of=c)
    a1, a2 = subjects
    assert (a1.key, a1.attributes["leads"], a2.attributes["leads"]) == ("a1", 1, 1)
    assert build_account_subjects(accounts, leads, activities)[0].attributes["leads"] == 2
    assert a1.attributes["industry"] == "Software"
    assert a2.attributes["industry"] is None
    assert [e.attributes["lead_key"] for e in a1.events] == ["l1", "l2"]
    assert a1.created_at == c - 20 * DAY
    examples = build_examples(account_feature_spec(), subjects, [c], horizon_days=30)
    assert dict(zip(examples.keys, examples.y.tolist(), strict=True)) == {"a1": 1, "a2": 0}


def test_trained_account_model_has_a_card_and_beats_chance(account_model: dict[str, Any]) -> None:
    """`train_accounts_from_store` goes through scoring.train: a registered champion with its card, metrics
    and a report titled and counted as an account model."""
    result = account_model["result"]
    assert result.promoted
    assert result.entity == "account"
    assert (result.version_dir / "report.md").read_text().startswith("# Account model ")
    assert f"{result.subjects} accounts -> " in render_training(result)
    assert (result.out_dir / "model.onnx").exists()
    assert (result.out_dir / "card.json").exists()
    model = ScoringModel.load(result.out_dir)
    assert ("leads", "log1p") in model.spec.numeric_attributes
    assert model.spec.title_attribute is None
    assert result.card.metrics["roc_auc"] > 0.6


def test_cycle_account_scores_match_the_training_path(rig_factory: RigFactory, account_model: dict[str, Any],
                                                       store: Store) -> None:
    """Account scores a cycle stores (SQLite and PostgreSQL) equal the model's scores of the training rows built
    at the same cutoff from the same store: feature parity between training and serving."""
    rig = with_account(rig_factory(contacts=250, scoring_clock=lambda: T0), account_model["dir"], store=store,
                       activity_retention_days=3650)
    report = asyncio.run(rig.cycle())
    assert report.account["scored"] > 0
    assert not report.errors
    model = ScoringModel.load(account_model["dir"])
    with store.unit(dry_run=True) as unit:
        served = account_scores(unit, "hubspot")
        leads = unit.load_leads("hubspot", unit.lead_keys("hubspot"))
        accounts = unit.load_accounts("hubspot", [x["account_key"] for x in leads if x["account_key"]])
        activities = unit.load_all_activities("hubspot")
    assert set(served) == set(accounts)
    by_account: dict[str, list[dict[str, Any]]] = {}
    for lead in leads:
        if lead["account_key"] in accounts:
            by_account.setdefault(lead["account_key"], []).append(lead)
    examples = account_examples(model.spec, accounts, by_account, activities, [T0], account_question(rig.settings))
    assert len(examples) >= 10  # accounts not converted before T0
    trained = model.score(examples.frame, reasons=False)
    want = dict(zip(trained.keys, trained.probability.tolist(), strict=True))
    got = {k: served[k]["probability"] for k in want}
    assert np.allclose([got[k] for k in want], [want[k] for k in want], atol=1e-6, rtol=0)
    assert {served[k]["model_version"] for k in want} == {model.version}


def test_lead_updates_carry_the_account_score_where_mapped(rig_factory: RigFactory,
                                                           account_model: dict[str, Any]) -> None:
    """Each pushed lead of an account carries its account's stored score and band to the mapped HubSpot
    properties; without the mapping the same updates succeed and send no account property."""
    mapped = with_account(rig_factory(contacts=150, scoring_clock=lambda: T0), account_model["dir"])
    reports = asyncio.run(mapped.drain())
    assert not any(r.errors for r in reports)
    with mapped.store.unit(dry_run=True) as unit:
        stored = account_scores(unit, "hubspot")
        leads = unit.load_leads("hubspot", unit.lead_keys("hubspot"))
    company = {x["key"]: x["account_key"] for x in leads if x["account_key"] in stored}
    assert company
    contacts = mapped.sandbox.objects["contacts"]
    for key, account in company.items():
        props = contacts[key]["properties"]
        assert props.get("leadrelay_account_score") == str(stored[account]["score"]), key
        assert props.get("leadrelay_account_band") == stored[account]["band"]
    alone = [x["key"] for x in leads if x["account_key"] not in stored]
    assert all(contacts[k]["properties"].get("leadrelay_account_score") in (None, "") for k in alone)

    plain = with_account(rig_factory(contacts=150, scoring_clock=lambda: T0), account_model["dir"], mapped=False)
    reports = asyncio.run(plain.drain())
    delivered = [d["outcomes"] for r in reports for d in r.delivery]
    assert reports[0].account["scored"] > 0
    assert sum(o.get("acknowledged", 0) for o in delivered) > 0
    assert not any(o.get("rejected") for o in delivered)
    contacts = plain.sandbox.objects["contacts"]
    assert all(not rec["properties"].get("leadrelay_account_score") for rec in contacts.values())


BASE = {"connections": {"h": {"type": "hubspot", "token": "x"}},
        "pipelines": {"main": {"source": "h", "destination": "h"}}}


@pytest.mark.parametrize(("scoring", "key"), [
    ({"account": {"horizon_days": 0}}, "scoring.account.horizon_days:"),
    ({"account": {"modle_dir": "x"}}, "scoring.account.modle_dir: unknown key"),
    ({"account": {"question": {"entity": "lead"}}}, "scoring.account.question.entity:"),
    ({"account": {"question": {"target": {"evnt": "conversion"}}}}, "scoring.account.question.target.evnt:"),
    ({"account": {"question": {"horizon_days": 9999}}}, "scoring.account.question.horizon_days:"),
    ({"question": {"entity": "account"}}, "scoring.question.entity: 'account' belongs in [scoring.account.question]"),
])
def test_account_config_errors_name_the_key(scoring: dict[str, Any], key: str) -> None:
    """A wrong [scoring.account] (or an account question in the lead's table) is refused naming the key."""
    with pytest.raises(ConfigError) as err:
        config.parse({**BASE, "scoring": scoring}, env={})
    assert key in str(err.value)


def test_account_table_is_optional_and_takes_the_question() -> None:
    """Without [scoring.account] nothing is served; with it, the question's horizon wins over the table's."""
    settings: Settings = config.parse(BASE, env={})
    assert settings.scoring.account is None
    settings = config.parse({**BASE, "scoring": {"account": {"horizon_days": 14, "question": {"horizon_days": 60}}}},
                            env={})
    assert settings.scoring.account is not None
    assert settings.scoring.account.model_dir == ".leadrelay/models/account"
    question = account_question(settings)
    assert (question.entity, question.horizon_days) == ("account", 60)


@pytest.mark.parametrize("kind", ["hubspot", "salesforce", "marketo"])
def test_destinations_send_the_account_score_only_when_mapped(kind: str) -> None:
    """Every lead-writing destination accepts account_score in its score map; unmapped it is left out of the
    payload (not refused), and an unknown score key is still refused naming it."""
    from connectors import registry
    from connectors.base import without_unmapped

    cls = registry.get(kind)
    field = "score_properties" if kind == "hubspot" else "score_fields"
    options = {"hubspot": {"token": "x"}, "salesforce": {"client_id": "i", "client_secret": "s",
                                                         "refresh_token": "r"},
               "marketo": {"base_url": "https://1.mktorest.com", "client_id": "i", "client_secret": "s"}}[kind]
    plain = cls.config_model.model_validate(options)
    names = getattr(plain, field)
    assert "account_score" not in names
    payload = {"score": 80, "band": "A", "account_score": 71, "account_band": "B"}
    assert without_unmapped(payload, names) == {"score": 80, "band": "A"}
    mapped = getattr(cls.config_model.model_validate({**options, field: {"account_score": "Acct_Score"}}), field)
    assert without_unmapped(payload, mapped) == {"score": 80, "band": "A", "account_score": 71}
    with pytest.raises(ValueError, match="acount_score"):
        cls.config_model.model_validate({**options, field: {"acount_score": "x"}})


def test_train_entity_account_needs_the_account_table(tmp_path: Path) -> None:
    """`leadrelay train --entity account` without [scoring.account] is refused before anything is read."""
    from click.testing import CliRunner

    from sync.cli import main

    path = tmp_path / "c.toml"
    path.write_text(f'[store]\nurl = "sqlite:///{tmp_path / "s.db"}"\n[connections.h]\ntype = "hubspot"\n'
                    'token = "x"\n[pipelines.main]\nsource = "h"\ndestination = "h"\n')
    result = CliRunner().invoke(main, ["-c", str(path), "train", "--entity", "account"])
    assert result.exit_code == 2
    assert "[scoring.account]" in result.output
    assert not (tmp_path / "s.db").exists()
