"""The deciding core: :func:`route`, a pure function of spec, candidates, state, consent and now."""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from sync import holdouts
from sync.routing._spec import Facts, Rep, RoutingSpec
from sync.routing._state import _STANDING, Assignment, Breach, Candidate, RoutingState, Status

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
    READ_ONLY = "read_only"  # the CRM refuses writes to the lead (e.g. a converted Salesforce Lead)


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
                "owner_id": self.owner_id, "priority": self.priority}


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
    assignment are SLA-checked whether or not they are among them. A :attr:`Candidate.read_only` lead is
    never routed: it is skipped, and an assignment it still has is released (nothing can be written to it).
    ``consent`` answers whether a lead may be contacted on ``spec.consent_channel`` at ``now``: a callable
    ``(lead_key, channel, now)`` or a mapping of lead key → allowed, where a missing key means no consent.
    ``tasks_done`` maps :attr:`Assignment.task_key` to when that follow-up task was completed.
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
        lead = by_key.get(assignment.lead_key)
        if lead is not None and lead.read_only:
            run.release_read_only(assignment)
        else:
            run.follow(assignment, lead, done)
    for candidate in sorted(by_key.values(), key=lambda c: (-c.score, c.key)):
        known = state.assignments.get(candidate.key)
        if candidate.read_only:
            if known is None:
                run.skip_read_only(candidate)
            elif known.status in _STANDING and known.status is not Status.OPEN:
                run.release_read_only(known)
        elif known is None:
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

    def skip_read_only(self, lead: Candidate) -> None:
        self._skip(lead.key, Skip.READ_ONLY, "the CRM refuses writes to this lead (read-only, e.g. converted)")

    def release_read_only(self, a: Assignment) -> None:
        """The lead became read-only (converted, say): no owner or task can be written any more, so leadrelay
        steps back instead of re-routing it on an SLA breach."""
        self._release(a, "the CRM refuses writes to this lead now (read-only, e.g. converted)", a.rep_id)

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
