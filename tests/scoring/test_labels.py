"""Training examples: population at each cutoff, labels from the horizon after it, complete windows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pytest

from scoring.features import Event, FeatureSpec, Subject
from scoring.labels import build_examples, default_cutoffs

CUT = datetime(2024, 6, 1, tzinfo=UTC)
CREATED = CUT - timedelta(days=50)


def subject(key: str, *events: Event, created: datetime | None = CREATED) -> Subject:
    return Subject(key, created, {}, list(events))


def test_labels_use_only_the_window_after_the_cutoff() -> None:
    """Label = a target event in [cutoff, cutoff + horizon); earlier converters leave the population."""
    h = timedelta(days=30)
    subjects = [
        subject("converted-before", Event("conversion", CUT - timedelta(seconds=1))),
        subject("at-cutoff", Event("conversion", CUT)),
        subject("last-moment", Event("conversion", CUT + h - timedelta(microseconds=1))),
        subject("at-window-end", Event("conversion", CUT + h)),
        subject("never", Event("page_view", CUT - timedelta(days=1))),
        subject(
            "created-later", Event("conversion", CUT + timedelta(days=1)), created=CUT + timedelta(hours=1)
        ),
        subject(
            "no-created-at",
            Event("page_view", CUT - timedelta(days=3)),
            Event("conversion", CUT),
            created=None,
        ),
    ]
    ex = build_examples(FeatureSpec(), subjects, [CUT], horizon_days=30)
    labels = dict(zip(ex.keys, ex.y.tolist(), strict=True))
    assert labels == {"at-cutoff": 1, "last-moment": 1, "at-window-end": 0, "never": 0, "no-created-at": 1}
    assert ex.y.dtype == np.int8
    assert set(ex.cutoff.tolist()) == {CUT.replace(tzinfo=None)}


def test_each_cutoff_has_its_own_population() -> None:
    """One subject appears once per cutoff until the cutoff after its conversion."""
    s = subject("a", Event("conversion", CUT + timedelta(days=10)))
    cutoffs = [CUT - timedelta(days=20), CUT, CUT + timedelta(days=20)]
    ex = build_examples(FeatureSpec(), [s], cutoffs, horizon_days=15)
    assert ex.keys == ("a", "a")
    assert ex.y.tolist() == [0, 1]


def test_default_cutoffs_keep_every_label_window_complete() -> None:
    """Cutoffs step back from last - horizon, stay after first, and are returned oldest first."""
    first = datetime(2024, 1, 1, tzinfo=UTC)
    last = datetime(2024, 12, 31, tzinfo=UTC)
    cuts = default_cutoffs(first, last, horizon_days=30, step_days=14)
    assert cuts == sorted(cuts)
    assert cuts[-1] + timedelta(days=30) == last
    assert all(c > first for c in cuts)
    assert all(b - a == timedelta(days=14) for a, b in pairwise(cuts))
    assert cuts[0] - timedelta(days=14) <= first


def test_target_counted_as_a_feature_is_refused() -> None:
    """Building examples whose spec also counts the target event fails instead of leaking."""
    spec = FeatureSpec(event_types=("page_view", "form_submit"))
    with pytest.raises(ValueError, match="leak"):
        build_examples(spec, [], [CUT], horizon_days=30, target_event="form_submit")
