"""What the cycle serves: the registry's champion checked against the feature spec, a challenger scored in
shadow (stored, never planned), and drift per run — with a real trained model, real onnxruntime, the HubSpot
sandbox on a loopback socket and a SQLite store."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from sync.cli import main
from sync.config import DriftSettings
from sync.decision_store import ShadowScoreRow, save_shadow_scores
from sync.pipeline import load_model
from sync.serving import compare_on_outcomes
from sync.store import Store
from sync.training import train_from_store
from tests.sync.rig import T0, Rig, build_settings, make_rig, outbox_rows

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def with_challenger(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the session's registry plus a challenger trained on the same history with another horizon."""
    root = tmp_path_factory.mktemp("registry") / "model"
    shutil.copytree(model_dir, root)
    # The session model was trained from the store beside its folder (tests/sync/rig.py train_model).
    settings = build_settings("http://unused", model_dir.parent, root)
    # The challenger answers another question: conversion within 14 days instead of the default 30.
    settings = settings.model_copy(update={"scoring": settings.scoring.model_copy(
        update={"question": {"horizon_days": 14}})})
    store = Store(settings.store.url)
    result = train_from_store(settings, "main", store, now=T0, version="challenger", challenger=True)
    store.close()
    assert not result.promoted
    assert result.card.horizon_days == 14  # [scoring.question] is what training answers
    return root


def test_training_honours_the_configured_population(model_dir: Path, tmp_path: Path) -> None:
    """A [scoring.question] population nobody belongs to leaves no examples: training refuses at the
    minimum-data gate instead of training on everyone."""
    from scoring import ReleaseGateError

    settings = build_settings("http://unused", model_dir.parent, tmp_path / "model")
    settings = settings.model_copy(update={"scoring": settings.scoring.model_copy(update={"question": {
        "population": {"event_types": ["no_such_event"], "within_days": 1}}})})
    store = Store(settings.store.url)
    try:
        with pytest.raises(ReleaseGateError, match="minimum_data"):
            train_from_store(settings, "main", store, now=T0)
    finally:
        store.close()


@pytest.fixture
def servers() -> Iterator[contextlib.ExitStack]:
    with contextlib.ExitStack() as stack:
        yield stack


def _with_scoring(rig: Rig, **changes: Any) -> None:
    if "drift" in changes:
        changes["drift"] = DriftSettings(**changes["drift"])
    rig.settings = rig.settings.model_copy(update={"scoring": rig.settings.scoring.model_copy(update=changes)})


def _writes(rig: Rig) -> list[tuple[str, str, str, str]]:
    return sorted((r["destination"], r["operation"], r["target"], json.dumps(r["payload"], sort_keys=True))
                  for r in outbox_rows(rig.store))


def _config(path: Path, model_dir: Path, store: Path, extra: str = "") -> Path:
    path.write_text(f"""
[store]
url = "sqlite:///{store}"

[scoring]
model_dir = "{model_dir}"
{extra}

[connections.hubspot]
type = "hubspot"
token = "test-token"
base_url = "http://127.0.0.1:9"

[pipelines.main]
source = "hubspot"
destination = "hubspot"
""")
    return path


def test_sync_refuses_a_model_trained_with_another_feature_spec(tmp_path: Path, model_dir: Path) -> None:
    """`leadrelay sync` with a configured spec that drops an input the model needs exits non-zero, names the
    input, and reads nothing."""
    config = _config(tmp_path / "leadrelay.toml", model_dir, tmp_path / "store.db",
                     '[scoring.fit]\ncategorical = ["industry"]')
    result = CliRunner().invoke(main, ["-c", str(config), "sync"])
    assert result.exit_code == 3  # FixConfiguration: a person must act
    assert "trained with another feature spec" in result.output
    assert "country" in result.output
    assert "Traceback" not in result.output


async def test_an_injected_model_is_checked_too(servers: contextlib.ExitStack, tmp_path: Path,
                                              model_dir: Path) -> None:
    """A model handed to the cycle (not loaded by load_model) is refused the same way: a failed run, no reads."""
    rig = make_rig(servers, tmp_path / "rig", model_dir)
    rig.settings = rig.settings.model_copy(update={"scoring": rig.settings.scoring.model_copy(
        update={"fit": {"categorical": ["industry"]}})})
    report = await rig.cycle()
    assert report.status == "failed"
    assert "country" in report.errors[0]
    assert sum(report.read.values()) == 0


def test_load_model_serves_the_champion_not_the_challenger(with_challenger: Path, tmp_path: Path) -> None:
    """With a challenger registered, load_model returns the champion the registry promoted."""
    settings = build_settings("http://unused", tmp_path, with_challenger)
    model = load_model(settings)
    assert model is not None
    registry = json.loads((with_challenger / "registry.json").read_text())
    assert model.version == registry["champion"] != registry["challenger"] == "challenger"


async def test_a_challenger_is_scored_in_shadow_and_never_planned(servers: contextlib.ExitStack, tmp_path: Path,
                                                                  model_dir: Path, with_challenger: Path) -> None:
    """The same data with and without a challenger gives the same outbox; the challenger's scores are stored and
    compared with the champion's in the report."""
    alone = make_rig(servers, tmp_path / "alone", model_dir)
    shadow = make_rig(servers, tmp_path / "shadow", with_challenger)
    a = await alone.cycle()
    b = await shadow.cycle()
    assert a.status == b.status == "succeeded", (a.errors, b.errors)
    assert _writes(alone) == _writes(shadow)
    assert a.challenger == {}
    c = b.challenger
    assert c["version"] == "challenger"
    assert c["scored"] == b.scored == a.scored > 0
    assert c["mean_abs_delta"] > 0  # another model: other probabilities
    assert -1.0 <= c["rank_agreement"] <= 1.0
    assert 0.0 <= c["bands_differ"] <= 1.0
    with shadow.store.unit(dry_run=True) as unit:
        t = ShadowScoreRow.__table__
        stored = unit.conn.execute(sa.select(sa.func.count()).select_from(t)
                                   .where(t.c.model_version == "challenger")).scalar_one()
        runs = unit.runs("main")
    assert stored == b.scored
    assert runs[0]["counts"]["challenger"]["version"] == "challenger"
    # The contacts carry the champion's scores only.
    assert alone.sandbox.objects["contacts"].keys() == shadow.sandbox.objects["contacts"].keys()
    for cid, contact in shadow.sandbox.objects["contacts"].items():
        assert contact["properties"].get("leadrelay_score") == \
            alone.sandbox.objects["contacts"][cid]["properties"].get("leadrelay_score")


async def test_shadow_scoring_can_be_switched_off(servers: contextlib.ExitStack, tmp_path: Path,
                                                  with_challenger: Path) -> None:
    """With scoring.shadow = false a registered challenger is not scored."""
    rig = make_rig(servers, tmp_path / "rig", with_challenger)
    _with_scoring(rig, shadow=False)
    report = await rig.cycle()
    assert report.challenger == {}
    assert report.scored > 0


async def test_drift_is_measured_per_run_with_configured_thresholds(servers: contextlib.ExitStack, tmp_path: Path,
                                                                    model_dir: Path) -> None:
    """Each run reports the PSI of its scores and top features, judged by [scoring.drift], stored with the run;
    over the alert threshold the report carries a warning line."""
    lax = make_rig(servers, tmp_path / "lax", model_dir)
    _with_scoring(lax, drift={"warn": 50.0, "alert": 100.0})
    strict = make_rig(servers, tmp_path / "strict", model_dir)
    _with_scoring(strict, drift={"warn": 1e-6, "alert": 2e-6})
    calm = await lax.cycle()
    loud = await strict.cycle()
    reference = json.loads((model_dir / "reference.json").read_text())
    for report in (calm, loud):
        assert report.drift["rows"] == report.scored
        assert isinstance(report.drift["score_psi"], float)
        assert report.drift["score_psi"] >= 0
        assert set(report.drift["features"]) == set(reference["features"])
    assert calm.drift["score_psi"] == loud.drift["score_psi"]  # the same data, judged differently
    assert calm.drift["status"] == "ok"
    assert not [w for w in calm.warnings if w.startswith("drift")]
    assert loud.drift["status"] == "alert"
    assert [w for w in loud.warnings if w.startswith("drift alert")]
    with strict.store.unit(dry_run=True) as unit:
        [run] = unit.runs("main")
    assert run["counts"]["drift"] == loud.drift


async def test_drift_on_too_few_leads_is_reported_but_not_judged(servers: contextlib.ExitStack, tmp_path: Path,
                                                                 model_dir: Path) -> None:
    """A run scoring fewer leads than min_rows reports its PSI with a note and never warns."""
    rig = make_rig(servers, tmp_path / "rig", model_dir, 40)
    _with_scoring(rig, drift={"warn": 1e-6, "alert": 2e-6, "min_rows": 1000})
    report = await rig.cycle()
    assert report.drift["rows"] == report.scored == 40
    assert report.drift["status"] == "ok"
    assert "not judged" in report.drift["note"]
    assert not [w for w in report.warnings if w.startswith("drift")]


async def test_model_status_shows_last_run_drift_live_scores_and_the_challenger(
        servers: contextlib.ExitStack, tmp_path: Path, with_challenger: Path) -> None:
    """`leadrelay model status` shows the champion, the last run's drift, the live score spread from stored
    scores and the challenger scored in shadow."""
    rig = make_rig(servers, tmp_path / "rig", with_challenger)
    report = await rig.cycle()
    config = _config(tmp_path / "leadrelay.toml", with_challenger, tmp_path / "rig" / "store.db")
    result = CliRunner().invoke(main, ["-c", str(config), "model", "status", "--json"])
    assert result.exit_code == 0, result.output
    status = json.loads(result.output)
    assert status["challenger"] == "challenger"
    assert status["last_run"]["id"] == report.run_id
    assert status["last_run"]["drift"]["score_psi"] == report.drift["score_psi"]
    assert status["live"]["rows"] == report.scored
    assert status["challenger_comparison"]["leads"] == report.scored
    # The status runs at the real time, long after the fake T0: every horizon has passed, nobody converted since.
    assert status["challenger_comparison"]["labelled"] == report.scored
    assert status["challenger_comparison"]["converted"] == 0
    assert "roc_auc" not in status["challenger_comparison"]
    text = CliRunner().invoke(main, ["-c", str(config), "model", "status"]).output
    assert f"last run #{report.run_id}" in text
    assert "challenger challenger:" in text


def test_challenger_and_champion_are_compared_on_outcomes(store: Store) -> None:
    """Once the horizon has passed, shadow-scored leads are labelled by conversions after their first score and
    both models' ROC-AUC computed on them; open horizons stay unlabelled."""
    from connectors.base import Activity, ActivityType

    leads = {"a": (0.9, 0.2), "b": (0.8, 0.3), "c": (0.1, 0.7), "d": (0.2, 0.6), "e": (0.5, 0.5)}
    with store.unit() as unit:
        save_shadow_scores(unit, "src", "v2", [
            {"lead_key": k, "probability": chal, "score": 50, "band": "B", "champion_probability": champ,
             "scored_at": T0 if k != "e" else T0 + timedelta(days=40)} for k, (chal, champ) in leads.items()])
        unit.add_activities("src", [Activity(key=f"x{k}", lead_key=k, type=ActivityType.CONVERSION,
                                             occurred_at=T0 + timedelta(days=3)) for k in ("a", "b")])
        # A later score keeps the first one for the comparison.
        save_shadow_scores(unit, "src", "v2", [{"lead_key": "a", "probability": 0.01, "score": 1, "band": "D",
                                                "champion_probability": 0.5, "scored_at": T0 + timedelta(days=1)}])
    with store.unit(dry_run=True) as unit:
        result = compare_on_outcomes(unit, "src", "v2", horizon_days=30, now=T0 + timedelta(days=45))
    assert result["leads"] == 5
    assert result["labelled"] == 4  # e's horizon is still open
    assert result["converted"] == 2
    assert result["roc_auc"] == {"champion": 0.0, "challenger": 1.0}
