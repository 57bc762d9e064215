"""Training: out-of-time metrics, ONNX parity, the model card and every release gate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import scoring.train as train_module
from scoring.card import MODEL_FILE, ModelCard
from scoring.errors import ReleaseGateError
from scoring.labels import Examples
from scoring.train import check_calibration, check_data, export_onnx, train


def test_trained_model_beats_chance_out_of_time(card: ModelCard) -> None:
    """On the synthetic history both candidates rank converters well on the latest cutoffs."""
    assert set(card.candidates) == {"logistic_regression", "hist_gradient_boosting"}
    assert card.champion in card.candidates
    assert card.metrics["roc_auc"] > 0.7
    assert card.metrics["top_decile_lift"] > 2.0
    assert card.candidates[card.champion]["pr_auc"] == card.metrics["pr_auc"]


def test_card_records_what_serving_and_people_need(
    card: ModelCard, examples: Examples, model_dir: Path
) -> None:
    """The card holds version, window, counts, base rate, bands, references and one input per feature."""
    assert (model_dir / MODEL_FILE).stat().st_size > 0
    assert card.version == "test-1"
    assert card.trained_at.startswith("2024-12-26")
    assert card.counts["examples"] == len(examples)
    assert card.counts["positives"] == int(examples.y.sum())
    assert card.base_rate == pytest.approx(float(examples.y.mean()))
    assert card.training_window[0] < card.validation_window[0] <= card.training_window[1]
    assert [i.feature for i in card.inputs] == list(examples.frame.names)
    assert [b.name for b in card.bands] == ["A", "B", "C", "D"]
    assert card.bands[-1].min_probability == 0.0
    assert set(card.reference_numeric) == set(examples.frame.numeric_names)
    rates = [b["conversion_rate"] for b in card.band_validation]
    assert rates[0] > rates[-1]


def test_onnx_output_matches_sklearn(examples: Examples, card: ModelCard) -> None:
    """An exported pipeline scores held-out rows within 1e-4 of scikit-learn's predict_proba."""
    import onnxruntime as ort

    assert card.parity_max_diff <= 1e-4
    rows = np.arange(len(examples))
    fit_rows, check_rows = rows[rows % 4 != 0], rows[rows % 4 == 0]
    fit, check = examples.frame.take(fit_rows), examples.frame.take(check_rows)
    from threadpoolctl import threadpool_limits

    pipe = train_module._pipeline("hist_gradient_boosting", fit, seed=1)
    with threadpool_limits(limits=1):
        pipe.fit(fit.to_matrix(), examples.y[fit_rows])
    model, inputs, output = export_onnx(pipe, fit)
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    onnx_p = session.run([output], check.onnx_feed({i.feature: i.input for i in inputs}))[0][:, 1]
    assert np.max(np.abs(onnx_p - pipe.predict_proba(check.to_matrix())[:, 1])) <= 1e-4


def test_too_few_positives_are_refused(examples: Examples, tmp_path: Path) -> None:
    """A training set with fewer positives than min_positives trips the minimum-data gate, with numbers."""
    rows = np.concatenate([np.flatnonzero(examples.y == 0)[:400], np.flatnonzero(examples.y == 1)[:7]])
    with pytest.raises(ReleaseGateError, match="7 positive examples, at least 20 needed") as info:
        train(examples.take(np.sort(rows)), tmp_path, version="x")
    assert info.value.gate == "minimum_data"
    assert not (tmp_path / MODEL_FILE).exists()


def test_too_few_examples_are_refused() -> None:
    """The minimum-data gate names the count and the requirement."""
    with pytest.raises(ReleaseGateError, match="150 examples, at least 200 needed"):
        check_data(examples=150, positives=40, min_examples=200, min_positives=20)


def test_parity_gate_refuses_an_export_that_disagrees(
    examples: Examples, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a tolerance no export can meet, training stops at the ONNX parity gate and writes nothing."""
    monkeypatch.setattr(train_module, "PARITY_TOLERANCE", -1.0)
    with pytest.raises(ReleaseGateError, match="ONNX and scikit-learn probabilities differ") as info:
        train(examples, tmp_path, version="x", candidates=["logistic_regression"], refit=False)
    assert info.value.gate == "onnx_parity"
    assert not (tmp_path / "card.json").exists()


def test_calibration_gate_refuses_lower_auc() -> None:
    """A calibrated AUC below the uncalibrated one is refused; equal AUC (monotone calibration) passes."""
    with pytest.raises(ReleaseGateError, match=r"calibrated ROC-AUC 0\.6100 is below uncalibrated 0\.8000"):
        check_calibration("hist_gradient_boosting", calibrated_auc=0.61, uncalibrated_auc=0.80)
    check_calibration("hist_gradient_boosting", calibrated_auc=0.80, uncalibrated_auc=0.80)


def test_one_cutoff_cannot_be_validated_out_of_time(examples: Examples, tmp_path: Path) -> None:
    """Examples from a single freeze time are refused: there is no later period to validate on."""
    rows = np.flatnonzero(examples.cutoff == examples.cutoff.max())
    with pytest.raises(ReleaseGateError, match="out-of-time validation needs at least 2"):
        train(examples.take(rows), tmp_path, version="x", min_examples=10, min_positives=1)


def test_store_model_report_compares_with_the_points_baseline(model_dir: Path, card: ModelCard) -> None:
    """Training from history writes the report (champion, candidate, points baseline) and a drift reference."""
    from scoring.monitor import Reference

    assert card.baseline["name"] == "activity and fit points"
    assert card.metrics["pr_auc"] > card.baseline["pr_auc"]
    report = (model_dir / "report.md").read_text()
    assert f"| {card.champion} | champion |" in report
    assert "| activity and fit points | baseline |" in report
    reference = Reference.read(model_dir)
    assert reference is not None
    assert len(reference.features) >= 5


def test_model_no_better_than_the_points_is_refused(tmp_path: Path) -> None:
    """When the label is exactly a marketer's rule, no model beats its points and the baseline gate fires."""
    from datetime import UTC, datetime

    from scoring.features import FeatureFrame, FeatureSpec
    from scoring.heuristic import PointsModel

    rng = np.random.default_rng(4)
    n = 800
    forms = rng.integers(0, 4, n).astype(np.float32)
    frame = FeatureFrame(tuple(str(i) for i in range(n)), np.asfortranarray(
        np.stack([forms, rng.normal(size=n).astype(np.float32)], axis=1)),
        np.zeros((n, 0), dtype=object), ("forms", "noise"), ())
    days = np.repeat(np.array(["2024-01-01", "2024-02-01"], dtype="datetime64[us]"), n // 2)
    examples = Examples(frame, (forms >= 3).astype(np.int8), days, frame.keys, FeatureSpec(), 30, "conversion")
    points = PointsModel.from_mapping({"name": "forms", "rule": [{"column": "forms", "at_least": 3, "points": 10}]})
    with pytest.raises(ReleaseGateError, match="no better than the points baseline 'forms'") as info:
        train(examples, tmp_path, version="x", trained_at=datetime(2024, 3, 1, tzinfo=UTC), points=points,
              candidates=["logistic_regression"])
    assert info.value.gate == "baseline"
    assert not (tmp_path / MODEL_FILE).exists()
