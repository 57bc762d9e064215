"""Training tolerates firmographic columns that no lead fills in (a source without accounts or sizes)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from scoring import FeatureSpec, build_examples, default_cutoffs
from scoring.synthetic import synthetic_history
from scoring.train import _parity, _pipeline

START = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("candidate", ["hist_gradient_boosting", "logistic_regression"])
def test_all_empty_numeric_columns_fit_export_and_score_alike(candidate: str) -> None:
    """With employees and revenue None for everyone, each candidate fits (calibration folds included), exports
    to ONNX with every input kept, and ONNX scores like scikit-learn."""
    subjects = [dataclasses.replace(s, attributes={**s.attributes, "employees": None, "annual_revenue": None,
                                                   "industry": None})
                for s in synthetic_history(300, start=START, seed=3, burst_rate=2.0)]
    cutoffs = default_cutoffs(START, START + timedelta(days=360), horizon_days=30, step_days=60)
    examples = build_examples(FeatureSpec.default(), subjects, cutoffs, horizon_days=30)
    frame = examples.frame
    empty = [n for j, n in enumerate(frame.numeric_names) if np.isnan(frame.numeric[:, j]).all()]
    assert {"employees_log1p", "annual_revenue_log1p"} <= set(empty)
    pipe = _pipeline(candidate, frame, seed=1)
    pipe.fit(frame.to_matrix(), examples.y)
    _, inputs, _, diff, proba = _parity(pipe, frame)
    assert {i.feature for i in inputs} == set(frame.names)
    assert diff < 1e-4
    assert np.isfinite(proba).all()
