"""A deterministic synthetic lead history, for tests, benchmarks and the demo's first model.

Leads arrive over the history with firmographics; they browse, open mail and get sales touches at a
steady personal rate; now and then they go through an *intent burst* (pricing-page visits, forms,
content, meetings). Conversion follows bursts, more likely for leads that fit the ICP and the more
pricing visits the burst had — so a good model must learn both fit and recent pricing intent. The same
``seed`` gives the same history, event for event. Pure Python and numpy; no I/O.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import numpy as np

from scoring.features import Event, FeatureSpec, IcpSpec, Subject

__all__ = ["ICP_EMPLOYEES", "ICP_INDUSTRIES", "synthetic_history", "synthetic_spec"]

ICP_INDUSTRIES = ("software", "fintech")
ICP_EMPLOYEES = (50, 5000)
_INDUSTRIES = ("software", "fintech", "retail", "manufacturing", "healthcare", "education")
_COUNTRIES = ("US", "DE", "GB", "FR", "NL")
_TITLES = (
    "CEO",
    "VP Marketing",
    "Head of Growth",
    "Marketing Manager",
    "Analyst",
    "Engineer",
    "Intern",
    "Director of Sales",
    None,
)
_SENIOR = frozenset({"CEO", "VP Marketing", "Head of Growth", "Director of Sales"})
_BASELINE = (("page_view", 0.45), ("email_open", 0.35), ("email_click", 0.1), ("sales_touch", 0.1))


def synthetic_spec() -> FeatureSpec:
    """The default spec with the generator's ICP configured."""
    return FeatureSpec(
        icp=IcpSpec(frozenset(ICP_INDUSTRIES), float(ICP_EMPLOYEES[0]), float(ICP_EMPLOYEES[1]))
    )


def synthetic_history(
    n_subjects: int,
    *,
    start: datetime,
    days: int = 360,
    seed: int = 0,
    activity_per_day: float = 0.08,
    burst_rate: float = 1.0,
) -> list[Subject]:
    """``n_subjects`` leads with events in ``[start, start + days)``. ``activity_per_day`` is the mean
    background activity rate; ``burst_rate`` the mean number of intent bursts per lead over the history."""
    rng = np.random.default_rng(seed)
    end = start + timedelta(days=days)
    subjects: list[Subject] = []
    for k in range(n_subjects):
        created = start + timedelta(days=float(rng.uniform(0, days * 0.85)))
        industry = _INDUSTRIES[int(rng.integers(len(_INDUSTRIES)))]
        employees = int(math.exp(rng.normal(5.0, 1.6))) + 1
        title = _TITLES[int(rng.integers(len(_TITLES)))]
        free_mail = bool(rng.random() < 0.3)
        attributes: dict[str, str | int | float | bool | None] = {
            "industry": industry if rng.random() > 0.05 else None,
            "employees": employees if rng.random() > 0.1 else None,
            "annual_revenue": float(employees * rng.uniform(50_000, 250_000)),
            "country": _COUNTRIES[int(rng.integers(len(_COUNTRIES)))],
            "title": title,
            "email_domain_free": free_mail,
        }
        fit = (
            1.0 * (industry in ICP_INDUSTRIES)
            + 0.8 * (ICP_EMPLOYEES[0] <= employees <= ICP_EMPLOYEES[1])
            + 0.5 * (title in _SENIOR)
            - 0.6 * free_mail
        )
        live_days = (end - created).total_seconds() / 86_400.0
        events: list[Event] = []

        def at(offset_days: float, _created: datetime = created) -> datetime:
            return _created + timedelta(days=offset_days)

        rate = activity_per_day * float(rng.lognormal(0.0, 0.5))
        n_background = int(rng.poisson(rate * live_days))
        kinds = rng.choice(len(_BASELINE), size=n_background, p=[p for _, p in _BASELINE])
        offsets = rng.uniform(0, live_days, size=n_background)
        for kind, off in zip(kinds.tolist(), offsets.tolist(), strict=True):
            attrs = {"url": "/blog/post"} if _BASELINE[kind][0] == "page_view" else {}
            events.append(Event(_BASELINE[kind][0], at(off), attrs))

        converted = False
        for _ in range(int(rng.poisson(burst_rate * (0.6 + 0.4 * max(fit, 0.0))))):
            b = float(rng.uniform(0, live_days))
            pricing = int(rng.poisson(1.0 + 1.5 * max(fit, 0.0)))
            for _ in range(pricing):
                events.append(Event("pricing_page", at(b + float(rng.uniform(0, 6))), {"url": "/pricing"}))
            if rng.random() < 0.5:
                events.append(Event("form_submit", at(b + float(rng.uniform(0, 6)))))
            for _ in range(int(rng.poisson(0.8))):
                events.append(
                    Event(
                        "content_download",
                        at(b + float(rng.uniform(0, 6))),
                        {"content_id": f"asset-{int(rng.integers(6))}"},
                    )
                )
            if rng.random() < 0.25:
                events.append(Event("webinar", at(b + float(rng.uniform(0, 6))), {"content_id": "webinar-1"}))
            if rng.random() < 0.2:
                events.append(Event("meeting", at(b + float(rng.uniform(2, 8)))))
            logit = -3.4 + 1.1 * fit + 0.55 * pricing
            if not converted and rng.random() < 1.0 / (1.0 + math.exp(-logit)):
                converted = True
                events.append(Event("conversion", at(b + float(rng.uniform(5, 20)))))
        events = sorted((e for e in events if e.at < end), key=lambda e: e.at)
        subjects.append(
            Subject(key=f"lead-{k:06d}", created_at=created, attributes=attributes, events=events)
        )
    return subjects
