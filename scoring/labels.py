"""Training examples: who is in the population at each freeze time, what they look like then, and
whether the target happened within the horizon afterwards.

This is the training half of DESIGN.md's *Score* step. For every cutoff (freeze time) the population is
the subjects created before it that have not already reached the target; their features come from
:func:`scoring.features.compute_features` with ``as_of=cutoff`` (the serving code path, so training and
serving cannot drift apart) and their label is whether a target event falls in
``[cutoff, cutoff + horizon)``. Nothing at or after the cutoff reaches a feature; nothing before it
reaches a label.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from scoring.features import FeatureFrame, FeatureSpec, Subject, compute_features, to_seconds

if TYPE_CHECKING:
    from scoring.question import PredictiveQuestion

__all__ = ["Examples", "build_examples", "default_cutoffs"]

_DAY = 86_400.0


@dataclass(frozen=True, slots=True, eq=False)
class Examples:
    """Rows for training: one per (subject, cutoff) in the population. ``cutoff`` holds each row's freeze
    time as ``datetime64[us]`` (UTC); rows are ordered by cutoff, then by the subjects' input order."""

    frame: FeatureFrame
    y: np.ndarray
    cutoff: np.ndarray
    keys: tuple[str, ...]
    spec: FeatureSpec
    horizon_days: int
    target_event: str

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, rows: np.ndarray) -> Examples:
        idx = np.asarray(rows, dtype=np.intp)
        return Examples(
            frame=self.frame.take(idx),
            y=self.y[idx],
            cutoff=self.cutoff[idx],
            keys=tuple(self.keys[i] for i in idx.tolist()),
            spec=self.spec,
            horizon_days=self.horizon_days,
            target_event=self.target_event,
        )


def default_cutoffs(first: datetime, last: datetime, horizon_days: int, step_days: int) -> list[datetime]:
    """Freeze times every ``step_days`` over ``[first, last]``, anchored at the newest complete one:
    the last cutoff is ``last - horizon`` so that every label window ends inside the data, and none
    sits at or before ``first`` (it would have no history). Oldest first."""
    if horizon_days <= 0 or step_days <= 0:
        raise ValueError("horizon_days and step_days must be positive")
    to_seconds(first)
    to_seconds(last)
    newest = last - timedelta(days=horizon_days)
    out: list[datetime] = []
    cutoff = newest
    while cutoff > first:
        out.append(cutoff)
        cutoff -= timedelta(days=step_days)
    out.reverse()
    return out


def _times(subjects: Sequence[Subject], types: Sequence[str], values: Sequence[str] = (),
           attribute: str = "value") -> tuple[np.ndarray, np.ndarray]:
    """(owner, time) of every event of ``types`` (whose ``attribute`` is one of ``values``, if given)."""
    owners: list[int] = []
    times: list[float] = []
    wanted = {v.lower() for v in values}
    for i, s in enumerate(subjects):
        for e in s.events:
            if e.type in types and (not wanted or str(e.attributes.get(attribute, "")).lower() in wanted):
                owners.append(i)
                times.append(to_seconds(e.at))
    return np.asarray(owners, dtype=np.intp), np.asarray(times, dtype=np.float64)


def _any_in(owner: np.ndarray, times: np.ndarray, n: int, lo: float, hi: float) -> np.ndarray:
    hit = np.zeros(n, dtype=bool)
    hit[owner[(times >= lo) & (times < hi)]] = True
    return hit


def _next_after(owner: np.ndarray, times: np.ndarray, n: int, c: float) -> np.ndarray:
    after = times >= c
    out = np.full(n, np.inf)
    np.minimum.at(out, owner[after], times[after])
    return out


def build_examples(
    spec: FeatureSpec,
    subjects: Sequence[Subject],
    cutoffs: Sequence[datetime],
    *,
    horizon_days: int,
    target_event: str = "conversion",
    question: PredictiveQuestion | None = None,
) -> Examples:
    """Population, features and labels at each cutoff. A subject without ``created_at`` counts as
    created at its first event (before which it is unknown to the CRM anyway).

    A :class:`~scoring.question.PredictiveQuestion` (from configuration) overrides horizon and target
    and may narrow the population (an event of given types in the days before the cutoff), add an
    *assuming* filter (keep only subjects with, e.g., a sales touch within a day after the cutoff, so that
    past sales attention does not bias the labels) and take labels from dispositions (events whose
    ``value`` says qualified or bad fit; subjects without one in the window are left out)."""
    if question is not None:
        horizon_days, target_event = question.horizon_days, question.target.event
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    if target_event in spec.event_types or target_event in spec.usage_types:
        raise ValueError(f"target event {target_event!r} is also a feature in the spec: it would leak")
    n = len(subjects)
    horizon_s = horizon_days * _DAY
    target = question.target if question is not None else None
    labelled = target is not None and bool(target.negative)

    born = np.array([
        to_seconds(s.created_at) if s.created_at is not None
        else min((to_seconds(e.at) for e in s.events), default=np.inf)
        for s in subjects
    ], dtype=np.float64).reshape(n)
    # Positive target times (conversions, or dispositions with a positive value); negative dispositions.
    pos_owner, pos_time = _times(subjects, [target_event], target.positive if target else (),
                                 target.attribute if target else "value")
    neg_owner, neg_time = (_times(subjects, [target_event], target.negative, target.attribute) if labelled and target
                           else (np.zeros(0, np.intp), np.zeros(0)))
    first_target = np.full(n, np.inf)
    np.minimum.at(first_target, pos_owner, pos_time)
    population_q = question.population if question is not None else None
    assuming_q = question.assuming if question is not None else None
    pop_owner, pop_time = _times(subjects, population_q.event_types) if population_q else (None, None)
    ass_owner, ass_time = _times(subjects, assuming_q.event_types) if assuming_q else (None, None)

    frames: list[FeatureFrame] = []
    labels: list[np.ndarray] = []
    cut_col: list[np.ndarray] = []
    for cutoff in sorted(cutoffs):
        c = to_seconds(cutoff)
        member = (born < c) & (first_target >= c)
        if population_q is not None and pop_owner is not None and pop_time is not None:
            member &= _any_in(pop_owner, pop_time, n, c - population_q.within_days * _DAY, c)
        if assuming_q is not None and ass_owner is not None and ass_time is not None:
            member &= _any_in(ass_owner, ass_time, n, c, c + assuming_q.within_days * _DAY)
        next_pos = _next_after(pos_owner, pos_time, n, c)
        y_all = next_pos < c + horizon_s
        if labelled:
            next_neg = _next_after(neg_owner, neg_time, n, c)
            # The first disposition in the window decides; no disposition in the window: no label.
            decided = np.minimum(next_pos, next_neg) < c + horizon_s
            member &= decided
            y_all = next_pos < next_neg
        population = np.flatnonzero(member)
        if population.size == 0:
            continue
        labels.append(y_all[population].astype(np.int8))
        frames.append(compute_features(spec, [subjects[i] for i in population.tolist()], cutoff))
        cut_col.append(np.full(population.size, round(c * 1e6), dtype="datetime64[us]"))

    if frames:
        frame = FeatureFrame.concat(frames)
        y = np.concatenate(labels)
        cut = np.concatenate(cut_col)
    else:
        frame = compute_features(spec, [], [])
        y = np.zeros(0, dtype=np.int8)
        cut = np.zeros(0, dtype="datetime64[us]")
    return Examples(
        frame=frame,
        y=y,
        cutoff=cut,
        keys=frame.keys,
        spec=spec,
        horizon_days=horizon_days,
        target_event=target_event,
    )
