"""Audiences: who belongs in which paid-media audience, with decay, hysteresis and a time-to-live.

Step 4 of DESIGN.md ("Decide"), after consent: each cycle :func:`decide` compares the audience's current
memberships with the scored people of its source and returns the people to add and to remove, each with a
reason; :func:`apply` turns that into the new membership rows and :func:`audience_writes` into the
planner's desired writes (:class:`sync.planner.DesiredWrite`). Pure: no I/O and no clock.

The rules, in the order they are checked for a member:

1. **Consent first.** A member whose consent on the audience's channel no longer allows it leaves at once,
   in the same cycle, whatever the score and whatever the source guard says.
2. **Removals propagate.** A member missing from the source leaves.
3. **Time-to-live.** A member leaves once ``ttl_days`` have passed since the last qualifying activity.
4. **Hysteresis.** A member leaves only when the decayed score falls *below* ``exit_threshold``; a
   non-member enters only when it reaches ``entry_threshold`` (which is higher), with consent granted and
   the time-to-live alive. Between the two thresholds nothing changes, so membership does not flap.

Scores decay between fresh signals with ``half_life_hours``. leadrelay removes only people it added
(``Membership.added_by_leadrelay``); the others are reported, never removed. A source that yields nobody (or,
with ``max_missing_share``, loses too many members at once) removes nobody but for consent: those removals
are held and a warning says why.
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from connectors.base import ActivityType, Lead, LeadrelayError
from connectors.google_ads import hashing as google_hashing
from connectors.linkedin.hashing import clean_country, clean_name, hashed_email
from connectors.meta.hashing import SCHEMA_KEYS, BadIdentifier, wire_row
from sync.consent import Channel, ConsentView
from sync.planner import DesiredWrite

ADD_OPERATION = "audience_add"
REMOVE_OPERATION = "audience_remove"


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got {value.isoformat()})")
    return value.astimezone(UTC)


def _when(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


# --------------------------------------------------------------------------------------------------
# The spec


class AudienceSpecError(LeadrelayError, ValueError):
    """An audience definition is invalid; ``problems`` are ``(key path, what is wrong)`` pairs."""

    def __init__(self, audience: str, problems: Sequence[tuple[str, str]]) -> None:
        self.audience = audience
        self.problems = tuple(problems)
        super().__init__(f"audience {audience!r}: " + "; ".join(f"{path}: {problem}" for path, problem in problems))


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class AudienceSpec:
    """One audience: who qualifies, for how long, under which consent, and where it lives.

    ``entry_threshold`` and ``exit_threshold`` are on the score's scale (1-99); ``half_life_hours``
    (``None``: no decay) halves a score for each half-life since it was computed; ``ttl_days`` (``None``: no
    limit) is the time since the last qualifying activity (of ``qualifying_activities``, ``None``: any type)
    after which a member leaves. ``min_source_size`` and ``max_missing_share`` guard against a broken source.
    """

    name: str
    destination: str
    audience_id: str
    entry_threshold: float
    exit_threshold: float
    half_life_hours: float | None = None
    ttl_days: float | None = None
    channel: Channel = Channel.ADS
    qualifying_activities: frozenset[str] | None = None
    min_source_size: int = 1
    max_missing_share: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.channel, str) and not isinstance(self.channel, Channel):
            with contextlib.suppress(ValueError):  # an unknown channel is reported below with the rest
                object.__setattr__(self, "channel", Channel.parse(self.channel))
        problems = _spec_problems(self)
        if problems:
            raise AudienceSpecError(self.name, problems)

    @property
    def ttl(self) -> timedelta | None:
        return timedelta(days=self.ttl_days) if self.ttl_days is not None else None

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> AudienceSpec:
        """From a TOML table (``[audiences.<name>]``); every problem is collected into one
        :class:`AudienceSpecError`::

            [audiences.hot_leads]
            destination = "meta"           # a connection name
            audience_id = "23850000000000"
            entry_threshold = 70
            exit_threshold = 55            # below entry: the band in between never flaps
            half_life_hours = 168          # optional
            ttl_days = 30                  # optional
            channel = "ads"                # optional, the consent channel
            qualifying_activities = ["pricing_page", "form_submit"]   # optional
            min_source_size = 1            # optional: a smaller source removes nobody
            max_missing_share = 0.5        # optional: losing more members at once removes nobody
        """
        problems: list[tuple[str, str]] = [(key, "unknown key") for key in data if key not in _KEYS]
        problems += [(key, "required key is missing") for key in _REQUIRED if key not in data]
        values: dict[str, Any] = {k: v for k, v in data.items() if k in _KEYS}
        if isinstance(values.get("audience_id"), int) and not isinstance(values["audience_id"], bool):
            values["audience_id"] = str(values["audience_id"])
        raw = values.get("qualifying_activities")
        if raw is not None:
            if isinstance(raw, list) and all(isinstance(v, str) for v in raw):
                values["qualifying_activities"] = frozenset(raw)
            else:
                problems.append(("qualifying_activities", "must be a list of activity types"))
                del values["qualifying_activities"]
        # Check the values even when keys are missing, so that one message lists every problem.
        draft = {f: values.get(f, _DEFAULTS.get(f, _MISSING)) for f in _FIELDS}
        problems += [(path, problem) for path, problem in _spec_problems(_Draft(name=name, **draft))
                     if path not in _REQUIRED or path in data]
        if problems:
            raise AudienceSpecError(name, list(dict.fromkeys(problems)))
        return cls(name=name, **values)


_REQUIRED = ("destination", "audience_id", "entry_threshold", "exit_threshold")
_FIELDS = ("destination", "audience_id", "entry_threshold", "exit_threshold", "half_life_hours", "ttl_days",
           "channel", "qualifying_activities", "min_source_size", "max_missing_share")
_MISSING = object()
_DEFAULTS: dict[str, Any] = {"half_life_hours": None, "ttl_days": None, "channel": Channel.ADS,
                             "qualifying_activities": None, "min_source_size": 1, "max_missing_share": None}


@dataclass(frozen=True, slots=True)
class _Draft:
    """The spec's fields before validation (what :func:`_spec_problems` reads)."""

    name: Any
    destination: Any
    audience_id: Any
    entry_threshold: Any
    exit_threshold: Any
    half_life_hours: Any
    ttl_days: Any
    channel: Any
    qualifying_activities: Any
    min_source_size: Any
    max_missing_share: Any


_KEYS = frozenset(_FIELDS)


def _spec_problems(spec: AudienceSpec | _Draft) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not isinstance(spec.name, str) or not spec.name.strip():
        problems.append(("name", "must be a non-empty name"))
    for key in ("destination", "audience_id"):
        value = getattr(spec, key)
        if not isinstance(value, str) or not value.strip():
            problems.append((key, "must be a non-empty string"))
    entry, exit_ = spec.entry_threshold, spec.exit_threshold
    for key, value in (("entry_threshold", entry), ("exit_threshold", exit_)):
        if not _number(value):
            problems.append((key, f"must be a number, got {value!r}"))
    if _number(entry) and _number(exit_) and not entry > exit_:
        problems.append(("exit_threshold", f"must be below entry_threshold ({exit_:g} is not below {entry:g}): "
                                           "the gap between them is what stops membership from flapping"))
    for key in ("half_life_hours", "ttl_days"):
        value = getattr(spec, key)
        if value is not None and not (_number(value) and value > 0):
            problems.append((key, f"must be a positive number of {key.rpartition('_')[2]}, got {value!r}"))
    channel = spec.channel
    if isinstance(channel, str) and not isinstance(channel, Channel):
        try:
            channel = Channel.parse(channel)
        except ValueError:
            channel = None
    if not isinstance(channel, Channel):
        problems.append(("channel", f"must be one of: {', '.join(c.value for c in Channel)}; got {spec.channel!r}"))
    if spec.qualifying_activities is not None:
        known = {t.value for t in ActivityType} - {ActivityType.DISPOSITION.value}  # a rep's verdict, not the person's
        unknown = sorted(set(spec.qualifying_activities) - known)
        if not spec.qualifying_activities:
            problems.append(("qualifying_activities", "must name at least one activity type (leave it out for any)"))
        elif unknown:
            problems.append(("qualifying_activities", f"unknown activity type(s) {unknown}; known: {sorted(known)}"))
    if not isinstance(spec.min_source_size, int) or isinstance(spec.min_source_size, bool) or spec.min_source_size < 0:
        problems.append(("min_source_size", f"must be a whole number ≥ 0, got {spec.min_source_size!r}"))
    share = spec.max_missing_share
    if share is not None and not (_number(share) and 0 < share <= 1):
        problems.append(("max_missing_share", f"must be a fraction above 0 and at most 1, got {share!r}"))
    return problems


# --------------------------------------------------------------------------------------------------
# Inputs and outputs


@dataclass(frozen=True, slots=True)
class Candidate:
    """A person of the audience's source as decisions see them: the latest score and when it was computed,
    the latest occurrence of each activity type (``ActivityType`` value → time), and what consent needs."""

    key: str
    score: float | None = None
    scored_at: datetime | None = None
    last_activity: Mapping[str, datetime] = field(default_factory=dict)
    email: str | None = None
    account_key: str | None = None

    def __post_init__(self) -> None:
        if self.scored_at is not None:
            object.__setattr__(self, "scored_at", _aware(self.scored_at, "scored_at"))
        if self.score is not None and self.scored_at is None:
            raise ValueError(f"candidate {self.key}: a score needs scored_at")


@dataclass(frozen=True, slots=True, kw_only=True)
class Membership:
    """One stay of one person in one audience. ``added_by_leadrelay`` is False for people found in the
    audience that leadrelay did not put there: leadrelay never removes those."""

    person: str
    audience: str
    entered_at: datetime
    entry_reason: str
    added_by_leadrelay: bool
    exited_at: datetime | None = None
    exit_reason: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "entered_at", _aware(self.entered_at, "entered_at"))
        if self.exited_at is not None:
            object.__setattr__(self, "exited_at", _aware(self.exited_at, "exited_at"))

    @property
    def active(self) -> bool:
        return self.exited_at is None


class Cause(enum.StrEnum):
    QUALIFIED = "qualified"      # added: score, activity and consent all allow it
    CONSENT = "consent"          # consent on the audience's channel no longer allows it
    LEFT_SOURCE = "left_source"  # no longer among the source's people
    EXPIRED = "expired"          # the time-to-live since the last qualifying activity passed
    SCORE = "score"              # the decayed score fell below the exit threshold (or there is none)
    EMAIL_CHANGED = "email_changed"  # same person, new address: the old identifiers out, the new ones in
    IDENTIFIERS_CHANGED = "identifiers_changed"  # same person, another sent identifier (phone, name…) changed


@dataclass(frozen=True, slots=True)
class AudienceDecision:
    """Add or remove one person, and why. ``entered_at`` names the stay: ``now`` for an add, the
    membership's entry for a remove. ``score`` is the decayed score at decision time."""

    person: str
    audience: str
    action: Literal["add", "remove"]
    cause: Cause
    reason: str
    entered_at: datetime
    score: float | None = None


@dataclass(frozen=True, slots=True)
class AudienceDecisions:
    """One audience's decisions at ``now``, every sequence ordered by person key.

    ``held`` are removals the source guard kept back; ``not_ours`` are removals leadrelay may not make
    because it did not add the person; ``kept`` counts members who stay.
    """

    audience: str
    now: datetime
    adds: tuple[AudienceDecision, ...] = ()
    removes: tuple[AudienceDecision, ...] = ()
    held: tuple[AudienceDecision, ...] = ()
    not_ours: tuple[AudienceDecision, ...] = ()
    warnings: tuple[str, ...] = ()
    kept: int = 0


# --------------------------------------------------------------------------------------------------
# Decisions


def decayed_score(score: float, scored_at: datetime, now: datetime, half_life_hours: float | None) -> float:
    """``score`` halved for every ``half_life_hours`` since ``scored_at`` (no decay before it, or without a
    half-life)."""
    if half_life_hours is None:
        return float(score)
    hours = max(0.0, (now - scored_at).total_seconds() / 3600)
    return float(score) * 0.5 ** (hours / half_life_hours)


def last_qualifying(candidate: Candidate, spec: AudienceSpec, now: datetime) -> datetime | None:
    """The latest qualifying activity up to ``now`` (later ones are not known yet at ``now``). "Any type"
    means anything the person did: a rep's disposition is not the person's activity."""
    times = [_aware(t, "activity time") for kind, t in candidate.last_activity.items()
             if (kind != "disposition" if spec.qualifying_activities is None else kind in spec.qualifying_activities)]
    return max((t for t in times if t <= now), default=None)


def decide(spec: AudienceSpec, members: Iterable[Membership], people: Iterable[Candidate], consent: ConsentView,
           now: datetime) -> AudienceDecisions:
    """Who enters and who leaves ``spec``'s audience at ``now`` (see the module docstring for the rules).

    ``members`` may include other audiences' and past memberships (only this audience's active ones count);
    ``people`` is the audience's source. A person with two active memberships, or two candidates with one key,
    raise ``ValueError``: both mean the store is inconsistent, and guessing would not be deterministic.
    """
    now = _aware(now, "now")
    active: dict[str, Membership] = {}
    for m in members:
        if m.audience != spec.name or not m.active:
            continue
        if m.person in active:
            raise ValueError(f"{m.person} has two active memberships of audience {spec.name}")
        active[m.person] = m
    source: dict[str, Candidate] = {}
    for c in people:
        if c.key in source:
            raise ValueError(f"{c.key} appears twice in the source of audience {spec.name}")
        source[c.key] = c

    guard = _guard(spec, active, source)
    adds: list[AudienceDecision] = []
    removes: list[AudienceDecision] = []
    held: list[AudienceDecision] = []
    not_ours: list[AudienceDecision] = []
    kept = 0
    for key in sorted(active.keys() | source.keys()):
        candidate = source.get(key)
        member = active.get(key)
        who = candidate if candidate is not None else consent.person(key)
        allowed = consent.decide(who, spec.channel, now)
        score = (decayed_score(candidate.score, candidate.scored_at, now, spec.half_life_hours)
                 if candidate is not None and candidate.score is not None and candidate.scored_at is not None
                 else None)
        if member is None:
            if candidate is not None and allowed.allowed:
                reason = _entry_reason(spec, candidate, score, now)
                if reason is not None:
                    adds.append(AudienceDecision(key, spec.name, "add", Cause.QUALIFIED,
                                                 f"{reason}; {allowed.reason}", now, score))
            continue
        leave = _exit(spec, candidate, score, allowed.allowed, allowed.reason, now)
        if leave is None:
            kept += 1
            continue
        cause, reason = leave
        decision = AudienceDecision(key, spec.name, "remove", cause, reason, member.entered_at, score)
        if not member.added_by_leadrelay:
            not_ours.append(replace(decision, reason=f"{reason}; not removed: leadrelay did not add this person"))
            kept += 1
        elif guard is not None and cause is not Cause.CONSENT:
            held.append(replace(decision, reason=f"{reason}; held: {guard}"))
            kept += 1
        else:
            removes.append(decision)
    warnings = [guard] if guard is not None else []
    revoked = [d.person for d in not_ours if d.cause is Cause.CONSENT]
    if revoked:
        shown = ", ".join(revoked[:5]) + (f" and {len(revoked) - 5} more" if len(revoked) > 5 else "")
        warnings.append(f"{len(revoked)} member(s) of {spec.name} lost {spec.channel.label} consent but were not "
                        f"added by leadrelay, which never removes them: remove them in {spec.destination} ({shown})")
    return AudienceDecisions(spec.name, now, tuple(adds), tuple(removes), tuple(held), tuple(not_ours),
                             tuple(warnings), kept)


def _guard(spec: AudienceSpec, active: Mapping[str, Membership], source: Mapping[str, Candidate]) -> str | None:
    """Why removals are held this cycle (the source looks broken), or ``None``."""
    ours = [m for m in active.values() if m.added_by_leadrelay]
    if not ours:
        return None
    if len(source) < spec.min_source_size:
        return (f"the source of {spec.name} yielded {len(source)} people (guard: at least {spec.min_source_size}); "
                f"only consent removals are made until it recovers")
    if spec.max_missing_share is not None:
        missing = sum(1 for m in ours if m.person not in source)
        if missing / len(ours) > spec.max_missing_share:
            return (f"{missing} of {len(ours)} members of {spec.name} are missing from its source "
                    f"({missing / len(ours):.0%}, guard: at most {spec.max_missing_share:.0%}); "
                    f"only consent removals are made until it recovers")
    return None


def _score_text(spec: AudienceSpec, candidate: Candidate, score: float) -> str:
    raw = candidate.score
    if spec.half_life_hours is None or raw is None or candidate.scored_at is None or raw == score:
        return f"score {score:.1f}"
    return f"score {score:.1f} (decayed from {raw:g} scored {_when(candidate.scored_at)})"


def _ttl_alive(spec: AudienceSpec, last: datetime | None, now: datetime) -> bool:
    ttl = spec.ttl
    return ttl is None or (last is not None and now - last < ttl)


def _entry_reason(spec: AudienceSpec, candidate: Candidate, score: float | None, now: datetime) -> str | None:
    """Why the candidate enters, or ``None`` when it does not (score, then activity)."""
    if score is None or score < spec.entry_threshold:
        return None
    last = last_qualifying(candidate, spec, now)
    if not _ttl_alive(spec, last, now):
        return None
    reason = f"{_score_text(spec, candidate, score)} reached the entry threshold {spec.entry_threshold:g}"
    if spec.ttl_days is not None and last is not None:
        reason += f"; last qualifying activity {_when(last)}"
    return reason


def _exit(spec: AudienceSpec, candidate: Candidate | None, score: float | None, allowed: bool, consent_reason: str,
          now: datetime) -> tuple[Cause, str] | None:
    """Why a member leaves, or ``None`` when the member stays; consent first (see the module docstring)."""
    if not allowed:
        return Cause.CONSENT, f"{spec.channel.label} consent no longer allows it: {consent_reason}"
    if candidate is None:
        return Cause.LEFT_SOURCE, f"no longer in the source of {spec.name}"
    last = last_qualifying(candidate, spec, now)
    if not _ttl_alive(spec, last, now):
        since = f"since {_when(last)}" if last is not None else "on record"
        return Cause.EXPIRED, f"no qualifying activity {since} (time-to-live {spec.ttl_days:g} days)"
    if score is None:
        return Cause.SCORE, "has no score"
    if score < spec.exit_threshold:
        return Cause.SCORE, (f"{_score_text(spec, candidate, score)} fell below the exit threshold "
                             f"{spec.exit_threshold:g}")
    return None


def apply(members: Iterable[Membership], decisions: AudienceDecisions) -> tuple[Membership, ...]:
    """The memberships after ``decisions``: removed stays closed at ``now`` with their reason, one new stay
    per add. Other memberships pass through unchanged. Ordered by (audience, person, entered_at)."""
    leaving = {d.person: d for d in decisions.removes}
    out: list[Membership] = []
    for m in members:
        gone = leaving.get(m.person) if m.audience == decisions.audience and m.active else None
        out.append(m if gone is None else replace(m, exited_at=decisions.now, exit_reason=gone.reason))
    out += [Membership(person=d.person, audience=d.audience, entered_at=d.entered_at, entry_reason=d.reason,
                       added_by_leadrelay=True) for d in decisions.adds]
    return tuple(sorted(out, key=lambda m: (m.audience, m.person, m.entered_at)))


# --------------------------------------------------------------------------------------------------
# Writes


def membership_target(audience_id: str, person: str, entered_at: datetime) -> str:
    """The ledger target of one stay: ``<audience_id>:<person>@<entered_at>``.

    The stay is part of it because the planner diffs per (destination, operation, target): with the person
    alone, a second add after a remove would look already acknowledged and never be sent, and two audiences
    of one destination would overwrite each other's ledger rows.
    """
    return f"{audience_id}:{person}@{_aware(entered_at, 'entered_at').isoformat(timespec='microseconds')}"


def stay_person(target: str, audience_id: str) -> str | None:
    """The person of a stay target made by :func:`membership_target` in ``audience_id``; None when ``target``
    is not such a stay. (The time holds no ``@``, so a person key containing one is still read whole.)"""
    prefix = f"{audience_id}:"
    if not audience_id or not target.startswith(prefix):
        return None
    person, at, _ = target[len(prefix):].rpartition("@")
    return person if at and person else None


def audience_writes(spec: AudienceSpec, decisions: AudienceDecisions,
                    identifiers: Mapping[str, Mapping[str, object]]) -> tuple[DesiredWrite, ...]:
    """The Meta connector's ``audience_add`` / ``audience_remove`` writes for ``decisions``.

    Payload: ``audience_id`` and the person's identifiers (``email``, ``phone``, ``first_name``, … as
    :data:`connectors.meta.hashing.SCHEMA_KEYS`; the connector normalises and hashes them). For a remove, pass
    the identifiers the destination acknowledged for the add, so that the row that went in is the row that
    comes out. Empty values are left out; an unknown identifier field raises ``ValueError``.
    """
    out: list[DesiredWrite] = []
    for decision, operation in [*((d, ADD_OPERATION) for d in decisions.adds),
                                *((d, REMOVE_OPERATION) for d in decisions.removes)]:
        ids = identifiers.get(decision.person, {})
        unknown = sorted(set(ids) - set(SCHEMA_KEYS) - {"consent"})
        if unknown:
            raise ValueError(f"unknown identifier field(s) {unknown} for {decision.person}; "
                             f"known: {sorted(SCHEMA_KEYS)}")
        payload: dict[str, object] = {"audience_id": spec.audience_id}
        payload.update((k, v) for k, v in sorted(ids.items()) if v is not None and v != "")
        target = membership_target(spec.audience_id, decision.person, decision.entered_at)
        out.append(DesiredWrite(spec.destination, operation, target, payload, decision.reason))
    return tuple(out)


def lead_identifiers(lead: Lead) -> dict[str, str]:
    """A lead's identifiers for an audience payload: e-mail, names and country, plus ``phone``, ``city``,
    ``state`` and ``zip`` when the field mapping put attributes of those names on the lead."""
    ids: dict[str, str] = {}
    for key in ("email", "first_name", "last_name", "country"):
        value = getattr(lead, key)
        if value:
            ids[key] = value
    for key in ("phone", "city", "state", "zip"):
        value = lead.attributes.get(key)
        if isinstance(value, str) and value.strip():
            ids[key] = value
    return ids


# Destinations whose lists hold the person by id (the write's target), not by identifiers.
ID_BASED_DESTINATIONS = frozenset({"marketo"})


def matched_identifiers(kind: str, identifiers: Mapping[str, object], options: object = None
                        ) -> dict[str, str] | None:
    """What destination type ``kind`` matches a person on, normalised and hashed as its connector sends them:
    Google Ads' ``userIdentifiers`` values, LinkedIn's e-mail digest (and names/country when sent), else
    Meta's schema row (the identifier vocabulary of audience payloads). Two sets of identifiers reach the
    same audience row exactly when these are equal. ``options`` is the connection's config (its
    ``default_country``, LinkedIn's ``email_hash``/``send_names``). None for an id-based list (Marketo):
    identifiers are not sent there, so none can go stale. Values that cannot be normalised are left out."""
    if kind in ID_BASED_DESTINATIONS:
        return None
    ids = {k: v for k, v in identifiers.items() if k != "consent" and v is not None and v != ""}
    country = getattr(options, "default_country", None)
    if kind == "google_ads":
        try:
            found = google_hashing.identifiers(ids, default_country=country)
        except google_hashing.BadIdentifier:
            return {}
        return {k: str(v) for k, v in asdict(found).items() if v}
    if kind == "linkedin":
        out: dict[str, str] = {}
        email = ids.get("email")
        digest = hashed_email(email, str(getattr(options, "email_hash", "SHA256"))) if isinstance(email, str) else None
        if digest:
            out["email"] = digest
        if getattr(options, "send_names", False):
            for key, clean in (("first_name", clean_name), ("last_name", clean_name), ("country", clean_country)):
                value = ids.get(key)
                cleaned = clean(value) if isinstance(value, str) else None
                if cleaned:
                    out[key] = cleaned
        return out
    try:
        return wire_row({k: v for k, v in ids.items() if k in SCHEMA_KEYS}, default_country=country)
    except BadIdentifier:
        return {}


__all__ = [
    "ADD_OPERATION",
    "REMOVE_OPERATION",
    "AudienceDecision",
    "AudienceDecisions",
    "AudienceSpec",
    "AudienceSpecError",
    "Candidate",
    "Cause",
    "Membership",
    "apply",
    "audience_writes",
    "decayed_score",
    "decide",
    "last_qualifying",
    "lead_identifiers",
    "matched_identifiers",
    "membership_target",
    "stay_person",
]
