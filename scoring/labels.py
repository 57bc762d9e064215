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

import numpy as np

from scoring.features import FeatureFrame, FeatureSpec, Subject, compute_features, to_seconds

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


def build_examples(
    spec: FeatureSpec,
    subjects: Sequence[Subject],
    cutoffs: Sequence[datetime],
    *,
    horizon_days: int,
    target_event: str = "conversion",
) -> Examples:
    """Population, features and labels at each cutoff. A subject without ``created_at`` counts as
    created at its first event (before which it is unknown to the CRM anyway)."""
    if horizon_days <= 0:
        raise ValueError("horizon_days must be positive")
    if target_event in spec.event_types:
        raise ValueError(f"target event {target_event!r} is also a feature in the spec: it would leak")
    n = len(subjects)
    horizon_s = horizon_days * _DAY

    # Target times, flattened once: (owner, time) pairs; and each subject's first appearance.
    owners: list[int] = []
    times: list[float] = []
    born = np.full(n, np.inf)
    for i, s in enumerate(subjects):
        first_seen = np.inf
        for e in s.events:
            t = to_seconds(e.at)
            first_seen = min(first_seen, t)
            if e.type == target_event:
                owners.append(i)
                times.append(t)
        born[i] = to_seconds(s.created_at) if s.created_at is not None else first_seen
    owner_arr = np.asarray(owners, dtype=np.intp)
    time_arr = np.asarray(times, dtype=np.float64)
    first_target = np.full(n, np.inf)
    np.minimum.at(first_target, owner_arr, time_arr)

    frames: list[FeatureFrame] = []
    labels: list[np.ndarray] = []
    cut_col: list[np.ndarray] = []
    for cutoff in sorted(cutoffs):
        c = to_seconds(cutoff)
        population = np.flatnonzero((born < c) & (first_target >= c))
        if population.size == 0:
            continue
        after = time_arr >= c
        next_target = np.full(n, np.inf)
        np.minimum.at(next_target, owner_arr[after], time_arr[after])
        labels.append((next_target[population] < c + horizon_s).astype(np.int8))
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
