"""Point-in-time features: the one code path that turns subjects and their events into model inputs.

In DESIGN.md's flow this is step 3 (*Score*): the ``sync`` layer turns store rows into :class:`Subject`
objects and calls :func:`compute_features` with ``as_of=now``; ``scoring.labels`` calls the very same
function with ``as_of=cutoff`` to build training rows. Only events strictly before ``as_of`` count, so a
feature can never see the future, at training time or at serving time.

Two kinds of features come out of a :class:`FeatureSpec`:

* *intent* (from events): counts per event type in windows, days since the last high-value event,
  pricing-page touches, content depth, engagement velocity and exponentially decayed engagement;
* *fit* (from attributes): numeric attributes (log1p), categorical attributes, a title-seniority
  bucket, the free-mail flag, an ICP-match score, tenure, and (when configured) the share of wanted
  technologies in a tech-stack attribute;
* *timing* (when configured): days to a renewal date, and product usage in the last window against the
  window before it (usage decay), from events strictly before ``as_of`` like every event feature.

Nothing that only exists after conversion (lifecycle stage, lead status, ...) may be used: the spec
refuses those attribute names. The module imports numpy only; it is safe to import from the CLI.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from itertools import chain
from typing import Any, Final

import numpy as np

from scoring.errors import FeatureSpecError

__all__ = [
    "CONTENT_ID_ATTRIBUTES",
    "EVENT_TYPES",
    "INTENT_EVENT_TYPES",
    "MISSING",
    "RENEWAL_CLIP_DAYS",
    "URL_ATTRIBUTES",
    "Event",
    "FeatureFrame",
    "FeatureGroup",
    "FeatureSpec",
    "IcpSpec",
    "Subject",
    "TechStackSpec",
    "compute_features",
    "remove_activity",
    "seniority_bucket",
    "to_seconds",
]

Scalar = str | int | float | bool | None

#: The one sentinel for a missing categorical value, used identically at training and serving time
#: (ONNX string tensors have no NaN; scoring-notes trap 7).
MISSING: Final = "__missing__"

EVENT_TYPES: Final = (
    "page_view",
    "pricing_page",
    "email_open",
    "email_click",
    "form_submit",
    "content_download",
    "webinar",
    "meeting",
    "sales_touch",
    "conversion",
    "product_usage",
)
#: Event types that describe interest before an outcome; ``conversion`` is the usual training target, and
#: ``product_usage`` (a product-analytics event) feeds the opt-in usage-decay features instead.
INTENT_EVENT_TYPES: Final = tuple(t for t in EVENT_TYPES if t not in ("conversion", "product_usage"))

#: Attributes read to tell a pricing visit among page views, and to tell content pieces apart.
URL_ATTRIBUTES: Final = ("url", "path")
CONTENT_ID_ATTRIBUTES: Final = ("content_id", "asset_id", "name", "title")

# Attributes that are filled in by sales or by the CRM once a lead has progressed: using them leaks the
# outcome (scoring-notes: one public dataset goes from 0.89 to 0.98 AUC with them).
_OUTCOME_ATTRIBUTES: Final = frozenset(
    {
        "lifecycle_stage",
        "lifecyclestage",
        "lead_status",
        "status",
        "stage",
        "deal_stage",
        "converted",
        "converted_at",
        "is_converted",
        "is_customer",
        "customer_since",
        "opportunity",
        "opportunity_stage",
        "close_date",
    }
)

_DEFAULT_WEIGHTS: Final = (
    ("page_view", 1.0),
    ("pricing_page", 5.0),
    ("email_open", 0.5),
    ("email_click", 2.0),
    ("form_submit", 8.0),
    ("content_download", 4.0),
    ("webinar", 6.0),
    ("meeting", 10.0),
    ("sales_touch", 1.0),
)

# First bucket whose keyword appears as whole words in the title wins, so the order runs senior first.
_DEFAULT_SENIORITY: Final = (
    (
        "c_level",
        (
            "chief",
            "ceo",
            "cto",
            "cfo",
            "coo",
            "cmo",
            "cio",
            "cro",
            "founder",
            "co founder",
            "owner",
            "president",
            "partner",
        ),
    ),
    ("vp", ("vp", "vice president", "svp", "evp", "avp")),
    ("director", ("director", "head")),
    ("manager", ("manager", "lead", "principal", "supervisor")),
    ("junior", ("intern", "student", "trainee", "junior", "assistant")),
)
_SENIORITY_FALLBACK: Final = "individual"

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DAY: Final = 86_400.0
_NON_WORD: Final = re.compile(r"[^a-z0-9]+")
_LIST_SEPARATORS: Final = re.compile(r"[;,|]")
#: ``days_to_renewal`` is clipped to this range: a renewal more than two years out, or a year overdue, says
#: nothing more than one at the edge, and the clip keeps one stale date from stretching the column.
RENEWAL_CLIP_DAYS: Final = (-365.0, 730.0)


# --------------------------------------------------------------------------------------------------
# Inputs


@dataclass(frozen=True, slots=True)
class Event:
    """One activity of a subject. ``type`` is a canonical activity type; ``at`` is timezone-aware."""

    type: str
    at: datetime
    attributes: Mapping[str, Scalar] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked once here, at the boundary, so that feature computation need not re-check a million
        # events per cycle: datetime.timestamp() would silently read a naive time as local time.
        if self.at.tzinfo is None:
            raise ValueError(f"Event.at must be timezone-aware, got {self.at.isoformat()}")


@dataclass(frozen=True, slots=True)
class Subject:
    """One lead (later: one account) with its attributes and events. Events may reach past ``as_of``:
    feature computation ignores them, which is what makes training rows honest."""

    key: str
    created_at: datetime | None
    attributes: Mapping[str, Scalar]
    events: Sequence[Event] = ()


# --------------------------------------------------------------------------------------------------
# The spec


@dataclass(frozen=True, slots=True)
class IcpSpec:
    """The ideal customer profile: industries (normalised, lower case) and an employee range."""

    industries: frozenset[str] = frozenset()
    employees_min: float | None = None
    employees_max: float | None = None

    @property
    def configured(self) -> bool:
        return bool(self.industries) or self.employees_min is not None or self.employees_max is not None

    @property
    def has_size(self) -> bool:
        return self.employees_min is not None or self.employees_max is not None

    def size_matches(self, employees: float) -> bool:
        """True when ``employees`` lies in the configured range (NaN never matches)."""
        if math.isnan(employees):
            return False
        low = -math.inf if self.employees_min is None else self.employees_min
        high = math.inf if self.employees_max is None else self.employees_max
        return low <= employees <= high


@dataclass(frozen=True, slots=True)
class TechStackSpec:
    """Tech-stack match: ``attribute`` holds the subject's technologies (a list, or text separated by
    ``;``, ``,`` or ``|``); ``wanted`` the technologies that make a good fit (normalised, lower case)."""

    attribute: str
    wanted: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FeatureGroup:
    """Columns that belong to one story ("pricing-page visits", "company size"); reasons are computed
    per group by replacing all its columns with their training reference at once."""

    name: str
    numeric: tuple[int, ...]
    categorical: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Layout:
    numeric_names: tuple[str, ...]
    categorical_names: tuple[str, ...]
    groups: tuple[FeatureGroup, ...]


@dataclass(frozen=True, slots=True)
class FeatureSpec:
    """What to compute. Hashable and comparable; build it with :meth:`from_mapping` (validated, from the
    TOML ``[scoring]`` tables) or :meth:`default`, and store :meth:`to_mapping` in the model card."""

    windows: tuple[int, ...] = (7, 30, 90)
    event_types: tuple[str, ...] = INTENT_EVENT_TYPES
    recency_types: tuple[str, ...] = ("pricing_page", "form_submit", "content_download", "webinar", "meeting")
    recency_cap_days: int = 365
    half_life_days: float = 14.0
    weights: tuple[tuple[str, float], ...] = _DEFAULT_WEIGHTS
    velocity_days: tuple[int, int] = (7, 21)
    pricing_touch_days: int = 7
    pricing_url_markers: tuple[str, ...] = ("/pricing",)
    content_types: tuple[str, ...] = ("content_download", "webinar")
    numeric_attributes: tuple[tuple[str, str], ...] = (("employees", "log1p"), ("annual_revenue", "log1p"))
    categorical_attributes: tuple[str, ...] = ("industry", "country")
    title_attribute: str | None = "title"
    seniority_keywords: tuple[tuple[str, tuple[str, ...]], ...] = _DEFAULT_SENIORITY
    free_mail_attribute: str | None = "email_domain_free"
    icp: IcpSpec = IcpSpec()
    tenure: bool = True
    tech_stack: TechStackSpec | None = None
    # Timing (``[scoring.timing]``), off by default: a renewal-date attribute, and usage event types.
    renewal_attribute: str | None = None
    usage_types: tuple[str, ...] = ()
    usage_window_days: int = 30

    @classmethod
    def default(cls) -> FeatureSpec:
        return cls()

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FeatureSpec:
        """Validate a TOML-shaped mapping (``{"features": {...}, "fit": {...}, "timing": {...}}``); every problem raises
        :class:`FeatureSpecError` naming the key path. Missing keys take the defaults."""
        return _parse_spec(data)

    def to_mapping(self) -> dict[str, Any]:
        """The TOML/JSON-shaped form; ``FeatureSpec.from_mapping(spec.to_mapping()) == spec``."""
        fit: dict[str, Any] = {
            "numeric": dict(self.numeric_attributes),
            "categorical": list(self.categorical_attributes),
            "title_attribute": self.title_attribute or "",
            "seniority": {bucket: list(words) for bucket, words in self.seniority_keywords},
            "free_mail_attribute": self.free_mail_attribute or "",
            "tenure": self.tenure,
        }
        icp: dict[str, Any] = {"industries": sorted(self.icp.industries)}
        if self.icp.has_size:
            icp["employees"] = [
                self.icp.employees_min if self.icp.employees_min is not None else 0,
                self.icp.employees_max if self.icp.employees_max is not None else "inf",
            ]
        fit["icp"] = icp
        if self.tech_stack is not None:
            fit["tech_stack"] = {"attribute": self.tech_stack.attribute, "wanted": list(self.tech_stack.wanted)}
        out: dict[str, Any] = {
            "features": {
                "windows": list(self.windows),
                "event_types": list(self.event_types),
                "recency_types": list(self.recency_types),
                "recency_cap_days": self.recency_cap_days,
                "half_life_days": self.half_life_days,
                "weights": dict(self.weights),
                "velocity_days": list(self.velocity_days),
                "pricing_touch_days": self.pricing_touch_days,
                "pricing_url_markers": list(self.pricing_url_markers),
                "content_types": list(self.content_types),
            },
            "fit": fit,
        }
        # Only when configured, so that the cards of models without timing features read as before.
        if self.renewal_attribute or self.usage_types:
            out["timing"] = {
                "renewal_attribute": self.renewal_attribute or "",
                "usage_types": list(self.usage_types),
                "usage_window_days": self.usage_window_days,
            }
        return out

    # Layout is derived, cached per spec (the spec is hashable) so that serving pays for it once.
    @property
    def numeric_names(self) -> tuple[str, ...]:
        return _layout(self).numeric_names

    @property
    def categorical_names(self) -> tuple[str, ...]:
        return _layout(self).categorical_names

    @property
    def groups(self) -> tuple[FeatureGroup, ...]:
        return _layout(self).groups

    def weight(self, event_type: str) -> float:
        return dict(self.weights).get(event_type, 0.0)


def count_name(event_type: str, days: int) -> str:
    return f"{event_type}_count_{days}d"


def days_since_name(event_type: str) -> str:
    return f"days_since_{event_type}"


def numeric_attribute_name(attribute: str, transform: str) -> str:
    return attribute if transform == "identity" else f"{attribute}_{transform}"


@functools.lru_cache(maxsize=32)
def _layout(spec: FeatureSpec) -> _Layout:
    numeric: list[str] = []
    categorical: list[str] = []
    groups: list[FeatureGroup] = []

    def add(group: str, nums: Iterable[str] = (), cats: Iterable[str] = ()) -> None:
        n_idx = []
        for name in nums:
            n_idx.append(len(numeric))
            numeric.append(name)
        c_idx = []
        for name in cats:
            c_idx.append(len(categorical))
            categorical.append(name)
        groups.append(FeatureGroup(group, tuple(n_idx), tuple(c_idx)))

    for event_type in spec.event_types:
        cols = [count_name(event_type, w) for w in spec.windows]
        if event_type in spec.recency_types:
            cols.append(days_since_name(event_type))
        if event_type == "pricing_page":
            cols.append("pricing_touches")
        add(f"activity:{event_type}", cols)
    if "pricing_page" not in spec.event_types:
        add("activity:pricing_page", ["pricing_touches"])
    add("content_depth", ["content_depth"])
    add("engagement_velocity", ["engagement_velocity"])
    add("engagement_decayed", ["engagement_decayed"])
    for attribute, transform in spec.numeric_attributes:
        add(f"attribute:{attribute}", [numeric_attribute_name(attribute, transform)])
    if spec.free_mail_attribute:
        add("free_mail", ["email_domain_free"])
    if spec.icp.configured:
        add("icp", ["icp_score"])
    if spec.tech_stack is not None:
        add("tech_stack", ["tech_stack_match"])
    if spec.tenure:
        add("tenure", ["tenure_days"])
    if spec.renewal_attribute:
        add("renewal", ["days_to_renewal"])
    if spec.usage_types:
        add("usage", ["usage_recent", "usage_change"])
    for attribute in spec.categorical_attributes:
        add(f"attribute:{attribute}", cats=[attribute])
    if spec.title_attribute:
        add("title_seniority", cats=["title_seniority"])
    return _Layout(tuple(numeric), tuple(categorical), tuple(groups))


# --------------------------------------------------------------------------------------------------
# Validation of the TOML-shaped mapping


def _parse_spec(data: Mapping[str, Any]) -> FeatureSpec:
    if not isinstance(data, Mapping):
        raise FeatureSpecError("<root>", "must be a table")
    _no_unknown(data, {"features", "fit", "timing"}, "")
    feats = _table(data.get("features", {}), "features")
    fit = _table(data.get("fit", {}), "fit")
    timing = _table(data.get("timing", {}), "timing")
    base = FeatureSpec()
    _no_unknown(
        feats,
        {
            "windows",
            "event_types",
            "recency_types",
            "recency_cap_days",
            "half_life_days",
            "weights",
            "velocity_days",
            "pricing_touch_days",
            "pricing_url_markers",
            "content_types",
        },
        "features",
    )
    _no_unknown(
        fit,
        {"numeric", "categorical", "title_attribute", "seniority", "free_mail_attribute", "icp", "tenure",
         "tech_stack"},
        "fit",
    )
    _no_unknown(timing, {"renewal_attribute", "usage_types", "usage_window_days"}, "timing")

    windows = tuple(
        _positive_days(v, f"features.windows[{i}]")
        for i, v in enumerate(_list(feats.get("windows", base.windows), "features.windows"))
    )
    if not windows:
        raise FeatureSpecError("features.windows", "must list at least one window")
    for i in range(1, len(windows)):
        if windows[i] <= windows[i - 1]:
            raise FeatureSpecError(f"features.windows[{i}]", "windows must be strictly increasing")

    event_types = _event_types(feats.get("event_types", base.event_types), "features.event_types")
    if "conversion" in event_types:
        raise FeatureSpecError(
            f"features.event_types[{event_types.index('conversion')}]",
            "'conversion' is the training target; counting it would leak the outcome",
        )
    recency = _event_types(feats.get("recency_types", base.recency_types), "features.recency_types")
    for i, t in enumerate(recency):
        if t not in event_types:
            raise FeatureSpecError(f"features.recency_types[{i}]", f"'{t}' is not in features.event_types")
    content = _event_types(feats.get("content_types", base.content_types), "features.content_types")

    weights_in = _table(feats.get("weights", {}), "features.weights")
    weights = dict(base.weights)
    for name, value in weights_in.items():
        path = f"features.weights.{name}"
        if name not in EVENT_TYPES:
            raise FeatureSpecError(path, f"unknown event type; expected one of {', '.join(EVENT_TYPES)}")
        weights[name] = _number(value, path, minimum=0.0)

    velocity = _list(feats.get("velocity_days", list(base.velocity_days)), "features.velocity_days")
    if len(velocity) != 2:
        raise FeatureSpecError("features.velocity_days", "must be [recent_days, prior_days]")
    velocity_days = (
        _positive_days(velocity[0], "features.velocity_days[0]"),
        _positive_days(velocity[1], "features.velocity_days[1]"),
    )

    markers = tuple(
        _text(v, f"features.pricing_url_markers[{i}]").lower()
        for i, v in enumerate(
            _list(feats.get("pricing_url_markers", base.pricing_url_markers), "features.pricing_url_markers")
        )
    )

    numeric_in = _table(fit.get("numeric", dict(base.numeric_attributes)), "fit.numeric")
    numeric_attrs = []
    for name, transform in numeric_in.items():
        path = f"fit.numeric.{name}"
        _allowed_attribute(name, path)
        if transform not in ("log1p", "identity"):
            raise FeatureSpecError(path, "transform must be 'log1p' or 'identity'")
        numeric_attrs.append((name, transform))
    categorical = tuple(
        _text(v, f"fit.categorical[{i}]")
        for i, v in enumerate(_list(fit.get("categorical", base.categorical_attributes), "fit.categorical"))
    )
    for i, name in enumerate(categorical):
        _allowed_attribute(name, f"fit.categorical[{i}]")
    if len(set(categorical)) != len(categorical):
        raise FeatureSpecError("fit.categorical", "lists an attribute twice")

    title = fit.get("title_attribute", base.title_attribute)
    # An empty string switches the feature off (TOML has no null).
    title_attr = None if title is None else (_text(title, "fit.title_attribute", allow_empty=True) or None)
    seniority_in = fit.get("seniority")
    seniority = base.seniority_keywords
    if seniority_in is not None:
        table = _table(seniority_in, "fit.seniority")
        seniority = tuple(
            (
                bucket,
                tuple(
                    _text(w, f"fit.seniority.{bucket}[{i}]").lower()
                    for i, w in enumerate(_list(words, f"fit.seniority.{bucket}"))
                ),
            )
            for bucket, words in table.items()
        )
    free = fit.get("free_mail_attribute", base.free_mail_attribute)
    free_attr = None if free is None else (_text(free, "fit.free_mail_attribute", allow_empty=True) or None)
    tenure = fit.get("tenure", base.tenure)
    if not isinstance(tenure, bool):
        raise FeatureSpecError("fit.tenure", "must be true or false")

    icp_in = _table(fit.get("icp", {}), "fit.icp")
    _no_unknown(icp_in, {"industries", "employees"}, "fit.icp")
    industries = frozenset(
        _text(v, f"fit.icp.industries[{i}]").strip().casefold()
        for i, v in enumerate(_list(icp_in.get("industries", []), "fit.icp.industries"))
    )
    emp_min = emp_max = None
    if "employees" in icp_in:
        rng = _list(icp_in["employees"], "fit.icp.employees")
        if len(rng) != 2:
            raise FeatureSpecError("fit.icp.employees", "must be [min, max]")
        emp_min = _number(rng[0], "fit.icp.employees[0]", minimum=0.0)
        emp_max = math.inf if rng[1] == "inf" else _number(rng[1], "fit.icp.employees[1]", minimum=0.0)
        if emp_max < emp_min:
            raise FeatureSpecError("fit.icp.employees[1]", "must not be below the minimum")

    renewal = timing.get("renewal_attribute", "")
    # An empty string switches the feature off, as for title_attribute.
    renewal_attr = _text(renewal, "timing.renewal_attribute", allow_empty=True).strip() or None
    if renewal_attr is not None:
        _allowed_attribute(renewal_attr, "timing.renewal_attribute")
    usage_types = _event_types(timing.get("usage_types", []), "timing.usage_types")
    if "conversion" in usage_types:
        raise FeatureSpecError(
            f"timing.usage_types[{usage_types.index('conversion')}]",
            "'conversion' is the training target; counting it would leak the outcome",
        )

    return FeatureSpec(
        windows=windows,
        event_types=event_types,
        recency_types=recency,
        recency_cap_days=_positive_days(
            feats.get("recency_cap_days", base.recency_cap_days), "features.recency_cap_days"
        ),
        half_life_days=_number(
            feats.get("half_life_days", base.half_life_days),
            "features.half_life_days",
            minimum=0.0,
            strict=True,
        ),
        weights=tuple((t, weights.get(t, 0.0)) for t in EVENT_TYPES if t in weights),
        velocity_days=velocity_days,
        pricing_touch_days=_positive_days(
            feats.get("pricing_touch_days", base.pricing_touch_days), "features.pricing_touch_days"
        ),
        pricing_url_markers=markers,
        content_types=content,
        numeric_attributes=tuple(numeric_attrs),
        categorical_attributes=categorical,
        title_attribute=title_attr,
        seniority_keywords=seniority,
        free_mail_attribute=free_attr,
        icp=IcpSpec(industries, emp_min, None if emp_max == math.inf else emp_max),
        tenure=tenure,
        tech_stack=_tech_stack(fit.get("tech_stack"), "fit.tech_stack"),
        renewal_attribute=renewal_attr,
        usage_types=usage_types,
        usage_window_days=_positive_days(
            timing.get("usage_window_days", base.usage_window_days), "timing.usage_window_days"
        ),
    )


def _tech_stack(value: Any, path: str) -> TechStackSpec | None:
    if value is None:
        return None
    table = _table(value, path)
    _no_unknown(table, {"attribute", "wanted"}, path)
    if "attribute" not in table:
        raise FeatureSpecError(f"{path}.attribute", "is required: the attribute that lists the technologies")
    attribute = _text(table["attribute"], f"{path}.attribute")
    _allowed_attribute(attribute, f"{path}.attribute")
    wanted: list[str] = []
    for i, item in enumerate(_list(table.get("wanted", []), f"{path}.wanted")):
        tech = _text(item, f"{path}.wanted[{i}]").strip().casefold()
        if tech in wanted:
            raise FeatureSpecError(f"{path}.wanted[{i}]", f"{tech!r} is listed twice")
        wanted.append(tech)
    if not wanted:
        raise FeatureSpecError(f"{path}.wanted", "must list at least one technology")
    return TechStackSpec(attribute, tuple(wanted))


def _no_unknown(table: Mapping[str, Any], known: set[str], path: str) -> None:
    for key in table:
        if key not in known:
            where = f"{path}.{key}" if path else str(key)
            raise FeatureSpecError(where, f"unknown key; expected one of {', '.join(sorted(known))}")


def _table(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise FeatureSpecError(path, "must be a table")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
        raise FeatureSpecError(path, "must be a list")
    return list(value)


def _text(value: Any, path: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise FeatureSpecError(path, "must be a non-empty string")
    return value


def _number(value: Any, path: str, *, minimum: float, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise FeatureSpecError(path, "must be a number")
    if value < minimum or (strict and value == minimum):
        raise FeatureSpecError(path, f"must be {'greater than' if strict else 'at least'} {minimum:g}")
    return float(value)


def _positive_days(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise FeatureSpecError(path, "must be a positive number of days")
    return value


def _event_types(value: Any, path: str) -> tuple[str, ...]:
    items = _list(value, path)
    out: list[str] = []
    for i, item in enumerate(items):
        if item not in EVENT_TYPES:
            raise FeatureSpecError(f"{path}[{i}]", f"unknown event type {item!r}")
        if item in out:
            raise FeatureSpecError(f"{path}[{i}]", f"{item!r} is listed twice")
        out.append(str(item))
    return tuple(out)


def _allowed_attribute(name: str, path: str) -> None:
    if name.strip().casefold() in _OUTCOME_ATTRIBUTES:
        raise FeatureSpecError(path, f"'{name}' is only known after the outcome and would leak it")


# --------------------------------------------------------------------------------------------------
# The frame


@dataclass(frozen=True, slots=True, eq=False)
class FeatureFrame:
    """Model inputs for N subjects. ``numeric`` is float32 [N, n_num] in column-major order, so that
    every column handed to onnxruntime is contiguous; ``categorical`` is object [N, n_cat] of strings
    with :data:`MISSING` for absent values."""

    keys: tuple[str, ...]
    numeric: np.ndarray
    categorical: np.ndarray
    numeric_names: tuple[str, ...]
    categorical_names: tuple[str, ...]
    #: Per event type: decayed engagement, recent and prior velocity counts ([N, 3 * n_types], float32).
    #: Not a model input; reasons use it to take one activity type out of the totals.
    activity: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.keys)

    @property
    def names(self) -> tuple[str, ...]:
        return self.numeric_names + self.categorical_names

    def onnx_feed(self, inputs: Mapping[str, str]) -> dict[str, np.ndarray]:
        """``{onnx_input_name: [N, 1] column}`` for ``inputs`` mapping feature name -> ONNX input name
        (names come from ``session.get_inputs()``: skl2onnx sanitises them)."""
        feed: dict[str, np.ndarray] = {}
        for j, name in enumerate(self.numeric_names):
            feed[inputs[name]] = self.numeric[:, j : j + 1]
        for j, name in enumerate(self.categorical_names):
            feed[inputs[name]] = self.categorical[:, j : j + 1]
        return feed

    def to_matrix(self) -> np.ndarray:
        """One object matrix [N, n_num + n_cat] (numbers first) as the scikit-learn pipelines take it."""
        out = np.empty((len(self), len(self.numeric_names) + len(self.categorical_names)), dtype=object)
        out[:, : len(self.numeric_names)] = self.numeric
        out[:, len(self.numeric_names) :] = self.categorical
        return out

    def take(self, rows: np.ndarray | Sequence[int]) -> FeatureFrame:
        idx = np.asarray(rows, dtype=np.intp)
        return FeatureFrame(
            keys=tuple(self.keys[i] for i in idx.tolist()),
            numeric=np.asfortranarray(self.numeric[idx]),
            categorical=self.categorical[idx],
            numeric_names=self.numeric_names,
            categorical_names=self.categorical_names,
            activity=None if self.activity is None else self.activity[idx],
        )

    @staticmethod
    def concat(frames: Sequence[FeatureFrame]) -> FeatureFrame:
        if not frames:
            raise ValueError("concat needs at least one frame")
        first = frames[0]
        for f in frames[1:]:
            if f.numeric_names != first.numeric_names or f.categorical_names != first.categorical_names:
                raise ValueError("frames have different columns")
        return FeatureFrame(
            keys=tuple(chain.from_iterable(f.keys for f in frames)),
            numeric=np.asfortranarray(np.concatenate([f.numeric for f in frames], axis=0)),
            categorical=np.concatenate([f.categorical for f in frames], axis=0),
            numeric_names=first.numeric_names,
            categorical_names=first.categorical_names,
            activity=_concat_optional([f.activity for f in frames]),
        )


def _concat_optional(parts: Sequence[np.ndarray | None]) -> np.ndarray | None:
    present = [p for p in parts if p is not None]
    return np.concatenate(present, axis=0) if len(present) == len(parts) else None


# --------------------------------------------------------------------------------------------------
# Computation


def to_seconds(moment: datetime) -> float:
    """Seconds since the epoch for an aware datetime; naive datetimes are refused, not guessed."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()}: scoring needs timezone-aware times")
    return (moment - _EPOCH).total_seconds()


def seniority_bucket(
    title: Scalar, keywords: Sequence[tuple[str, Sequence[str]]] = _DEFAULT_SENIORITY
) -> str:
    """Bucket a job title by its first matching keyword (whole words, case-insensitive)."""
    if title is None or isinstance(title, bool) or not str(title).strip():
        return MISSING
    padded = " " + _NON_WORD.sub(" ", str(title).casefold()).strip() + " "
    for bucket, words in keywords:
        for word in words:
            if f" {word} " in padded:
                return bucket
    return _SENIORITY_FALLBACK


def compute_features(
    spec: FeatureSpec, subjects: Sequence[Subject], as_of: datetime | Sequence[datetime]
) -> FeatureFrame:
    """Features of each subject from its attributes and its events strictly before ``as_of`` (one time
    for all, or one per subject). Used unchanged for training rows and for serving."""
    n = len(subjects)
    layout = _layout(spec)
    if isinstance(as_of, datetime):
        as_of_s = np.full(n, to_seconds(as_of), dtype=np.float64)
    else:
        if len(as_of) != n:
            raise ValueError(f"as_of has {len(as_of)} times for {n} subjects")
        as_of_s = np.fromiter((to_seconds(t) for t in as_of), dtype=np.float64, count=n)
    numeric = np.zeros((n, len(layout.numeric_names)), dtype=np.float32, order="F")
    col = {name: j for j, name in enumerate(layout.numeric_names)}

    activity = np.zeros((n, 3 * len(spec.event_types)), dtype=np.float32)
    _intent(spec, subjects, as_of_s, numeric, activity, col)
    _fit_numeric(spec, subjects, as_of_s, numeric, col)
    if spec.renewal_attribute:
        numeric[:, col["days_to_renewal"]] = _days_to(spec.renewal_attribute, subjects, as_of_s)
    if spec.usage_types:
        _usage(spec, subjects, as_of_s, numeric, col)
    categorical = _fit_categorical(spec, subjects, layout.categorical_names)
    return FeatureFrame(
        keys=tuple(s.key for s in subjects),
        numeric=numeric,
        categorical=categorical,
        numeric_names=layout.numeric_names,
        categorical_names=layout.categorical_names,
        activity=activity,
    )


def _intent(
    spec: FeatureSpec,
    subjects: Sequence[Subject],
    as_of_s: np.ndarray,
    out: np.ndarray,
    activity: np.ndarray,
    col: Mapping[str, int],
) -> None:
    n = len(subjects)
    n_types = len(spec.event_types)
    code_of = {t: i for i, t in enumerate(spec.event_types)}
    lookup = _Codes(code_of)
    # Events of every subject are flattened once; from there on everything is array arithmetic. The
    # Python-level work per event is two attribute reads, one dict lookup and one timestamp(), each
    # driven from C by map() or a list display (about 0.3 µs per event in all).
    per_subject = [s.events for s in subjects]
    lengths = np.fromiter(map(len, per_subject), dtype=np.intp, count=n)
    flat = list(chain.from_iterable(per_subject))
    codes = np.fromiter(map(lookup.__getitem__, [e.type for e in flat]), dtype=np.int16, count=len(flat))
    # Event.__post_init__ guarantees aware times, so timestamp() is exact UTC seconds.
    at_s = np.fromiter(map(datetime.timestamp, [e.at for e in flat]), dtype=np.float64, count=len(flat))
    owner = np.repeat(np.arange(n, dtype=np.intp), lengths)
    cut = as_of_s[owner]
    age = (cut - at_s) / _DAY
    # Strictly before as_of and of a type the spec counts; everything else is invisible.
    keep = np.flatnonzero((at_s < cut) & (codes >= 0))
    owner, codes, age = owner[keep], codes[keep], age[keep]

    slot = owner * n_types + codes
    size = n * n_types
    for w in spec.windows:
        counts = np.bincount(slot[age <= w], minlength=size).reshape(n, n_types)
        for t, i in code_of.items():
            out[:, col[count_name(t, w)]] = counts[:, i]

    cap = float(spec.recency_cap_days)
    for t in spec.recency_types:
        m = codes == code_of[t]
        last = np.full(n, cap)
        np.minimum.at(last, owner[m], np.minimum(age[m], cap))
        out[:, col[days_since_name(t)]] = last

    # Pricing touches: pricing-page events plus page views whose URL names the pricing page (some
    # sources only record the latter).
    touch = np.zeros(n, dtype=np.float64)
    recent = age <= spec.pricing_touch_days
    if "pricing_page" in code_of:
        touch += np.bincount(owner[recent & (codes == code_of["pricing_page"])], minlength=n)
    if "page_view" in code_of and spec.pricing_url_markers:
        pv = np.flatnonzero(recent & (codes == code_of["page_view"]))
        hits = [i for i in pv.tolist() if _is_pricing_url(flat[keep[i]].attributes, spec.pricing_url_markers)]
        touch += np.bincount(owner[hits], minlength=n)
    out[:, col["pricing_touches"]] = touch

    # Content depth: distinct pieces (by id, else each event) of content within the longest window.
    content_codes = [code_of[t] for t in spec.content_types if t in code_of]
    depth: np.ndarray = np.zeros(n, dtype=np.float64)
    if content_codes:
        cm = np.flatnonzero(np.isin(codes, content_codes) & (age <= spec.windows[-1]))
        seen: set[tuple[int, tuple[str, Scalar]]] = set()
        for i in cm.tolist():
            ev = flat[keep[i]]
            ident = _content_id(ev.attributes)
            seen.add((int(owner[i]), (ev.type, ident) if ident is not None else ("#", int(keep[i]))))
        if seen:
            depth = np.bincount(
                np.fromiter((s for s, _ in seen), dtype=np.intp, count=len(seen)), minlength=n
            )
    out[:, col["content_depth"]] = depth

    # Velocity and decayed engagement are kept per event type too (``FeatureFrame.activity``) so that a
    # reason can ask "what if this lead had none of these events" and take the type out of the totals.
    recent_days, prior_days = spec.velocity_days
    weights = np.array([spec.weight(t) for t in spec.event_types], dtype=np.float64)
    parts = np.empty((n, 3 * n_types), dtype=np.float64)
    parts[:, :n_types] = np.bincount(
        slot, weights=weights[codes] * np.exp2(-age / spec.half_life_days), minlength=size
    ).reshape(n, n_types)
    parts[:, n_types : 2 * n_types] = np.bincount(slot[age <= recent_days], minlength=size).reshape(
        n, n_types
    )
    prior = (age > recent_days) & (age <= recent_days + prior_days)
    parts[:, 2 * n_types :] = np.bincount(slot[prior], minlength=size).reshape(n, n_types)
    activity[:] = parts
    engagement, n_recent, n_prior = _totals(spec, parts)
    out[:, col["engagement_velocity"]] = _velocity(spec, n_recent, n_prior)
    out[:, col["engagement_decayed"]] = engagement


def _totals(spec: FeatureSpec, parts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    t = len(spec.event_types)
    return parts[:, :t].sum(axis=1), parts[:, t : 2 * t].sum(axis=1), parts[:, 2 * t :].sum(axis=1)


def _velocity(spec: FeatureSpec, n_recent: np.ndarray, n_prior: np.ndarray) -> np.ndarray:
    # Log ratio of the recent weekly rate to the prior one, +1 smoothed so that quiet leads sit at 0.
    recent_days, prior_days = spec.velocity_days
    velocity: np.ndarray = np.log1p(n_recent) - np.log1p(n_prior * (recent_days / prior_days))
    return velocity


def remove_activity(spec: FeatureSpec, numeric: np.ndarray, activity: np.ndarray, event_type: str) -> None:
    """In place, make rows look as if they had no events of ``event_type``: its counts 0, its recency
    at the cap, and its share taken out of decayed engagement and velocity. This is the counterfactual
    behind activity reasons; replacing only the type's own columns would leave its signal in the totals
    and let a correlated total claim the credit."""
    layout = _layout(spec)
    col = {name: j for j, name in enumerate(layout.numeric_names)}
    t = spec.event_types.index(event_type)
    n_types = len(spec.event_types)
    for w in spec.windows:
        numeric[:, col[count_name(event_type, w)]] = 0.0
    if event_type in spec.recency_types:
        numeric[:, col[days_since_name(event_type)]] = spec.recency_cap_days
    if event_type == "pricing_page":
        numeric[:, col["pricing_touches"]] = 0.0
    parts = activity.astype(np.float64)
    parts[:, [t, n_types + t, 2 * n_types + t]] = 0.0
    engagement, n_recent, n_prior = _totals(spec, parts)
    numeric[:, col["engagement_velocity"]] = _velocity(spec, n_recent, n_prior)
    numeric[:, col["engagement_decayed"]] = engagement


class _Codes(dict[str, int]):
    """Event type -> column index; unknown types map to -1 (ignored) without a Python-level branch."""

    def __missing__(self, key: str) -> int:
        return -1


def _is_pricing_url(attributes: Mapping[str, Scalar], markers: Sequence[str]) -> bool:
    for name in URL_ATTRIBUTES:
        value = attributes.get(name)
        if isinstance(value, str):
            low = value.casefold()
            if any(m in low for m in markers):
                return True
    return False


def _content_id(attributes: Mapping[str, Scalar]) -> Scalar:
    if not attributes:
        return None
    for name in CONTENT_ID_ATTRIBUTES:
        value = attributes.get(name)
        if value is not None and value != "":
            return value
    return None


def _as_float(value: Scalar) -> float:
    if value is None or isinstance(value, bool):
        return math.nan
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str):  # a list or a table from a JSON attribute: not a number
        return math.nan
    try:
        return float(value.replace(",", "").strip())
    except ValueError:
        return math.nan


def _floats(values: list[Scalar]) -> np.ndarray:
    """Attribute values as float64 with NaN for missing or unreadable ones."""
    # Fast path: numbers and None only (numpy maps None to NaN). Booleans and text take the careful path
    # because numpy would read True as 1.0 and parse some strings differently.
    if all(type(v) is int or type(v) is float or v is None for v in values):
        return np.array(values, dtype=np.float64)
    return np.fromiter(map(_as_float, values), dtype=np.float64, count=len(values))


def _as_flag(value: Scalar) -> float:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)) and value in (0, 1):
        return float(value)
    if isinstance(value, str):
        low = value.strip().casefold()
        if low in ("true", "yes", "1"):
            return 1.0
        if low in ("false", "no", "0"):
            return 0.0
    return math.nan


def _fit_numeric(
    spec: FeatureSpec,
    subjects: Sequence[Subject],
    as_of_s: np.ndarray,
    out: np.ndarray,
    col: Mapping[str, int],
) -> None:
    n = len(subjects)
    attrs = [s.attributes for s in subjects]
    raw_of: dict[str, np.ndarray] = {}
    for attribute, transform in spec.numeric_attributes:
        raw = raw_of[attribute] = _floats([a.get(attribute) for a in attrs])
        if transform == "log1p":
            # Negative sizes are data errors; treat them as unknown rather than as tiny companies.
            with np.errstate(invalid="ignore"):
                raw = np.where(raw >= 0, np.log1p(np.where(raw >= 0, raw, 0.0)), np.nan)
        out[:, col[numeric_attribute_name(attribute, transform)]] = raw
    if spec.free_mail_attribute:
        name = spec.free_mail_attribute
        out[:, col["email_domain_free"]] = np.fromiter(
            (_as_flag(a.get(name)) for a in attrs), dtype=np.float64, count=n
        )
    if spec.icp.configured:
        icp = spec.icp
        criteria = int(bool(icp.industries)) + int(icp.has_size)
        score = np.zeros(n, dtype=np.float64)
        if icp.industries:
            industries = map(_norm_category, [a.get("industry") for a in attrs])
            score += np.fromiter(map(icp.industries.__contains__, industries), dtype=np.float64, count=n)
        if icp.has_size:
            employees = (
                raw_of["employees"] if "employees" in raw_of else _floats([a.get("employees") for a in attrs])
            )
            low = -np.inf if icp.employees_min is None else icp.employees_min
            high = np.inf if icp.employees_max is None else icp.employees_max
            score += (employees >= low) & (employees <= high)  # NaN compares False: no match
        out[:, col["icp_score"]] = score / criteria
    if spec.tenure:
        created = np.fromiter(
            (math.nan if s.created_at is None else to_seconds(s.created_at) for s in subjects),
            dtype=np.float64,
            count=n,
        )
        out[:, col["tenure_days"]] = np.maximum((as_of_s - created) / _DAY, 0.0)
    if spec.tech_stack is not None:
        tech = spec.tech_stack
        wanted = frozenset(tech.wanted)
        out[:, col["tech_stack_match"]] = np.fromiter(
            (_share(a.get(tech.attribute), wanted) for a in attrs), dtype=np.float64, count=n
        )


def _technologies(value: object) -> frozenset[str] | None:
    """The technologies in an attribute value (a list, or text separated by ``;``, ``,`` or ``|``),
    normalised; ``None`` when the value is missing."""
    if isinstance(value, str):
        if not value.strip():
            return None
        items: Iterable[object] = _LIST_SEPARATORS.split(value)
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = value
    else:
        return None
    return frozenset(t for t in (str(i).strip().casefold() for i in items if i is not None) if t)


def _share(value: object, wanted: frozenset[str]) -> float:
    present = _technologies(value)
    return math.nan if present is None else len(present & wanted) / len(wanted)


def _moment(value: object) -> float:
    """Seconds since the epoch of a date attribute: a datetime, a date, or ISO text (a date alone is
    midnight UTC; a time without offset is read as UTC). NaN when missing or unreadable."""
    if isinstance(value, datetime):
        return to_seconds(value if value.tzinfo is not None else value.replace(tzinfo=UTC))
    if isinstance(value, date):
        return to_seconds(datetime(value.year, value.month, value.day, tzinfo=UTC))
    if isinstance(value, str):
        return _iso_seconds(value.strip())
    return math.nan


@functools.lru_cache(maxsize=65_536)
def _iso_seconds(text: str) -> float:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return math.nan
    return to_seconds(moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC))


def _days_to(attribute: str, subjects: Sequence[Subject], as_of_s: np.ndarray) -> np.ndarray:
    """Days from ``as_of`` to each subject's date ``attribute`` (negative: already past), clipped to
    :data:`RENEWAL_CLIP_DAYS`; NaN (kept by the clip) when missing or unreadable."""
    at = np.fromiter((_moment(s.attributes.get(attribute)) for s in subjects), dtype=np.float64,
                     count=len(subjects))
    low, high = RENEWAL_CLIP_DAYS
    days: np.ndarray = np.clip((at - as_of_s) / _DAY, low, high)
    return days


def _usage(
    spec: FeatureSpec,
    subjects: Sequence[Subject],
    as_of_s: np.ndarray,
    out: np.ndarray,
    col: Mapping[str, int],
) -> None:
    """Usage events in the last window before ``as_of`` and the change against the window before it
    (negative: usage decaying); like every event feature, only events strictly before ``as_of`` count."""
    n = len(subjects)
    per_subject = [s.events for s in subjects]
    lengths = np.fromiter(map(len, per_subject), dtype=np.intp, count=n)
    flat = list(chain.from_iterable(per_subject))
    # As in _intent: the per-event work is driven from C by map(); timestamps only for usage events.
    is_usage = np.fromiter(
        map(frozenset(spec.usage_types).__contains__, [e.type for e in flat]), dtype=bool, count=len(flat)
    )
    picked = np.flatnonzero(is_usage)
    owner = np.repeat(np.arange(n, dtype=np.intp), lengths)[picked]
    at_s = np.fromiter(
        map(datetime.timestamp, [flat[i].at for i in picked.tolist()]), dtype=np.float64, count=len(picked)
    )
    cut = as_of_s[owner]
    age = (cut - at_s) / _DAY
    w = spec.usage_window_days
    seen = at_s < cut
    recent = np.bincount(owner[seen & (age <= w)], minlength=n)
    prior = np.bincount(owner[seen & (age > w) & (age <= 2 * w)], minlength=n)
    out[:, col["usage_recent"]] = recent
    out[:, col["usage_change"]] = recent - prior


@functools.lru_cache(maxsize=65_536, typed=True)
def _norm_category(value: Scalar) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    text = str(value).strip().casefold()
    return text or MISSING


def _fit_categorical(spec: FeatureSpec, subjects: Sequence[Subject], names: Sequence[str]) -> np.ndarray:
    n = len(subjects)
    out = np.empty((n, len(names)), dtype=object)
    attrs = [s.attributes for s in subjects]
    j = 0
    for attribute in spec.categorical_attributes:
        out[:, j] = [_norm_category(a.get(attribute)) for a in attrs]
        j += 1
    if spec.title_attribute:
        title = spec.title_attribute
        cache: dict[Scalar, str] = {}
        values = []
        for a in attrs:
            t = a.get(title)
            bucket = cache.get(t)
            if bucket is None:
                bucket = cache[t] = seniority_bucket(t, spec.seniority_keywords)
            values.append(bucket)
        out[:, j] = values
    return out
