"""Which models a cycle serves, and how they behave run by run: the champion (refused when its inputs do not
match the configured feature spec), the challenger scored in shadow, and drift against the training reference.

DESIGN.md step 3 (*Score*) uses the champion of the registry at ``scoring.model_dir`` — promotion copies its
files to the folder's root, so loading the root loads the champion. When the registry also holds a challenger,
each scored batch is scored again with it: its scores are stored (``shadow_score``), compared with the
champion's in the cycle report, and never planned or pushed. The run's probabilities and top features are
binned against the champion's ``reference.json`` (:mod:`scoring.monitor`) once at the end of the step.
Heavy imports (onnxruntime, numpy) happen when a model is loaded, not when this module is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import FixConfiguration
from sync.config import Settings

if TYPE_CHECKING:
    import numpy as np

    from scoring import FeatureFrame, FeatureSpec, ScoreBatch, ScoringModel
    from scoring.monitor import Reference

# Loaded challengers by (folder, card mtime): a daemon cycling every few minutes loads each version once.
_LOADED: dict[tuple[str, float], ScoringModel] = {}


def configured_spec(settings: Settings) -> FeatureSpec:
    """The feature spec the configuration describes (what training uses and serving must match)."""
    from scoring import FeatureSpec

    mapping = settings.scoring.feature_mapping()
    return FeatureSpec.from_mapping(mapping) if mapping else FeatureSpec.default()


def spec_differences(trained: FeatureSpec, configured: FeatureSpec) -> list[str]:
    """What differs between two specs, in words: the inputs one has and the other lacks, then the settings."""
    want = set(trained.numeric_names + trained.categorical_names)
    have = set(configured.numeric_names + configured.categorical_names)
    out = []
    if want - have:
        out.append("inputs the model needs but the configuration no longer computes: " + ", ".join(sorted(want - have)))
    if have - want:
        out.append("inputs the configuration computes that the model was not trained on: "
                   + ", ".join(sorted(have - want)))
    changed = [f.name for f in fields(trained) if getattr(trained, f.name) != getattr(configured, f.name)]
    if changed:
        out.append("spec settings that differ: " + ", ".join(changed))
    return out


def check_model(settings: Settings, model: ScoringModel) -> None:
    """Refuse to serve ``model`` when the configured feature spec is not the one it was trained with: the
    features would be computed differently from training. The error names each mismatching input."""
    spec = configured_spec(settings)
    if spec == model.spec:
        return
    detail = "; ".join(spec_differences(model.spec, spec))
    raise FixConfiguration(
        f"scoring: model {model.version} in {settings.scoring.model_dir} was trained with another feature spec "
        f"than [scoring.features]/[scoring.fit] describe ({detail}): retrain (`leadrelay train`) or restore the "
        "spec it was trained with")


def load_challenger(settings: Settings, champion: ScoringModel | None) -> ScoringModel | None:
    """The registry's challenger (``None`` without one, with shadow scoring off, or when it is the champion)."""
    if not settings.scoring.shadow or champion is None:
        return None
    from scoring import ScoringModel
    from scoring.card import CARD_FILE
    from scoring.registry import Registry

    registry = Registry(settings.scoring.model_dir)
    version = registry.challenger
    if version is None or version == champion.version:
        return None
    folder = registry.version_dir(version)
    card = folder / CARD_FILE
    if not card.exists():
        return None
    key = (str(folder.resolve()), card.stat().st_mtime)
    if key not in _LOADED:
        _LOADED.clear()  # one challenger at a time
        _LOADED[key] = ScoringModel.load(folder)
    return _LOADED[key]


_ACCOUNT: dict[tuple[str, float], ScoringModel] = {}


def load_account_model(settings: Settings) -> ScoringModel | None:
    """The account model's champion (``[scoring.account]``), cached per card mtime; ``None`` when the table is
    not configured or no account model has been trained (`leadrelay train --entity account`)."""
    account = settings.scoring.account
    if account is None:
        return None
    from scoring import ScoringModel
    from scoring.card import CARD_FILE

    folder = Path(account.model_dir)
    card = folder / CARD_FILE
    if not (folder / "model.onnx").exists() or not card.exists():
        return None
    key = (str(folder.resolve()), card.stat().st_mtime)
    if key not in _ACCOUNT:
        _ACCOUNT.clear()
        _ACCOUNT[key] = ScoringModel.load(folder)
    return _ACCOUNT[key]


def read_reference(settings: Settings, version: str) -> Reference | None:
    """The training reference of ``version``: its registry folder's, else the model folder's own."""
    from scoring.monitor import Reference
    from scoring.registry import Registry, RegistryError

    root = Path(settings.scoring.model_dir)
    try:
        own = Registry(root).version_dir(version)
    except RegistryError:
        own = root
    for folder in (own, root):
        reference = Reference.read(folder)
        if reference is not None:
            return reference
    return None


def frame_columns(frame: FeatureFrame, names: set[str] | frozenset[str]) -> dict[str, np.ndarray]:
    """The named columns of a feature frame (numeric or categorical) — the values the model saw."""
    out = {n: frame.numeric[:, j] for j, n in enumerate(frame.numeric_names) if n in names}
    out.update({n: frame.categorical[:, j] for j, n in enumerate(frame.categorical_names) if n in names})
    return out


class DriftWatch:
    """Collects a run's probabilities and top-feature values batch by batch; :meth:`result` bins them once."""

    def __init__(self, reference: Reference, settings: Settings) -> None:
        self.reference = reference
        self.drift = settings.scoring.drift
        self._proba: list[np.ndarray] = []
        self._columns: dict[str, list[np.ndarray]] = {name: [] for name in reference.features}

    def add(self, frame: FeatureFrame, proba: np.ndarray) -> None:
        self._proba.append(proba)
        for name, values in frame_columns(frame, frozenset(self._columns)).items():
            self._columns[name].append(values)

    def result(self) -> dict[str, Any]:
        """``{"score_psi", "features": {name: psi}, "status": ok|warn|alert, "rows", ...}``; {} if nothing scored."""
        import numpy as np

        from scoring.monitor import DriftThresholds, drift

        if not self._proba:
            return {}
        proba = np.concatenate(self._proba)
        columns = {n: np.concatenate(v) for n, v in self._columns.items() if v}
        report = drift(self.reference, proba, columns, DriftThresholds(self.drift.warn, self.drift.alert))
        enough = report.rows >= self.drift.min_rows
        out: dict[str, Any] = {
            "score_psi": round(report.score_psi, 4),
            "features": {k: round(v, 4) for k, v in sorted(report.feature_psi.items(), key=lambda kv: -kv[1])},
            "status": report.status if enough else "ok",
            "rows": report.rows,
            "thresholds": {"warn": self.drift.warn, "alert": self.drift.alert},
        }
        if not enough:
            out["note"] = (f"only {report.rows} lead(s) scored (min_rows {self.drift.min_rows}): "
                           "PSI is noise, not judged")
        return out


def drift_warning(drift: dict[str, Any]) -> str | None:
    """The report's warning line when drift is over a threshold."""
    if drift.get("status") not in ("warn", "alert"):
        return None
    warn = drift["thresholds"]["warn"]
    moved = [f"{k} {v:.2f}" for k, v in drift["features"].items() if v >= warn][:3]
    what = f"score PSI {drift['score_psi']:.2f}" + (f"; features: {', '.join(moved)}" if moved else "")
    advice = "retrain (`leadrelay train`)" if drift["status"] == "alert" else "worth a look"
    return f"drift {drift['status']} over {drift['rows']} scored leads ({what}): {advice}"


@dataclass
class ShadowComparison:
    """The champion and the challenger on the same leads this run."""

    version: str
    champion: list[np.ndarray]
    challenger: list[np.ndarray]
    bands_differ: int = 0
    seconds: float = 0.0

    @classmethod
    def start(cls, version: str) -> ShadowComparison:
        return cls(version, [], [])

    def add(self, champion: ScoreBatch, challenger: ScoreBatch) -> None:
        self.champion.append(champion.probability)
        self.challenger.append(challenger.probability)
        self.bands_differ += int((champion.band != challenger.band).sum())

    def result(self) -> dict[str, Any]:
        import numpy as np

        a = np.concatenate(self.champion) if self.champion else np.zeros(0)
        b = np.concatenate(self.challenger) if self.challenger else np.zeros(0)
        n = len(a)
        out: dict[str, Any] = {"version": self.version, "scored": n}
        if not n:
            return out
        out.update(
            mean_abs_delta=round(float(np.mean(np.abs(a - b))), 6),
            mean_probability={"champion": round(float(a.mean()), 6), "challenger": round(float(b.mean()), 6)},
            rank_agreement=round(_spearman(a, b), 4),
            bands_differ=round(self.bands_differ / n, 4),
            seconds=round(self.seconds, 3),
        )
        return out


def compare_on_outcomes(unit: Any, source: str, version: str, *, horizon_days: int, now: Any,
                        event: str = "conversion") -> dict[str, Any]:
    """The challenger ``version`` against the champion on outcomes: for each lead it scored in shadow, its
    first shadow score and the champion's at that time, labelled by an ``event`` within ``horizon_days`` after
    it (unlabelled while the horizon is still open). ROC-AUC of each when both outcomes occur."""
    from datetime import timedelta

    import numpy as np

    from sync.decision_store import shadow_scores

    rows = shadow_scores(unit, source, version)
    if not rows:
        return {"version": version, "leads": 0, "labelled": 0}
    horizon = timedelta(days=horizon_days)
    firsts = {r["lead_key"]: r["first_scored_at"] for r in rows}
    converted = _event_times(unit, source, sorted(firsts), event, min(firsts.values()))
    labels, champion, challenger = [], [], []
    for r in rows:
        at = r["first_scored_at"]
        hit = any(at <= t < at + horizon for t in converted.get(r["lead_key"], ()))
        if hit or at + horizon <= now:
            labels.append(int(hit))
            champion.append(r["first_champion_probability"])
            challenger.append(r["first_probability"])
    out: dict[str, Any] = {"version": version, "leads": len(rows), "labelled": len(labels),
                           "converted": int(sum(labels)), "horizon_days": horizon_days}
    y = np.asarray(labels)
    if len(y) and 0 < y.sum() < len(y):
        out["roc_auc"] = {"champion": round(_auc(y, np.asarray(champion)), 4),
                          "challenger": round(_auc(y, np.asarray(challenger)), 4)}
    return out


def _event_times(unit: Any, source: str, keys: list[str], event: str, since: Any) -> dict[str, list[Any]]:
    import sqlalchemy as sa

    from sync.store import ActivityRow, utc

    t = ActivityRow.__table__
    out: dict[str, list[Any]] = {}
    for chunk in unit._chunks(keys):
        for lead_key, at in unit.conn.execute(
                sa.select(t.c.lead_key, t.c.occurred_at).where(t.c.source == source, t.c.type == event,
                                                               t.c.occurred_at >= since.replace(tzinfo=None),
                                                               unit._among(t.c.lead_key, chunk))):
            out.setdefault(lead_key, []).append(utc(at))
    return out


def _auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC-AUC by the rank-sum formula (average ranks for ties)."""
    import numpy as np

    _, inverse, counts = np.unique(p, return_inverse=True, return_counts=True)
    ranks = (np.cumsum(counts) - (counts - 1) / 2.0)[inverse]
    pos = int(y.sum())
    neg = len(y) - pos
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman's rank correlation (average ranks for ties); 1.0 when either side is constant."""
    import numpy as np

    def ranks(x: np.ndarray) -> np.ndarray:
        _, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
        upper = np.cumsum(counts)
        return ((upper - (counts - 1) / 2.0)[inverse]).astype(np.float64)

    if len(a) < 2:
        return 1.0
    ra, rb = ranks(a), ranks(b)
    if ra.std() == 0 or rb.std() == 0:
        return 1.0
    return float(np.corrcoef(ra, rb)[0, 1])


__all__ = ["DriftWatch", "ShadowComparison", "check_model", "compare_on_outcomes", "configured_spec",
           "drift_warning", "frame_columns", "load_account_model", "load_challenger", "read_reference",
           "spec_differences"]
