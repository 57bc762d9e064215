"""Reasons in words: turn a feature group and one row's values into a sentence a sales rep can read.

``scoring.model`` decides *which* groups moved a score (by occlusion through the ONNX model); this
module only says *what* those groups were for the row ("4 pricing-page visits in the last 7 days").
Texts state facts about the lead; whether they count for or against is given by the list they are in.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from scoring.features import (
    MISSING,
    RENEWAL_CLIP_DAYS,
    FeatureGroup,
    FeatureSpec,
    count_name,
    days_since_name,
    numeric_attribute_name,
)

__all__ = ["describer"]

_NOUNS = {
    "page_view": ("page view", "page views"),
    "pricing_page": ("pricing-page visit", "pricing-page visits"),
    "email_open": ("email open", "email opens"),
    "email_click": ("email click", "email clicks"),
    "form_submit": ("form submission", "form submissions"),
    "content_download": ("content download", "content downloads"),
    "webinar": ("webinar attended", "webinars attended"),
    "meeting": ("meeting", "meetings"),
    "sales_touch": ("sales touch", "sales touches"),
}
_SENIORITY = {
    "c_level": "C-level",
    "vp": "VP",
    "director": "Director",
    "manager": "Manager",
    "junior": "Junior",
    "individual": "Individual contributor",
}

#: (numeric matrix [R, n_num], categorical matrix [R, n_cat]) -> one text per row.
Describer = Callable[[np.ndarray, np.ndarray], list[str]]


def _n(value: float) -> int:
    return round(float(value))


def _plural(event_type: str, count: int) -> str:
    one, many = _NOUNS.get(event_type, (event_type.replace("_", " "), event_type.replace("_", " ") + "s"))
    return one if count == 1 else many


def _money(value: float) -> str:
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if value >= limit:
            return f"{value / limit:.1f}{suffix}"
    return f"{value:.0f}"


def _range(low: float | None, high: float | None) -> str:
    lo = f"{low:,.0f}" if low is not None else "0"
    return f"{lo}–{high:,.0f}" if high is not None else f"{lo} or more"


def describer(spec: FeatureSpec, group: FeatureGroup, names: tuple[str, ...]) -> Describer:
    """A function wording ``group`` for a batch of rows; built once per model and group."""
    col = {name: j for j, name in enumerate(names)}
    kind, _, subject = group.name.partition(":")

    if kind == "activity":
        return _activity(spec, subject, col)
    if kind == "content_depth":
        j = col["content_depth"]
        days = spec.windows[-1]

        def depth(num: np.ndarray, _cat: np.ndarray) -> list[str]:
            return [
                f"{_n(v)} distinct content piece{'s' if _n(v) != 1 else ''} in the last {days} days"
                if v > 0
                else f"No content downloads or webinars in the last {days} days"
                for v in num[:, j].tolist()
            ]

        return depth
    if kind == "engagement_velocity":
        j = col["engagement_velocity"]
        recent, prior = spec.velocity_days

        def velocity(num: np.ndarray, _cat: np.ndarray) -> list[str]:
            return [
                f"Activity is rising: the last {recent} days are busier than the {prior} before"
                if v > 0
                else f"Activity is slowing: the last {recent} days are quieter than the {prior} before"
                if v < 0
                else f"Activity level unchanged over the last {recent + prior} days"
                for v in num[:, j].tolist()
            ]

        return velocity
    if kind == "engagement_decayed":
        j = col["engagement_decayed"]
        half = spec.half_life_days

        def decayed(num: np.ndarray, _cat: np.ndarray) -> list[str]:
            return [
                f"Engagement score {v:.1f} (recent activity, half-life {half:g} days)"
                for v in num[:, j].tolist()
            ]

        return decayed
    if kind == "attribute" and subject in spec.categorical_attributes:
        return _categorical(spec, subject, group.categorical[0])
    if kind == "attribute":
        return _numeric_attribute(spec, subject, group.numeric[0])
    if kind == "free_mail":
        j = col["email_domain_free"]

        def free(num: np.ndarray, _cat: np.ndarray) -> list[str]:
            return [
                "E-mail domain type unknown"
                if math.isnan(v)
                else "Uses a free e-mail address"
                if v > 0.5
                else "Uses a company e-mail address"
                for v in num[:, j].tolist()
            ]

        return free
    if kind == "icp":
        return _icp(spec, col, names)
    if kind == "tenure":
        j = col["tenure_days"]

        def tenure(num: np.ndarray, _cat: np.ndarray) -> list[str]:
            return [
                "Creation date unknown" if math.isnan(v) else f"Lead created {_n(v)} days ago"
                for v in num[:, j].tolist()
            ]

        return tenure
    if kind == "tech_stack" and spec.tech_stack is not None:
        return _tech_stack(len(spec.tech_stack.wanted), col["tech_stack_match"])
    if kind == "renewal":
        return _renewal(col["days_to_renewal"])
    if kind == "usage":
        return _usage(spec, col["usage_recent"], col["usage_change"])
    if kind == "title_seniority":
        k = group.categorical[0]

        def seniority(_num: np.ndarray, cat: np.ndarray) -> list[str]:
            return [
                "Job title unknown" if v == MISSING else f"Title seniority: {_SENIORITY.get(v, v)}"
                for v in cat[:, k].tolist()
            ]

        return seniority
    label = group.name.replace("_", " ")
    return lambda num, _cat: [label] * len(num)


def _activity(spec: FeatureSpec, event_type: str, col: dict[str, int]) -> Describer:
    windows = [(w, col[count_name(event_type, w)]) for w in spec.windows if count_name(event_type, w) in col]
    since = col.get(days_since_name(event_type))
    cap = spec.recency_cap_days
    touches = col.get("pricing_touches") if event_type == "pricing_page" else None

    cols = [j for _, j in windows] + [
        touches if touches is not None else 0,
        since if since is not None else 0,
    ]
    n_w = len(windows)
    horizon = windows[-1][0] if windows else spec.pricing_touch_days
    none_text = f"No {_plural(event_type, 2)} in the last {horizon} days"

    cache: dict[tuple[float, ...], str] = {}

    def word(row: tuple[float, ...]) -> str:
        for (w, _), value in zip(windows, row[:n_w], strict=True):
            c = _n(value)
            if c > 0:
                return f"{c} {_plural(event_type, c)} in the last {w} days"
        if touches is not None and row[n_w] > 0:
            c = _n(row[n_w])
            noun = "touch" if c == 1 else "touches"
            return f"{c} pricing-page {noun} in the last {spec.pricing_touch_days} days"
        if since is not None and row[n_w + 1] < cap:
            return f"Last {_plural(event_type, 1)} {_n(row[n_w + 1])} days ago"
        return none_text

    def describe(num: np.ndarray, _cat: np.ndarray) -> list[str]:
        # Rows repeat the same few count patterns: word each pattern once. Days-since is rounded first
        # so that it does not make every row unique.
        sub = num[:, cols].astype(np.float64)
        sub[:, n_w + 1] = np.round(sub[:, n_w + 1])
        out = []
        for row in map(tuple, sub.tolist()):
            text = cache.get(row)
            if text is None:
                if len(cache) > 100_000:
                    cache.clear()
                text = cache[row] = word(row)
            out.append(text)
        return out

    return describe


def _numeric_attribute(spec: FeatureSpec, attribute: str, j: int) -> Describer:
    transform = dict(spec.numeric_attributes)[attribute]
    label = attribute.replace("_", " ").capitalize()

    def raw(v: float) -> float:
        return math.expm1(v) if transform == "log1p" else v

    if attribute == "employees":
        return lambda num, _cat: [
            "Company size unknown" if math.isnan(v) else f"Company size {_n(raw(v)):,} employees"
            for v in num[:, j].tolist()
        ]
    if attribute == "annual_revenue":
        return lambda num, _cat: [
            "Annual revenue unknown" if math.isnan(v) else f"Annual revenue {_money(raw(v))}"
            for v in num[:, j].tolist()
        ]
    return lambda num, _cat: [
        f"{label} unknown" if math.isnan(v) else f"{label} {raw(v):,.4g}" for v in num[:, j].tolist()
    ]


def _icp(spec: FeatureSpec, col: dict[str, int], names: tuple[str, ...]) -> Describer:
    icp = spec.icp
    j = col["icp_score"]
    transforms = dict(spec.numeric_attributes)
    emp = (
        col.get(numeric_attribute_name("employees", transforms["employees"]))
        if "employees" in transforms
        else None
    )
    log_emp = transforms.get("employees") == "log1p"
    ind = spec.categorical_attributes.index("industry") if "industry" in spec.categorical_attributes else None
    size_range = _range(icp.employees_min, icp.employees_max)

    def describe(num: np.ndarray, cat: np.ndarray) -> list[str]:
        out = []
        scores = num[:, j].tolist()
        sizes = num[:, emp].tolist() if emp is not None else [math.nan] * len(num)
        inds = cat[:, ind].tolist() if ind is not None else [MISSING] * len(num)
        for score, size, industry in zip(scores, sizes, inds, strict=True):
            employees = math.expm1(size) if log_emp and not math.isnan(size) else size
            if score >= 1.0:
                out.append("Matches the ideal customer profile")
                continue
            misses = []
            if icp.has_size and not icp.size_matches(employees):
                misses.append(
                    "company size unknown"
                    if math.isnan(employees)
                    else f"company size {_n(employees):,} employees is outside the ICP range ({size_range})"
                )
            if icp.industries and industry not in icp.industries:
                misses.append(
                    "industry unknown"
                    if industry == MISSING
                    else f"industry {industry} is not an ICP industry"
                )
            text = "; ".join(misses) if misses else "Does not match the ideal customer profile"
            out.append(text[0].upper() + text[1:])
        return out

    return describe


def _categorical(spec: FeatureSpec, attribute: str, k: int) -> Describer:
    label = attribute.replace("_", " ").capitalize()
    if attribute == "industry" and spec.icp.industries:
        industries = spec.icp.industries
        return lambda _num, cat: [
            "Industry unknown"
            if v == MISSING
            else f"Industry {v} is {'an' if v in industries else 'not an'} ICP industry"
            for v in cat[:, k].tolist()
        ]
    shown = str.upper if attribute == "country" else str
    return lambda _num, cat: [
        f"{label} unknown" if v == MISSING else f"{label}: {shown(v)}" for v in cat[:, k].tolist()
    ]


def _tech_stack(n_wanted: int, j: int) -> Describer:
    def describe(num: np.ndarray, _cat: np.ndarray) -> list[str]:
        return [
            "Technology stack unknown"
            if math.isnan(v)
            else f"Uses {_n(v * n_wanted)} of {n_wanted} target technolog{'y' if n_wanted == 1 else 'ies'}"
            for v in num[:, j].tolist()
        ]

    return describe


def _renewal(j: int) -> Describer:
    low, high = RENEWAL_CLIP_DAYS

    def word(v: float) -> str:
        if math.isnan(v):
            return "Renewal date unknown"
        days = _n(v)
        if v >= high:
            return f"Renewal {_n(high)} days or more away"
        if days > 0:
            return f"Renewal in {days} day{'s' if days != 1 else ''}"
        if days == 0:
            return "Renewal due today"
        if v <= low:
            return f"Renewal date passed {_n(-low)} days or more ago"
        return f"Renewal date passed {-days} day{'s' if days != -1 else ''} ago"

    return lambda num, _cat: [word(v) for v in num[:, j].tolist()]


def _usage(spec: FeatureSpec, j_recent: int, j_change: int) -> Describer:
    days = spec.usage_window_days
    what = (
        "Product usage"
        if spec.usage_types == ("product_usage",)
        else "Usage (" + ", ".join(t.replace("_", " ") for t in spec.usage_types) + ")"
    )

    def word(recent: float, change: float) -> str:
        now, before = _n(recent), _n(recent - change)
        if now == before == 0:
            return f"No {what[0].lower() + what[1:]} in the last {2 * days} days"
        if now < before:
            return f"{what} fell from {before} to {now} events ({days}-day windows)"
        if now > before:
            return f"{what} rose from {before} to {now} events ({days}-day windows)"
        return f"{what} steady at {now} events per {days} days"

    return lambda num, _cat: [
        word(r, c) for r, c in zip(num[:, j_recent].tolist(), num[:, j_change].tolist(), strict=True)
    ]
