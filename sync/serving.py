"""Which models a cycle serves, and how they behave run by run: the champion (refused when its inputs do not
match the configured feature spec), the challenger scored in shadow, and drift against the training reference.

DESIGN.md step 3 (*Score*) uses the champion of the registry at ``scoring.model_dir`` — promotion copies its
files to the folder's root, so loading the root loads the champion. When the registry also holds a challenger,
each scored batch is scored again with it: its scores are stored (``shadow_score``), compared with the
champion's in the cycle report, and never planned or pushed. The run's probabilities and top features are
binned against the champion's ``reference.json`` (:mod:`scoring.monitor`) once at the end of the step.
The account model (``[scoring.account]``) is served the same way from its own registry: its challenger in
shadow (``account_shadow_score``), its drift against its own reference.
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

# Loaded models by slot ("challenger", "account", "account challenger"), each with the (folder, card mtime) it
# was loaded from: a daemon cycling every few minutes loads each version once, one model per slot.
_LOADED: dict[str, tuple[tuple[str, float], ScoringModel]] = {}


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
        f"than [scoring.features]/[scoring.fit]/[scoring.timing] describe ({detail}): retrain (`leadrelay train`) "
        "or restore the spec it was trained with")


def _cached(slot: str, folder: Path) -> ScoringModel | None:
    """The model in ``folder`` (``None`` without its ONNX file and card), loaded again only when its card
    changed; one model is kept per ``slot``."""
    from scoring import ScoringModel
    from scoring.card import CARD_FILE

    card = folder / CARD_FILE
    if not (folder / "model.onnx").exists() or not card.exists():
        return None
    key = (str(folder.resolve()), card.stat().st_mtime)
    held = _LOADED.get(slot)
    if held is None or held[0] != key:
        held = _LOADED[slot] = (key, ScoringModel.load(folder))
    return held[1]


def account_dir(settings: Settings) -> Path | None:
    """The account model's registry (``[scoring.account] model_dir``); ``None`` when not configured."""
    account = settings.scoring.account
    return None if account is None else Path(account.model_dir)


def load_challenger(settings: Settings, champion: ScoringModel | None, *, root: str | Path | None = None
                    ) -> ScoringModel | None:
    """The challenger of the registry at ``root`` (default: ``scoring.model_dir``, the lead model's);
    ``None`` without one, with shadow scoring off, or when it is the champion."""
    if not settings.scoring.shadow or champion is None:
        return None
    from scoring.registry import Registry

    registry = Registry(root if root is not None else settings.scoring.model_dir)
    version = registry.challenger
    if version is None or version == champion.version:
        return None
    slot = "challenger" if root is None else f"challenger:{Path(root).resolve()}"
    return _cached(slot, registry.version_dir(version))


def load_account_model(settings: Settings) -> ScoringModel | None:
    """The account model's champion (``[scoring.account]``), cached per card mtime; ``None`` when the table is
    not configured or no account model has been trained (`leadrelay train --entity account`)."""
    folder = account_dir(settings)
    return None if folder is None else _cached("account", folder)


def load_account_challenger(settings: Settings, champion: ScoringModel | None) -> ScoringModel | None:
    """The account registry's challenger, scored in shadow beside the account champion (as for leads)."""
    folder = account_dir(settings)
    return None if folder is None else load_challenger(settings, champion, root=folder)


def read_reference(settings: Settings, version: str, *, root: str | Path | None = None) -> Reference | None:
    """The training reference of ``version``: its registry folder's, else the model folder's own (the registry
    at ``root``; default ``scoring.model_dir``, the lead model's)."""
    from scoring.monitor import Reference
    from scoring.registry import Registry, RegistryError

    root = Path(root if root is not None else settings.scoring.model_dir)
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

    def __init__(self, reference: Reference, settings: Settings, *, entity: str = "lead") -> None:
        self.reference = reference
        self.drift = settings.scoring.drift
        self.entity = entity
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
            out["note"] = (f"only {report.rows} {self.entity}(s) scored (min_rows {self.drift.min_rows}): "
                           "PSI is noise, not judged")
        return out


def drift_warning(drift: dict[str, Any], entity: str = "lead") -> str | None:
    """The report's warning line when drift is over a threshold (``entity``: whose model, lead or account)."""
    if drift.get("status") not in ("warn", "alert"):
        return None
    warn = drift["thresholds"]["warn"]
    moved = [f"{k} {v:.2f}" for k, v in drift["features"].items() if v >= warn][:3]
    what = f"score PSI {drift['score_psi']:.2f}" + (f"; features: {', '.join(moved)}" if moved else "")
    train = "`leadrelay train`" if entity == "lead" else f"`leadrelay train --entity {entity}`"
    advice = f"retrain ({train})" if drift["status"] == "alert" else "worth a look"
    head = "drift" if entity == "lead" else f"{entity} model drift"
    return f"{head} {drift['status']} over {drift['rows']} scored {entity}s ({what}): {advice}"


@dataclass
class ShadowComparison:
    """The champion and the challenger on the same leads (or, for the account model, accounts) this run."""

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
                        event: str = "conversion", entity: str = "lead") -> dict[str, Any]:
    """The challenger ``version`` against the champion on outcomes: for each lead (``entity="account"``: each
    account, from ``account_shadow_score``) it scored in shadow, its first shadow score and the champion's at that
    time, labelled by an ``event`` within ``horizon_days`` after it (for an account: an event of any of its
    leads, the account question's target); unlabelled while the horizon is still open. ROC-AUC of each when
    both outcomes occur."""
    from datetime import timedelta

    import numpy as np

    from sync.decision_store import account_shadow_scores, shadow_scores

    noun, key = f"{entity}s", f"{entity}_key"
    rows = account_shadow_scores(unit, source, version) if entity == "account" else shadow_scores(unit, source,
                                                                                                   version)
    if not rows:
        return {"version": version, noun: 0, "labelled": 0}
    horizon = timedelta(days=horizon_days)
    firsts = {r[key]: r["first_scored_at"] for r in rows}
    converted = _event_times(unit, source, sorted(firsts), event, min(firsts.values()), by_account=entity == "account")
    labels, champion, challenger = [], [], []
    for r in rows:
        at = r["first_scored_at"]
        hit = any(at <= t < at + horizon for t in converted.get(r[key], ()))
        if hit or at + horizon <= now:
            labels.append(int(hit))
            champion.append(r["first_champion_probability"])
            challenger.append(r["first_probability"])
    out: dict[str, Any] = {"version": version, noun: len(rows), "labelled": len(labels),
                           "converted": int(sum(labels)), "horizon_days": horizon_days}
    y = np.asarray(labels)
    if len(y) and 0 < y.sum() < len(y):
        out["roc_auc"] = {"champion": round(_auc(y, np.asarray(champion)), 4),
                          "challenger": round(_auc(y, np.asarray(challenger)), 4)}
    return out


def _event_times(unit: Any, source: str, keys: list[str], event: str, since: Any, *, by_account: bool = False
                 ) -> dict[str, list[Any]]:
    """When each lead (``by_account``: any lead of each account) had an ``event`` since ``since``; for an
    account, an ``opportunity`` event is an opportunity created on it (the account model's default target)."""
    import sqlalchemy as sa

    from sync.store import ActivityRow, LeadRow, utc
    from sync.subjects import OPPORTUNITY_EVENT

    if by_account and event == OPPORTUNITY_EVENT:
        return {key: [o["created_at"] for o in opportunities if o["created_at"] >= since]
                for key, opportunities in unit.opportunities_of_accounts(source, keys).items()}
    t = ActivityRow.__table__
    if by_account:
        lead = LeadRow.__table__
        owner = lead.c.account_key
        base = sa.select(owner, t.c.occurred_at).select_from(
            t.join(lead, sa.and_(lead.c.source == t.c.source, lead.c.key == t.c.lead_key)))
    else:
        owner = t.c.lead_key
        base = sa.select(owner, t.c.occurred_at)
    out: dict[str, list[Any]] = {}
    for chunk in unit._chunks(keys):
        for subject, at in unit.conn.execute(
                base.where(t.c.source == source, t.c.type == event, t.c.occurred_at >= since.replace(tzinfo=None),
                           unit._among(owner, chunk))):
            out.setdefault(subject, []).append(utc(at))
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


__all__ = ["DriftWatch", "ShadowComparison", "account_dir", "check_model", "compare_on_outcomes", "configured_spec",
           "drift_warning", "frame_columns", "load_account_challenger", "load_account_model", "load_challenger",
           "read_reference", "spec_differences"]
