"""Drift: how far live scores and inputs have moved from what the model was trained on (PSI).

At training time :func:`build_reference` bins the score and the top features of the training rows and
``reference.json`` is written beside the model. Per scoring run (and in ``leadrelay model status``),
:func:`drift` bins the live values on the same edges and computes the population stability index
``PSI = Σ (live − ref) · ln(live / ref)`` per item. Thresholds are configuration: below ``warn`` is
stable, from ``warn`` a shift worth a look, from ``alert`` retrain (the customary 0.1 / 0.25). Numeric
items use the training deciles as edges (so each reference bin holds ~10 %), categorical items the most
frequent training values plus one "other" bin. Numpy only.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["REFERENCE_FILE", "DriftReport", "DriftThresholds", "Histogram", "Reference", "build_reference",
           "drift", "psi"]

REFERENCE_FILE = "reference.json"
SCORE = "score"
_EPS = 1e-4  # floor for empty bins: PSI is infinite otherwise
_OTHER = "\x00other"
_MISSING_BIN = "\x00missing"


@dataclass(frozen=True, slots=True)
class DriftThresholds:
    warn: float = 0.1
    alert: float = 0.25

    def __post_init__(self) -> None:
        if not 0 < self.warn <= self.alert:
            raise ValueError("drift thresholds need 0 < warn <= alert")

    def status(self, value: float) -> str:
        return "alert" if value >= self.alert else "warn" if value >= self.warn else "ok"


@dataclass(frozen=True, slots=True)
class Histogram:
    """Reference bins of one item: ``edges`` (numeric, interior cut points) or ``categories``; the last
    proportion of a numeric histogram is the missing-value bin."""

    kind: str  # "numeric" or "categorical"
    proportions: tuple[float, ...]
    edges: tuple[float, ...] = ()
    categories: tuple[str, ...] = ()

    def counts(self, values: np.ndarray) -> np.ndarray:
        if self.kind == "numeric":
            v = np.asarray(values, dtype=np.float64)
            nan = np.isnan(v)
            idx = np.searchsorted(np.asarray(self.edges), v[~nan], side="right")
            out = np.bincount(idx, minlength=len(self.edges) + 1).astype(np.float64)
            return np.append(out, float(nan.sum()))
        lookup = {c: i for i, c in enumerate(self.categories)}
        other = len(self.categories)
        idx = np.fromiter((lookup.get(str(x), other) for x in values), dtype=np.intp, count=len(values))
        return np.bincount(idx, minlength=other + 1).astype(np.float64)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "proportions": list(self.proportions), "edges": list(self.edges),
                "categories": list(self.categories)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Histogram:
        return cls(str(d["kind"]), tuple(float(x) for x in d["proportions"]),
                   tuple(float(x) for x in d.get("edges", ())), tuple(str(x) for x in d.get("categories", ())))


def histogram(values: np.ndarray, kind: str, *, bins: int = 10, top: int = 20) -> Histogram:
    """Reference histogram of training values: decile edges (numeric) or the ``top`` categories."""
    if kind == "numeric":
        v = np.asarray(values, dtype=np.float64)
        present = v[~np.isnan(v)]
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])
        h = Histogram("numeric", (), tuple(float(e) for e in edges))
    else:
        cats, counts = np.unique(np.asarray(values).astype(str), return_counts=True)
        keep = cats[np.argsort(-counts, kind="stable")[:top]]
        h = Histogram("categorical", (), categories=tuple(str(c) for c in keep))
    c = h.counts(values)
    return Histogram(h.kind, tuple(float(x) for x in c / max(1.0, c.sum())), h.edges, h.categories)


def psi(reference: Histogram, values: np.ndarray) -> float:
    """Population stability index of ``values`` against ``reference`` (0 for no live values)."""
    if len(values) == 0:
        return 0.0
    live = reference.counts(values)
    live = np.maximum(live / live.sum(), _EPS)
    ref = np.maximum(np.asarray(reference.proportions), _EPS)
    return float(np.sum((live - ref) * np.log(live / ref)))


@dataclass(frozen=True, slots=True)
class Reference:
    """Training-time histograms: the score and the top features, by name."""

    score: Histogram
    features: Mapping[str, Histogram]

    def write(self, directory: str | Path) -> None:
        data = {"schema": 1, SCORE: self.score.to_dict(),
                "features": {k: v.to_dict() for k, v in self.features.items()}}
        path = Path(directory) / REFERENCE_FILE
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n")
        tmp.replace(path)

    @classmethod
    def read(cls, directory: str | Path) -> Reference | None:
        path = Path(directory) / REFERENCE_FILE
        if not path.exists():
            return None
        data = json.loads(path.read_text())
        return cls(Histogram.from_dict(data[SCORE]),
                   {k: Histogram.from_dict(v) for k, v in data["features"].items()})


def build_reference(proba: np.ndarray, columns: Mapping[str, tuple[str, np.ndarray]]) -> Reference:
    """Reference of the training-time probabilities and of ``columns`` ({name: (kind, values)})."""
    return Reference(histogram(proba, "numeric"),
                     {name: histogram(values, kind) for name, (kind, values) in columns.items()})


@dataclass(frozen=True, slots=True)
class DriftReport:
    rows: int
    score_psi: float
    feature_psi: Mapping[str, float]
    thresholds: DriftThresholds

    @property
    def status(self) -> str:
        return self.thresholds.status(max([self.score_psi, *self.feature_psi.values()]))

    def as_dict(self) -> dict[str, Any]:
        t = self.thresholds
        return {"rows": self.rows, "status": self.status,
                "score": {"psi": round(self.score_psi, 4), "status": t.status(self.score_psi)},
                "features": {k: {"psi": round(v, 4), "status": t.status(v)} for k, v in self.feature_psi.items()},
                "thresholds": {"warn": t.warn, "alert": t.alert}}

    def lines(self) -> list[str]:
        t = self.thresholds
        out = [f"score PSI {self.score_psi:.3f} ({t.status(self.score_psi)}) over {self.rows} rows"]
        worst = sorted(self.feature_psi.items(), key=lambda kv: -kv[1])
        out += [f"  {name}: PSI {v:.3f} ({t.status(v)})" for name, v in worst]
        return out


def drift(reference: Reference, proba: np.ndarray, columns: Mapping[str, np.ndarray] | None = None,
          thresholds: DriftThresholds | None = None) -> DriftReport:
    """PSI of live ``proba`` and of those live ``columns`` the reference knows."""
    cols = columns or {}
    feats = {name: psi(h, cols[name]) for name, h in reference.features.items() if name in cols}
    return DriftReport(len(proba), psi(reference.score, proba), feats, thresholds or DriftThresholds())


def top_items(names: Sequence[str], importance: Sequence[float], k: int = 5) -> list[str]:
    """The ``k`` names with the largest importance (ties in input order)."""
    order = np.argsort(-np.asarray(importance, dtype=np.float64), kind="stable")[:k]
    return [names[i] for i in order.tolist()]
