"""The *Decide* step of a cycle (DESIGN.md step 4): consent, SDR routing, audiences and holdouts, wired to
the store and the planner.

The decisions themselves are pure functions elsewhere (:mod:`sync.consent`, :mod:`sync.routing`,
:mod:`sync.audiences`, :mod:`sync.holdouts`). This module reads their inputs from the cycle's unit of work,
calls them with the cycle's ``now``, stores what they remember (memberships, assignments, counters, holdout
cohorts) and hands their writes to the planner — all in the cycle's transaction, so a dry run decides
exactly what a real run would and then rolls it all back.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from connectors.base import Account, Lead
from sync import decision_store as memory
from sync import holdouts
from sync.audiences import (
    ADD_OPERATION,
    REMOVE_OPERATION,
    AudienceDecision,
    AudienceDecisions,
    AudienceSpec,
    Cause,
    Membership,
    audience_writes,
    lead_identifiers,
    matched_identifiers,
)
from sync.audiences import Candidate as AudienceCandidate
from sync.audiences import decide as decide_audience
from sync.consent import Channel, ConsentPolicy, ConsentView, Person, google_ads_consent
from sync.identity import AccountIndex, AccountMatch, find_duplicates, normalize_email
from sync.masking import mask_email
from sync.routing import Action, RoutingSpec, desired_writes, route
from sync.routing import Candidate as RoutingCandidate

if TYPE_CHECKING:
    from sync.pipeline import Cycle

CHUNK = 5_000  # leads read at a time while gathering candidates
# Activity types that show a rep followed a routed lead up (the follow-up counts as done).
FOLLOW_UP_ACTIVITIES = frozenset({"sales_touch", "meeting"})
# Connectors that take Google Ads' consent fields with each identifier.
CONSENT_FIELDS = frozenset({"google_ads"})
# A lead without an account in the CRM is attached to the account its e-mail domain matches from this
# confidence up (the exact domain is 0.95, a first-level sub-domain 0.8): routing then sees that account's owner
# and firmographics. Below it, or when several accounts share the domain, the match is only reported.
MATCH_CONFIDENCE = 0.8
IDENTITY_SAMPLES = 5


@dataclass
class Decisions:
    """What the Decide step did this cycle, for the report (and, per person, for the audit log)."""

    routing: dict[str, Any] = field(default_factory=dict)
    audiences: dict[str, dict[str, Any]] = field(default_factory=dict)
    identity: dict[str, Any] = field(default_factory=dict)  # duplicate people and account matches, reported
    suppressed: Counter[str] = field(default_factory=Counter)  # leads a decision skipped for consent, per channel
    warnings: list[str] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    audit: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)  # (kind, subject, data)

    def as_dict(self) -> dict[str, Any]:
        return {"routing": self.routing, "audiences": self.audiences, "identity": self.identity,
                "suppressed": dict(self.suppressed), "warnings": self.warnings, "samples": self.samples}


def lead_of(row: Mapping[str, Any]) -> Lead:
    """A stored lead row as the canonical record."""
    return Lead(key=row["key"], updated_at=row["updated_at"], email=row["email"], first_name=row["first_name"],
                last_name=row["last_name"], account_key=row["account_key"], owner_id=row["owner_id"],
                country=row["country"], title=row["title"], lifecycle_stage=row["lifecycle_stage"],
                created_at=row["created_at"], attributes=row["attributes"] or {},
                read_only=bool(row.get("read_only", False)))


def account_of(row: Mapping[str, Any]) -> Account:
    return Account(key=row["key"], updated_at=row["updated_at"], name=row["name"], domain=row["domain"],
                   industry=row["industry"], employees=row["employees"], country=row["country"],
                   annual_revenue=row["annual_revenue"], attributes=row["attributes"] or {})


def score_payload(row: Mapping[str, Any]) -> dict[str, Any]:
    """The ``update_lead`` score payload of a stored score (what the score step sends)."""
    return {"score": row["score"], "band": row["band"], "reasons": list(row["reasons_positive"]),
            "model_version": row["model_version"], "scored_at": row["scored_at"].isoformat()}


class Decide:
    """One cycle's decisions; :meth:`run` after scoring, before delivery."""

    def __init__(self, cycle: Cycle, policy: ConsentPolicy) -> None:
        self.cycle = cycle
        self.unit = cycle.unit
        self.source = cycle.pipe.source
        self.now = cycle.now
        self.policy = policy
        self.result = Decisions()
        self._consent: ConsentView | None = None
        self.matched: dict[str, AccountMatch] = {}  # lead key -> confident account match (leads without one)

    def consent(self, people: Mapping[str, Person]) -> ConsentView:
        if self._consent is None:
            self._consent = ConsentView(memory.load_consent(self.unit, self.source), self.policy, dict(people))
        else:
            self._consent = replace(self._consent, people={**self._consent.people, **people})
        return self._consent

    def run(self, scored: Iterable[str]) -> Decisions:
        pipe = self.cycle.pipe
        self.identify()
        if pipe.routing is not None:
            self.route(self.cycle.settings.routing_rule(pipe.routing), set(scored))
        for name in pipe.audiences:
            spec, share = self.cycle.settings.audience(name)
            self.audience(spec, share)
        return self.result

    # -- identity -----------------------------------------------------------------------------------

    def identify(self) -> dict[str, Any]:
        """Duplicate people (one mailbox, several leads: reported, never merged) and the account each lead
        without one matches by e-mail domain (free mail never matches; ambiguous domains are not guessed)."""
        people, domains = memory.identity_inputs(self.unit, self.source)
        groups = find_duplicates((key, email) for key, email, _ in people)
        index = AccountIndex.build(domains)
        counts: Counter[str] = Counter()
        samples: list[dict[str, Any]] = []
        by_domain: dict[str, AccountMatch | None] = {}  # a match depends only on the domain: once per domain
        for key, email, account_key in people:
            if account_key:
                continue
            counts["without_account"] += 1
            address = normalize_email(email)
            domain = address.rpartition("@")[2] if address else ""
            if domain not in by_domain:
                by_domain[domain] = index.match(address)
            found = by_domain[domain]
            if found is None:
                counts["unmatched"] += 1
            elif found.ambiguous:
                counts["ambiguous"] += 1
            elif found.confidence >= MATCH_CONFIDENCE:
                counts["matched"] += 1
                self.matched[key] = found
            else:
                counts["low_confidence"] += 1
            if found is not None and len(samples) < IDENTITY_SAMPLES:
                samples.append({"lead": key, "account": found.account_key, "confidence": found.confidence,
                                "reason": found.reason})
        self.result.identity = {
            "duplicates": {"groups": len(groups), "people": sum(len(g.keys) for g in groups),
                           "samples": [{"address": mask_email(g.address), "leads": list(g.keys)}
                                       for g in groups[:IDENTITY_SAMPLES]]},
            "accounts": {"without_account": counts["without_account"], "matched": counts["matched"],
                         "low_confidence": counts["low_confidence"], "ambiguous": counts["ambiguous"],
                         "unmatched": counts["unmatched"], "min_confidence": MATCH_CONFIDENCE, "samples": samples},
        }
        return self.result.identity

    # -- routing ------------------------------------------------------------------------------------

    def route(self, spec: RoutingSpec, scored: set[str]) -> None:
        state = memory.load_routing(self.unit, spec.name)
        floor = min([spec.min_score, *(t.min_score for t in spec.thresholds)])
        keys = sorted(scored | set(state.assignments))
        candidates: list[RoutingCandidate] = []
        people: dict[str, Person] = {}
        scores_of: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            scores = self.unit.scores(self.source, chunk)
            wanted = [k for k in chunk if k in state.assignments or (k in scores and scores[k]["score"] >= floor)]
            rows = self.unit.load_leads(self.source, wanted)
            # A lead the CRM left without an account is routed with the account its domain confidently matches.
            account_of_lead = {r["key"]: r["account_key"] or (m.account_key if (m := self.matched.get(r["key"]))
                                                               else None) for r in rows}
            accounts = self.unit.load_accounts(self.source, [a for a in account_of_lead.values() if a])
            for row in rows:
                score = scores.get(row["key"])
                if score is None:
                    continue
                lead = lead_of(row)
                account_key = account_of_lead[row["key"]]
                account = accounts.get(account_key) if account_key else None
                candidates.append(RoutingCandidate.from_records(
                    lead, account_of(account) if account else None, int(score["score"]), fields=spec.fields,
                    band=score["band"], reasons=score["reasons_positive"]))
                people[lead.key] = Person(lead.key, lead.email, lead.account_key)
                scores_of[lead.key] = score
        view = self.consent(people)
        done = self._follow_ups_done(state.assignments.values())
        decided = route(spec, candidates, state, view.allows, self.now, tasks_done=done)
        memory.save_routing(self.unit, spec.name, state, decided.state)
        memory.record_holdouts(self.unit, [(c.rule, c.subject, c.control, c.share, c.value.value, c.decided_at)
                                           for c in decided.cohort])
        writes = desired_writes(decided, self.cycle.pipe.destination)
        if self.cycle.pipe.push_scores:
            # The owner rides on the lead's score update: one update_lead per lead, one ledger payload.
            writes = [replace(w, payload={**score_payload(scores_of[w.target]), **w.payload})
                      if w.operation == "update_lead" and w.target in scores_of else w for w in writes]
        summary = decided.summary()
        self.result.routing = {"rule": spec.name, **summary}
        self.result.suppressed[spec.consent_channel] += summary["skipped"].get("no_consent", 0)
        for d in decided.decisions:
            if d.action is Action.SKIP and d.skip is not None and d.skip.value == "below_threshold":
                continue  # the common case; the score itself is audited
            entry = {"rule": spec.name, "action": d.action.value, "reason": d.reason, "rep": d.rep_id,
                     "previous_rep": d.previous_rep}
            self.result.audit.append(("routing", d.lead_key, entry))
            if d.action is not Action.SKIP and len(self.result.samples) < 10:
                self.result.samples.append({"lead": d.lead_key, **entry})
        self.cycle.plan(writes)

    def _follow_ups_done(self, assignments: Iterable[Any]) -> dict[str, datetime]:
        """Follow-ups the CRM shows as done: a sales touch or meeting on the lead after it was assigned."""
        open_ = [a for a in assignments if a.status.value == "open"]
        if not open_:
            return {}
        since = min(a.assigned_at for a in open_)
        activities = self.unit.load_activities(self.source, [a.lead_key for a in open_], since)
        done: dict[str, datetime] = {}
        for a in open_:
            times = [at for kind, at, _ in activities.get(a.lead_key, ())
                     if kind in FOLLOW_UP_ACTIVITIES and a.assigned_at <= at <= self.now]
            if times:
                done[a.task_key] = min(times)
        return done

    # -- audiences ----------------------------------------------------------------------------------

    def audience(self, spec: AudienceSpec, share: float) -> None:
        """Decide one audience's adds and removes. Read-only leads (:attr:`Lead.read_only`, e.g. a converted
        Salesforce Lead) are decided like any other: the audience lives in an ad platform or list, a separate
        system that still takes the person, and a converted person may well belong in (or be excluded by) it."""
        members, sent = memory.load_memberships(self.unit, spec.name)
        candidates: list[AudienceCandidate] = []
        leads: dict[str, Lead] = {}
        people: dict[str, Person] = {}
        keys = self.unit.lead_keys(self.source)
        for start in range(0, len(keys), CHUNK):
            chunk = keys[start:start + CHUNK]
            scores = self.unit.scores(self.source, chunk)
            last = memory.last_activities(self.unit, self.source, chunk)
            for row in self.unit.load_leads(self.source, chunk):
                lead = lead_of(row)
                score = scores.get(lead.key)
                people[lead.key] = Person(lead.key, lead.email, lead.account_key)
                if score is None:
                    continue
                leads[lead.key] = lead
                candidates.append(AudienceCandidate(lead.key, score["score"], score["scored_at"],
                                                    last.get(lead.key, {}), lead.email, lead.account_key))
        view = self.consent(people)
        decided = decide_audience(spec, members, candidates, view, self.now)
        rule = f"audience:{spec.name}"
        treated, control = [], []
        for d in decided.adds:
            (control if holdouts.in_control(d.person, rule, share) else treated).append(d)
        memory.record_holdouts(self.unit, [(rule, d.person, d in control, share, "add", self.now)
                                           for d in decided.adds])
        moved_out, moved_in = self._identifiers_changed(spec, decided, members, sent, leads)
        acted = replace(decided, adds=(*treated, *moved_in), removes=(*decided.removes, *moved_out))
        # By person, separately for adds and removes: a person whose e-mail changed has both, the remove with
        # the identifiers the add once sent and the new add with today's.
        added = {d.person: self._identifiers(spec, leads[d.person], view) for d in acted.adds}
        removed = {d.person: sent.get(d.person, {}) for d in acted.removes}
        writes = (*audience_writes(spec, replace(acted, removes=()), added),
                  *audience_writes(spec, replace(acted, adds=()), removed))
        memory.supersede_stays(self.unit, spec.destination, (ADD_OPERATION, REMOVE_OPERATION), spec.audience_id,
                               [d.person for d in (*acted.adds, *acted.removes)], self.now)
        memory.record_stays(
            self.unit, spec.name,
            [(Membership(person=d.person, audience=spec.name, entered_at=d.entered_at, entry_reason=d.reason,
                         added_by_leadrelay=True), added[d.person]) for d in acted.adds],
            [(d.person, d.entered_at, d.reason) for d in acted.removes], self.now)
        self._report_audience(spec, acted, control, candidates, view)
        self.result.audiences[spec.name]["email_changed"] = sum(d.cause is Cause.EMAIL_CHANGED for d in moved_in)
        self.result.audiences[spec.name]["identifiers_changed"] = len(moved_in)
        self.cycle.plan(list(writes))

    def _identifiers_changed(self, spec: AudienceSpec, decided: AudienceDecisions, members: Sequence[Membership],
                             sent: Mapping[str, Mapping[str, Any]], leads: Mapping[str, Lead]
                             ) -> tuple[list[AudienceDecision], list[AudienceDecision]]:
        """Members who stay but one of whose identifiers the add sent (e-mail, phone, name, …) changed since,
        as the destination normalises and hashes them (:func:`sync.audiences.matched_identifiers`): the stay
        that went in with the old identifiers is closed (its remove sends them) and a new stay is added with
        the current ones. The person keeps their key, consent and place in the audience; only the identifiers
        move. An identifier gained (none was sent) takes nothing back, so it is not a change; an id-based list
        (Marketo) holds the person by id and never re-keys."""
        connection = self.cycle.settings.connections[spec.destination]
        if matched_identifiers(connection.type, {}, connection.options) is None:
            return [], []
        leaving = {d.person for d in (*decided.removes, *decided.held, *decided.not_ours)}
        stays = {m.person: m for m in members
                 if m.audience == spec.name and m.active and m.added_by_leadrelay and m.person not in leaving
                 and m.person in leads}
        out, into = [], []
        for person in sorted(stays):
            before = sent.get(person) or {}
            old = matched_identifiers(connection.type, before, connection.options) or {}
            new = matched_identifiers(connection.type, lead_identifiers(leads[person]), connection.options) or {}
            moved = sorted(k for k, v in old.items() if new.get(k) != v)
            if not moved:
                continue
            was = before.get("email")
            old_email = normalize_email(was if isinstance(was, str) else None)
            new_email = normalize_email(leads[person].email)
            if old_email is not None and old_email != new_email:
                cause = Cause.EMAIL_CHANGED
                what = (f"e-mail changed ({mask_email(old_email)} → {mask_email(new_email)})" if new_email
                        else f"e-mail removed ({mask_email(old_email)})")
            else:
                cause, what = Cause.IDENTIFIERS_CHANGED, f"identifiers changed ({', '.join(moved)})"
            reason = f"{what}: identifiers replaced, same person"
            out.append(AudienceDecision(person, spec.name, "remove", cause, reason, stays[person].entered_at))
            into.append(AudienceDecision(person, spec.name, "add", cause, reason, self.now))
        return out, into

    def _identifiers(self, spec: AudienceSpec, lead: Lead, view: ConsentView) -> dict[str, Any]:
        ids: dict[str, Any] = lead_identifiers(lead)
        kind = self.cycle.settings.connections[spec.destination].type
        if kind in CONSENT_FIELDS:
            ids["consent"] = google_ads_consent(view.state, view.policy, view.person(lead.key), self.now)
        return ids

    def _report_audience(self, spec: AudienceSpec, decided: AudienceDecisions, control: Sequence[Any],
                         candidates: Sequence[AudienceCandidate], view: ConsentView) -> None:
        denied = sum(1 for c in candidates if not view.decide(view.person(c.key), spec.channel, self.now).allowed)
        self.result.suppressed[spec.channel.value if isinstance(spec.channel, Channel) else spec.channel] += denied
        self.result.audiences[spec.name] = {
            "destination": spec.destination, "adds": len(decided.adds), "removes": len(decided.removes),
            "held": len(decided.held), "not_ours": len(decided.not_ours), "kept": decided.kept,
            "control": len(control), "without_consent": denied,
            "removed_for_consent": sum(1 for d in decided.removes if d.cause.value == "consent"),
        }
        self.result.warnings.extend(decided.warnings)
        for d in (*decided.adds, *decided.removes, *decided.held):
            self.result.audit.append(("audience", d.person, {"audience": spec.name, "action": d.action,
                                                             "cause": d.cause.value, "reason": d.reason}))
        for d in control:
            self.result.audit.append(("holdout", d.person, {"rule": f"audience:{spec.name}", "control": True,
                                                            "reason": d.reason}))
        for d in [*decided.adds, *decided.removes][: max(0, 10 - len(self.result.samples))]:
            self.result.samples.append({"lead": d.person, "audience": spec.name, "action": d.action,
                                        "reason": d.reason})


__all__ = ["Decide", "Decisions", "account_of", "lead_of", "score_payload"]
