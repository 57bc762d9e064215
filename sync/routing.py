"""SDR routing: which qualified lead goes to which rep, and what happens when the follow-up is late.

Step 4 of a cycle (DESIGN.md, "Decide"): :func:`route` is a pure function of (spec, scored leads, routing
state, sales-outreach consent, task completions, now) and returns every decision with its reason and the
next state; :func:`desired_writes` turns the decisions into owner updates and follow-up tasks for the
planner, and :func:`desired_owners` names the owner every later score update of a routed lead carries.
Nothing here reads a clock, a store or the network, so the dry run shows what a real run does.

How a lead is routed, in order:

1. **Qualify.** Its score must reach the threshold of the first per-segment rule that matches it
   (region, country, segment, industry, product line), else ``min_score``.
2. **Respect owners and consent.** A lead owned by a person (an owner not listed in ``queue_owners``) is
   never taken unless ``take_owned_leads``; a lead without ``sales_outreach`` consent is never routed.
3. **Hold out.** A deterministic share per rule (:mod:`sync.holdouts`) is recorded as control, not routed.
4. **Pick the rep.** The account's owner first, when that owner is an active rep with room today; else
   the first territory whose rules match, by *smooth weighted round-robin* among its active reps with
   room today. Room is ``daily_capacity`` assignments per day, the day counted in the rep's time zone.
5. **Watch the SLA.** The assignment writes the owner and a follow-up task due ``sla_hours`` later. A
   task not completed by then is a breach: the lead is re-routed to a rep who has not had it yet (up to
   ``max_reroutes`` times) or escalated to ``escalation_owner``, as configured. A person who takes the
   lead over in the CRM (even after the follow-up), or a consent withdrawal, ends leadrelay's part.

Smooth weighted round-robin (nginx's): each rep carries a ``current`` number in the state. To pick among
the eligible reps, each one's weight is added to its ``current``; the largest ``current`` wins (ties: the
larger weight, then the smaller rep id) and the winner gives back the eligible reps' total weight. Over
any run of picks among the same reps each rep's share stays within one pick of its weight share, the picks
are interleaved (no bursts for the heaviest rep), and because ``current`` is carried in the state the
rotation continues across runs exactly as if they were one. A rep who is at capacity, inactive or not
eligible for a lead takes no part in that pick: it neither gains nor loses ground.
"""

from __future__ import annotations

import enum
import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.base import Account, Lead, LeadrelayError
from sync import holdouts
from sync.planner import DesiredWrite

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
        return _parse_spec(data, name)


# --------------------------------------------------------------------------------------------------
# Inputs and state


@dataclass(frozen=True, slots=True)
class Candidate:
    """A scored lead offered to routing: the facts rules match on, its CRM owner, and words for the task."""

    key: str
    score: int
    facts: Facts = Facts()
    owner_id: str | None = None
    name: str | None = None
    email: str | None = None
    band: str | None = None
    reasons: tuple[str, ...] = ()

    @classmethod
    def from_records(cls, lead: Lead, account: Account | None, score: int, *, fields: LeadFields = LeadFields(),
                     band: str | None = None, reasons: Sequence[str] = ()) -> Candidate:
        """Resolve the routing facts of ``lead``: the lead's own attribute first, then its account's."""

        def attr(name: str) -> str | None:
            for record in (lead, account):
                value = record.attributes.get(name) if record is not None else None
                if value is not None and str(value).strip():
                    return str(value)
            return None

        country = lead.country or (account.country if account else None)
        region = attr(fields.region) or (
            fields.country_regions.get(country.strip().casefold()) if country else None)
        owner = account.attributes.get(fields.account_owner) if account else None
        facts = Facts(region=region, country=country, segment=attr(fields.segment),
                      industry=(account.industry if account else None) or attr(fields.industry),
                      product_line=attr(fields.product_line),
                      account_owner_id=str(owner) if owner not in (None, "") else None)
        name = " ".join(p for p in (lead.first_name, lead.last_name) if p) or None
        return cls(lead.key, score, facts, lead.owner_id, name, lead.email, band, tuple(reasons))


class Status(enum.StrEnum):
    """Where a lead's routing stands; OPEN is watched for its SLA, the owned statuses for takeovers."""

    OPEN = "open"            # assigned; the follow-up task is due
    COMPLETED = "completed"  # the follow-up task was done
    ESCALATED = "escalated"  # handed to the escalation owner after a breach
    BREACHED = "breached"    # breached with nobody left to take it and no escalation owner
    RELEASED = "released"    # a person took the lead over, or consent was withdrawn: leadrelay stepped back
    CONTROL = "control"      # held out: decided and recorded, not acted on


# Assignments whose owner leadrelay still stands by (and releases when a person takes the lead over).
_STANDING = frozenset({Status.OPEN, Status.COMPLETED, Status.ESCALATED, Status.BREACHED})


@dataclass(frozen=True, slots=True)
class Breach:
    """One missed SLA: whose task it was, when it was due, when the breach was noticed."""

    rep_id: str
    due_at: datetime
    noticed_at: datetime


@dataclass(frozen=True, slots=True)
class Assignment:
    """A lead's routing state. ``attempt`` counts hand-overs (reroutes, escalation); with the lead key it
    names the follow-up task of this attempt (:attr:`task_key`), which completions are reported under."""

    lead_key: str
    rep_id: str | None
    assigned_at: datetime
    due_at: datetime | None
    status: Status
    score: int
    facts: Facts = Facts()
    prior_owner: str | None = None  # the CRM owner when leadrelay last set it (still shown until delivery)
    attempt: int = 0
    breaches: tuple[Breach, ...] = ()
    closed_at: datetime | None = None
    confirmed: bool = False  # the CRM has shown ``rep_id`` as the owner since this assignment

    @property
    def task_key(self) -> str:
        return f"{self.lead_key}#{self.attempt}"

    @property
    def tried(self) -> frozenset[str]:
        """Every rep who has had this lead (a reroute goes to someone else)."""
        return frozenset(b.rep_id for b in self.breaches) | ({self.rep_id} if self.rep_id else set())


@dataclass(frozen=True, slots=True)
class RoutingState:
    """What routing remembers between runs (treat the mappings as read-only).

    ``daily`` counts assignments per (rep id, rep-local ISO date); ``current`` is each rep's smooth
    weighted round-robin counter.
    """

    assignments: Mapping[str, Assignment] = field(default_factory=dict)
    daily: Mapping[tuple[str, str], int] = field(default_factory=dict)
    current: Mapping[str, int] = field(default_factory=dict)

    def assigned_today(self, rep: Rep, now: datetime) -> int:
        return self.daily.get((rep.id, rep.day(now)), 0)


# --------------------------------------------------------------------------------------------------
# Decisions


class Action(enum.StrEnum):
    ASSIGN = "assign"
    REROUTE = "reroute"
    ESCALATE = "escalate"
    COMPLETE = "complete"
    RELEASE = "release"
    BREACH = "breach"    # a breach nothing could be done about (yet)
    HOLDOUT = "holdout"  # control: recorded, not acted on
    SKIP = "skip"


class Skip(enum.StrEnum):
    BELOW_THRESHOLD = "below_threshold"
    OWNED = "owned_by_person"
    NO_CONSENT = "no_consent"
    NO_ELIGIBLE_REP = "no_eligible_rep"
    AT_CAPACITY = "all_at_capacity"


@dataclass(frozen=True, slots=True)
class Task:
    """The follow-up task an assignment creates."""

    subject: str
    body: str
    due_at: datetime
    owner_id: str
    priority: str

    def payload(self) -> dict[str, Any]:
        """The canonical ``create_task`` payload (keys every task destination maps)."""
        return {"subject": self.subject, "body": self.body, "due_at": self.due_at.isoformat(),
                "owner_id": self.owner_id, "priority": self.priority, "status": "NOT_STARTED", "type": "TODO"}


@dataclass(frozen=True, slots=True)
class RoutingDecision:
    """One decision about one lead, with its reason; ``assignment`` is the lead's state after it."""

    lead_key: str
    action: Action
    reason: str
    rep_id: str | None = None
    previous_rep: str | None = None
    skip: Skip | None = None
    task: Task | None = None
    assignment: Assignment | None = None


@dataclass(frozen=True, slots=True)
class RoutingDecisions:
    """Everything one call of :func:`route` decided, the next state, and the holdout cohort entries
    (one per lead entering routing, treated or control) for the lift report."""

    decisions: tuple[RoutingDecision, ...]
    state: RoutingState
    cohort: tuple[holdouts.Decision[Action], ...] = ()

    def summary(self) -> dict[str, Any]:
        """Counts for the dry-run report: per action, and skips per reason."""
        actions = Counter(d.action.value for d in self.decisions)
        skips = Counter(d.skip.value for d in self.decisions if d.skip is not None)
        return {"actions": dict(sorted(actions.items())), "skipped": dict(sorted(skips.items()))}


Consent = Callable[[str, str, datetime], bool] | Mapping[str, bool]


def route(
    spec: RoutingSpec,
    candidates: Iterable[Candidate],
    state: RoutingState,
    consent: Consent,
    now: datetime,
    *,
    tasks_done: Mapping[str, datetime] | None = None,
) -> RoutingDecisions:
    """Decide routing at ``now``.

    ``candidates`` are the scored leads (each key once; order does not matter); leads with an open
    assignment are SLA-checked whether or not they are among them. ``consent`` answers whether a lead may
    be contacted on ``spec.consent_channel`` at ``now``: a callable ``(lead_key, channel, now)`` or a
    mapping of lead key → allowed, where a missing key means no consent. ``tasks_done`` maps
    :attr:`Assignment.task_key` to when that follow-up task was completed.
    """
    if now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now: must be timezone-aware")
    by_key: dict[str, Candidate] = {}
    for candidate in candidates:
        if candidate.key in by_key:
            raise ValueError(f"candidates: lead {candidate.key!r} appears more than once")
        by_key[candidate.key] = candidate
    run = _Run(spec, state, now, _consent_reader(consent, spec.consent_channel, now))
    done = tasks_done or {}
    # Overdue hand-overs first (they are already late), then new leads, best score first: when capacity is
    # short, it goes to the hottest leads. Both orders are total, so input order never matters.
    opened = sorted((a for a in state.assignments.values() if a.status is Status.OPEN),
                    key=lambda a: (a.due_at or now, a.lead_key))
    for assignment in opened:
        run.follow(assignment, by_key.get(assignment.lead_key), done)
    for candidate in sorted(by_key.values(), key=lambda c: (-c.score, c.key)):
        known = state.assignments.get(candidate.key)
        if known is None:
            run.admit(candidate)
        elif known.status in _STANDING and known.status is not Status.OPEN:  # OPEN ones were followed above
            run.watch(known, candidate)
    return run.result()


def _consent_reader(consent: Consent, channel: str, now: datetime) -> Callable[[str], bool]:
    if callable(consent):
        ask = consent

        def allowed(key: str) -> bool:
            return bool(ask(key, channel, now))

        return allowed
    table = consent

    def listed(key: str) -> bool:
        return table.get(key) is True  # missing means not consented: sales outreach fails closed

    return listed


class _Run:
    """The working copy of the state during one :func:`route` call."""

    def __init__(self, spec: RoutingSpec, state: RoutingState, now: datetime,
                 allowed: Callable[[str], bool]) -> None:
        self.spec, self.now, self.allowed = spec, now, allowed
        self.sla = timedelta(hours=spec.sla_hours)
        self.roster = {rep.id: rep for rep in spec.reps}
        self.assignments = dict(state.assignments)
        # Counts of days no rep can still be in (UTC-12 to UTC+14 spans two dates at most) are dropped.
        oldest = (now.astimezone(UTC).date() - timedelta(days=2)).isoformat()
        self.daily = {k: n for k, n in state.daily.items() if k[1] >= oldest}
        self.current = {rep_id: state.current.get(rep_id, 0) for rep_id in sorted(self.roster)}
        self.decisions: list[RoutingDecision] = []
        self.cohort: list[holdouts.Decision[Action]] = []

    def result(self) -> RoutingDecisions:
        state = RoutingState(self.assignments, self.daily, self.current)
        return RoutingDecisions(tuple(self.decisions), state, tuple(self.cohort))

    # -- picking a rep ------------------------------------------------------------------------------

    def _room(self, rep: Rep) -> bool:
        return self.daily.get((rep.id, rep.day(self.now)), 0) < rep.daily_capacity

    def _charge(self, rep: Rep) -> None:
        key = (rep.id, rep.day(self.now))
        self.daily[key] = self.daily.get(key, 0) + 1

    def _choose(self, facts: Facts, exclude: frozenset[str]) -> tuple[Rep | None, Skip | None, str]:
        owner = self.roster.get(facts.account_owner_id or "")
        if self.spec.account_owner_first and owner is not None and owner.active and owner.id not in exclude \
                and self._room(owner):
            self._charge(owner)
            return owner, None, f"account owner {owner.id}"
        territory = self.spec.territory_for(facts)
        if territory is None:
            return None, Skip.NO_ELIGIBLE_REP, "no territory matches the lead"
        eligible = sorted((self.roster[r] for r in set(territory.reps)
                           if self.roster[r].active and r not in exclude), key=lambda r: r.id)
        if not eligible:
            return None, Skip.NO_ELIGIBLE_REP, f"no eligible rep left in territory {territory.name}"
        with_room = [rep for rep in eligible if self._room(rep)]
        if not with_room:
            return None, Skip.AT_CAPACITY, f"all {len(eligible)} eligible reps of territory {territory.name} " \
                                           "are at today's capacity"
        total = sum(rep.weight for rep in with_room)
        for rep in with_room:
            self.current[rep.id] += rep.weight
        chosen = min(with_room, key=lambda r: (-self.current[r.id], -r.weight, r.id))
        self.current[chosen.id] -= total
        self._charge(chosen)
        return chosen, None, f"territory {territory.name}, weighted round-robin"

    def _task(self, subject: str, body: str, lead: Candidate | None, a: Assignment, previous: str | None) -> Task:
        assert a.rep_id is not None
        assert a.due_at is not None
        words = {"name": (lead.name or lead.email) if lead else None, "score": a.score,
                 "band": (lead.band if lead else None) or "", "email": (lead.email if lead else None) or "",
                 "reasons": "; ".join(lead.reasons[:3]) if lead and lead.reasons else "none given",
                 "rep": a.rep_id, "due_at": a.due_at.isoformat(), "previous_rep": previous or ""}
        words["name"] = words["name"] or a.lead_key
        return Task(subject.format(**words), body.format(**words), a.due_at, a.rep_id, self.spec.priority)

    def _decide(self, decision: RoutingDecision) -> None:
        self.decisions.append(decision)
        if decision.assignment is not None:
            self.assignments[decision.lead_key] = decision.assignment

    # -- new leads ----------------------------------------------------------------------------------

    def admit(self, lead: Candidate) -> None:
        spec, key = self.spec, lead.key
        threshold = spec.threshold_for(lead.facts)
        if lead.score < threshold:
            self._skip(key, Skip.BELOW_THRESHOLD, f"score {lead.score} is below {threshold}")
        elif spec.owned_by_person(lead.owner_id) and not spec.take_owned_leads:
            self._skip(key, Skip.OWNED, f"owned by {lead.owner_id}; take_owned_leads is off")
        elif not self.allowed(key):
            self._skip(key, Skip.NO_CONSENT, f"no {spec.consent_channel} consent")
        elif holdouts.in_control(key, spec.holdout_rule, spec.holdout_share):
            held = Assignment(key, None, self.now, None, Status.CONTROL, lead.score, lead.facts, lead.owner_id)
            self._decide(RoutingDecision(key, Action.HOLDOUT, f"score {lead.score} ≥ {threshold}; held out as "
                                         f"control of {spec.name} ({spec.holdout_share:.0%})", assignment=held))
            self._enter(key, Action.HOLDOUT, control=True)
        else:
            rep, skip, why = self._choose(lead.facts, frozenset())
            if rep is None:
                assert skip is not None
                self._skip(key, skip, why)
                return
            a = Assignment(key, rep.id, self.now, self.now + self.sla, Status.OPEN, lead.score, lead.facts,
                           lead.owner_id)
            previous = lead.owner_id if spec.owned_by_person(lead.owner_id) else None
            task = self._task(spec.task_subject, spec.task_body, lead, a, previous)
            self._decide(RoutingDecision(key, Action.ASSIGN, f"score {lead.score} ≥ {threshold}: {why}", rep.id,
                                         previous, task=task, assignment=a))
            self._enter(key, Action.ASSIGN, control=False)

    def _enter(self, key: str, action: Action, *, control: bool) -> None:
        """Record the lead's entry into the rule's experiment, treated or control (once: it is in the state now)."""
        spec = self.spec
        self.cohort.append(holdouts.Decision(spec.holdout_rule, key, action, control, spec.holdout_share, self.now))

    def _skip(self, key: str, skip: Skip, reason: str) -> None:
        self.decisions.append(RoutingDecision(key, Action.SKIP, reason, skip=skip))

    # -- open assignments ---------------------------------------------------------------------------

    def _observe(self, a: Assignment, lead: Candidate | None) -> tuple[Assignment, bool]:
        """Note that the CRM shows leadrelay's owner (from then on any other owner is a person's choice) and
        say whether a person has taken the lead over."""
        owner = lead.owner_id if lead is not None else None
        if owner is not None and owner == a.rep_id and not a.confirmed:
            a = replace(a, confirmed=True)
            self.assignments[a.lead_key] = a
        # Until the owner write is delivered the CRM still shows the previous owner: that is no takeover.
        taken = self.spec.owned_by_person(owner) and owner != a.rep_id and (a.confirmed or owner != a.prior_owner)
        return a, taken

    def watch(self, a: Assignment, lead: Candidate) -> None:
        """A closed assignment whose owner leadrelay still stands by (see :func:`desired_owners`): step back
        as soon as a person takes the lead over."""
        a, taken = self._observe(a, lead)
        if taken:
            self._release(a, f"owner changed in the CRM to {lead.owner_id}", lead.owner_id)

    def _release(self, a: Assignment, reason: str, owner: str | None) -> None:
        self._decide(RoutingDecision(a.lead_key, Action.RELEASE, reason, owner, a.rep_id,
                                     assignment=replace(a, status=Status.RELEASED, closed_at=self.now)))

    def follow(self, a: Assignment, lead: Candidate | None, done: Mapping[str, datetime]) -> None:
        a, taken = self._observe(a, lead)
        assert a.due_at is not None
        if taken:
            # A person's choice is never overridden by an SLA timer (nor kept up by leadrelay afterwards).
            assert lead is not None
            self._release(a, f"owner changed in the CRM to {lead.owner_id}", lead.owner_id)
        elif a.task_key in done:
            finished = done[a.task_key]
            late = " (after it was due)" if finished > a.due_at else ""
            self._decide(RoutingDecision(a.lead_key, Action.COMPLETE, f"follow-up task done by {a.rep_id}{late}",
                                         a.rep_id, assignment=replace(a, status=Status.COMPLETED, closed_at=finished)))
        elif not self.allowed(a.lead_key):
            self._release(a, f"{self.spec.consent_channel} consent withdrawn", a.rep_id)
        elif self.now > a.due_at:
            self._breach(a, lead)

    def _breach(self, a: Assignment, lead: Candidate | None) -> None:
        assert a.rep_id is not None
        assert a.due_at is not None
        spec, key = self.spec, a.lead_key
        late = f"SLA breach: {a.rep_id} did not complete the follow-up due {a.due_at.isoformat()}"
        facts = lead.facts if lead is not None else a.facts
        score = lead.score if lead is not None else a.score
        missed = (*a.breaches, Breach(a.rep_id, a.due_at, self.now))
        if spec.on_breach == "reroute" and a.attempt < spec.max_reroutes:
            rep, skip, why = self._choose(facts, a.tried)
            if rep is not None:
                moved = Assignment(key, rep.id, self.now, self.now + self.sla, Status.OPEN, score, facts, a.rep_id,
                                   a.attempt + 1, missed)
                task = self._task(spec.task_subject, spec.task_body, lead, moved, a.rep_id)
                self._decide(RoutingDecision(key, Action.REROUTE, f"{late}; rerouted: {why}", rep.id, a.rep_id,
                                             task=task, assignment=moved))
                return
            if skip is Skip.AT_CAPACITY and spec.escalation_owner is None:
                # Others could take it, just not today: keep it open and try again on the next run.
                self._decide(RoutingDecision(key, Action.BREACH, f"{late}; {why}", a.rep_id, skip=skip))
                return
            cause = why
        elif spec.on_breach == "reroute":
            cause = f"rerouted {a.attempt} time(s) already (max_reroutes = {spec.max_reroutes})"
        else:
            cause = "on_breach = 'escalate'"
        if spec.escalation_owner is None:
            self._decide(RoutingDecision(key, Action.BREACH, f"{late}; {cause}; no escalation_owner", a.rep_id,
                                         skip=Skip.NO_ELIGIBLE_REP,
                                         assignment=replace(a, status=Status.BREACHED, breaches=missed,
                                                            closed_at=self.now)))
            return
        # Escalation goes to a manager or a queue: outside the rotation and its daily capacity.
        up = Assignment(key, spec.escalation_owner, self.now, self.now + self.sla, Status.ESCALATED, score, facts,
                        a.rep_id, a.attempt + 1, missed)
        task = self._task(spec.escalation_subject, spec.escalation_body, lead, up, a.rep_id)
        self._decide(RoutingDecision(key, Action.ESCALATE, f"{late}; {cause}: escalated to {spec.escalation_owner}",
                                     spec.escalation_owner, a.rep_id, task=task, assignment=up))


# --------------------------------------------------------------------------------------------------
# Decisions -> desired writes


def desired_writes(decisions: RoutingDecisions | Iterable[RoutingDecision], destination: str) -> list[DesiredWrite]:
    """An owner update and a follow-up task for each assignment, reroute and escalation.

    Control, skips and closings write nothing. The ``update_lead`` carries only ``owner_id``: merge it into
    the lead's score update (:func:`merge_lead_updates`), one write per lead, so the ledger holds one payload.
    """
    items = decisions.decisions if isinstance(decisions, RoutingDecisions) else decisions
    out: list[DesiredWrite] = []
    for d in items:
        if d.task is None or d.assignment is None:
            continue
        out.append(DesiredWrite(destination, UPDATE_LEAD, d.lead_key, {"owner_id": d.task.owner_id}, d.reason))
        out.append(DesiredWrite(destination, CREATE_TASK, d.lead_key, d.task.payload(),
                                f"{d.reason} [task {d.assignment.task_key}]"))
    return out


def merge_lead_updates(writes: Iterable[DesiredWrite]) -> list[DesiredWrite]:
    """One ``update_lead`` per (destination, lead): payloads merged in order (later keys win), reasons
    joined; other operations pass through. Order follows each target's first write."""
    out: list[DesiredWrite] = []
    at: dict[tuple[str, str], int] = {}
    for w in writes:
        slot = (w.destination, w.target)
        if w.operation != UPDATE_LEAD:
            out.append(w)
        elif slot not in at:
            at[slot] = len(out)
            out.append(w)
        else:
            first = out[at[slot]]
            out[at[slot]] = DesiredWrite(w.destination, UPDATE_LEAD, w.target, {**first.payload, **w.payload},
                                         f"{first.reason}; {w.reason}")
    return out


def desired_owners(state: RoutingState) -> dict[str, str]:
    """The owner leadrelay stands by for each routed lead (released and control leads excluded).

    Add it as ``owner_id`` to every score update of those leads, *after* :func:`route` has seen the same
    leads (so a person's takeover is released first): the lead's desired state then always carries the
    owner, and a later score-only write can never supersede an owner write still waiting in the outbox.
    """
    return {k: a.rep_id for k, a in sorted(state.assignments.items()) if a.status in _STANDING and a.rep_id}


# --------------------------------------------------------------------------------------------------
# Parsing the TOML table


def _table(value: Any, path: str, known: Iterable[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise RoutingSpecError(path, "must be a table")
    unknown = sorted(set(value) - set(known))
    if unknown:
        where = f"{path}.{unknown[0]}" if path else unknown[0]
        raise RoutingSpecError(where, f"unknown key; expected one of {', '.join(sorted(known))}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise RoutingSpecError(path, "must be a list")
    return list(value)


_MATCH_KEYS = ("regions", "countries", "segments", "industries", "product_lines")


def _criteria(table: Mapping[str, Any], path: str) -> Criteria:
    values = {k: frozenset(_text(v, f"{path}.{k}[{i}]") for i, v in enumerate(_list(table[k], f"{path}.{k}")))
              for k in _MATCH_KEYS if k in table}
    return _build(Criteria, path, **values)


def _build(kind: Callable[..., _T], path: str, **values: Any) -> _T:
    try:
        return kind(**values)
    except RoutingSpecError as exc:
        raise exc.within(path) from None


def _parse_spec(data: Mapping[str, Any], name: str | None) -> RoutingSpec:
    fields = {f for f in RoutingSpec.__dataclass_fields__ if f != "name"} | ({"name"} if name is None else set())
    _table(data, "", fields)
    values = {k: v for k, v in data.items() if k not in ("reps", "territories", "thresholds", "fields")}
    if name is not None:
        values["name"] = name
    elif "name" not in data:
        raise RoutingSpecError("name", "required key is missing")
    reps = []
    for i, raw in enumerate(_list(data.get("reps", []), "reps")):
        path = f"reps[{i}]"
        _table(raw, path, Rep.__dataclass_fields__)
        for key in ("id", "daily_capacity"):
            if key not in raw:
                raise RoutingSpecError(f"{path}.{key}", "required key is missing")
        reps.append(_build(Rep, path, **raw))
    territories = []
    for i, raw in enumerate(_list(data.get("territories", []), "territories")):
        path = f"territories[{i}]"
        _table(raw, path, ("name", "reps", *_MATCH_KEYS))
        for key in ("name", "reps"):
            if key not in raw:
                raise RoutingSpecError(f"{path}.{key}", "required key is missing")
        territories.append(_build(Territory, path, name=raw["name"], reps=tuple(_list(raw["reps"], f"{path}.reps")),
                                  match=_criteria(raw, path)))
    thresholds = []
    for i, raw in enumerate(_list(data.get("thresholds", []), "thresholds")):
        path = f"thresholds[{i}]"
        _table(raw, path, ("min_score", *_MATCH_KEYS))
        if "min_score" not in raw:
            raise RoutingSpecError(f"{path}.min_score", "required key is missing")
        thresholds.append(_build(Threshold, path, min_score=raw["min_score"], match=_criteria(raw, path)))
    lead_fields = _table(data.get("fields", {}), "fields", LeadFields.__dataclass_fields__)
    if not isinstance(lead_fields.get("country_regions", {}), Mapping):
        raise RoutingSpecError("fields.country_regions", "must be a table of country = region")
    if "queue_owners" in values:
        values["queue_owners"] = frozenset(_list(values["queue_owners"], "queue_owners"))
    return _build(RoutingSpec, "", reps=tuple(reps), territories=tuple(territories), thresholds=tuple(thresholds),
                  fields=_build(LeadFields, "fields", **lead_fields), **values)


__all__ = [
    "Action",
    "Assignment",
    "Breach",
    "Candidate",
    "Consent",
    "Criteria",
    "Facts",
    "LeadFields",
    "OnBreach",
    "Rep",
    "RoutingDecision",
    "RoutingDecisions",
    "RoutingSpec",
    "RoutingSpecError",
    "RoutingState",
    "Skip",
    "Status",
    "Task",
    "Territory",
    "Threshold",
    "desired_owners",
    "desired_writes",
    "merge_lead_updates",
    "route",
]
