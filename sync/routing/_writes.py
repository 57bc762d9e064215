"""Routing decisions -> the planner's desired writes (owner updates and follow-up tasks)."""

from __future__ import annotations

from collections.abc import Iterable

from sync.planner import DesiredWrite
from sync.routing._decide import RoutingDecision, RoutingDecisions
from sync.routing._spec import CREATE_TASK, UPDATE_LEAD
from sync.routing._state import _STANDING, RoutingState

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
        # One task per hand-over: the task key (lead and attempt) is the ledger target, so a reroute's task is
        # not mistaken for the first one (the outbox hands the connector the lead id before the "#").
        out.append(DesiredWrite(destination, CREATE_TASK, d.assignment.task_key, d.task.payload(),
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
