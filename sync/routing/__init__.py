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

from sync.routing._decide import Action, Consent, RoutingDecision, RoutingDecisions, Skip, Task, route
from sync.routing._spec import (
    Criteria,
    Facts,
    LeadFields,
    OnBreach,
    Rep,
    RoutingSpec,
    RoutingSpecError,
    Territory,
    Threshold,
)
from sync.routing._state import Assignment, Breach, Candidate, RoutingState, Status
from sync.routing._writes import desired_owners, desired_writes, merge_lead_updates

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
