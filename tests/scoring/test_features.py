"""Point-in-time features: nothing at or after as_of counts, values are what the spec says, one path."""

from __future__ import annotations

import math
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from scoring.errors import FeatureSpecError
from scoring.features import (
    MISSING,
    Event,
    FeatureFrame,
    FeatureSpec,
    Subject,
    compute_features,
    seniority_bucket,
)
from scoring.labels import build_examples
from scoring.synthetic import synthetic_spec

AS_OF = datetime(2024, 6, 1, tzinfo=UTC)


def frames_equal(a: FeatureFrame, b: FeatureFrame) -> bool:
    return (
        a.numeric_names == b.numeric_names
        and np.array_equal(a.numeric, b.numeric, equal_nan=True)
        and np.array_equal(a.categorical, b.categorical)
    )


def lead(events: list[Event], **attributes: str | int | float | bool | None) -> Subject:
    return Subject("k1", AS_OF - timedelta(days=100), attributes, events)


def days_ago(days: float) -> datetime:
    return AS_OF - timedelta(days=days)


def column(frame: FeatureFrame, name: str) -> float:
    return float(frame.numeric[0, frame.numeric_names.index(name)])


def test_planted_future_events_change_no_feature(history: list[Subject], spec: FeatureSpec) -> None:
    """Events at or after as_of (of every type, conversion included) leave every feature unchanged."""
    subjects = history[:200]
    planted = [
        Subject(
            s.key,
            s.created_at,
            s.attributes,
            [
                *s.events,
                *(
                    Event(t, AS_OF + timedelta(days=d), {"url": "/pricing", "content_id": "x"})
                    for t in (
                        "pricing_page",
                        "page_view",
                        "form_submit",
                        "meeting",
                        "content_download",
                        "conversion",
                    )
                    for d in (0, 0.5, 3)
                ),
            ],
        )
        for s in subjects
    ]
    truncated = [
        Subject(s.key, s.created_at, s.attributes, [e for e in s.events if e.at < AS_OF]) for s in subjects
    ]
    base = compute_features(spec, truncated, AS_OF)
    assert frames_equal(base, compute_features(spec, subjects, AS_OF))
    assert frames_equal(base, compute_features(spec, planted, AS_OF))


def test_event_at_as_of_is_excluded_and_just_before_is_counted(spec: FeatureSpec) -> None:
    """Only events strictly before as_of count: at as_of is invisible, a microsecond earlier is not."""
    at = compute_features(spec, [lead([Event("pricing_page", AS_OF)])], AS_OF)
    before = compute_features(spec, [lead([Event("pricing_page", AS_OF - timedelta(microseconds=1))])], AS_OF)
    assert column(at, "pricing_page_count_7d") == 0
    assert column(before, "pricing_page_count_7d") == 1


def test_training_features_equal_serving_features(
    history: list[Subject], spec: FeatureSpec, cutoffs: list[datetime]
) -> None:
    """A training row for a cutoff equals the serving computation for that subject at that time."""
    examples = build_examples(spec, history, cutoffs[3:5], horizon_days=30)
    by_key = {s.key: s for s in history}
    for cutoff in cutoffs[3:5]:
        stamp = np.datetime64(cutoff.replace(tzinfo=None), "us")
        rows = np.flatnonzero(examples.cutoff == stamp)
        assert len(rows) > 50
        serving = compute_features(spec, [by_key[examples.keys[i]] for i in rows], cutoff)
        assert frames_equal(examples.frame.take(rows), serving)


def test_intent_features_have_the_specified_values() -> None:
    """Counts per window, recency, pricing touches, content depth, velocity and decay match by hand."""
    spec = FeatureSpec(half_life_days=10.0)
    events = [
        Event("pricing_page", days_ago(1)),
        Event("pricing_page", days_ago(20)),
        Event("page_view", days_ago(2), {"url": "https://x.io/pricing?plan=pro"}),
        Event("page_view", days_ago(60), {"url": "/blog"}),
        Event("content_download", days_ago(5), {"content_id": "a"}),
        Event("content_download", days_ago(6), {"content_id": "a"}),
        Event("webinar", days_ago(40), {"content_id": "w"}),
        Event("meeting", days_ago(400)),
        Event("unknown_vendor_type", days_ago(1)),
    ]
    f = compute_features(spec, [lead(events)], AS_OF)
    assert column(f, "pricing_page_count_7d") == 1
    assert column(f, "pricing_page_count_30d") == 2
    assert column(f, "page_view_count_90d") == 2
    assert column(f, "days_since_pricing_page") == pytest.approx(1.0)
    assert column(f, "days_since_meeting") == spec.recency_cap_days  # capped
    assert column(f, "pricing_touches") == 2  # one pricing page + one page view of /pricing
    assert column(f, "content_depth") == 2  # asset "a" twice counts once, plus the webinar
    recent, prior = 4, 1  # 7-day events; events 7-28 days ago
    assert column(f, "engagement_velocity") == pytest.approx(
        math.log1p(recent) - math.log1p(prior / 3), rel=1e-6
    )
    w = dict(spec.weights)
    decayed = sum(
        w[e.type] * 2 ** (-(AS_OF - e.at).total_seconds() / 86400 / 10) for e in events if e.type in w
    )
    assert column(f, "engagement_decayed") == pytest.approx(decayed, rel=1e-5)


def test_fit_features_read_attributes_with_one_missing_sentinel() -> None:
    """Numeric attributes are log1p, categoricals are normalised with one missing sentinel, ICP scores."""
    spec = synthetic_spec()
    subjects = [
        Subject(
            "a",
            AS_OF - timedelta(days=10),
            {
                "employees": 120,
                "industry": " Software ",
                "country": "DE",
                "title": "VP Sales",
                "email_domain_free": False,
            },
            [],
        ),
        Subject(
            "b", None, {"employees": "n/a", "industry": None, "title": None, "email_domain_free": "yes"}, []
        ),
    ]
    f = compute_features(spec, subjects, AS_OF)
    num = dict(zip(f.numeric_names, f.numeric[0].tolist(), strict=True))
    assert num["employees_log1p"] == pytest.approx(math.log1p(120), rel=1e-6)
    assert num["icp_score"] == 1.0
    assert num["tenure_days"] == pytest.approx(10.0)
    assert list(f.categorical[0]) == ["software", "de", "vp"]
    assert list(f.categorical[1]) == [MISSING, MISSING, MISSING]
    other = dict(zip(f.numeric_names, f.numeric[1].tolist(), strict=True))
    assert math.isnan(other["employees_log1p"])
    assert math.isnan(other["tenure_days"])
    assert other["email_domain_free"] == 1.0
    assert other["icp_score"] == 0.0


@pytest.mark.parametrize(
    ("title", "bucket"),
    [
        ("Chief Revenue Officer", "c_level"),
        ("SVP, Marketing", "vp"),
        ("Head of Growth", "director"),
        ("Sales Manager", "manager"),
        ("Marketing Intern", "junior"),
        ("Engineer", "individual"),
        ("", MISSING),
    ],
)
def test_title_seniority_bucket(title: str, bucket: str) -> None:
    """Titles map to seniority buckets by whole-word keywords, most senior first."""
    assert seniority_bucket(title) == bucket


def test_naive_event_time_is_refused() -> None:
    """A naive event time is refused where the event is built, not guessed as local time later."""
    with pytest.raises(ValueError, match="timezone-aware"):
        Event("page_view", datetime(2024, 1, 1))


@pytest.mark.parametrize(
    ("mapping", "message"),
    [
        ({"features": {"windows": [7, -30]}}, "features.windows[1]: must be a positive number of days"),
        ({"features": {"windows": [30, 7]}}, "features.windows[1]: windows must be strictly increasing"),
        ({"features": {"event_types": ["page_view", "conversion"]}}, "features.event_types[1]: 'conversion'"),
        ({"features": {"weights": {"bogus": 1}}}, "features.weights.bogus: unknown event type"),
        ({"features": {"half_life": 3}}, "features.half_life: unknown key"),
        (
            {"fit": {"numeric": {"lifecycle_stage": "identity"}}},
            "fit.numeric.lifecycle_stage: 'lifecycle_stage' is only",
        ),
        ({"fit": {"icp": {"employees": [500, 50]}}}, "fit.icp.employees[1]: must not be below the minimum"),
        ({"fit": {"categorical": ["industry", 3]}}, "fit.categorical[1]: must be a non-empty string"),
    ],
)
def test_spec_errors_name_the_key_path(mapping: dict[str, object], message: str) -> None:
    """Every invalid spec raises FeatureSpecError whose message starts with the offending key path."""
    with pytest.raises(FeatureSpecError) as info:
        FeatureSpec.from_mapping(mapping)
    assert str(info.value).startswith(message)


def test_spec_round_trips_through_its_mapping() -> None:
    """A spec survives to_mapping/from_mapping unchanged (the model card stores it that way)."""
    for spec in (FeatureSpec.default(), synthetic_spec()):
        assert FeatureSpec.from_mapping(spec.to_mapping()) == spec


def test_import_stays_light() -> None:
    """Importing scoring and its serving modules loads neither scikit-learn, skl2onnx nor onnxruntime."""
    code = (
        "import sys, scoring, scoring.features, scoring.labels, scoring.model, scoring.card, scoring.tabular,"
        " scoring.tabular_model, scoring.registry, scoring.monitor, scoring.heuristic, scoring.report,"
        " scoring.question, scoring.train;"
        "heavy = [m for m in ('sklearn', 'skl2onnx', 'onnxruntime') if m in sys.modules];"
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_surface_is_pinned() -> None:
    """The package exports exactly the names users may touch, each resolvable (lazily where heavy)."""
    # In a fresh interpreter, so that lazy names resolve from a clean start, not from modules that
    # other tests already imported.
    code = (
        "import scoring;"
        "assert all(getattr(scoring, n) is not None for n in scoring.__all__);"
        "print(' '.join(sorted(scoring.__all__)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == sorted(
        [
            "DriftReport",
            "DriftThresholds",
            "Event",
            "Examples",
            "FeatureFrame",
            "FeatureSpec",
            "FeatureSpecError",
            "IcpSpec",
            "ModelCard",
            "ModelLoadError",
            "ModelMismatchError",
            "PointsModel",
            "PredictiveQuestion",
            "Registry",
            "ReleaseGateError",
            "Score",
            "ScoreBatch",
            "ScoringError",
            "ScoringModel",
            "Subject",
            "TabularModel",
            "build_examples",
            "compute_features",
            "default_cutoffs",
            "train",
            "train_csv",
        ]
    )
