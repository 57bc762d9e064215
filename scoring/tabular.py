"""Training on an exported table (``leadrelay train --csv``): the same candidates, gates and report as
training from the store, with a leakage guard in front.

Flow: :func:`prepare` reads the label (positive value detected or given), drops columns and types the
rest (numbers vs categories, raw cells kept raw). :func:`single_column_auc` measures how well each column
ranks the label on its own — numbers as they are, categories by out-of-fold target means, so an ID column
cannot look predictive — and :func:`check_leakage` refuses any column at or above the threshold unless
it is confirmed. Then, on a stratified (or, for files in time order, trailing) hold-out: both candidates
of :mod:`scoring.train` with hyper-parameters picked by 5-fold cross-validation on the training rows only,
sigmoid-calibrated; the points baseline (rules from a file, else the best single column); the gates
(minimum data, calibration, ONNX parity, baseline); the champion (optionally refitted on all rows) exported with
one raw input per column and a ``probability`` output; ``card.json``, ``reference.json`` (drift) and
the report beside it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring._csv import Table, categorical, read_csv, to_numeric
from scoring.card import MODEL_FILE, _atomic_write
from scoring.errors import FeatureSpecError, ReleaseGateError
from scoring.features import _OUTCOME_ATTRIBUTES, FeatureFrame
from scoring.heuristic import PointsModel
from scoring.tabular_model import PROBABILITY_OUTPUT, TabularCard, columns_of

if TYPE_CHECKING:
    from sklearn.pipeline import Pipeline

__all__ = ["LEAK_AUC", "Dataset", "check_leakage", "prepare", "single_column_auc", "train_csv", "train_table"]

#: A column this predictive on its own is more likely known after the outcome than a discovery.
LEAK_AUC = 0.80
_POSITIVE_WORDS = ("1", "yes", "y", "true", "t", "converted", "won", "positive", "1.0")
#: Folds of the training rows that choose among a grid's entries.
CV_FOLDS = 5
#: Small grids, chosen by k-fold cross-validation on the training rows only (the hold-out never picks them).
_GRIDS: Mapping[str, tuple[Mapping[str, Any], ...]] = {
    "logistic_regression": ({"C": 0.5}, {"C": 0.05}),
    "hist_gradient_boosting": (
        {},
        {"learning_rate": 0.05, "max_iter": 200},
        {"learning_rate": 0.05, "max_iter": 200, "max_depth": 4, "min_samples_leaf": 100},
    ),
}


@dataclass(frozen=True, slots=True, eq=False)
class Dataset:
    frame: FeatureFrame
    y: np.ndarray
    label: str
    positive: str
    dropped: tuple[str, ...]
    notes: tuple[str, ...]


def _positive_value(values: np.ndarray, label: str, positive: str | None) -> str:
    distinct = sorted(set(values.tolist()) - {""})
    if positive is not None:
        for v in distinct:
            if v == positive or v.lower() == positive.lower():
                return v
        raise FeatureSpecError("--positive", f"{positive!r} is not a value of {label!r} ({', '.join(distinct[:6])})")
    if len(distinct) != 2:
        shown = ", ".join(distinct[:6]) + (" ..." if len(distinct) > 6 else "")
        raise FeatureSpecError("--label", f"{label!r} has {len(distinct)} values ({shown}): give --positive")
    hits = [v for v in distinct if v.lower() in _POSITIVE_WORDS]
    if len(hits) != 1:
        raise FeatureSpecError("--positive", f"cannot tell which of {distinct[0]!r}, {distinct[1]!r} is positive")
    return hits[0]


def prepare(table: Table, *, label: str, positive: str | None = None, drop: Sequence[str] = ()) -> Dataset:
    """Label, dropped columns and typed features of a table; rows without a label are left out."""
    if label not in table.columns:
        raise FeatureSpecError("--label", f"no column {label!r} (columns: {', '.join(table.columns)})")
    unknown = [d for d in drop if d not in table.columns]
    if unknown:
        raise FeatureSpecError("--drop", f"no column {unknown[0]!r} in the file")
    raw_label = categorical(table.column(label)).astype(str)
    pos = _positive_value(raw_label, label, positive)
    keep_rows = raw_label != ""
    notes = [] if keep_rows.all() else [f"{int((~keep_rows).sum())} rows without a {label!r} value left out"]
    y = (raw_label[keep_rows] == pos).astype(np.int8)
    nums, cats, num_names, cat_names = [], [], [], []
    for name in table.columns:
        if name == label or name in drop:
            continue
        raw = table.column(name)[keep_rows]
        parsed = to_numeric(raw)
        if parsed is not None and parsed[1] == 0:
            nums.append(parsed[0])
            num_names.append(name)
        else:
            cats.append(categorical(raw))
            cat_names.append(name)
        if name.lower().replace(" ", "_") in _OUTCOME_ATTRIBUTES:
            notes.append(f"column {name!r} is usually filled in after the outcome: check it for leakage")
    n = len(y)
    frame = FeatureFrame(
        keys=tuple(str(i) for i in range(n)),
        numeric=np.asfortranarray(np.stack(nums, axis=1) if nums else np.zeros((n, 0), np.float32)),
        categorical=np.stack(cats, axis=1).astype(object) if cats else np.zeros((n, 0), dtype=object),
        numeric_names=tuple(num_names),
        categorical_names=tuple(cat_names),
    )
    return Dataset(frame, y, label, pos, tuple(drop), tuple(notes))


# --------------------------------------------------------------------------------------------------
# Leakage


def _target_encoded(col: np.ndarray, y: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.model_selection import StratifiedKFold

    out = np.zeros(len(y))
    folds = StratifiedKFold(5, shuffle=True, random_state=seed) if min(np.bincount(y, minlength=2)) >= 5 else None
    splits = folds.split(col, y) if folds else [(np.arange(len(y)), np.arange(len(y)))]
    for fit, apply in splits:
        values, inverse = np.unique(col[fit].astype(str), return_inverse=True)
        prior = float(y[fit].mean())
        rate = (np.bincount(inverse, weights=y[fit]) + 10 * prior) / (np.bincount(inverse) + 10)
        lookup = dict(zip(values.tolist(), rate.tolist(), strict=True))
        out[apply] = [lookup.get(v, prior) for v in col[apply].astype(str).tolist()]
    return out


def single_column_auc(frame: FeatureFrame, y: np.ndarray, seed: int = 42) -> dict[str, float]:
    """ROC-AUC of each column alone, folded to >= 0.5 (a column that ranks backwards ranks too)."""
    from sklearn.metrics import roc_auc_score

    out: dict[str, float] = {}
    if len(y) == 0 or y.min() == y.max():
        return dict.fromkeys(frame.names, 0.5)
    for j, name in enumerate(frame.numeric_names):
        col = frame.numeric[:, j].astype(np.float64)
        nan = np.isnan(col)
        if nan.all():
            out[name] = 0.5
            continue
        # Missing values ranked lowest, highest and at the median: a column filled in only for converters
        # (a close date) leaks through its missingness, which the median alone would hide.
        fills = (np.nanmedian(col), np.nanmin(col) - 1.0, np.nanmax(col) + 1.0) if nan.any() else (0.0,)
        aucs = [float(roc_auc_score(y, np.where(nan, fill, col))) for fill in fills]
        out[name] = max(max(a, 1.0 - a) for a in aucs)
    for j, name in enumerate(frame.categorical_names):
        auc = float(roc_auc_score(y, _target_encoded(frame.categorical[:, j], y, seed)))
        out[name] = max(auc, 1.0 - auc)
    return out


def check_leakage(aucs: Mapping[str, float], *, threshold: float = LEAK_AUC, allowed: Sequence[str] = ()) -> None:
    """Refuse columns that reach ``threshold`` ROC-AUC on their own unless listed in ``allowed``."""
    flagged = sorted(((a, n) for n, a in aucs.items() if a >= threshold and n not in allowed), reverse=True)
    if flagged:
        cols = ", ".join(f"{n!r} alone reaches ROC-AUC {a:.3f}" for a, n in flagged)
        names = ",".join(n for _, n in flagged)
        raise ReleaseGateError(
            "leakage",
            f"{cols} (threshold {threshold:.2f}): such a column is often known only after the outcome. "
            f"Leave it out with --drop {names}, or confirm it is known before the outcome with "
            f"--allow-leaky {names}",
        )


# --------------------------------------------------------------------------------------------------
# Fitting


def _choose_params(name: str, frame: FeatureFrame, y: np.ndarray, seed: int,
                   folds: int = CV_FOLDS) -> Mapping[str, Any]:
    """The grid entry with the best mean PR-AUC over ``folds`` shuffled stratified folds of the training
    rows (uncalibrated: calibration is monotone and leaves the ranking alone); a tie within 0.001 goes to
    the earlier, simpler entry. The hold-out never picks hyper-parameters."""
    from sklearn.metrics import average_precision_score
    from sklearn.model_selection import StratifiedKFold

    from scoring.train import _pipeline

    grid = _GRIDS[name]
    if len(grid) == 1 or min(np.bincount(y, minlength=2)) < 10 * folds:
        return grid[0]
    splits = list(StratifiedKFold(folds, shuffle=True, random_state=seed + 1).split(np.zeros(len(y)), y))
    x = frame.to_matrix()
    means = []
    for params in grid:
        scores = []
        for fit, check in splits:
            # The preprocessing is fitted inside each fold (in the pipeline): no fold sees its check rows.
            pipe = _pipeline(name, frame.take(fit), seed, params, calibrate=False).fit(x[fit], y[fit])
            scores.append(float(average_precision_score(y[check], pipe.predict_proba(x[check])[:, 1])))
        means.append(float(np.mean(scores)))
    best = max(means)
    return next(params for params, mean in zip(grid, means, strict=True) if mean >= best - 1e-3)


@dataclass(frozen=True, slots=True, eq=False)
class _Fit:
    name: str
    params: Mapping[str, Any]
    pipeline: Pipeline
    proba: np.ndarray
    metrics: dict[str, float]
    uncalibrated_auc: float


def _fit(name: str, train: FeatureFrame, y: np.ndarray, valid: FeatureFrame, yv: np.ndarray, seed: int) -> _Fit:
    from sklearn.metrics import roc_auc_score

    from scoring.report import metrics
    from scoring.train import _pipeline

    params = _choose_params(name, train, y, seed)
    pipe = _pipeline(name, train, seed, params).fit(train.to_matrix(), y)
    x_valid = valid.to_matrix()
    proba = pipe.predict_proba(x_valid)[:, 1]
    inner = pipe[-1].calibrated_classifiers_[0].estimator  # ensemble=False: the one uncalibrated model
    raw = inner.predict_proba(pipe[:-1].transform(x_valid))[:, 1]
    return _Fit(name, params, pipe, proba, metrics(yv, proba), float(roc_auc_score(yv, raw)))


def _export(pipeline: Pipeline, frame: FeatureFrame) -> tuple[bytes, tuple[str, ...], float]:
    """ONNX bytes with one raw input per column and a ``probability`` [N] output; input names in frame
    order; max |ONNX - scikit-learn| on ``frame`` (gated)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from scoring.train import check_parity, export_onnx

    data, inputs, output = export_onnx(pipeline, frame)
    graph = onnx.load_from_string(data)
    graph.graph.initializer.append(numpy_helper.from_array(np.array(1, dtype=np.int64), "leadrelay_positive"))
    graph.graph.node.append(helper.make_node("Gather", [output, "leadrelay_positive"], [PROBABILITY_OUTPUT],
                                             axis=1, name="leadrelay_probability"))
    # The one output: the positive class's probability (label and [N, 2] tensor are dropped).
    del graph.graph.output[:]
    graph.graph.output.append(helper.make_tensor_value_info(PROBABILITY_OUTPUT, TensorProto.FLOAT, [None]))
    model = graph.SerializeToString()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    onnx_p = session.run([PROBABILITY_OUTPUT], frame.onnx_feed({i.feature: i.input for i in inputs}))[0]
    diff = float(np.max(np.abs(onnx_p - pipeline.predict_proba(frame.to_matrix())[:, 1]))) if len(frame) else 0.0
    check_parity(diff, rows=len(frame))
    return model, tuple(i.input for i in inputs), diff


def _split(y: np.ndarray, split: str, share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(y))
    if split == "ordered":  # the file is in time order: validate on its newest rows
        cut = len(y) - math.ceil(len(y) * share)
        return idx[:cut], idx[cut:]
    if split != "random":
        raise FeatureSpecError("--split", "must be 'random' or 'ordered'")
    fit, check = train_test_split(idx, test_size=share, stratify=y, random_state=seed)
    return np.sort(fit), np.sort(check)


def _baseline(points: PointsModel | None, aucs: Mapping[str, float], train: FeatureFrame, y: np.ndarray,
              valid: FeatureFrame) -> tuple[str, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    if points is not None:
        points.check_columns(train.names)
        return points.name, points.fit(train, y).predict_proba(valid)
    # No rules given: rank by the single most predictive column, the least a model must beat.
    best = max(sorted(aucs), key=lambda n: aucs[n])

    def values(frame: FeatureFrame) -> np.ndarray:
        if best in frame.numeric_names:
            col = frame.numeric[:, frame.numeric_names.index(best)].astype(np.float64)
            return np.nan_to_num(col, nan=float(np.nanmedian(col)) if np.isfinite(col).any() else 0.0)
        j = frame.categorical_names.index(best)
        cats, inv = np.unique(train.categorical[:, j].astype(str), return_inverse=True)
        rate = dict(zip(cats.tolist(), (np.bincount(inv, weights=y) / np.bincount(inv)).tolist(), strict=True))
        return np.array([rate.get(v, float(y.mean())) for v in frame.categorical[:, j].astype(str).tolist()])

    x_fit = values(train)
    scale = float(np.std(x_fit)) or 1.0
    lr = LogisticRegression(C=1e6, max_iter=1000).fit((x_fit / scale).reshape(-1, 1), y)
    return f"best single column: {best}", lr.predict_proba((values(valid) / scale).reshape(-1, 1))[:, 1]


# --------------------------------------------------------------------------------------------------
# Train


def train_table(
    data: Dataset,
    out_dir: str | Path,
    *,
    version: str,
    trained_at: datetime,
    source: Mapping[str, Any] | None = None,
    points: PointsModel | None = None,
    allow_leaky: Sequence[str] = (),
    leak_auc: float = LEAK_AUC,
    split: str = "random",
    validation_share: float = 0.2,
    seed: int = 42,
    min_examples: int = 200,
    min_positives: int = 20,
    band_shares: Sequence[float] = (0.1, 0.2, 0.3),
    candidates: Sequence[str] = ("logistic_regression", "hist_gradient_boosting"),
    refit: bool = False,
    threads: int | None = 1,
    charts: bool = True,
) -> TabularCard:
    """Gate, fit, compare, export and report; write the model folder and return its card. Nothing is
    written when a gate refuses. Without ``refit`` the shipped model is exactly the one the hold-out
    measured; with it, the champion is refitted on every row (parity checked again)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=threads):
        return _train_table(data, Path(out_dir), version=version, trained_at=trained_at, source=source or {},
                            points=points, allow_leaky=allow_leaky, leak_auc=leak_auc, split=split,
                            validation_share=validation_share, seed=seed, min_examples=min_examples,
                            min_positives=min_positives, band_shares=band_shares, candidates=candidates,
                            refit=refit, charts=charts)


def _train_table(data: Dataset, out: Path, *, version: str, trained_at: datetime, source: Mapping[str, Any],
                 points: PointsModel | None, allow_leaky: Sequence[str], leak_auc: float, split: str,
                 validation_share: float, seed: int, min_examples: int, min_positives: int,
                 band_shares: Sequence[float], candidates: Sequence[str], refit: bool, charts: bool
                 ) -> TabularCard:
    from scoring import monitor
    from scoring.report import Compared, write_report
    from scoring.train import (
        _band_thresholds,
        _band_validation,
        _pipeline,
        check_baseline,
        check_calibration,
        check_data,
    )

    frame, y = data.frame, data.y
    check_data(examples=len(y), positives=int(y.sum()), min_examples=min_examples, min_positives=min_positives)
    unknown = [c for c in allow_leaky if c not in frame.names]
    if unknown:
        raise FeatureSpecError("--allow-leaky", f"no feature column {unknown[0]!r}")
    fit_idx, valid_idx = _split(y, split, validation_share, seed)
    train, valid = frame.take(fit_idx), frame.take(valid_idx)
    yt, yv = y[fit_idx], y[valid_idx]
    check_data(examples=len(yt), positives=int(yt.sum()), min_examples=10, min_positives=10,
               where="the training rows")
    if yv.min() == yv.max():
        raise ReleaseGateError("minimum_data", f"the validation rows have {int(yv.sum())} positives of {len(yv)}")
    aucs = single_column_auc(train, yt, seed)  # measured on training rows only
    check_leakage(aucs, threshold=leak_auc, allowed=allow_leaky)

    fits: list[_Fit] = []
    refused: dict[str, str] = {}
    for name in candidates:
        f = _fit(name, train, yt, valid, yv, seed)
        try:
            check_calibration(name, calibrated_auc=f.metrics["roc_auc"], uncalibrated_auc=f.uncalibrated_auc)
        except ReleaseGateError as exc:
            refused[name] = str(exc)
        fits.append(f)
    ok = [f for f in fits if f.name not in refused]
    if not ok:
        raise ReleaseGateError("calibration", "; ".join(refused.values()))
    best_pr = max(f.metrics["pr_auc"] for f in ok)
    champion = min((f for f in ok if f.metrics["pr_auc"] >= best_pr - 1e-3),
                   key=lambda f: (f.metrics["brier"], -f.metrics["pr_auc"], f.name))
    base_name, base_p = _baseline(points, aucs, train, yt, valid)
    from scoring.report import metrics as report_metrics

    base_metrics = report_metrics(yv, base_p)
    check_baseline(champion.name, pr_auc=champion.metrics["pr_auc"], baseline=base_name,
                   baseline_pr_auc=base_metrics["pr_auc"])
    model, inputs, diff = _export(champion.pipeline, valid)
    band_validation = _band_validation(yv, champion.proba, _band_thresholds(champion.proba, band_shares))
    shipped, shipped_valid = champion.pipeline, champion.proba
    if refit:  # the champion's settings on every row; the metrics stay the hold-out's
        shipped = _pipeline(champion.name, frame, seed, champion.params).fit(frame.to_matrix(), y)
        model, inputs, refit_diff = _export(shipped, valid)
        diff = max(diff, refit_diff)
        shipped_valid = shipped.predict_proba(valid.to_matrix())[:, 1]
    bands = _band_thresholds(shipped_valid, band_shares)

    kinds = ["numeric"] * len(frame.numeric_names) + ["categorical"] * len(frame.categorical_names)
    card = TabularCard(
        version=version, trained_at=trained_at.astimezone(UTC).isoformat(), source=dict(source),
        label=data.label, positive=data.positive, columns=columns_of(frame.names, kinds, inputs),
        dropped=data.dropped, champion=champion.name, params=dict(champion.params), split=split,
        counts={"rows": len(y), "positives": int(y.sum()), "train_rows": len(yt), "train_positives": int(yt.sum()),
                "validation_rows": len(yv), "validation_positives": int(yv.sum())},
        base_rate=float(y.mean()), metrics=champion.metrics,
        candidates={f.name: {**f.metrics, "uncalibrated_roc_auc": f.uncalibrated_auc, "params": dict(f.params),
                             "qualified": f.name not in refused, **({"refused": refused[f.name]}
                                                                    if f.name in refused else {})}
                    for f in fits},
        baseline={"name": base_name, **base_metrics},
        parity_max_diff=diff, bands=bands, band_validation=band_validation,
        single_column_auc={k: round(v, 4) for k, v in sorted(aucs.items(), key=lambda kv: -kv[1])},
        leakage={"threshold": leak_auc, "allowed": sorted(allow_leaky)}, warnings=data.notes,
    )
    out.mkdir(parents=True, exist_ok=True)
    compared = [Compared(f.name, "champion" if f is champion else "candidate", f.proba) for f in fits]
    compared.append(Compared(base_name, "baseline", base_p))
    write_report(out, title=f"Model {version}: {data.label} = {data.positive!r}", y=yv, compared=compared,
                 band_validation=band_validation, charts=charts, facts=_facts(card), notes=list(card.warnings))
    top = monitor.top_items(list(aucs), list(aucs.values()))
    columns = {n: ("numeric", frame.numeric[:, frame.numeric_names.index(n)]) if n in frame.numeric_names
               else ("categorical", frame.categorical[:, frame.categorical_names.index(n)]) for n in top}
    monitor.build_reference(shipped.predict_proba(frame.to_matrix())[:, 1], columns).write(out)
    # The model first, the card last: a card never describes a model that is not there yet.
    _atomic_write(out / MODEL_FILE, model)
    card.write(out)
    return card


def _facts(card: TabularCard) -> list[tuple[str, str]]:
    c = card.counts
    return [
        ("trained", card.trained_at), ("source", str(card.source.get("file", "?"))),
        ("rows", f"{c['rows']} ({c['positives']} positive, base rate {card.base_rate:.1%})"),
        ("validation", f"{card.split} hold-out of {c['validation_rows']} rows ({c['validation_positives']} positive)"),
        ("champion", f"{card.champion} {dict(card.params)}"),
        ("ONNX parity", f"max |diff| {card.parity_max_diff:.2e}"),
        ("dropped columns", ", ".join(card.dropped) or "none"),
        ("strongest single columns", ", ".join(f"{k} {v:.3f}" for k, v in list(card.single_column_auc.items())[:5])),
    ]


def train_csv(
    path: str | Path,
    out_dir: str | Path,
    *,
    label: str,
    version: str,
    trained_at: datetime,
    drop: Sequence[str] = (),
    sep: str | None = None,
    quote: str | None = None,
    positive: str | None = None,
    points_path: str | Path | None = None,
    **options: Any,
) -> TabularCard:
    """``leadrelay train --csv``: read, prepare and :func:`train_table` in one call."""
    table = read_csv(path, sep=sep, quote=quote)
    data = prepare(table, label=label, positive=positive, drop=drop)
    points = PointsModel.read(points_path) if points_path else None
    source = {"file": Path(path).name, "sep": table.sep, "quote": table.quote, "rows": len(table)}
    return train_table(data, out_dir, version=version, trained_at=trained_at, source=source, points=points,
                       **options)
