"""The evaluation report: capture, lift and reliability numbers on constructed rows, and the files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scoring.report import Compared, capture, lift_by_decile, metrics, reliability, write_report


def test_capture_and_lift_count_conversions_in_the_top_rows() -> None:
    """With 3 of 4 conversions in the best 20 of 100 rows, the top 20 % captures 75 % and lift is exact."""
    y = np.zeros(100, dtype=int)
    y[[0, 5, 19, 90]] = 1
    proba = np.linspace(1, 0, 100)  # row order is rank order
    assert capture(y, proba, 0.2) == pytest.approx(0.75)
    assert capture(y, proba, 0.15) == pytest.approx(0.5)
    lift = lift_by_decile(y, proba)
    assert lift[0] == pytest.approx(0.2 / 0.04)  # 2 of the first 10 rows
    assert lift[9] == pytest.approx(0.1 / 0.04)
    m = metrics(y, proba)
    assert m["capture_top_15"] == pytest.approx(0.5)
    assert set(m) >= {"roc_auc", "pr_auc", "brier", "log_loss", "top_decile_lift", "capture_top_35"}


def test_reliability_compares_predicted_and_observed_rates() -> None:
    """Perfectly calibrated probabilities land near the diagonal in every equal-count bin."""
    rng = np.random.default_rng(0)
    p = rng.random(50_000) * 0.5
    y = (rng.random(50_000) < p).astype(int)
    for b in reliability(y, p):
        assert b["observed"] == pytest.approx(b["predicted"], abs=0.02)


def test_report_puts_champion_candidates_and_baseline_in_one_table(tmp_path: Path) -> None:
    """report.md/html list every compared model with its metrics; both charts are written as PNG."""
    rng = np.random.default_rng(1)
    y = (rng.random(400) < 0.2).astype(int)
    good = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.1, 400), 0.01, 0.99)
    compared = [Compared("hgb", "champion", good), Compared("lr", "candidate", (good + 0.2) / 1.4),
                Compared("points", "baseline", rng.random(400)), Compared("serving v1", "serving", good * 0.9)]
    bands = [{"band": "A", "rows": 40, "share": 0.1, "conversion_rate": 0.5, "share_of_conversions": 0.25},
             {"band": "B", "rows": 360, "share": 0.9, "conversion_rate": 0.17, "share_of_conversions": 0.75}]
    scores = write_report(tmp_path, title="Model t", y=y, compared=compared, band_validation=bands,
                          facts=[("rows", "400")], notes=["a <note>"])
    md = (tmp_path / "report.md").read_text()
    for name, role in (("hgb", "champion"), ("lr", "candidate"), ("points", "baseline"), ("serving v1", "serving")):
        assert f"| {name} | {role} | {scores[name]['roc_auc']:.4f} |" in md
    assert scores["hgb"]["roc_auc"] > scores["points"]["roc_auc"]
    assert "| A | 40 | 10.0% | 50.0% | 25.0% |" in md
    assert "a &lt;note&gt;" in (tmp_path / "report.html").read_text()
    for png in ("reliability.png", "bands.png"):
        assert (tmp_path / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
