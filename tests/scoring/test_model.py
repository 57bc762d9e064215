"""Serving: load checks, scores 1-99, bands, reasons in words that point at what moved the score."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from scoring.card import ModelCard
from scoring.errors import ModelMismatchError
from scoring.features import Event, FeatureSpec, Subject, compute_features
from scoring.model import Score, ScoringModel, to_score

NOW = datetime(2024, 12, 26, tzinfo=UTC)


@pytest.fixture(scope="module")
def model(model_dir: Path) -> ScoringModel:
    return ScoringModel.load(model_dir)


def typical(key: str, events: list[Event], **attrs: str | int | float | bool | None) -> Subject:
    base: dict[str, str | int | float | bool | None] = {
        "industry": "software",
        "employees": 300,
        "annual_revenue": 3e7,
        "country": "US",
        "title": "Marketing Manager",
        "email_domain_free": False,
    }
    base.update(attrs)
    return Subject(key, NOW - timedelta(days=120), base, events)


def test_score_is_1_to_99_and_monotone_in_probability(model: ScoringModel, history: list[Subject]) -> None:
    """Scores stay within 1..99 and never fall while the probability rises."""
    grid = np.linspace(0.0, 1.0, 10_001)
    s = to_score(grid)
    assert s.min() == 1
    assert s.max() == 99
    assert np.all(np.diff(s) >= 0)
    batch = model.score(compute_features(model.spec, history[:300], NOW), reasons=False)
    order = np.argsort(batch.probability, kind="stable")
    assert np.all(np.diff(batch.score[order]) >= 0)
    assert set(batch.band.tolist()) <= {"A", "B", "C", "D"}


def test_many_pricing_visits_give_a_pricing_reason_first(model: ScoringModel) -> None:
    """A lead whose recent activity is pricing-page visits gets that as its top positive reason."""
    pricing = [Event("pricing_page", NOW - timedelta(days=d), {"url": "/pricing"}) for d in (0.5, 1, 2, 3)]
    quiet = typical("quiet", [])
    keen = typical("keen", pricing)
    batch = model.score(compute_features(model.spec, [quiet, keen], NOW))
    assert batch.probability[1] > batch.probability[0]
    assert batch.reasons_positive[1][0] == "4 pricing-page visits in the last 7 days"
    assert all("pricing" not in r for r in batch.reasons_positive[0])


def test_company_outside_the_icp_gets_a_negative_reason(model: ScoringModel) -> None:
    """A tiny company in a non-ICP industry is told so among its negative reasons, in words."""
    lead = typical("tiny", [], employees=12, industry="retail")
    batch = model.score(compute_features(model.spec, [lead], NOW))
    negative = " | ".join(batch.reasons_negative[0])
    assert "Company size 12 employees is outside the ICP range (50–5,000)" in negative


def test_scoring_is_deterministic(model_dir: Path, history: list[Subject], spec: FeatureSpec) -> None:
    """The same frame and model give the same probabilities and reasons, bit for bit, across loads."""
    frame = compute_features(spec, history[:400], NOW)
    first = ScoringModel.load(model_dir).score(frame)
    second = ScoringModel.load(model_dir).score(frame)
    assert first.probability.tobytes() == second.probability.tobytes()
    assert first.reasons_positive == second.reasons_positive
    assert first.reasons_negative == second.reasons_negative


def test_rows_and_reason_subset(model: ScoringModel, history: list[Subject]) -> None:
    """rows() yields one Score per subject; reasons are computed only for the requested rows."""
    frame = compute_features(model.spec, history[:50], NOW)
    batch = model.score(frame, reason_rows=[3, 7])
    rows = list(batch.rows())
    assert len(rows) == 50
    assert isinstance(rows[0], Score)
    assert rows[0].model_version == "test-1"
    assert 1 <= rows[0].score <= 99
    assert all(
        not r.reasons_positive and not r.reasons_negative for i, r in enumerate(rows) if i not in (3, 7)
    )
    assert all(len(rows[i].reasons_positive) + len(rows[i].reasons_negative) > 0 for i in (3, 7))
    full = model.score(frame)
    assert full.reasons_positive[3] == batch.reasons_positive[3]


def test_model_whose_inputs_do_not_match_the_spec_is_refused(model_dir: Path, tmp_path: Path) -> None:
    """A card whose spec implies inputs the ONNX graph lacks is refused, naming the missing inputs."""
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    card = json.loads((target / "card.json").read_text())
    card["feature_spec"]["features"]["windows"] = [7, 30, 90, 180]
    card["inputs"] += [
        {"feature": f"{t}_count_180d", "input": f"{t}_count_180d", "kind": "numeric"}
        for t in card["feature_spec"]["features"]["event_types"]
    ]
    (target / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelMismatchError, match=r"missing: .*pricing_page_count_180d") as info:
        ScoringModel.load(target)
    assert "page_view_count_180d" in info.value.missing


def test_card_that_disagrees_with_its_spec_is_refused(model_dir: Path, tmp_path: Path) -> None:
    """A card listing an input its own spec does not produce is refused as extra."""
    target = tmp_path / "model"
    shutil.copytree(model_dir, target)
    card = json.loads((target / "card.json").read_text())
    card["inputs"].append({"feature": "lifecycle_stage", "input": "lifecycle_stage", "kind": "categorical"})
    (target / "card.json").write_text(json.dumps(card))
    with pytest.raises(ModelMismatchError, match="extra: lifecycle_stage"):
        ScoringModel.load(target)


def test_frame_from_another_spec_is_refused(model: ScoringModel, history: list[Subject]) -> None:
    """Scoring a frame computed with a different spec fails loudly instead of mis-mapping columns."""
    other = FeatureSpec(windows=(7, 30))
    with pytest.raises(ModelMismatchError, match=r"do not match model test-1's feature spec \(missing: "):
        model.score(compute_features(other, history[:5], NOW))


def test_card_round_trips(card: ModelCard) -> None:
    """The card reads back into an equal card from its JSON form."""
    assert ModelCard.from_dict(json.loads(json.dumps(card.to_dict()))) == card


def test_configured_spec_other_than_the_trained_one_is_refused(model_dir: Path, spec: FeatureSpec) -> None:
    """Serving with a changed feature spec fails naming the features that differ; the trained spec passes."""
    model = ScoringModel.load(model_dir)
    model.check_spec(spec)
    changed = FeatureSpec.from_mapping({**spec.to_mapping(), "features": {**spec.to_mapping()["features"],
                                                                          "windows": [7, 14]}})
    with pytest.raises(ModelMismatchError, match="another feature spec") as info:
        model.check_spec(changed)
    assert "page_view_count_90d" in info.value.missing
    assert "page_view_count_14d" in info.value.extra
