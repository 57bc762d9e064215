"""What routing reads and carries between runs: scored candidates, assignments and the rotation."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from connectors.base import Account, Lead
from sync.routing._spec import Facts, LeadFields, Rep

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
    read_only: bool = False  # the CRM refuses writes to the lead (Lead.read_only): never routed

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
        return cls(lead.key, score, facts, lead.owner_id, name, lead.email, band, tuple(reasons), lead.read_only)


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
