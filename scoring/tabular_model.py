"""A model trained on an exported table: its card, loading it, and scoring another export with it.

:mod:`scoring.tabular` writes the folder: ``model.onnx`` takes one raw input per column (float32 for
numbers, NaN when missing; strings, "" when missing) and returns ``probability`` [N]; ``card.json``
(``"kind": "tabular"``) says which column feeds which input, the label, the metrics and the bands.
:class:`TabularModel` reads both back, refuses a folder whose ONNX inputs do not match its card or a
file that lacks a model column, and scores a :class:`~scoring._csv.Table` in chunks, one intra-op thread
per call and, for large files, several chunks at once (:func:`run_chunks`). onnxruntime is imported on load.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring._csv import Table, categorical, read_csv, to_numeric
from scoring.card import CARD_FILE, MODEL_FILE, Band, _atomic_write
from scoring.errors import ModelLoadError, ModelMismatchError

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = ["PROBABILITY_OUTPUT", "TABULAR_KIND", "Column", "TabularCard", "TabularModel", "run_chunks", "score_csv"]

TABULAR_KIND = "tabular"
PROBABILITY_OUTPUT = "probability"
CHUNK_ROWS = 50_000
_ORT_KIND = {"numeric": "tensor(float)", "categorical": "tensor(string)"}


@dataclass(frozen=True, slots=True)
class Column:
    """One model input: the file's column name, its kind and the (sanitised) ONNX input name."""

    name: str
    kind: str
    input: str


@dataclass(frozen=True, slots=True)
class TabularCard:
    version: str
    trained_at: str
    source: Mapping[str, Any]  # file name, separator, quote, rows
    label: str
    positive: str
    columns: tuple[Column, ...]
    dropped: tuple[str, ...]
    champion: str
    params: Mapping[str, Any]
    split: str
    counts: Mapping[str, int]
    base_rate: float
    metrics: Mapping[str, float]
    candidates: Mapping[str, Mapping[str, Any]]
    baseline: Mapping[str, Any]
    parity_max_diff: float
    bands: tuple[Band, ...]
    band_validation: tuple[Mapping[str, Any], ...]
    single_column_auc: Mapping[str, float]
    leakage: Mapping[str, Any]
    warnings: tuple[str, ...] = field(default=())

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": 1, "kind": TABULAR_KIND, "version": self.version, "trained_at": self.trained_at,
            "source": dict(self.source), "label": self.label, "positive": self.positive,
            "columns": [{"name": c.name, "kind": c.kind, "input": c.input} for c in self.columns],
            "probability_output": PROBABILITY_OUTPUT, "dropped": list(self.dropped), "champion": self.champion,
            "params": dict(self.params), "split": self.split, "counts": dict(self.counts),
            "base_rate": self.base_rate, "metrics": dict(self.metrics),
            "candidates": {k: dict(v) for k, v in self.candidates.items()}, "baseline": dict(self.baseline),
            "parity_max_diff": self.parity_max_diff,
            "bands": [{"band": b.name, "min_probability": b.min_probability} for b in self.bands],
            "band_validation": [dict(b) for b in self.band_validation],
            "single_column_auc": dict(self.single_column_auc), "leakage": dict(self.leakage),
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TabularCard:
        try:
            if d.get("kind") != TABULAR_KIND or d.get("schema") != 1:
                raise ModelLoadError(f"not a tabular model card (kind {d.get('kind')!r})")
            return cls(
                version=str(d["version"]), trained_at=str(d["trained_at"]), source=dict(d["source"]),
                label=str(d["label"]), positive=str(d["positive"]),
                columns=tuple(Column(c["name"], c["kind"], c["input"]) for c in d["columns"]),
                dropped=tuple(d["dropped"]), champion=str(d["champion"]), params=dict(d["params"]),
                split=str(d["split"]), counts=dict(d["counts"]), base_rate=float(d["base_rate"]),
                metrics=dict(d["metrics"]), candidates=dict(d["candidates"]), baseline=dict(d["baseline"]),
                parity_max_diff=float(d["parity_max_diff"]),
                bands=tuple(Band(b["band"], float(b["min_probability"])) for b in d["bands"]),
                band_validation=tuple(d["band_validation"]), single_column_auc=dict(d["single_column_auc"]),
                leakage=dict(d["leakage"]), warnings=tuple(d.get("warnings", ())),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"card is incomplete or malformed: {exc!r}") from exc

    def write(self, directory: Path) -> None:
        _atomic_write(directory / CARD_FILE, (json.dumps(self.to_dict(), indent=2, allow_nan=False) + "\n").encode())


def read_card_dict(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / CARD_FILE
    try:
        return dict(json.loads(path.read_text()))
    except FileNotFoundError as exc:
        raise ModelLoadError(f"no {CARD_FILE} in {directory}") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {path}: {exc}") from exc


class TabularModel:
    """A loaded tabular model: score raw columns (a :class:`Table` or ``{column: values}``)."""

    def __init__(self, session: ort.InferenceSession, card: TabularCard) -> None:
        self._session = session
        self.card = card
        self.version = card.version
        bands = sorted(card.bands, key=lambda b: b.min_probability)
        self._thresholds = np.array([b.min_probability for b in bands])
        self._names = np.array([b.name for b in bands], dtype=object)

    @classmethod
    def load(cls, directory: str | Path, *, intra_op_threads: int = 1) -> TabularModel:
        """Load a folder; refuse one whose ONNX inputs or output do not match its card."""
        import onnxruntime as ort

        path = Path(directory)
        card = TabularCard.from_dict(read_card_dict(path))
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(str(path / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path / MODEL_FILE}: {exc}") from exc
        got = {i.name: i.type for i in session.get_inputs()}
        wanted = {c.input: _ORT_KIND[c.kind] for c in card.columns}
        if got != wanted:
            raise ModelMismatchError(
                f"the ONNX inputs of {path / MODEL_FILE} do not match its card",
                missing=tuple(sorted(set(wanted) - set(got))),
                extra=tuple(sorted(set(got) - set(wanted) | {k for k in got.keys() & wanted.keys()
                                                             if got[k] != wanted[k]})),
            )
        if PROBABILITY_OUTPUT not in {o.name for o in session.get_outputs()}:
            raise ModelMismatchError(f"no ONNX output named {PROBABILITY_OUTPUT!r} in {path / MODEL_FILE}")
        return cls(session, card)

    def feed(self, data: Table | Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, int]]:
        """ONNX feed from raw cells (strings parsed here) or ready arrays; also unparsable counts."""
        present = set(data.columns) if isinstance(data, Table) else set(data)
        missing = tuple(c.name for c in self.card.columns if c.name not in present)
        if missing:
            raise ModelMismatchError(f"the data lacks columns model {self.version} needs", missing=missing)
        feed: dict[str, np.ndarray] = {}
        bad: dict[str, int] = {}
        for c in self.card.columns:
            raw = data.column(c.name) if isinstance(data, Table) else np.asarray(data[c.name])
            if c.kind == "numeric":
                if raw.dtype == np.float32:
                    values = raw
                elif raw.dtype.kind in "fiub":
                    values = raw.astype(np.float32)
                else:
                    parsed = to_numeric(raw)
                    values, bad[c.name] = (parsed if parsed is not None
                                           else (np.full(len(raw), np.nan, np.float32), len(raw)))
            else:
                values = categorical(raw) if isinstance(data, Table) else raw.astype(object)
            feed[c.input] = np.ascontiguousarray(values).reshape(-1, 1)
        return feed, {k: v for k, v in bad.items() if v}

    def predict_proba(self, data: Table | Mapping[str, np.ndarray]) -> np.ndarray:
        feed, _ = self.feed(data)
        return self.run(feed)

    def run(self, feed: Mapping[str, np.ndarray], *, workers: int | None = None) -> np.ndarray:
        return run_chunks(self._session, feed, workers=workers)

    def band(self, proba: np.ndarray) -> np.ndarray:
        return self._names[np.searchsorted(self._thresholds, proba, side="right") - 1]


def run_chunks(session: ort.InferenceSession, feed: Mapping[str, np.ndarray], *, chunk: int = CHUNK_ROWS,
               workers: int | None = None) -> np.ndarray:
    """``probability`` for every row of ``feed``, scored ``chunk`` rows per call with ``workers`` calls in
    flight (default: one per core, at most 4). onnxruntime releases the GIL while it runs and a session
    may be run from several threads at once, so chunks on one intra-op thread each use every core — the
    string encoders of a pipeline are single-threaded, which intra-op threads do not help. Peak memory
    grows by one chunk's intermediates per worker."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    n = len(next(iter(feed.values()))) if feed else 0
    out = np.empty(n, dtype=np.float64)
    starts = range(0, n, chunk)

    def one(start: int) -> None:
        part = {k: v[start:start + chunk] for k, v in feed.items()}
        out[start:start + chunk] = session.run([PROBABILITY_OUTPUT], part)[0]

    workers = max(1, min(workers or min(os.cpu_count() or 1, 4), len(starts)))
    if workers == 1:
        for start in starts:
            one(start)
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix="leadrelay-score") as pool:
            list(pool.map(one, starts))  # list(): re-raises the first failure
    return out


@dataclass(frozen=True, slots=True)
class ScoredFile:
    rows: int
    out: Path | None
    bands: Mapping[str, int]
    unparsable: Mapping[str, int]
    drift: Any  # scoring.monitor.DriftReport or None


def score_csv(model_dir: str | Path, path: str | Path, *, out: str | Path | None = None, sep: str | None = None,
              quote: str | None = None, thresholds: Any = None) -> ScoredFile:
    """Score every row of an export: write it back with probability, score 1-99 and band appended (to
    ``out``; without it nothing is written) and measure drift against the training reference."""
    from scoring.model import to_score
    from scoring.monitor import Reference, drift

    model = TabularModel.load(model_dir)
    table = read_csv(path, sep=sep, quote=quote)
    feed, bad = model.feed(table)
    proba = model.run(feed)
    score = to_score(proba)
    band = model.band(proba)
    if out is not None:
        _write_scored(Path(out), table, proba, score, band)
    reference = Reference.read(model_dir)
    report = None
    if reference is not None:
        columns = {c.name: feed[c.input].ravel() for c in model.card.columns}
        report = drift(reference, proba, columns, thresholds)
    names, counts = np.unique(band.astype(str), return_counts=True)
    return ScoredFile(len(table), None if out is None else Path(out),
                      dict(zip(names.tolist(), counts.tolist(), strict=True)), bad, report)


def _write_scored(out: Path, table: Table, proba: np.ndarray, score: np.ndarray, band: np.ndarray) -> None:
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", newline="") as f:
        writer = csv.writer(f, delimiter=table.sep, quotechar=table.quote)
        writer.writerow([*table.columns, "leadrelay_probability", "leadrelay_score", "leadrelay_band"])
        for row, p, s, b in zip(table.cells.tolist(), proba.tolist(), score.tolist(), band.tolist(), strict=True):
            writer.writerow([*row, f"{p:.6f}", s, b])
    tmp.replace(out)


def columns_of(names: Sequence[str], kinds: Sequence[str], inputs: Sequence[str]) -> tuple[Column, ...]:
    return tuple(Column(n, k, i) for n, k, i in zip(names, kinds, inputs, strict=True))
