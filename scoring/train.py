"""Fit, calibrate, select, gate and export: from :class:`~scoring.labels.Examples` to a model folder.

This is the offline half of DESIGN.md's *Score* step; the agent loads its output with
:class:`scoring.model.ScoringModel`. Two candidates are fitted in the forms that survive skl2onnx
(scoring-notes.md): logistic regression (impute, scale, one-hot with ``handle_unknown="ignore"``) and
histogram gradient boosting (ordinal-encoded categoricals, never native ``categorical_features``). Each
is calibrated on its last step with shuffled sigmoid folds. Validation is out of time: fit on earlier
cutoffs, judge on the latest ones. The champion has the best PR-AUC (Brier breaks ties). Release gates
refuse too little data, calibration that hurts ranking and ONNX/scikit-learn disagreement above 1e-4.

scikit-learn and skl2onnx are imported inside functions: importing this module stays cheap.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring.card import MODEL_FILE, Band, ModelCard, ModelInput, _atomic_write
from scoring.errors import ReleaseGateError
from scoring.features import MISSING, FeatureFrame
from scoring.heuristic import PointsModel, default_points
from scoring.labels import Examples

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

    from scoring.model import ScoringModel

__all__ = [
    "CALIBRATION_AUC_TOLERANCE",
    "CANDIDATES",
    "PARITY_TOLERANCE",
    "check_baseline",
    "check_calibration",
    "check_data",
    "check_parity",
    "evaluate",
    "export_onnx",
    "train",
]

#: ONNX vs scikit-learn, max |probability difference|; sigmoid pipelines land at 1e-7..2e-6, the known
#: broken conversions (native categoricals, isotonic, float64 graphs) at 1e-2 and more.
PARITY_TOLERANCE = 1e-4
#: Sigmoid calibration is monotone, so it can only lose AUC by inverting (time-ordered folds) or by
#: rounding distinct scores into ties; this slack absorbs the latter only.
CALIBRATION_AUC_TOLERANCE = 1e-4
#: A single feature this predictive on its own is more likely a leak than a discovery.
LEAK_AUC = 0.9
CANDIDATES = ("logistic_regression", "hist_gradient_boosting")
_BAND_NAMES = ("A", "B", "C", "D")


@dataclass(frozen=True, slots=True)
class _Fitted:
    name: str
    pipeline: Pipeline
    metrics: dict[str, float]
    proba: np.ndarray
    uncalibrated_auc: float


# --------------------------------------------------------------------------------------------------
# Gates (pure functions so that each can be tested with constructed numbers)


def check_data(
    *, examples: int, positives: int, min_examples: int, min_positives: int, where: str = ""
) -> None:
    """Refuse to train on fewer rows or positives than configured."""
    scope = f" in {where}" if where else ""
    if examples < min_examples:
        raise ReleaseGateError("minimum_data", f"{examples} examples{scope}, at least {min_examples} needed")
    if positives < min_positives:
        raise ReleaseGateError(
            "minimum_data", f"{positives} positive examples{scope}, at least {min_positives} needed"
        )


def check_calibration(candidate: str, *, calibrated_auc: float, uncalibrated_auc: float) -> None:
    """Refuse a calibration that lowers ROC-AUC on validation (e.g. inverted Platt fits)."""
    if not calibrated_auc >= uncalibrated_auc - CALIBRATION_AUC_TOLERANCE:
        raise ReleaseGateError(
            "calibration",
            f"{candidate}: calibrated ROC-AUC {calibrated_auc:.4f} is below "
            f"uncalibrated {uncalibrated_auc:.4f}",
        )


def check_baseline(candidate: str, *, pr_auc: float, baseline: str, baseline_pr_auc: float) -> None:
    """Refuse a champion that ranks converters no better than the hand-written points baseline on the same
    validation rows, judged by PR-AUC (the metric the champion is chosen on)."""
    if not pr_auc > baseline_pr_auc:
        raise ReleaseGateError(
            "baseline",
            f"{candidate}: PR-AUC {pr_auc:.4f} is no better than the points baseline '{baseline}' "
            f"({baseline_pr_auc:.4f}) on the same validation rows",
        )


def check_parity(max_diff: float, *, rows: int) -> None:
    """Refuse an export whose ONNX probabilities differ from scikit-learn's by more than the tolerance."""
    if not max_diff <= PARITY_TOLERANCE:
        raise ReleaseGateError(
            "onnx_parity",
            f"ONNX and scikit-learn probabilities differ by up to {max_diff:.3g} on {rows} held-out rows "
            f"(tolerance {PARITY_TOLERANCE:g})",
        )


# --------------------------------------------------------------------------------------------------
# Metrics


def evaluate(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC-AUC, PR-AUC, Brier, log loss and top-decile lift of probabilities ``proba`` for labels ``y``."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype=np.int64)
    p = np.clip(np.asarray(proba, dtype=np.float64), 0.0, 1.0)
    order = np.argsort(-p, kind="stable")
    top = order[: max(1, math.ceil(len(p) / 10))]
    base = float(y.mean())
    return {
        "roc_auc": float(roc_auc_score(y, p)),
        "pr_auc": float(average_precision_score(y, p)),
        "brier": float(brier_score_loss(y, p)),
        "log_loss": float(log_loss(y, p, labels=[0, 1])),
        "top_decile_lift": float(y[top].mean() / base) if base > 0 else 0.0,
    }


# --------------------------------------------------------------------------------------------------
# Candidates


_MIN_PRESENT = 5  # values a numeric column needs for the boosted trees to bin it (see _pipeline)


def _pipeline(
    name: str, frame: FeatureFrame, seed: int, params: Mapping[str, Any] | None = None, *, calibrate: bool = True
) -> Pipeline:
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.compose import ColumnTransformer
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler

    n_num = len(frame.numeric_names)
    num_cols = list(range(n_num))
    cat_cols = list(range(n_num, n_num + len(frame.categorical_names)))
    if name == "logistic_regression":
        pre = ColumnTransformer(
            [
                (
                    "num",
                    Pipeline(
                        [
                            # keep_empty_features: a column all-missing in training must still exist, or
                            # the ONNX graph and the card would disagree about the inputs.
                            ("impute", SimpleImputer(strategy="median", keep_empty_features=True)),
                            ("scale", StandardScaler()),
                        ]
                    ),
                    num_cols,
                ),
                # No min_frequency: infrequent categories convert but crash at run time (trap 9).
                ("cat", OneHotEncoder(handle_unknown="ignore", sparse_output=False), cat_cols),
            ]
        )
        estimator: Any = LogisticRegression(**{"C": 0.5, "max_iter": 5000, **(params or {})})
    elif name == "hist_gradient_boosting":
        # A column (almost) never filled in — firmographics of a source without them — gets a constant
        # instead of NaN: HistGradientBoosting's binning crashes on a column with no value at all
        # (scikit-learn 1.9, binning.py), and a calibration fold may see only its missing rows.
        present = np.count_nonzero(~np.isnan(frame.numeric), axis=0) if n_num else np.zeros(0)
        empty = [j for j in num_cols if present[j] < _MIN_PRESENT]
        live = [j for j in num_cols if present[j] >= _MIN_PRESENT]
        pre = ColumnTransformer(
            [
                ("num", "passthrough", live),
                *([("empty", SimpleImputer(strategy="constant", fill_value=0.0, keep_empty_features=True), empty)]
                  if empty else []),
                # Ordinal codes, not native categorical_features: those convert and score wrong (trap 2).
                ("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), cat_cols),
            ]
        )
        estimator = HistGradientBoostingClassifier(
            **{
                "learning_rate": 0.1,
                "max_iter": 100,
                "max_leaf_nodes": 15,
                "min_samples_leaf": 40,
                "l2_regularization": 1.0,
                "early_stopping": False,  # deterministic and the same tree count in every fold
                "random_state": seed,
                **(params or {}),
            }
        )
    else:
        raise ValueError(f"unknown candidate {name!r}")
    if not calibrate:  # for choosing hyper-parameters: calibration is monotone, ranking is the raw model's
        return Pipeline([("pre", pre), ("clf", estimator)])
    # Calibrate the last step only (a calibrated multi-input pipeline does not convert, trap 3), with
    # shuffled folds (time-ordered folds invert Platt fits, trap 10), sigmoid (isotonic is approximate in
    # ONNX, trap 4) and one model + one calibrator (trap 11).
    calibrated = CalibratedClassifierCV(
        estimator,
        method="sigmoid",
        cv=StratifiedKFold(5, shuffle=True, random_state=seed),
        ensemble=False,
    )
    return Pipeline([("pre", pre), ("clf", calibrated)])


def _fit_candidate(name: str, train: Examples, valid: Examples, seed: int) -> _Fitted:
    from sklearn.metrics import roc_auc_score

    pipe = _pipeline(name, train.frame, seed)
    pipe.fit(train.frame.to_matrix(), train.y)
    x_valid = valid.frame.to_matrix()
    proba = pipe.predict_proba(x_valid)[:, 1]
    # With ensemble=False the calibrator wraps one estimator fitted on all training rows: its own
    # probabilities are exactly the uncalibrated model.
    inner = pipe[-1].calibrated_classifiers_[0].estimator
    raw = inner.predict_proba(pipe[:-1].transform(x_valid))[:, 1]
    return _Fitted(name, pipe, evaluate(valid.y, proba), proba, float(roc_auc_score(valid.y, raw)))


# --------------------------------------------------------------------------------------------------
# Export


def export_onnx(pipeline: Pipeline, frame: FeatureFrame) -> tuple[bytes, tuple[ModelInput, ...], str]:
    """Convert a fitted pipeline with one float32/string [N, 1] input per feature, no ZipMap. Returns the
    model bytes, the feature -> input mapping (read back from the session: names get sanitised) and the
    name of the probability output."""
    import onnxruntime as ort
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType, StringTensorType

    initial = [(name, FloatTensorType([None, 1])) for name in frame.numeric_names]
    initial += [(name, StringTensorType([None, 1])) for name in frame.categorical_names]
    with warnings.catch_warnings():
        # skl2onnx 1.20 writes booleans into the tree-ensemble int attributes; protobuf 6 accepts them
        # with this warning and protobuf 7 refuses them (scoring-notes trap 1, hence protobuf<7). The
        # parity gate checks the resulting graph, so the warning is expected noise here, nothing else.
        warnings.filterwarnings(
            "ignore", message=r".*Expected an int, got a boolean", category=DeprecationWarning
        )
        onx = convert_sklearn(pipeline, initial_types=initial, options={id(pipeline): {"zipmap": False}})
    data = onx.SerializeToString()
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.get_inputs()
    if len(got) != len(initial):
        raise ReleaseGateError("onnx_export", f"{len(got)} ONNX inputs for {len(initial)} features")
    kinds = ["numeric"] * len(frame.numeric_names) + ["categorical"] * len(frame.categorical_names)
    # skl2onnx keeps the order of initial_types, so position maps feature to (sanitised) input name.
    inputs = tuple(ModelInput(f, i.name, k) for (f, _), i, k in zip(initial, got, kinds, strict=True))
    outputs = [o for o in session.get_outputs() if o.type == "tensor(float)" and len(o.shape) == 2]
    if len(outputs) != 1:
        raise ReleaseGateError("onnx_export", "no single [N, 2] probability output in the ONNX graph")
    return data, inputs, outputs[0].name


def _onnx_proba(model: bytes, inputs: Sequence[ModelInput], output: str, frame: FeatureFrame) -> np.ndarray:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    feed = frame.onnx_feed({i.feature: i.input for i in inputs})
    return np.asarray(session.run([output], feed)[0][:, 1], dtype=np.float64)


def _parity(
    pipeline: Pipeline, frame: FeatureFrame
) -> tuple[bytes, tuple[ModelInput, ...], str, float, np.ndarray]:
    model, inputs, output = export_onnx(pipeline, frame)
    onnx_p = _onnx_proba(model, inputs, output, frame)
    sk_p = pipeline.predict_proba(frame.to_matrix())[:, 1]
    diff = float(np.max(np.abs(onnx_p - sk_p))) if len(frame) else 0.0
    check_parity(diff, rows=len(frame))
    return model, inputs, output, diff, onnx_p


# --------------------------------------------------------------------------------------------------
# Bands, references, leak flags


def _band_thresholds(proba: np.ndarray, shares: Sequence[float]) -> tuple[Band, ...]:
    # Cumulative top shares (A = best 10 %, B = next 20 %, ...) turned into probability cut points.
    bands = []
    cumulative = 0.0
    for name, share in zip(_BAND_NAMES, shares, strict=False):
        cumulative += share
        bands.append(Band(name, float(np.quantile(proba, 1.0 - cumulative, method="higher"))))
    bands.append(Band(_BAND_NAMES[len(bands)], 0.0))
    return tuple(bands)


def assign_bands(proba: np.ndarray, bands: Sequence[Band]) -> np.ndarray:
    """Band name per probability; ``bands`` run from best (highest threshold) to worst (0.0)."""
    thresholds = np.array([b.min_probability for b in reversed(bands)])
    names = np.array([b.name for b in reversed(bands)], dtype=object)
    return names[np.searchsorted(thresholds, proba, side="right") - 1]


def _band_validation(y: np.ndarray, proba: np.ndarray, bands: Sequence[Band]) -> tuple[dict[str, Any], ...]:
    assigned = assign_bands(proba, bands)
    out = []
    for band in bands:
        m = assigned == band.name
        out.append(
            {
                "band": band.name,
                "rows": int(m.sum()),
                "share": float(m.mean()) if len(m) else 0.0,
                "conversion_rate": float(y[m].mean()) if m.any() else 0.0,
                "share_of_conversions": float(y[m].sum() / max(1, y.sum())),
            }
        )
    return tuple(out)


def _references(frame: FeatureFrame) -> tuple[dict[str, float], dict[str, str]]:
    numeric = {}
    for j, name in enumerate(frame.numeric_names):
        col = frame.numeric[:, j]
        # The median of a float32 column, rounded to float32 so that occlusion replaces values with a
        # number the frame itself could hold.
        numeric[name] = float(np.float32(np.nanmedian(col))) if np.isfinite(col).any() else math.nan
    categorical = {}
    for j, name in enumerate(frame.categorical_names):
        values, counts = np.unique(frame.categorical[:, j].astype(str), return_counts=True)
        categorical[name] = str(values[np.argmax(counts)]) if len(values) else MISSING
    return numeric, categorical


def _leak_warnings(frame: FeatureFrame, y: np.ndarray) -> list[str]:
    from sklearn.metrics import roc_auc_score

    found: list[str] = []
    if y.min() == y.max():
        return found
    for j, name in enumerate(frame.numeric_names):
        col = frame.numeric[:, j].astype(np.float64)
        col = np.where(np.isnan(col), np.nanmedian(col) if np.isfinite(col).any() else 0.0, col)
        auc = float(roc_auc_score(y, col))
        if max(auc, 1.0 - auc) >= LEAK_AUC:
            found.append(
                f"feature {name} alone reaches ROC-AUC {max(auc, 1 - auc):.3f}: check it for leakage"
            )
    return found


# --------------------------------------------------------------------------------------------------
# Train


def _split_by_time(cutoffs: np.ndarray, share: float) -> tuple[np.ndarray, np.ndarray]:
    unique = np.unique(cutoffs)
    if len(unique) < 2:
        raise ReleaseGateError(
            "minimum_data", f"{len(unique)} cutoff(s); out-of-time validation needs at least 2"
        )
    # Take whole cutoffs from the newest backwards until the validation share is reached, keeping at
    # least the oldest cutoff for training.
    total = len(cutoffs)
    chosen = 0
    first_valid = len(unique)
    while first_valid > 1 and chosen < share * total:
        first_valid -= 1
        chosen += int((cutoffs == unique[first_valid]).sum())
    boundary = unique[first_valid]
    return np.flatnonzero(cutoffs < boundary), np.flatnonzero(cutoffs >= boundary)


def _iso(ts: np.datetime64) -> str:
    return str(np.datetime_as_string(ts, unit="s")) + "Z"


def train(
    examples: Examples,
    out_dir: str | Path,
    *,
    version: str,
    trained_at: datetime | None = None,
    seed: int = 42,
    min_examples: int = 200,
    min_positives: int = 20,
    validation_share: float = 0.25,
    band_shares: Sequence[float] = (0.1, 0.2, 0.3),
    refit: bool = True,
    candidates: Sequence[str] = CANDIDATES,
    threads: int | None = 1,
    points: PointsModel | None = None,
    serving: ScoringModel | None = None,
    report: bool = True,
    title: str = "Lead model",
) -> ModelCard:
    """Train, gate and export a model into ``out_dir`` (``model.onnx`` + ``card.json``); return its card.

    ``trained_at`` is recorded in the card; without it the card records the newest cutoff (no hidden
    clock). With ``refit`` the champion is refitted on all examples after selection and its parity is
    checked again; the metrics in the card are always the out-of-time ones of the selection fit.

    ``threads`` caps the OpenMP/BLAS pools while fitting (None: library default). One thread is the
    default because the agent trains beside its own scoring and other work: on a busy 2-core machine
    HistGradientBoosting's OpenMP pool oversubscribes and one fit went from 4 s to 46 s.

    The champion must out-rank ``points`` (default: :func:`scoring.heuristic.default_points` of the spec)
    on the validation rows. With ``report`` the evaluation report (:mod:`scoring.report`) and the drift
    reference (:mod:`scoring.monitor`) are written beside the model; ``serving``, the model in service
    now, joins the report's comparison when it uses the same feature spec; ``title`` heads the report
    ("Lead model", "Account model")."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _train(
            examples,
            Path(out_dir),
            version=version,
            trained_at=trained_at,
            seed=seed,
            min_examples=min_examples,
            min_positives=min_positives,
            validation_share=validation_share,
            band_shares=band_shares,
            refit=refit,
            candidates=candidates,
            points=points,
            serving=serving,
            report=report,
            title=title,
        )


def _train(
    examples: Examples,
    out_dir: Path,
    *,
    version: str,
    trained_at: datetime | None,
    seed: int,
    min_examples: int,
    min_positives: int,
    validation_share: float,
    band_shares: Sequence[float],
    refit: bool,
    candidates: Sequence[str],
    points: PointsModel | None,
    serving: ScoringModel | None,
    report: bool,
    title: str,
) -> ModelCard:
    if not 0.0 < validation_share < 1.0:
        raise ValueError("validation_share must be between 0 and 1")
    if not candidates:
        raise ValueError("at least one candidate is needed")
    y = examples.y
    check_data(
        examples=len(examples), positives=int(y.sum()), min_examples=min_examples, min_positives=min_positives
    )
    train_idx, valid_idx = _split_by_time(examples.cutoff, validation_share)
    train_ex, valid_ex = examples.take(train_idx), examples.take(valid_idx)
    # Five shuffled calibration folds need positives in each; AUC needs both classes in validation.
    check_data(
        examples=len(train_ex),
        positives=int(train_ex.y.sum()),
        min_examples=10,
        min_positives=10,
        where="the training period",
    )
    v_pos = int(valid_ex.y.sum())
    if v_pos == 0 or v_pos == len(valid_ex):
        raise ReleaseGateError(
            "minimum_data", f"validation period has {v_pos} positives of {len(valid_ex)}: both classes needed"
        )

    fitted: list[_Fitted] = []
    notes: dict[str, str] = {}
    for name in candidates:
        result = _fit_candidate(name, train_ex, valid_ex, seed)
        try:
            check_calibration(
                name, calibrated_auc=result.metrics["roc_auc"], uncalibrated_auc=result.uncalibrated_auc
            )
        except ReleaseGateError as exc:
            notes[name] = str(exc)
        fitted.append(result)
    qualified = [f for f in fitted if f.name not in notes]
    if not qualified:
        raise ReleaseGateError("calibration", "; ".join(notes.values()))
    # Best PR-AUC wins; within 0.001 PR-AUC the better-calibrated (lower Brier) one does.
    best_pr = max(f.metrics["pr_auc"] for f in qualified)
    champion = min(
        (f for f in qualified if f.metrics["pr_auc"] >= best_pr - 1e-3),
        key=lambda f: (f.metrics["brier"], -f.metrics["pr_auc"], f.name),
    )

    points = points or default_points(examples.spec)
    baseline_p = points.fit(train_ex.frame, train_ex.y).predict_proba(valid_ex.frame)
    baseline = {"name": points.name, **evaluate(valid_ex.y, baseline_p)}
    check_baseline(
        champion.name, pr_auc=champion.metrics["pr_auc"], baseline=points.name, baseline_pr_auc=baseline["pr_auc"]
    )

    _, _, _, diff, valid_onnx_p = _parity(champion.pipeline, valid_ex.frame)
    band_validation = _band_validation(valid_ex.y, valid_onnx_p, _band_thresholds(valid_onnx_p, band_shares))
    shipped = champion.pipeline
    if refit:
        shipped = _pipeline(champion.name, examples.frame, seed)
        shipped.fit(examples.frame.to_matrix(), y)
    model, inputs, output, refit_diff, shipped_p = _parity(shipped, valid_ex.frame)
    bands = _band_thresholds(shipped_p, band_shares)
    ref_num, ref_cat = _references(examples.frame)

    cut = examples.cutoff
    card = ModelCard(
        version=version,
        trained_at=(trained_at.astimezone(UTC).isoformat() if trained_at is not None else _iso(cut.max())),
        champion=champion.name,
        spec=examples.spec,
        inputs=inputs,
        probability_output=output,
        target_event=examples.target_event,
        horizon_days=examples.horizon_days,
        training_window=(_iso(cut.min()), _iso(cut.max())),
        validation_window=(_iso(valid_ex.cutoff.min()), _iso(valid_ex.cutoff.max())),
        counts={
            "examples": len(examples),
            "positives": int(y.sum()),
            "train_examples": len(train_ex),
            "train_positives": int(train_ex.y.sum()),
            "validation_examples": len(valid_ex),
            "validation_positives": v_pos,
            "cutoffs": len(np.unique(cut)),
        },
        base_rate=float(y.mean()),
        candidates={
            f.name: {
                **f.metrics,
                "uncalibrated_roc_auc": f.uncalibrated_auc,
                "qualified": f.name not in notes,
                **({"refused": notes[f.name]} if f.name in notes else {}),
            }
            for f in fitted
        },
        metrics=champion.metrics,
        parity_max_diff=max(diff, refit_diff),
        bands=bands,
        band_validation=band_validation,
        reference_numeric=ref_num,
        reference_categorical=ref_cat,
        refit_on_all=refit,
        warnings=tuple(_leak_warnings(train_ex.frame, train_ex.y)),
        baseline=baseline,
    )
    if report:
        _report(out_dir, card, fitted, champion, points.name, baseline_p, valid_ex, serving, title)
        # Drift is judged against the latest freeze times (the out-of-time validation period), the population
        # serving sees next, not against the average over the whole history: accounts gather leads and people
        # engagement over time, so the early cutoffs would make today's population look drifted.
        _reference(out_dir, model, inputs, output, valid_ex)
    _write(out_dir, model, card)
    return card


def _report(
    out_dir: Path,
    card: ModelCard,
    fitted: Sequence[_Fitted],
    champion: _Fitted,
    baseline_name: str,
    baseline_p: np.ndarray,
    valid: Examples,
    serving: ScoringModel | None,
    title: str = "Lead model",
) -> None:
    from scoring.report import Compared, write_report

    compared = [Compared(f.name, "champion" if f is champion else "candidate", f.proba) for f in fitted]
    compared.append(Compared(baseline_name, "baseline", baseline_p))
    if serving is not None and serving.spec == valid.spec:
        compared.append(Compared(f"serving {serving.version}", "serving", serving.predict_proba(valid.frame)))
    c = card.counts
    facts = [
        ("trained", card.trained_at),
        ("target", f"a '{card.target_event}' within {card.horizon_days} days of each freeze time"),
        ("examples", f"{c['examples']} ({c['positives']} positive, base rate {card.base_rate:.1%})"),
        ("validation", f"out of time: cutoffs {card.validation_window[0]} .. {card.validation_window[1]}, "
                       f"{c['validation_examples']} examples"),
        ("champion", card.champion),
        ("ONNX parity", f"max |diff| {card.parity_max_diff:.2e}"),
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    write_report(out_dir, title=f"{title} {card.version}", y=valid.y, compared=compared,
                 band_validation=card.band_validation, facts=facts, notes=list(card.warnings))


def _reference(out_dir: Path, model: bytes, inputs: Sequence[ModelInput], output: str, examples: Examples) -> None:
    from scoring.monitor import build_reference, top_items

    frame = examples.frame
    proba = _onnx_proba(model, inputs, output, frame)
    # Top features for drift: those whose values alone rank the training labels best.
    strength = []
    for j in range(len(frame.numeric_names)):
        col = frame.numeric[:, j].astype(np.float64)
        ok = np.isfinite(col)
        corr = np.corrcoef(col[ok], examples.y[ok])[0, 1] if ok.sum() > 2 and np.std(col[ok]) > 0 else 0.0
        strength.append(abs(float(np.nan_to_num(corr))))
    top = top_items(list(frame.numeric_names), strength)
    columns = {n: ("numeric", frame.numeric[:, frame.numeric_names.index(n)]) for n in top}
    columns.update({n: ("categorical", frame.categorical[:, j]) for j, n in enumerate(frame.categorical_names)})
    build_reference(proba, columns).write(out_dir)


def _write(directory: Path, model: bytes, card: ModelCard) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    # The model first, the card last, each by atomic rename: a loader never reads a half-written file,
    # and a card for a new model never appears before that model does.
    _atomic_write(directory / MODEL_FILE, model)
    card.write(directory)


def summary(card: ModelCard) -> Mapping[str, Any]:
    """The few numbers a person wants after training, for the CLI to print."""
    return {
        "version": card.version,
        "champion": card.champion,
        **{k: round(v, 4) for k, v in card.metrics.items()},
        "parity_max_diff": card.parity_max_diff,
        "examples": card.counts["examples"],
        "positives": card.counts["positives"],
    }
