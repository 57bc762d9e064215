"""Predictive questions as configuration: which entity, which population, which target, assuming what.

In the spirit of Kumo's predictive queries, a model is described by the question it answers rather than
by code. :func:`scoring.labels.build_examples` takes a :class:`PredictiveQuestion` and lays it over
the history at each freeze time::

    [scoring.question]
    entity = "lead"                      # or "account" (the sync layer builds account subjects)
    horizon_days = 30
    target = { event = "conversion" }    # the lead default; an account's is { event = "opportunity" }
    # or dispositions pulled from the CRM:
    # target = { event = "disposition", attribute = "value", positive = ["qualified"], negative = ["bad_fit"] }
    population = { event_types = ["form_submit", "email_click"], within_days = 1 }  # responded in the last day
    assuming = { event_types = ["sales_touch", "meeting"], within_days = 1 }         # reached within a day

Features only ever see events strictly before a cutoff; the population looks back from it; the target
and the *assuming* filter look forward into the label window — they pick and label examples, they never
become inputs. Validation errors name the key path like the feature spec's.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from scoring.errors import FeatureSpecError

__all__ = ["DEFAULT_TARGET_EVENTS", "ENTITIES", "EventWindow", "PredictiveQuestion", "Target"]

ENTITIES = ("lead", "account")
#: The target event when the question names none: a lead converts; an account gets an opportunity created
#: (the ``opportunities`` stream; ``target.event = "conversion"`` asks for a conversion of any of its leads).
DEFAULT_TARGET_EVENTS = {"lead": "conversion", "account": "opportunity"}


@dataclass(frozen=True, slots=True)
class EventWindow:
    """At least one event of ``event_types`` within ``within_days`` (before the cutoff for a population,
    after it for an assuming filter)."""

    event_types: tuple[str, ...]
    within_days: float


@dataclass(frozen=True, slots=True)
class Target:
    """The label event; with ``positive``/``negative`` values it is a disposition: the first one in the
    window decides, and subjects with none are not labelled at all."""

    event: str = "conversion"
    attribute: str = "value"
    positive: tuple[str, ...] = ()
    negative: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class PredictiveQuestion:
    entity: str = "lead"
    horizon_days: int = 30
    target: Target = Target()
    population: EventWindow | None = None
    assuming: EventWindow | None = None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, path: str = "question") -> PredictiveQuestion:
        known = {"entity", "horizon_days", "target", "population", "assuming"}
        for key in data:
            if key not in known:
                raise FeatureSpecError(f"{path}.{key}", "unknown key")
        entity = data.get("entity", "lead")
        if entity not in ENTITIES:
            raise FeatureSpecError(f"{path}.entity", f"must be one of {', '.join(ENTITIES)}")
        horizon = data.get("horizon_days", 30)
        if isinstance(horizon, bool) or not isinstance(horizon, int) or not 1 <= horizon <= 730:
            raise FeatureSpecError(f"{path}.horizon_days", "must be a whole number of days, 1 to 730")
        return cls(entity, horizon, _target(data.get("target", {}), f"{path}.target", DEFAULT_TARGET_EVENTS[entity]),
                   _window(data.get("population"), f"{path}.population"),
                   _window(data.get("assuming"), f"{path}.assuming"))


def _strings(value: Any, path: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise FeatureSpecError(path, "must be a list of non-empty strings")
    return tuple(value)


def _target(data: Any, path: str, default_event: str = "conversion") -> Target:
    if not isinstance(data, Mapping):
        raise FeatureSpecError(path, "must be a table")
    for key in data:
        if key not in ("event", "attribute", "positive", "negative"):
            raise FeatureSpecError(f"{path}.{key}", "unknown key")
    event = data.get("event", default_event)
    if not isinstance(event, str) or not event:
        raise FeatureSpecError(f"{path}.event", "must name an event type")
    positive = _strings(data["positive"], f"{path}.positive") if "positive" in data else ()
    negative = _strings(data["negative"], f"{path}.negative") if "negative" in data else ()
    if negative and not positive:
        raise FeatureSpecError(f"{path}.positive", "a disposition target needs positive values too")
    overlap = {p.lower() for p in positive} & {n.lower() for n in negative}
    if overlap:
        raise FeatureSpecError(f"{path}.negative", f"{sorted(overlap)[0]!r} is also a positive value")
    attribute = data.get("attribute", "value")
    if not isinstance(attribute, str) or not attribute:
        raise FeatureSpecError(f"{path}.attribute", "must name an event attribute")
    return Target(event, attribute, positive, negative)


def _window(data: Any, path: str) -> EventWindow | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise FeatureSpecError(path, "must be a table")
    for key in data:
        if key not in ("event_types", "within_days"):
            raise FeatureSpecError(f"{path}.{key}", "unknown key")
    types = _strings(data.get("event_types"), f"{path}.event_types")
    days = data.get("within_days", 1)
    if isinstance(days, bool) or not isinstance(days, int | float) or not 0 < days <= 365:
        raise FeatureSpecError(f"{path}.within_days", "must be a number of days, above 0 and at most 365")
    return EventWindow(types, float(days))
