"""Serving: load an exported model folder and score feature frames in batches.

DESIGN.md step 3 (*Score*): the pipeline computes a :class:`~scoring.features.FeatureFrame` as of now
for the affected leads and calls :meth:`ScoringModel.score` once per batch. Each row gets a probability,
a score 1-99 (monotone in the probability), a band (thresholds from the model card) and its top
positive and negative reasons in words. Reasons are model-agnostic occlusion through the same ONNX
graph: each feature group that differs from the training reference is replaced by that reference, and
the probability change is the group's contribution. All perturbed rows of a batch go through a few
large ``run`` calls. One intra-op thread and sequential execution: the same frame and model give the
same output, bit for bit.

onnxruntime is imported when a model is loaded, not when this module is imported.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scoring._reasons import Describer, describer
from scoring.card import MODEL_FILE, ModelCard
from scoring.errors import ModelLoadError, ModelMismatchError
from scoring.features import FeatureFrame, FeatureGroup, FeatureSpec, remove_activity

if TYPE_CHECKING:
    import onnxruntime as ort

__all__ = ["Score", "ScoreBatch", "ScoringModel", "to_score"]

#: Rows per onnxruntime call: large enough to amortise the call, small enough to bound memory.
CHUNK_ROWS = 50_000
#: Probability changes smaller than this are noise, not reasons.
MIN_EFFECT = 1e-4
TOP_REASONS = 3
_ORT_KIND = {"numeric": "tensor(float)", "categorical": "tensor(string)"}


def to_score(probability: np.ndarray) -> np.ndarray:
    """Score 1-99: the probability in 99 equal steps, so it is monotone and 99 means at least 98/99."""
    p = np.clip(np.nan_to_num(np.asarray(probability, dtype=np.float64), nan=0.0), 0.0, 1.0)
    return np.minimum(np.floor(p * 99.0).astype(np.int16) + 1, 99).astype(np.int16)


@dataclass(frozen=True, slots=True)
class Score:
    """One scored subject, as the pipeline stores and pushes it."""

    key: str
    probability: float
    score: int
    band: str
    reasons_positive: tuple[str, ...]
    reasons_negative: tuple[str, ...]
    model_version: str


@dataclass(frozen=True, slots=True, eq=False)
class ScoreBatch:
    """Scores of one frame, column-wise: numpy arrays plus one tuple of reason texts per row."""

    keys: tuple[str, ...]
    probability: np.ndarray
    score: np.ndarray
    band: np.ndarray
    reasons_positive: tuple[tuple[str, ...], ...]
    reasons_negative: tuple[tuple[str, ...], ...]
    model_version: str

    def __len__(self) -> int:
        return len(self.keys)

    def rows(self) -> Iterator[Score]:
        for i, key in enumerate(self.keys):
            yield Score(
                key=key,
                probability=float(self.probability[i]),
                score=int(self.score[i]),
                band=str(self.band[i]),
                reasons_positive=self.reasons_positive[i],
                reasons_negative=self.reasons_negative[i],
                model_version=self.model_version,
            )


class ScoringModel:
    """A loaded model: ONNX session, card, feature spec, bands, references and reason wording."""

    def __init__(self, session: ort.InferenceSession, card: ModelCard) -> None:
        self._session = session
        self.card = card
        self.spec: FeatureSpec = card.spec
        self.version = card.version
        self._inputs = {i.feature: i.input for i in card.inputs}
        self._output = card.probability_output
        self._numeric_names = self.spec.numeric_names
        self._categorical_names = self.spec.categorical_names
        self._ref_numeric = np.array(
            [card.reference_numeric.get(n, math.nan) for n in self._numeric_names], dtype=np.float32
        )
        self._ref_categorical = np.array(
            [card.reference_categorical.get(n, "") for n in self._categorical_names], dtype=object
        )
        self._groups: tuple[FeatureGroup, ...] = self.spec.groups
        # Activity groups are occluded by removing the event type (see remove_activity); the others by
        # their training reference values.
        self._removable = tuple(
            g.name.partition(":")[2]
            if g.name.startswith("activity:") and g.name.partition(":")[2] in self.spec.event_types
            else None
            for g in self._groups
        )
        # What an activity group's columns hold for a lead without such events: 0, or the recency cap.
        cap = float(self.spec.recency_cap_days)
        self._empty = tuple(
            np.array(
                [cap if self._numeric_names[j].startswith("days_since_") else 0.0 for j in g.numeric],
                dtype=np.float32,
            )
            for g in self._groups
        )
        names = self._numeric_names
        self._describers: tuple[Describer, ...] = tuple(describer(self.spec, g, names) for g in self._groups)
        bands = sorted(card.bands, key=lambda b: b.min_probability)
        self._band_thresholds = np.array([b.min_probability for b in bands], dtype=np.float64)
        self._band_names = np.array([b.name for b in bands], dtype=object)

    @classmethod
    def load(cls, directory: str | Path, *, intra_op_threads: int = 1) -> ScoringModel:
        """Load ``model.onnx`` + ``card.json``; refuse a model whose inputs do not match its spec."""
        import onnxruntime as ort

        path = Path(directory)
        card = ModelCard.read(path)
        expected = set(card.spec.numeric_names + card.spec.categorical_names)
        described = {i.feature for i in card.inputs}
        if expected != described:
            raise ModelMismatchError(
                f"the card's inputs do not match its feature spec in {path}",
                missing=tuple(sorted(expected - described)),
                extra=tuple(sorted(described - expected)),
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        try:
            session = ort.InferenceSession(
                str(path / MODEL_FILE), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:
            raise ModelLoadError(f"cannot load {path / MODEL_FILE}: {exc}") from exc
        got = {i.name: i.type for i in session.get_inputs()}
        wanted = {i.input: _ORT_KIND[i.kind] for i in card.inputs}
        if set(got) != set(wanted):
            raise ModelMismatchError(
                f"the ONNX inputs of {path / MODEL_FILE} do not match the model card's feature spec",
                missing=tuple(sorted(set(wanted) - set(got))),
                extra=tuple(sorted(set(got) - set(wanted))),
            )
        wrong = sorted(name for name, kind in wanted.items() if got[name] != kind)
        if wrong:
            raise ModelMismatchError(f"ONNX inputs with the wrong type: {', '.join(wrong)}")
        if card.probability_output not in {o.name for o in session.get_outputs()}:
            raise ModelMismatchError(f"no ONNX output named {card.probability_output!r}")
        return cls(session, card)

    def check_spec(self, spec: FeatureSpec) -> None:
        """Refuse to serve with a configured feature spec other than the one the model was trained on: the
        features would be computed differently from training (names alone could still line up)."""
        if spec != self.spec:
            want, have = set(self.spec.numeric_names + self.spec.categorical_names), set(
                spec.numeric_names + spec.categorical_names
            )
            raise ModelMismatchError(
                f"model {self.version} was trained with another feature spec than the configured one: "
                "retrain (`leadrelay train`) or restore the spec it was trained with",
                missing=tuple(sorted(want - have)),
                extra=tuple(sorted(have - want)),
            )

    # ----------------------------------------------------------------------------------------------

    def predict_proba(self, frame: FeatureFrame) -> np.ndarray:
        """Probability of the target per row (float64 of the model's float32 output)."""
        self._check(frame)
        return self._run(frame.numeric, frame.categorical)

    def score(
        self,
        frame: FeatureFrame,
        *,
        reasons: bool = True,
        reason_rows: np.ndarray | Sequence[int] | None = None,
    ) -> ScoreBatch:
        """Score every row; word reasons for all rows, for ``reason_rows`` only, or (``reasons=False``)
        for none. Rows without reasons get empty tuples."""
        self._check(frame)
        proba = self._run(frame.numeric, frame.categorical)
        band = self._band_names[np.searchsorted(self._band_thresholds, proba, side="right") - 1]
        n = len(frame)
        positive: list[tuple[str, ...]] = [()] * n
        negative: list[tuple[str, ...]] = [()] * n
        if reasons and n:
            rows = np.arange(n) if reason_rows is None else np.unique(np.asarray(reason_rows, dtype=np.intp))
            if len(rows):
                pos, neg = self._reasons(frame, proba, rows)
                for r, p_texts, n_texts in zip(rows.tolist(), pos, neg, strict=True):
                    positive[r] = p_texts
                    negative[r] = n_texts
        return ScoreBatch(
            keys=frame.keys,
            probability=proba,
            score=to_score(proba),
            band=band,
            reasons_positive=tuple(positive),
            reasons_negative=tuple(negative),
            model_version=self.version,
        )

    # ----------------------------------------------------------------------------------------------

    def _check(self, frame: FeatureFrame) -> None:
        if frame.numeric_names != self._numeric_names or frame.categorical_names != self._categorical_names:
            want = set(self._numeric_names + self._categorical_names)
            have = set(frame.names)
            raise ModelMismatchError(
                f"frame columns do not match model {self.version}'s feature spec",
                missing=tuple(sorted(want - have)),
                extra=tuple(sorted(have - want)),
            )

    def _run(self, numeric: np.ndarray, categorical: np.ndarray) -> np.ndarray:
        n = len(numeric)
        out = np.empty(n, dtype=np.float64)
        for start in range(0, n, CHUNK_ROWS):
            stop = min(n, start + CHUNK_ROWS)
            feed: dict[str, Any] = {}
            num = numeric[start:stop]
            if num.strides[0] != num.itemsize:  # each [N, 1] column must be contiguous for onnxruntime
                num = np.asfortranarray(num)
            for j, name in enumerate(self._numeric_names):
                feed[self._inputs[name]] = num[:, j : j + 1]
            for j, name in enumerate(self._categorical_names):
                feed[self._inputs[name]] = categorical[start:stop, j : j + 1]
            out[start:stop] = self._session.run([self._output], feed)[0][:, 1]
        return out

    def _differs(
        self, numeric: np.ndarray, categorical: np.ndarray, activity: np.ndarray | None
    ) -> np.ndarray:
        """[R, G] True where occluding the group can change the row: it differs from the reference (NaN
        equals NaN) or, for activity groups, the row has events of that type."""
        ref = self._ref_numeric
        num_diff = (numeric != ref) & ~(np.isnan(numeric) & np.isnan(ref))
        cat_diff = categorical != self._ref_categorical if categorical.shape[1] else categorical.astype(bool)
        out = np.zeros((len(numeric), len(self._groups)), dtype=bool)
        for g, group in enumerate(self._groups):
            event_type = self._removable[g]
            if event_type is not None and activity is not None:
                t = self.spec.event_types.index(event_type)
                own = numeric[:, list(group.numeric)] != self._empty[g]
                out[:, g] = (activity[:, t] != 0) | own.any(axis=1)
                continue
            if group.numeric:
                out[:, g] |= num_diff[:, list(group.numeric)].any(axis=1)
            if group.categorical:
                out[:, g] |= np.asarray(cat_diff[:, list(group.categorical)], dtype=bool).any(axis=1)
        return out

    def _reasons(
        self, frame: FeatureFrame, proba: np.ndarray, rows: np.ndarray
    ) -> tuple[list[tuple[str, ...]], list[tuple[str, ...]]]:
        numeric = frame.numeric[rows]
        categorical = frame.categorical[rows]
        activity = None if frame.activity is None else frame.activity[rows]
        base = proba[rows]
        n_rows, n_groups = len(rows), len(self._groups)
        # Only groups that differ from the reference can move the score; the others stay at 0 effect.
        pair_row, pair_group = np.nonzero(self._differs(numeric, categorical, activity))
        effect = np.zeros((n_rows, n_groups), dtype=np.float64)
        for start in range(0, len(pair_row), CHUNK_ROWS):
            r = pair_row[start : start + CHUNK_ROWS]
            g = pair_group[start : start + CHUNK_ROWS]
            num = np.asfortranarray(numeric[r])
            cat = categorical[r]
            for gi in np.unique(g).tolist():
                at = np.flatnonzero(g == gi)
                group = self._groups[gi]
                event_type = self._removable[gi]
                if event_type is not None and activity is not None:
                    sub = num[at]
                    remove_activity(self.spec, sub, activity[r[at]], event_type)
                    num[at] = sub
                    continue
                for j in group.numeric:
                    num[at, j] = self._ref_numeric[j]
                for j in group.categorical:
                    cat[at, j] = self._ref_categorical[j]
            effect[r, g] = base[r] - self._run(num, cat)

        k = min(TOP_REASONS, n_groups)
        # Stable sorts on (-effect) and (effect) keep ties in group order: deterministic output.
        top_pos = np.argsort(-effect, axis=1, kind="stable")[:, :k]
        top_neg = np.argsort(effect, axis=1, kind="stable")[:, :k]
        pos_ok = np.take_along_axis(effect, top_pos, axis=1) > MIN_EFFECT
        neg_ok = np.take_along_axis(effect, top_neg, axis=1) < -MIN_EFFECT
        pos_text = self._word(top_pos, pos_ok, numeric, categorical)
        neg_text = self._word(top_neg, neg_ok, numeric, categorical)
        return pos_text, neg_text

    def _word(
        self, top: np.ndarray, ok: np.ndarray, numeric: np.ndarray, categorical: np.ndarray
    ) -> list[tuple[str, ...]]:
        n_rows, k = top.shape
        slots = []
        # Word each group once per slot for all rows that need it: describers work on column slices.
        for s in range(k):
            texts = np.full(n_rows, None, dtype=object)
            for gi in np.unique(top[ok[:, s], s]).tolist():
                rr = np.flatnonzero((top[:, s] == gi) & ok[:, s])
                words = np.empty(len(rr), dtype=object)
                words[:] = self._describers[gi](numeric[rr], categorical[rr])
                texts[rr] = words
            slots.append(texts.tolist())
        # Effects are sorted, so the valid reasons of a row are a prefix of its slots.
        counts = ok.sum(axis=1).tolist()
        return [row[:c] for row, c in zip(zip(*slots, strict=True), counts, strict=True)]
