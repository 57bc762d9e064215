"""The points baseline: hand-written rules of the kind marketers configure in their automation platform.

"+30 if the previous campaign succeeded", "+5 per pricing-page visit", "−10 for a free-mail address".
Every trained model is compared with such a points model on the same validation rows (DESIGN.md,
*Score*; the ``baseline`` release gate in :mod:`scoring.train` and :mod:`scoring.tabular`): a model that
cannot out-rank the points a marketer would write by hand is not worth shipping. Points rank leads; to
compare Brier and log loss too, points become probabilities through a one-feature logistic fit on the
training rows.

Rules are data (TOML ``[[rule]]`` tables), validated with the offending key named::

    name = "bank: marketer points"
    [[rule]]
    column = "poutcome"
    equals = "success"
    points = 30

Conditions: ``equals``, ``in`` (a list), ``above``, ``below``, ``at_least``, ``at_most``, ``missing``
(true) or ``per`` (points times the value, e.g. per visit). Numpy only; sklearn is imported by ``fit``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scoring.errors import FeatureSpecError
from scoring.features import FeatureFrame, FeatureSpec, count_name

__all__ = ["CONDITIONS", "PointsModel", "PointsRule", "default_points"]

CONDITIONS = ("equals", "in", "above", "below", "at_least", "at_most", "missing", "per")


@dataclass(frozen=True, slots=True)
class PointsRule:
    """``points`` for rows whose ``column`` meets ``condition`` against ``value``."""

    column: str
    condition: str
    value: Any
    points: float

    def apply(self, frame: FeatureFrame) -> np.ndarray:
        if self.column in frame.numeric_names:
            col: np.ndarray = frame.numeric[:, frame.numeric_names.index(self.column)].astype(np.float64)
            numeric = True
        elif self.column in frame.categorical_names:
            col = frame.categorical[:, frame.categorical_names.index(self.column)]
            numeric = False
        else:
            raise FeatureSpecError(f"rule.{self.column}", "no such column in the data")
        c, v = self.condition, self.value
        if c == "missing":
            hit = np.isnan(col) if numeric else np.isin(col, ["", "__missing__"])
            return np.where(hit == bool(v), self.points, 0.0)
        if c == "per":
            return np.nan_to_num(col if numeric else np.zeros(len(col))) * self.points
        if c in ("equals", "in"):
            wanted = [v] if c == "equals" else list(v)
            if numeric:
                hit = np.isin(col, np.asarray([float(w) for w in wanted]))
            else:
                hit = np.isin(np.char.lower(col.astype(str)), [str(w).lower() for w in wanted])
            return np.where(hit, self.points, 0.0)
        if not numeric:
            raise FeatureSpecError(f"rule.{self.column}", f"'{c}' needs a numeric column")
        with np.errstate(invalid="ignore"):
            hit = {"above": col > v, "below": col < v, "at_least": col >= v, "at_most": col <= v}[c]
        return np.where(hit, self.points, 0.0)


@dataclass(frozen=True, slots=True)
class PointsModel:
    """A named list of rules; a row's points are the sum of its rules' points."""

    name: str
    rules: tuple[PointsRule, ...]

    def points(self, frame: FeatureFrame) -> np.ndarray:
        total = np.zeros(len(frame), dtype=np.float64)
        for rule in self.rules:
            total += rule.apply(frame)
        return total

    def fit(self, frame: FeatureFrame, y: np.ndarray) -> _Calibrated:
        """Points -> probability by a logistic fit on these (training) rows: ranks stay the points' own."""
        from sklearn.linear_model import LogisticRegression

        x = self.points(frame)
        scale = float(np.std(x)) or 1.0
        lr = LogisticRegression(C=1e6, max_iter=1000).fit((x / scale).reshape(-1, 1), y)
        return _Calibrated(self, float(lr.coef_[0, 0]) / scale, float(lr.intercept_[0]))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, default_name: str = "points") -> PointsModel:
        rules_in = data.get("rule", data.get("rules"))
        if not isinstance(rules_in, list) or not rules_in:
            raise FeatureSpecError("rule", "at least one [[rule]] table is needed")
        rules = []
        for i, r in enumerate(rules_in):
            path = f"rule[{i}]"
            if not isinstance(r, Mapping):
                raise FeatureSpecError(path, "must be a table")
            unknown = set(r) - {"column", "points", *CONDITIONS}
            if unknown:
                raise FeatureSpecError(f"{path}.{sorted(unknown)[0]}", "unknown key")
            column = r.get("column")
            if not isinstance(column, str) or not column:
                raise FeatureSpecError(f"{path}.column", "must name a column")
            points = r.get("points")
            if isinstance(points, bool) or not isinstance(points, int | float) or not math.isfinite(points):
                raise FeatureSpecError(f"{path}.points", "must be a number")
            conds = [c for c in CONDITIONS if c in r]
            if len(conds) != 1:
                raise FeatureSpecError(path, f"needs exactly one condition of {', '.join(CONDITIONS)}")
            cond, value = conds[0], r[conds[0]]
            if cond in ("above", "below", "at_least", "at_most") and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise FeatureSpecError(f"{path}.{cond}", "must be a number")
            if cond == "in" and not isinstance(value, list):
                raise FeatureSpecError(f"{path}.in", "must be a list")
            if cond in ("missing", "per") and not isinstance(value, bool):
                raise FeatureSpecError(f"{path}.{cond}", "must be true or false")
            rules.append(PointsRule(column, cond, value, float(points)))
        return cls(str(data.get("name", default_name)), tuple(rules))

    @classmethod
    def read(cls, path: str | Path) -> PointsModel:
        p = Path(path)
        with p.open("rb") as f:
            return cls.from_mapping(tomllib.load(f), default_name=p.stem)

    def check_columns(self, names: Sequence[str]) -> None:
        for i, rule in enumerate(self.rules):
            if rule.column not in names:
                raise FeatureSpecError(f"rule[{i}].column", f"no column {rule.column!r} in the data")


@dataclass(frozen=True, slots=True)
class _Calibrated:
    model: PointsModel
    slope: float
    intercept: float

    def predict_proba(self, frame: FeatureFrame) -> np.ndarray:
        z = self.model.points(frame) * self.slope + self.intercept
        return 1.0 / (1.0 + np.exp(-np.clip(z, -40.0, 40.0)))


def default_points(spec: FeatureSpec) -> PointsModel:
    """The points a marketer would configure for store-trained lead models: the spec's activity weights
    per event in the longest window, +20 for a full ICP match, +10 for C-level/VP titles, +5 for
    directors, −10 for a free-mail address."""
    window = max(spec.windows)
    rules = [
        PointsRule(count_name(event_type, window), "per", True, weight)
        for event_type, weight in spec.weights
        if event_type in spec.event_types and weight > 0
    ]
    if spec.icp.configured:
        rules.append(PointsRule("icp_score", "per", True, 20.0))
    if spec.title_attribute:
        rules.append(PointsRule("title_seniority", "in", ["c_level", "vp"], 10.0))
        rules.append(PointsRule("title_seniority", "equals", "director", 5.0))
    if spec.free_mail_attribute:
        rules.append(PointsRule("email_domain_free", "equals", 1.0, -10.0))
    return PointsModel("activity and fit points", tuple(rules))
