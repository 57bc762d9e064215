"""Tech-stack match, renewal proximity and usage decay: opt-in features on the one feature code path."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from connectors.base import ActivityType
from scoring._reasons import describer
from scoring.errors import FeatureSpecError
from scoring.features import (
    EVENT_TYPES,
    INTENT_EVENT_TYPES,
    Event,
    FeatureFrame,
    FeatureSpec,
    Subject,
    compute_features,
)
from scoring.labels import build_examples

AS_OF = datetime(2024, 6, 1, tzinfo=UTC)
TIMING: dict[str, Any] = {
    "fit": {"tech_stack": {"attribute": "technologies", "wanted": ["Salesforce", "segment", "snowflake"]}},
    "timing": {"renewal_attribute": "renewal_date", "usage_types": ["product_usage"], "usage_window_days": 30},
}
#: FeatureSpec().numeric_names before these features existed: the default layout must not move.
DEFAULT_NUMERIC = (
    *(f"page_view_count_{w}d" for w in (7, 30, 90)),
    *(f"pricing_page_count_{w}d" for w in (7, 30, 90)), "days_since_pricing_page", "pricing_touches",
    *(f"email_open_count_{w}d" for w in (7, 30, 90)),
    *(f"email_click_count_{w}d" for w in (7, 30, 90)),
    *(f"form_submit_count_{w}d" for w in (7, 30, 90)), "days_since_form_submit",
    *(f"content_download_count_{w}d" for w in (7, 30, 90)), "days_since_content_download",
    *(f"webinar_count_{w}d" for w in (7, 30, 90)), "days_since_webinar",
    *(f"meeting_count_{w}d" for w in (7, 30, 90)), "days_since_meeting",
    *(f"sales_touch_count_{w}d" for w in (7, 30, 90)),
    "content_depth", "engagement_velocity", "engagement_decayed",
    "employees_log1p", "annual_revenue_log1p", "email_domain_free", "tenure_days",
)


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    return FeatureSpec.from_mapping(TIMING)


def subject(key: str, events: Sequence[Event] = (), **attributes: Any) -> Subject:
    return Subject(key, AS_OF - timedelta(days=400), attributes, list(events))


def values(frame: FeatureFrame, name: str) -> list[float]:
    return frame.numeric[:, frame.numeric_names.index(name)].astype(np.float64).tolist()


def usage(*days_ago: float, at: datetime = AS_OF) -> list[Event]:
    return [Event("product_usage", at - timedelta(days=d)) for d in days_ago]


def test_default_layout_is_unchanged_and_product_usage_is_no_intent_type() -> None:
    """Without tech-stack or timing config the columns are exactly the pre-existing ones; product_usage is
    in the vocabulary (as ActivityType) but not among the default intent event types."""
    spec = FeatureSpec()
    assert spec.numeric_names == DEFAULT_NUMERIC
    assert spec.categorical_names == ("industry", "country", "title_seniority")
    assert {g.name for g in spec.groups}.isdisjoint({"tech_stack", "renewal", "usage"})
    assert "timing" not in spec.to_mapping()
    assert "tech_stack" not in spec.to_mapping()["fit"]
    assert ActivityType.PRODUCT_USAGE.value == "product_usage" in EVENT_TYPES
    assert "product_usage" not in INTENT_EVENT_TYPES
    assert "product_usage" not in spec.event_types


def test_configured_features_only_add_their_columns(spec: FeatureSpec) -> None:
    """The configured spec keeps every default column in order and adds the four new ones in their groups."""
    added = [n for n in spec.numeric_names if n not in DEFAULT_NUMERIC]
    assert tuple(n for n in spec.numeric_names if n in DEFAULT_NUMERIC) == DEFAULT_NUMERIC
    assert added == ["tech_stack_match", "days_to_renewal", "usage_recent", "usage_change"]
    groups = {g.name: [spec.numeric_names[j] for j in g.numeric] for g in spec.groups}
    assert groups["tech_stack"] == ["tech_stack_match"]
    assert groups["renewal"] == ["days_to_renewal"]
    assert groups["usage"] == ["usage_recent", "usage_change"]


def test_tech_stack_match_is_the_share_of_wanted_technologies(spec: FeatureSpec) -> None:
    """Lists and ;/,/| separated text are read case-insensitively and trimmed; missing or blank is NaN."""
    subjects = [
        subject("list", technologies=["Salesforce", "HubSpot", "Snowflake"]),
        subject("text", technologies=" SALESFORCE ; segment|snowflake , hubspot"),
        subject("none-wanted", technologies="hubspot, marketo"),
        subject("one", technologies="segment"),
        subject("missing"),
        subject("blank", technologies="  "),
    ]
    got = values(compute_features(spec, subjects, AS_OF), "tech_stack_match")
    assert got[:4] == pytest.approx([2 / 3, 1.0, 0.0, 1 / 3])
    assert math.isnan(got[4])
    assert math.isnan(got[5])


def test_days_to_renewal_is_measured_from_as_of_and_clipped(spec: FeatureSpec) -> None:
    """ISO dates, ISO times with offset and datetimes give days from as_of; far dates clip to [-365, 730];
    a missing or unreadable date is NaN."""
    subjects = [
        subject("date", renewal_date="2024-07-16"),
        subject("offset", renewal_date="2024-06-01T12:00:00+02:00"),
        subject("datetime", renewal_date=AS_OF - timedelta(days=10)),
        subject("far", renewal_date="2031-01-01"),
        subject("long-past", renewal_date="2019-01-01"),
        subject("junk", renewal_date="next spring"),
        subject("missing"),
    ]
    got = values(compute_features(spec, subjects, AS_OF), "days_to_renewal")
    assert got[:5] == pytest.approx([45.0, 10 / 24, -10.0, 730.0, -365.0])
    assert math.isnan(got[5])
    assert math.isnan(got[6])


def test_usage_counts_the_last_window_and_its_change_against_the_one_before(spec: FeatureSpec) -> None:
    """usage_recent counts the last 30 days; usage_change is that minus the 30 days before (negative:
    decaying); other event types and older events do not count."""
    decaying = subject("decaying", [*usage(1, 5, 29), *usage(31, 40, 45, 50, 59), *usage(61, 200),
                                    Event("page_view", AS_OF - timedelta(days=2))])
    rising = subject("rising", usage(1, 2, 3, 35))
    quiet = subject("quiet")
    frame = compute_features(spec, [decaying, rising, quiet], AS_OF)
    assert values(frame, "usage_recent") == [3.0, 3.0, 0.0]
    assert values(frame, "usage_change") == [-2.0, 2.0, 0.0]


def test_usage_events_at_or_after_the_cutoff_change_nothing(spec: FeatureSpec) -> None:
    """A usage event planted at as_of or later leaves every feature as it was."""
    base = subject("s", usage(3, 33), technologies="segment", renewal_date="2024-08-01")
    planted = subject("s", [*usage(3, 33), *usage(0, -0.5, -20)], technologies="segment",
                      renewal_date="2024-08-01")
    a, b = compute_features(spec, [base], AS_OF), compute_features(spec, [planted], AS_OF)
    assert np.array_equal(a.numeric, b.numeric, equal_nan=True)
    assert values(b, "usage_recent") == [1.0]
    just_before = compute_features(spec, [subject("s", usage(1e-9))], AS_OF)
    assert values(just_before, "usage_recent") == [1.0]


def test_training_rows_equal_serving_at_the_cutoff(spec: FeatureSpec) -> None:
    """A training row for a cutoff (renewal measured from the cutoff, usage before it) equals the serving
    computation for that subject at that time."""
    rng = np.random.default_rng(5)
    start = AS_OF - timedelta(days=300)
    subjects = []
    for i in range(120):
        events = [Event("product_usage", start + timedelta(days=float(d)))
                  for d in np.sort(rng.uniform(0, 300, int(rng.integers(0, 80))))]
        if i % 4 == 0:
            events.append(Event("conversion", start + timedelta(days=float(rng.uniform(100, 300)))))
        renewal = (start + timedelta(days=float(rng.uniform(0, 500)))).date().isoformat()
        subjects.append(Subject(f"s{i}", start, {"renewal_date": renewal, "technologies": "segment"}, events))
    cutoffs = [start + timedelta(days=d) for d in (90, 150, 210)]
    examples = build_examples(spec, subjects, cutoffs, horizon_days=30)
    by_key = {s.key: s for s in subjects}
    for cutoff in cutoffs:
        rows = np.flatnonzero(examples.cutoff == np.datetime64(cutoff.replace(tzinfo=None), "us"))
        assert len(rows) > 50
        serving = compute_features(spec, [by_key[examples.keys[i]] for i in rows], cutoff)
        assert np.array_equal(examples.frame.take(rows).numeric, serving.numeric, equal_nan=True)
        renewal = np.array(values(serving, "days_to_renewal"))
        expected = [
            (datetime.fromisoformat(str(by_key[examples.keys[i]].attributes["renewal_date"])).replace(tzinfo=UTC)
             - cutoff).total_seconds() / 86_400
            for i in rows
        ]
        assert renewal == pytest.approx(np.clip(expected, -365, 730))


def test_a_usage_type_that_is_the_target_is_refused() -> None:
    """build_examples refuses a target event that the spec counts as usage: it would leak the outcome."""
    spec = FeatureSpec.from_mapping({"timing": {"usage_types": ["product_usage"]}})
    with pytest.raises(ValueError, match="'product_usage' is also a feature"):
        build_examples(spec, [subject("s", usage(3))], [AS_OF], horizon_days=30, target_event="product_usage")


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"fit": {"tech_stack": {"wanted": ["segment"]}}}, "fit.tech_stack.attribute: is required"),
        ({"fit": {"tech_stack": {"attribute": "technologies"}}}, "fit.tech_stack.wanted: must list at least"),
        ({"fit": {"tech_stack": {"attribute": "t", "wanted": ["a", " A "]}}}, "fit.tech_stack.wanted[1]: 'a' is"),
        ({"fit": {"tech_stack": {"attribute": "t", "wanted": ["a"], "match": 1}}}, "fit.tech_stack.match: unknown"),
        ({"fit": {"tech_stack": ["segment"]}}, "fit.tech_stack: must be a table"),
        ({"timing": {"renewal_attribute": "close_date"}}, "timing.renewal_attribute: 'close_date' is only"),
        ({"timing": {"renewal_attribute": 7}}, "timing.renewal_attribute: must be"),
        ({"timing": {"usage_types": ["product_usage", "logins"]}}, "timing.usage_types[1]: unknown event type"),
        ({"timing": {"usage_types": ["conversion"]}}, "timing.usage_types[0]: 'conversion' is the training"),
        ({"timing": {"usage_types": "product_usage"}}, "timing.usage_types: must be a list"),
        ({"timing": {"usage_window_days": 0}}, "timing.usage_window_days: must be a positive number"),
        ({"timing": {"usage_decay": True}}, "timing.usage_decay: unknown key"),
    ],
)
def test_config_errors_name_the_key(mapping: dict[str, Any], message: str) -> None:
    """Every invalid tech-stack or timing setting raises FeatureSpecError starting with its key path."""
    with pytest.raises(FeatureSpecError) as info:
        FeatureSpec.from_mapping(mapping)
    assert str(info.value).startswith(message)


def test_spec_with_the_new_features_round_trips(spec: FeatureSpec) -> None:
    """to_mapping/from_mapping keeps the tech-stack and timing settings (the model card stores them so)."""
    assert spec.tech_stack is not None
    assert spec.tech_stack.wanted == ("salesforce", "segment", "snowflake")
    assert FeatureSpec.from_mapping(spec.to_mapping()) == spec
    only_usage = FeatureSpec.from_mapping({"timing": {"usage_types": ["product_usage"], "usage_window_days": 14}})
    assert FeatureSpec.from_mapping(only_usage.to_mapping()) == only_usage
    assert only_usage.renewal_attribute is None
    assert "days_to_renewal" not in only_usage.numeric_names


def words(spec: FeatureSpec, group: str, frame: FeatureFrame) -> list[str]:
    [g] = [g for g in spec.groups if g.name == group]
    return describer(spec, g, frame.numeric_names)(frame.numeric, frame.categorical)


def test_reasons_say_the_technologies_the_renewal_and_the_usage_trend(spec: FeatureSpec) -> None:
    """Each new group is worded from the row's own values: technologies matched, days to renewal, usage
    from the window before to the last one."""
    subjects = [
        subject("a", [*usage(*np.linspace(0.5, 29.5, 12)), *usage(*np.linspace(30.5, 59.5, 40))],
                technologies="Salesforce|Segment|HubSpot", renewal_date="2024-07-16"),
        subject("b", [*usage(1, 2), *usage(40)], renewal_date="2024-05-22"),
        subject("c"),
    ]
    frame = compute_features(spec, subjects, AS_OF)
    assert words(spec, "tech_stack", frame) == [
        "Uses 2 of 3 target technologies", "Technology stack unknown", "Technology stack unknown"]
    assert words(spec, "renewal", frame) == ["Renewal in 45 days", "Renewal date passed 10 days ago",
                                             "Renewal date unknown"]
    assert words(spec, "usage", frame) == [
        "Product usage fell from 40 to 12 events (30-day windows)",
        "Product usage rose from 1 to 2 events (30-day windows)",
        "No product usage in the last 60 days",
    ]


# --------------------------------------------------------------------------------------------------
# A real model: trained through scoring.train, exported to ONNX, served by onnxruntime.

START = datetime(2024, 1, 1, tzinfo=UTC)


def customers(n: int, seed: int) -> list[Subject]:
    """Customers who renew (``conversion`` at their renewal date) unless their usage decayed before it."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        rate = rng.uniform(0.8, 1.6)
        renewal = START + timedelta(days=float(rng.uniform(60, 420)))
        decays = rng.random() < 0.5
        drop = renewal - timedelta(days=float(rng.uniform(20, 80)))
        events = []
        day = 0.0
        while day < 420:
            at = START + timedelta(days=day)
            slow = decays and at >= drop
            day += float(rng.exponential(1 / (rate * (0.15 if slow else 1.0))))
            events.append(Event("product_usage", at))
        if rng.random() < (0.1 if decays else 0.9):
            events.append(Event("conversion", renewal))
        out.append(Subject(f"c{i}", START, {"renewal_date": renewal.date().isoformat()}, events))
    return out


@pytest.fixture(scope="module")
def renewal_model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from scoring.model import ScoringModel
    from scoring.train import train

    spec = FeatureSpec.from_mapping({"timing": TIMING["timing"]})
    cutoffs = [START + timedelta(days=d) for d in range(70, 400, 14)]
    examples = build_examples(spec, customers(300, seed=11), cutoffs, horizon_days=30)
    folder: Path = tmp_path_factory.mktemp("renewal-model")
    train(examples, folder, version="timing-1", candidates=("hist_gradient_boosting",), report=False)
    return ScoringModel.load(folder)


def test_a_trained_model_points_at_the_usage_drop_and_the_renewal(renewal_model: Any) -> None:
    """Served through ONNX, a customer renewing soon whose usage fell is told so among its negative reasons,
    and a healthy one renewing soon gets its renewal as a positive reason."""
    now = START + timedelta(days=200)
    renewal = (now + timedelta(days=15)).date().isoformat()
    healthy = Subject("healthy", START, {"renewal_date": renewal},
                      [*usage(*np.linspace(0.5, 29.5, 40), at=now), *usage(*np.linspace(30.5, 59.5, 40), at=now)])
    fading = Subject("fading", START, {"renewal_date": renewal},
                     [*usage(*np.linspace(0.5, 29.5, 4), at=now), *usage(*np.linspace(30.5, 59.5, 40), at=now)])
    batch = renewal_model.score(compute_features(renewal_model.spec, [healthy, fading], now))
    assert batch.probability[0] > batch.probability[1]
    assert "Product usage fell from 40 to 4 events (30-day windows)" in batch.reasons_negative[1]
    assert "Renewal in 15 days" in batch.reasons_positive[0]
