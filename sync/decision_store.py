"""What the decisions remember between cycles: the consent timeline, audience memberships, routing state and
holdout assignments, in the store beside the records they are about.

The decision functions (:mod:`sync.consent`, :mod:`sync.audiences`, :mod:`sync.routing`,
:mod:`sync.holdouts`) are pure; this module is their memory. Everything goes through the cycle's
:class:`~sync.store.Unit`, so it is committed with the operations it calls for, and a dry run's changes are
rolled back with the rest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

from connectors.base import ConsentChange
from sync.audiences import Membership
from sync.consent import ConsentEvent, ConsentState, events_from_change, fold
from sync.routing import Assignment, Breach, Facts, RoutingState, Status
from sync.store import Unit, _naive, utc


class ConsentEventRow(SQLModel, table=True):
    """One consent change as the source reported it; only changes of status are kept (a re-read of an
    unchanged opt-out adds nothing)."""

    __tablename__ = "consent_event"
    __table_args__ = (sa.Index("ix_consent_lead", "source", "lead_key", "channel"),)
    source: str = Field(primary_key=True)
    key: str = Field(primary_key=True)
    lead_key: str
    channel: str
    status: str
    effective_at: datetime = Field(sa_type=sa.DateTime())
    recorded_at: datetime = Field(sa_type=sa.DateTime())
    lawful_basis: str | None = None
    origin: str | None = None


class MembershipRow(SQLModel, table=True):
    """One stay of one person in one audience, with the identifiers that were sent for the add (a removal
    must send the row that went in, even after the person's e-mail changed)."""

    __tablename__ = "membership"
    __table_args__ = (sa.Index("ix_membership_person", "audience", "person"),)
    id: int | None = Field(default=None, primary_key=True)
    audience: str
    person: str
    entered_at: datetime = Field(sa_type=sa.DateTime())
    entry_reason: str
    added_by_leadrelay: bool = True
    exited_at: datetime | None = Field(default=None, sa_type=sa.DateTime())
    exit_reason: str | None = None
    identifiers: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class AssignmentRow(SQLModel, table=True):
    """A lead's routing state under one rule (the whole :class:`~sync.routing.Assignment`)."""

    __tablename__ = "assignment"
    rule: str = Field(primary_key=True)
    lead_key: str = Field(primary_key=True)
    status: str
    rep_id: str | None = None
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class RoutingCounterRow(SQLModel, table=True):
    """Routing's counters: assignments per rep and rep-local day (``kind='daily'``) and each rep's smooth
    round-robin position (``kind='current'``, ``day=''``)."""

    __tablename__ = "routing_counter"
    rule: str = Field(primary_key=True)
    kind: str = Field(primary_key=True)
    rep_id: str = Field(primary_key=True)
    day: str = Field(primary_key=True)
    value: int


class HoldoutRow(SQLModel, table=True):
    """A subject's entry into a rule's experiment: treated or control, decided once."""

    __tablename__ = "holdout"
    rule: str = Field(primary_key=True)
    subject: str = Field(primary_key=True)
    control: bool
    share: float
    action: str
    decided_at: datetime = Field(sa_type=sa.DateTime())


class ShadowScoreRow(SQLModel, table=True):
    """A challenger's score of a lead, scored in shadow beside the champion's: never planned, never pushed.

    The latest score per lead and version, plus the first one with the champion's probability at that time —
    what ``leadrelay model status`` compares on outcomes once the horizon has passed."""

    __tablename__ = "shadow_score"
    source: str = Field(primary_key=True)
    lead_key: str = Field(primary_key=True)
    model_version: str = Field(primary_key=True)
    probability: float
    score: int
    band: str
    scored_at: datetime = Field(sa_type=sa.DateTime())
    first_scored_at: datetime = Field(sa_type=sa.DateTime())
    first_probability: float
    first_champion_probability: float


class AccountShadowScoreRow(SQLModel, table=True):
    """A challenger account model's score of an account, scored in shadow beside the champion account
    model's (the account counterpart of :class:`ShadowScoreRow`): never planned, never pushed."""

    __tablename__ = "account_shadow_score"
    source: str = Field(primary_key=True)
    account_key: str = Field(primary_key=True)
    model_version: str = Field(primary_key=True)
    probability: float
    score: int
    band: str
    scored_at: datetime = Field(sa_type=sa.DateTime())
    first_scored_at: datetime = Field(sa_type=sa.DateTime())
    first_probability: float
    first_champion_probability: float


def save_shadow_scores(unit: Unit, source: str, version: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows of ``lead_key, probability, score, band, champion_probability, scored_at``; the first score of
    each lead is kept, the latest replaced."""
    _save_shadow(unit, ShadowScoreRow.__table__, "lead_key", source, version, rows)


def save_account_shadow_scores(unit: Unit, source: str, version: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows of ``account_key, probability, score, band, champion_probability, scored_at`` (the account model's
    challenger); the first score of each account is kept, the latest replaced."""
    _save_shadow(unit, AccountShadowScoreRow.__table__, "account_key", source, version, rows)


def _save_shadow(unit: Unit, table: sa.Table, key: str, source: str, version: str,
                 rows: Sequence[Mapping[str, Any]]) -> None:
    unit._exec_many(table, [
        {"source": source, key: r[key], "model_version": version, "probability": float(r["probability"]),
         "score": int(r["score"]), "band": str(r["band"]), "scored_at": _naive(r["scored_at"]),
         "first_scored_at": _naive(r["scored_at"]), "first_probability": float(r["probability"]),
         "first_champion_probability": float(r["champion_probability"])} for r in rows
    ], ["source", key, "model_version"], update=["probability", "score", "band", "scored_at"])


class AccountScoreRow(SQLModel, table=True):
    """The account model's latest score of an account (``[scoring.account]``). It rides on its leads' score
    updates (``account_score``/``account_band``); nothing is written to the account object itself."""

    __tablename__ = "account_score"
    source: str = Field(primary_key=True)
    account_key: str = Field(primary_key=True)
    probability: float
    score: int
    band: str
    model_version: str
    scored_at: datetime = Field(sa_type=sa.DateTime())


def save_account_scores(unit: Unit, source: str, rows: Sequence[Mapping[str, Any]]) -> None:
    """Rows of ``account_key, probability, score, band, model_version, scored_at``; the latest replaces."""
    unit._exec_many(AccountScoreRow.__table__, [
        {"source": source, "account_key": r["account_key"], "probability": float(r["probability"]),
         "score": int(r["score"]), "band": str(r["band"]), "model_version": r["model_version"],
         "scored_at": _naive(r["scored_at"])} for r in rows
    ], ["source", "account_key"])


def account_scores(unit: Unit, source: str) -> dict[str, dict[str, Any]]:
    t = AccountScoreRow.__table__
    rows = unit.conn.execute(sa.select(t).where(t.c.source == source))
    return {r.account_key: {**dict(r._mapping), "scored_at": _aware(r.scored_at)} for r in rows}


def shadow_scores(unit: Unit, source: str, version: str) -> list[dict[str, Any]]:
    return _shadow_rows(unit, ShadowScoreRow.__table__, source, version)


def account_shadow_scores(unit: Unit, source: str, version: str) -> list[dict[str, Any]]:
    """The account challenger ``version``'s stored shadow scores (``account_key``, latest and first)."""
    return _shadow_rows(unit, AccountShadowScoreRow.__table__, source, version)


def _shadow_rows(unit: Unit, t: sa.Table, source: str, version: str) -> list[dict[str, Any]]:
    rows = unit.conn.execute(sa.select(t).where(t.c.source == source, t.c.model_version == version))
    return [{**dict(r._mapping), "scored_at": _aware(r.scored_at), "first_scored_at": _aware(r.first_scored_at)}
            for r in rows]


def account_score(unit: Unit, source: str, account_key: str) -> dict[str, Any] | None:
    """The account model's latest score of one account (``None`` if it was never scored)."""
    t = AccountScoreRow.__table__
    row = unit.conn.execute(sa.select(t).where(t.c.source == source, t.c.account_key == account_key)).first()
    return None if row is None else {**dict(row._mapping), "scored_at": _aware(row.scored_at)}


# --------------------------------------------------------------------------------------------------
# Consent


def save_consent(unit: Unit, source: str, changes: Sequence[ConsentChange], now: datetime) -> int:
    """Store the changes that change something: a new key whose status differs from the latest one on
    record for its person and channel (or is dated earlier, which may still reorder the timeline).
    Returns how many were stored."""
    if not changes:
        return 0
    t = ConsentEventRow.__table__
    leads = sorted({c.lead_key for c in changes})
    latest: dict[tuple[str, str], tuple[datetime, str]] = {}
    known: set[str] = set()
    for chunk in unit._chunks(leads):
        for row in unit.conn.execute(sa.select(t.c.key, t.c.lead_key, t.c.channel, t.c.status, t.c.effective_at)
                                     .where(t.c.source == source, unit._among(t.c.lead_key, chunk))):
            known.add(row.key)
            at = utc(row.effective_at)
            assert at is not None
            slot = (row.lead_key, row.channel)
            if slot not in latest or at >= latest[slot][0]:
                latest[slot] = (at, row.status)
    rows = []
    for c in sorted(changes, key=lambda c: (c.effective_at, c.key)):
        if c.key in known:
            continue
        slot = (c.lead_key, c.channel)
        before = latest.get(slot)
        if before is not None and before[1] == c.status.value and c.effective_at >= before[0]:
            continue  # the same status again: nothing changed
        known.add(c.key)
        if before is None or c.effective_at >= before[0]:
            latest[slot] = (c.effective_at, c.status.value)
        rows.append({"source": source, "key": c.key, "lead_key": c.lead_key, "channel": c.channel,
                     "status": c.status.value, "effective_at": _naive(c.effective_at), "recorded_at": _naive(now),
                     "lawful_basis": c.lawful_basis, "origin": c.source})
    unit._exec_many(t, rows, ["source", "key"])
    return len(rows)


def load_consent(unit: Unit, source: str, lead_keys: Iterable[str] | None = None) -> ConsentState:
    """The consent timelines of these leads (all of the source's when ``lead_keys`` is None)."""
    t = ConsentEventRow.__table__
    query = sa.select(t).where(t.c.source == source)
    events: list[ConsentEvent] = []

    def take(rows: Iterable[Any]) -> None:
        for r in rows:
            change = ConsentChange(r.key, r.lead_key, r.channel, r.status, _aware(r.effective_at),
                                   r.lawful_basis, r.origin)
            try:
                events.extend(events_from_change(change, _aware(r.recorded_at)))
            except ValueError:
                continue  # a channel or basis the policy does not know: kept in the store, not decided on

    if lead_keys is None:
        take(unit.conn.execute(query))
    else:
        for chunk in unit._chunks(sorted(set(lead_keys))):
            take(unit.conn.execute(query.where(unit._among(t.c.lead_key, chunk))))
    return fold(events)


def consent_history(unit: Unit, source: str, lead_key: str) -> list[dict[str, Any]]:
    t = ConsentEventRow.__table__
    rows = unit.conn.execute(sa.select(t).where(t.c.source == source, t.c.lead_key == lead_key)
                             .order_by(t.c.effective_at, t.c.key))
    return [{"channel": r.channel, "status": r.status, "effective_at": _aware(r.effective_at).isoformat(),
             "lawful_basis": r.lawful_basis, "source": r.origin} for r in rows]


# --------------------------------------------------------------------------------------------------
# Identity


def identity_inputs(unit: Unit, source: str) -> tuple[list[tuple[str, str | None, str | None]],
                                                      list[tuple[str, str | None]]]:
    """Every lead's ``(key, email, account_key)`` and every account's ``(key, domain)`` of the source: the
    few columns identity decisions read, without loading whole records."""
    from sync.store import AccountRow, LeadRow

    leads, accounts = LeadRow.__table__, AccountRow.__table__
    people = [(r.key, r.email, r.account_key) for r in unit.conn.execute(
        sa.select(leads.c.key, leads.c.email, leads.c.account_key).where(leads.c.source == source)
        .order_by(leads.c.key))]
    domains = [(r.key, r.domain) for r in unit.conn.execute(
        sa.select(accounts.c.key, accounts.c.domain).where(accounts.c.source == source).order_by(accounts.c.key))]
    return people, domains


# --------------------------------------------------------------------------------------------------
# Memberships


def load_memberships(unit: Unit, audience: str, *, active_only: bool = True
                     ) -> tuple[list[Membership], dict[str, dict[str, Any]]]:
    """An audience's memberships (the active ones by default) and the identifiers sent for each active one."""
    t = MembershipRow.__table__
    query = sa.select(t).where(t.c.audience == audience)
    if active_only:
        query = query.where(t.c.exited_at.is_(None))
    members, sent = [], {}
    for r in unit.conn.execute(query.order_by(t.c.person, t.c.entered_at)):
        m = Membership(person=r.person, audience=r.audience, entered_at=_aware(r.entered_at),
                       entry_reason=r.entry_reason, added_by_leadrelay=r.added_by_leadrelay,
                       exited_at=utc(r.exited_at), exit_reason=r.exit_reason)
        members.append(m)
        if m.active:
            sent[m.person] = dict(r.identifiers)
    return members, sent


def record_stays(unit: Unit, audience: str, added: Sequence[tuple[Membership, Mapping[str, Any]]],
                 removed: Sequence[tuple[str, datetime, str]], now: datetime) -> None:
    """New stays (with the identifiers sent) and closed ones: (person, entered_at, reason)."""
    t = MembershipRow.__table__
    for person, entered_at, reason in removed:
        unit.conn.execute(t.update().where(t.c.audience == audience, t.c.person == person,
                                           t.c.entered_at == _naive(entered_at), t.c.exited_at.is_(None))
                          .values(exited_at=_naive(now), exit_reason=reason))
    unit._insert_many(t, [{"audience": audience, "person": m.person, "entered_at": _naive(m.entered_at),
                           "entry_reason": m.entry_reason, "added_by_leadrelay": m.added_by_leadrelay,
                           "exited_at": None, "exit_reason": None, "identifiers": dict(ids)}
                          for m, ids in added])


def membership_history(unit: Unit, person: str) -> list[dict[str, Any]]:
    t = MembershipRow.__table__
    rows = unit.conn.execute(sa.select(t).where(t.c.person == person).order_by(t.c.entered_at))
    return [{"audience": r.audience, "entered_at": _aware(r.entered_at).isoformat(), "entry_reason": r.entry_reason,
             "exited_at": utc(r.exited_at).isoformat() if r.exited_at else None,  # type: ignore[union-attr]
             "exit_reason": r.exit_reason} for r in rows]


def last_activities(unit: Unit, source: str, lead_keys: Sequence[str]) -> dict[str, dict[str, datetime]]:
    """The latest occurrence of each activity type per lead (what audience time-to-live reads)."""
    from sync.store import ActivityRow

    t = ActivityRow.__table__
    out: dict[str, dict[str, datetime]] = {}
    for chunk in unit._chunks(sorted(lead_keys)):
        for lead_key, kind, at in unit.conn.execute(
                sa.select(t.c.lead_key, t.c.type, sa.func.max(t.c.occurred_at))
                .where(t.c.source == source, unit._among(t.c.lead_key, chunk)).group_by(t.c.lead_key, t.c.type)):
            out.setdefault(lead_key, {})[kind] = _aware(at)
    return out


def supersede_stays(unit: Unit, destination: str, operations: Sequence[str], audience_id: str,
                    persons: Iterable[str], now: datetime) -> int:
    """Supersede every open audience operation for these people in this audience, whatever its stay.

    Audience writes are set operations keyed by stay (``<audience_id>:<person>@<entered_at>``); keeping at most
    one open operation per person and audience makes their order irrelevant, so an add can never land after
    the remove that should have followed it."""
    from sync.store import OPEN_STATUSES, OutboxRow

    t = OutboxRow.__table__
    people = sorted(set(persons))
    changed = 0
    for start in range(0, len(people), 200):
        prefixes = [t.c.target.startswith(f"{audience_id}:{p}@", autoescape=True) for p in people[start:start + 200]]
        result = unit.conn.execute(
            t.update().where(t.c.destination == destination, t.c.operation.in_(operations),
                             t.c.status.in_(OPEN_STATUSES), sa.or_(*prefixes))
            .values(status="superseded", updated_at=_naive(now)))
        changed += result.rowcount or 0
    return changed


# --------------------------------------------------------------------------------------------------
# Routing


def _assignment_data(a: Assignment) -> dict[str, Any]:
    data = asdict(a)
    for key in ("assigned_at", "due_at", "closed_at"):
        data[key] = data[key].isoformat() if data[key] is not None else None
    data["status"] = a.status.value
    data["breaches"] = [{"rep_id": b.rep_id, "due_at": b.due_at.isoformat(), "noticed_at": b.noticed_at.isoformat()}
                        for b in a.breaches]
    return data


def _assignment(data: Mapping[str, Any]) -> Assignment:
    def when(value: str | None) -> datetime | None:
        return datetime.fromisoformat(value) if value else None

    assigned = when(data["assigned_at"])
    assert assigned is not None
    return Assignment(
        lead_key=data["lead_key"], rep_id=data["rep_id"], assigned_at=assigned, due_at=when(data["due_at"]),
        status=Status(data["status"]), score=int(data["score"]), facts=Facts(**data["facts"]),
        prior_owner=data["prior_owner"], attempt=int(data["attempt"]),
        breaches=tuple(Breach(b["rep_id"], datetime.fromisoformat(b["due_at"]),
                              datetime.fromisoformat(b["noticed_at"])) for b in data["breaches"]),
        closed_at=when(data["closed_at"]), confirmed=bool(data["confirmed"]))


def load_routing(unit: Unit, rule: str) -> RoutingState:
    a, c = AssignmentRow.__table__, RoutingCounterRow.__table__
    assignments = {r.lead_key: _assignment(r.data)
                   for r in unit.conn.execute(sa.select(a.c.lead_key, a.c.data).where(a.c.rule == rule))}
    daily: dict[tuple[str, str], int] = {}
    current: dict[str, int] = {}
    for r in unit.conn.execute(sa.select(c).where(c.c.rule == rule)):
        if r.kind == "daily":
            daily[(r.rep_id, r.day)] = r.value
        else:
            current[r.rep_id] = r.value
    return RoutingState(assignments, daily, current)


def save_routing(unit: Unit, rule: str, before: RoutingState, after: RoutingState) -> None:
    """Write what changed between two states (assignments by value; counters replaced whole: they are few)."""
    a, c = AssignmentRow.__table__, RoutingCounterRow.__table__
    changed = [x for k, x in after.assignments.items() if before.assignments.get(k) != x]
    unit._exec_many(a, [{"rule": rule, "lead_key": x.lead_key, "status": x.status.value, "rep_id": x.rep_id,
                         "data": _assignment_data(x)} for x in changed], ["rule", "lead_key"])
    if dict(before.daily) != dict(after.daily) or dict(before.current) != dict(after.current):
        unit.conn.execute(c.delete().where(c.c.rule == rule))
        unit._insert_many(c, [{"rule": rule, "kind": "daily", "rep_id": rep, "day": day, "value": n}
                              for (rep, day), n in sorted(after.daily.items())]
                          + [{"rule": rule, "kind": "current", "rep_id": rep, "day": "", "value": n}
                             for rep, n in sorted(after.current.items())])


def owners_by_lead(unit: Unit, rules: Sequence[str]) -> dict[str, str]:
    """The owner leadrelay stands by for each routed lead (see :func:`sync.routing.desired_owners`)."""
    from sync.routing import desired_owners

    out: dict[str, str] = {}
    for rule in rules:
        out.update(desired_owners(load_routing(unit, rule)))
    return out


def assignment_of(unit: Unit, lead_key: str) -> list[dict[str, Any]]:
    a = AssignmentRow.__table__
    return [{"rule": r.rule, **r.data} for r in unit.conn.execute(sa.select(a).where(a.c.lead_key == lead_key))]


# --------------------------------------------------------------------------------------------------
# Holdouts


def record_holdouts(unit: Unit, entries: Iterable[tuple[str, str, bool, float, str, datetime]]) -> None:
    """(rule, subject, control, share, action, decided_at); a subject's first entry into a rule stays."""
    rows = [{"rule": r, "subject": s, "control": ctl, "share": share, "action": action, "decided_at": _naive(at)}
            for r, s, ctl, share, action, at in entries]
    unit._exec_many(HoldoutRow.__table__, rows, ["rule", "subject"], update=[])


def holdout_cohort(unit: Unit, rule: str | None = None) -> list[dict[str, Any]]:
    t = HoldoutRow.__table__
    query = sa.select(t) if rule is None else sa.select(t).where(t.c.rule == rule)
    return [{"rule": r.rule, "subject": r.subject, "control": r.control, "share": r.share, "action": r.action,
             "decided_at": _aware(r.decided_at)} for r in unit.conn.execute(query.order_by(t.c.rule, t.c.subject))]


def _aware(value: datetime) -> datetime:
    out = utc(value)
    assert out is not None
    return out


__all__ = [
    "AccountScoreRow",
    "AccountShadowScoreRow",
    "AssignmentRow",
    "ConsentEventRow",
    "HoldoutRow",
    "MembershipRow",
    "RoutingCounterRow",
    "ShadowScoreRow",
    "account_score",
    "account_scores",
    "account_shadow_scores",
    "assignment_of",
    "consent_history",
    "holdout_cohort",
    "identity_inputs",
    "last_activities",
    "load_consent",
    "load_memberships",
    "load_routing",
    "owners_by_lead",
    "record_holdouts",
    "record_stays",
    "save_account_scores",
    "save_account_shadow_scores",
    "save_consent",
    "save_routing",
    "save_shadow_scores",
    "shadow_scores",
    "supersede_stays",
]
