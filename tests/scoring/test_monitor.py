"""Drift: PSI stays low on a sample like the training data and rises on a shifted one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scoring.monitor import DriftThresholds, Reference, build_reference, drift, histogram, psi


def training(seed: int = 0, n: int = 20_000) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    visits = rng.poisson(3, n).astype(np.float32)
    visits[rng.random(n) < 0.05] = np.nan
    source = rng.choice(["webinar", "organic", "paid"], n, p=[0.2, 0.5, 0.3]).astype(object)
    proba = 1 / (1 + np.exp(-(-2 + 0.3 * np.nan_to_num(visits))))
    return proba, {"visits": visits, "source": source}


def test_unshifted_sample_shows_no_drift() -> None:
    """A fresh sample from the training distribution stays well under the warning threshold."""
    proba, cols = training()
    ref = build_reference(proba, {"visits": ("numeric", cols["visits"]), "source": ("categorical", cols["source"])})
    live_p, live = training(seed=1, n=5000)
    report = drift(ref, live_p, live)
    assert report.score_psi < 0.02
    assert max(report.feature_psi.values()) < 0.02
    assert report.status == "ok"


def test_shifted_sample_raises_drift_where_it_moved() -> None:
    """More visits and a new source mix raise PSI of the score and of exactly the moved features."""
    proba, cols = training()
    ref = build_reference(proba, {"visits": ("numeric", cols["visits"]), "source": ("categorical", cols["source"])})
    rng = np.random.default_rng(2)
    visits = rng.poisson(6, 5000).astype(np.float32)
    live = {"visits": visits, "source": rng.choice(["organic", "partner"], 5000).astype(object)}
    live_p = 1 / (1 + np.exp(-(-2 + 0.3 * visits)))
    report = drift(ref, live_p, live)
    assert report.score_psi > 0.25
    assert report.feature_psi["visits"] > 0.25
    assert report.feature_psi["source"] > 0.25
    assert report.status == "alert"
    unmoved = drift(ref, live_p, {"visits": visits, "source": training(seed=3, n=5000)[1]["source"]})
    assert unmoved.feature_psi["source"] < 0.02


def test_thresholds_are_configurable() -> None:
    """The same PSI is a warning under one configuration and fine under a laxer one."""
    assert DriftThresholds(0.1, 0.25).status(0.15) == "warn"
    assert DriftThresholds(0.2, 0.5).status(0.15) == "ok"
    with pytest.raises(ValueError, match="warn <= alert"):
        DriftThresholds(0.3, 0.2)


def test_missing_values_have_their_own_bin() -> None:
    """A feature that starts arriving empty drifts, though its present values look the same."""
    values = np.arange(1000, dtype=np.float64) % 10
    h = histogram(values, "numeric")
    live = values.copy()
    live[:500] = np.nan
    assert psi(h, values) < 1e-9
    assert psi(h, live) > 0.25


def test_reference_round_trips_through_its_file(tmp_path: Path) -> None:
    """reference.json reads back into the same bins and proportions."""
    proba, cols = training(n=2000)
    ref = build_reference(proba, {"source": ("categorical", cols["source"])})
    ref.write(tmp_path)
    back = Reference.read(tmp_path)
    assert back == ref
    assert Reference.read(tmp_path / "nothing-here") is None
