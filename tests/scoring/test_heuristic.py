"""The points baseline: rules as data, validated by key, summed per row, and the store model's defaults."""

from __future__ import annotations

import numpy as np
import pytest

from scoring.errors import FeatureSpecError
from scoring.features import FeatureFrame, FeatureSpec
from scoring.heuristic import PointsModel, default_points


def frame() -> FeatureFrame:
    return FeatureFrame(
        keys=("a", "b", "c"),
        numeric=np.asfortranarray(np.array([[3.0, 0.5], [0.0, np.nan], [10.0, 2.0]], dtype=np.float32)),
        categorical=np.array([["webinar"], [""], ["Organic"]], dtype=object),
        numeric_names=("visits", "ratio"),
        categorical_names=("source",),
    )


def test_points_sum_the_rules_a_row_meets() -> None:
    """Each condition adds its points where it holds; 'per' multiplies; text matches ignore case."""
    model = PointsModel.from_mapping({"name": "mine", "rule": [
        {"column": "visits", "per": True, "points": 2},
        {"column": "visits", "at_least": 10, "points": 5},
        {"column": "ratio", "missing": True, "points": -3},
        {"column": "source", "in": ["webinar", "organic"], "points": 7},
        {"column": "source", "equals": "", "points": -1},
    ]})
    assert model.points(frame()).tolist() == [6 + 7, -3 - 1, 20 + 5 + 7]


@pytest.mark.parametrize(("rule", "path"), [
    ({"column": "visits", "points": 1}, "rule[0]"),
    ({"column": "visits", "above": "x", "points": 1}, "rule[0].above"),
    ({"column": "visits", "above": 1, "points": "ten"}, "rule[0].points"),
    ({"column": "visits", "above": 1, "below": 3, "points": 1}, "rule[0]"),
    ({"column": "visits", "above": 1, "points": 1, "weight": 2}, "rule[0].weight"),
    ({"column": "", "above": 1, "points": 1}, "rule[0].column"),
])
def test_invalid_rules_name_their_key(rule: dict[str, object], path: str) -> None:
    """Every malformed rule raises FeatureSpecError starting with the offending key path."""
    with pytest.raises(FeatureSpecError) as info:
        PointsModel.from_mapping({"rule": [rule]})
    assert info.value.path == path


def test_rule_on_an_unknown_column_is_refused() -> None:
    """A rule naming a column the data lacks is refused before any scoring."""
    model = PointsModel.from_mapping({"rule": [{"column": "nope", "above": 1, "points": 1}]})
    with pytest.raises(FeatureSpecError, match="no column 'nope'"):
        model.check_columns(frame().names)


def test_calibrated_points_keep_the_points_order() -> None:
    """Points turned into probabilities rank rows exactly as the points do."""
    model = PointsModel.from_mapping({"rule": [{"column": "visits", "per": True, "points": 1}]})
    f = frame()
    proba = model.fit(f, np.array([0, 0, 1])).predict_proba(f)
    assert np.all((proba > 0) & (proba < 1))
    assert np.argsort(proba).tolist() == np.argsort(model.points(f)).tolist()


def test_default_points_follow_the_spec_weights() -> None:
    """The store model's baseline gives each activity its configured weight in the longest window."""
    spec = FeatureSpec()
    model = default_points(spec)
    per = {r.column: r.points for r in model.rules if r.condition == "per"}
    assert per["pricing_page_count_90d"] == spec.weight("pricing_page")
    assert per["meeting_count_90d"] == spec.weight("meeting")
    assert all(r.column in spec.numeric_names + spec.categorical_names for r in model.rules)
