"""Predictive questions as configuration: population, the assuming filter, dispositions as labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from scoring.errors import FeatureSpecError
from scoring.features import Event, FeatureSpec, Subject
from scoring.labels import build_examples
from scoring.question import PredictiveQuestion

CUT = datetime(2024, 6, 1, tzinfo=UTC)
CREATED = CUT - timedelta(days=50)
DAY = timedelta(days=1)


def lead(key: str, *events: Event) -> Subject:
    return Subject(key, CREATED, {}, list(events))


def test_population_keeps_only_recent_responders() -> None:
    """Only leads with a form submit in the day before the cutoff are examples; older ones are not."""
    q = PredictiveQuestion.from_mapping({"population": {"event_types": ["form_submit"], "within_days": 1}})
    subjects = [lead("fresh", Event("form_submit", CUT - timedelta(hours=3))),
                lead("stale", Event("form_submit", CUT - 3 * DAY)),
                lead("at-cutoff", Event("form_submit", CUT))]
    ex = build_examples(FeatureSpec(), subjects, [CUT], horizon_days=1, question=q)
    assert ex.keys == ("fresh",)


def test_assuming_filter_keeps_only_leads_sales_reached() -> None:
    """With 'assuming a sales touch within a day', unreached leads leave the training set, both classes."""
    q = PredictiveQuestion.from_mapping({"horizon_days": 30,
                                         "assuming": {"event_types": ["sales_touch"], "within_days": 1}})
    subjects = [lead("reached-won", Event("sales_touch", CUT + timedelta(hours=2)), Event("conversion", CUT + 5 * DAY)),
                lead("reached-lost", Event("sales_touch", CUT + timedelta(hours=20))),
                lead("ignored-won", Event("conversion", CUT + 5 * DAY)),
                lead("reached-late", Event("sales_touch", CUT + 2 * DAY))]
    ex = build_examples(FeatureSpec(), subjects, [CUT], horizon_days=7, question=q)
    assert dict(zip(ex.keys, ex.y.tolist(), strict=True)) == {"reached-won": 1, "reached-lost": 0}
    assert ex.horizon_days == 30  # the question's horizon wins over the argument


def test_dispositions_serve_as_labels() -> None:
    """Qualified -> 1, bad fit -> 0, the first disposition in the window decides, none -> no example."""
    q = PredictiveQuestion.from_mapping({"target": {"event": "disposition", "positive": ["qualified"],
                                                    "negative": ["bad_fit", "unqualified"]}})

    def disp(value: str, days: float) -> Event:
        return Event("disposition", CUT + timedelta(days=days), {"value": value})

    subjects = [lead("q", disp("Qualified", 2)), lead("bad", disp("bad_fit", 3)),
                lead("bad-then-q", disp("bad_fit", 1), disp("qualified", 4)), lead("none"),
                lead("too-late", disp("qualified", 40)), lead("before", disp("qualified", -2))]
    ex = build_examples(FeatureSpec(), subjects, [CUT], horizon_days=1, question=q)
    assert dict(zip(ex.keys, ex.y.tolist(), strict=True)) == {"q": 1, "bad": 0, "bad-then-q": 0}
    assert ex.target_event == "disposition"


def test_disposition_before_the_cutoff_never_reaches_features() -> None:
    """A disposition event is a label, not an input: the feature frame is the same without it."""
    q = PredictiveQuestion.from_mapping({"target": {"event": "disposition", "positive": ["qualified"],
                                                    "negative": ["bad_fit"]}})
    base = [Event("page_view", CUT - DAY), Event("disposition", CUT + DAY, {"value": "qualified"})]
    with_past = [*base, Event("disposition", CUT - 30 * DAY, {"value": "bad_fit"})]
    a = build_examples(FeatureSpec(), [lead("x", *base)], [CUT], horizon_days=1, question=q)
    b = build_examples(FeatureSpec(), [lead("x", *with_past)], [CUT], horizon_days=1, question=q)
    assert np.array_equal(a.frame.numeric, b.frame.numeric, equal_nan=True)
    assert (a.frame.categorical == b.frame.categorical).all()


@pytest.mark.parametrize(("data", "path"), [
    ({"entity": "opportunity"}, "question.entity"),
    ({"horizon_days": 0}, "question.horizon_days"),
    ({"target": {"event": "disposition", "negative": ["bad"]}}, "question.target.positive"),
    ({"target": {"positive": ["a"], "negative": ["A"]}}, "question.target.negative"),
    ({"population": {"event_types": "form_submit"}}, "question.population.event_types"),
    ({"assuming": {"event_types": ["x"], "within_days": -1}}, "question.assuming.within_days"),
    ({"when": 1}, "question.when"),
])
def test_invalid_questions_name_their_key(data: dict[str, object], path: str) -> None:
    """Every invalid question raises FeatureSpecError naming the offending key path."""
    with pytest.raises(FeatureSpecError) as info:
        PredictiveQuestion.from_mapping(data)
    assert info.value.path == path
