"""Routing configuration: reps, territories, per-segment thresholds and the rule as a whole."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import LeadrelayError

SALES_OUTREACH = "sales_outreach"
UPDATE_LEAD = "update_lead"
CREATE_TASK = "create_task"
PRIORITIES = ("LOW", "MEDIUM", "HIGH")
TEMPLATE_WORDS = ("name", "score", "band", "reasons", "email", "rep", "due_at", "previous_rep")
OnBreach = Literal["reroute", "escalate"]
_T = TypeVar("_T")


class RoutingSpecError(LeadrelayError, ValueError):
    """A routing spec is invalid; ``path`` names the offending key (``reps[1].weight``)."""

    def __init__(self, path: str, problem: str) -> None:
        self.path = path
        self.problem = problem
        super().__init__(f"{path}: {problem}")

    def within(self, prefix: str) -> RoutingSpecError:
        """The same problem, its path seen from an enclosing table."""
        if not prefix:
            return self
        return RoutingSpecError(f"{prefix}.{self.path}" if self.path else prefix, self.problem)


# --------------------------------------------------------------------------------------------------
# The spec (validated on construction; ``RoutingSpec.from_mapping`` reads the TOML table)


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise RoutingSpecError(path, f"must be a non-empty string, got {value!r}")
    return value


def _whole(value: Any, path: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low or (high is not None and value > high):
        span = f"from {low} to {high}" if high is not None else f"≥ {low}"
        raise RoutingSpecError(path, f"must be a whole number {span}, got {value!r}")
    return value


def _words(values: Iterable[Any], path: str) -> frozenset[str]:
    if isinstance(values, str):
        raise RoutingSpecError(path, "must be a list of strings")
    return frozenset(_text(v, path).strip().casefold() for v in values)


def _template(value: Any, path: str) -> str:
    text = _text(value, path)
    try:
        text.format(**dict.fromkeys(TEMPLATE_WORDS, ""))
    except (KeyError, IndexError, ValueError) as exc:
        words = ", ".join("{" + w + "}" for w in TEMPLATE_WORDS)
        raise RoutingSpecError(path, f"unknown placeholder or bad braces ({exc}); use {words}") from None
    return text


@dataclass(frozen=True, slots=True)
class Rep:
    """A sales rep who can be assigned leads. ``id`` is the CRM owner id written to the lead."""

    id: str
    daily_capacity: int
    weight: int = 1
    active: bool = True
    timezone: str | None = None  # IANA name; the rep's day (for capacity) runs midnight to midnight there

    def __post_init__(self) -> None:
        _text(self.id, "id")
        _whole(self.daily_capacity, "daily_capacity", 0)
        _whole(self.weight, "weight", 1)
        if not isinstance(self.active, bool):
            raise RoutingSpecError("active", f"must be true or false, got {self.active!r}")
        if self.timezone is not None:
            try:
                ZoneInfo(_text(self.timezone, "timezone"))
            except (ZoneInfoNotFoundError, ValueError):
                raise RoutingSpecError(
                    "timezone", f"unknown time zone {self.timezone!r} (use an IANA name like 'Europe/Berlin')"
                ) from None

    def day(self, now: datetime) -> str:
        """The rep's local date at ``now`` (ISO), the unit of ``daily_capacity``."""
        return now.astimezone(ZoneInfo(self.timezone) if self.timezone else UTC).date().isoformat()


@dataclass(frozen=True, slots=True)
class Facts:
    """What territory and threshold rules match on, resolved from a lead and its account."""

    region: str | None = None
    country: str | None = None
    segment: str | None = None
    industry: str | None = None
    product_line: str | None = None
    account_owner_id: str | None = None


@dataclass(frozen=True, slots=True)
class Criteria:
    """Match rules; an empty set matches anything, a non-empty one requires the fact to be in it
    (compared trimmed and case-insensitively). All given sets must match."""

    regions: frozenset[str] = frozenset()
    countries: frozenset[str] = frozenset()
    segments: frozenset[str] = frozenset()
    industries: frozenset[str] = frozenset()
    product_lines: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for name in ("regions", "countries", "segments", "industries", "product_lines"):
            object.__setattr__(self, name, _words(getattr(self, name), name))

    def matches(self, facts: Facts) -> bool:
        for wanted, value in ((self.regions, facts.region), (self.countries, facts.country),
                              (self.segments, facts.segment), (self.industries, facts.industry),
                              (self.product_lines, facts.product_line)):
            if wanted and (value is None or value.strip().casefold() not in wanted):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Territory:
    """An ordered territory rule: leads matching ``match`` are routed among ``reps``."""

    name: str
    reps: tuple[str, ...]
    match: Criteria = Criteria()

    def __post_init__(self) -> None:
        _text(self.name, "name")
        if isinstance(self.reps, str) or not self.reps:
            raise RoutingSpecError("reps", "must list at least one rep id")
        object.__setattr__(self, "reps", tuple(_text(r, f"reps[{i}]") for i, r in enumerate(self.reps)))


@dataclass(frozen=True, slots=True)
class Threshold:
    """A per-segment qualification threshold; the first matching rule wins over ``RoutingSpec.min_score``."""

    min_score: int
    match: Criteria = Criteria()

    def __post_init__(self) -> None:
        _whole(self.min_score, "min_score", 1, 99)


@dataclass(frozen=True, slots=True)
class LeadFields:
    """Where the routing facts come from: attribute names on the lead (then its account), and a
    country → region table for leads that carry no region of their own."""

    region: str = "region"
    segment: str = "segment"
    product_line: str = "product_line"
    industry: str = "industry"
    account_owner: str = "owner_id"  # the account attribute holding its owner's id
    country_regions: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name in ("region", "segment", "product_line", "industry", "account_owner"):
            _text(getattr(self, name), name)
        object.__setattr__(self, "country_regions", {
            _text(k, "country_regions").strip().casefold(): _text(v, f"country_regions.{k}")
            for k, v in dict(self.country_regions).items()})


@dataclass(frozen=True, slots=True)
class RoutingSpec:
    """One routing rule: who qualifies, which reps, the SLA and what a breach does."""

    name: str
    reps: tuple[Rep, ...]
    territories: tuple[Territory, ...]
    min_score: int = 80
    thresholds: tuple[Threshold, ...] = ()
    sla_hours: float = 24.0
    on_breach: OnBreach = "reroute"
    max_reroutes: int = 1
    escalation_owner: str | None = None
    take_owned_leads: bool = False
    queue_owners: frozenset[str] = frozenset()  # owner ids that are queues or integration users, not people
    account_owner_first: bool = True
    consent_channel: str = SALES_OUTREACH
    holdout_share: float = 0.0
    priority: str = "HIGH"
    task_subject: str = "Follow up: {name} scored {score}"
    task_body: str = ("leadrelay routed this lead to you (score {score}, band {band}). "
                      "Top reasons: {reasons}. Please follow up by {due_at}.")
    escalation_subject: str = "Escalation: {name} was not followed up by {previous_rep}"
    escalation_body: str = ("The follow-up with {name} (score {score}) was due and not done by {previous_rep}; "
                            "leadrelay escalated it to you. Please follow up by {due_at}.")
    fields: LeadFields = LeadFields()

    def __post_init__(self) -> None:
        _text(self.name, "name")
        if not self.reps:
            raise RoutingSpecError("reps", "must list at least one rep")
        seen: set[str] = set()
        for i, rep in enumerate(self.reps):
            if rep.id in seen:
                raise RoutingSpecError(f"reps[{i}].id", f"duplicate rep id {rep.id!r}")
            seen.add(rep.id)
        if not self.territories:
            raise RoutingSpecError("territories", "must list at least one territory (one without rules matches all)")
        names: set[str] = set()
        for i, territory in enumerate(self.territories):
            if territory.name in names:
                raise RoutingSpecError(f"territories[{i}].name", f"duplicate territory {territory.name!r}")
            names.add(territory.name)
            for j, rep_id in enumerate(territory.reps):
                if rep_id not in seen:
                    raise RoutingSpecError(f"territories[{i}].reps[{j}]", f"no rep with id {rep_id!r} in reps")
        _whole(self.min_score, "min_score", 1, 99)
        if (isinstance(self.sla_hours, bool) or not isinstance(self.sla_hours, int | float)
                or not 0 < self.sla_hours <= 24 * 90 or math.isnan(self.sla_hours)):
            raise RoutingSpecError("sla_hours", f"must be a number of hours above 0 and at most 2160, "
                                                f"got {self.sla_hours!r}")
        if self.on_breach not in ("reroute", "escalate"):
            raise RoutingSpecError("on_breach", f"must be 'reroute' or 'escalate', got {self.on_breach!r}")
        _whole(self.max_reroutes, "max_reroutes", 0)
        if self.escalation_owner is not None:
            _text(self.escalation_owner, "escalation_owner")
        elif self.on_breach == "escalate":
            raise RoutingSpecError("escalation_owner", "required when on_breach = 'escalate' "
                                                       "(the owner id of a manager or a queue)")
        for name in ("take_owned_leads", "account_owner_first"):
            if not isinstance(getattr(self, name), bool):
                raise RoutingSpecError(name, f"must be true or false, got {getattr(self, name)!r}")
        object.__setattr__(self, "queue_owners", frozenset(
            _text(q, "queue_owners") for q in ([] if isinstance(self.queue_owners, str) else self.queue_owners)))
        _text(self.consent_channel, "consent_channel")
        share = self.holdout_share
        if isinstance(share, bool) or not isinstance(share, int | float) or not 0.0 <= share < 1.0:
            raise RoutingSpecError("holdout_share", f"must be a fraction from 0 up to (not including) 1, got {share!r}")
        if self.priority not in PRIORITIES:
            raise RoutingSpecError("priority", f"must be one of {', '.join(PRIORITIES)}, got {self.priority!r}")
        for name in ("task_subject", "task_body", "escalation_subject", "escalation_body"):
            _template(getattr(self, name), name)

    def threshold_for(self, facts: Facts) -> int:
        return next((t.min_score for t in self.thresholds if t.match.matches(facts)), self.min_score)

    def territory_for(self, facts: Facts) -> Territory | None:
        return next((t for t in self.territories if t.match.matches(facts)), None)

    @property
    def holdout_rule(self) -> str:
        """The holdout's rule name: prefixed, so an audience of the same name draws independently."""
        return f"routing:{self.name}"

    def owned_by_person(self, owner_id: str | None) -> bool:
        return bool(owner_id) and owner_id not in self.queue_owners

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, name: str | None = None) -> RoutingSpec:
        """Validate a TOML-shaped table (``[routing.<name>]``); every problem raises :class:`RoutingSpecError`
        naming the key path. ``name`` defaults to the table's ``name`` key."""
        from sync.routing._parse import _parse_spec  # the parser builds these classes: import it late

        return _parse_spec(data, name)
