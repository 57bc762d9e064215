"""Consent: who may be reached on which channel, decided from a timeline of changes and a policy.

Step 4 of DESIGN.md ("Decide"), and the first decision of it: sources yield ``ConsentChange`` records, the
store keeps them as a timeline, and each cycle folds that timeline into a :class:`ConsentState` which
audiences and routing consult through :func:`decide` before deciding anything else. Pure: no I/O and no
clock (``now`` is passed in), so the dry run tells the truth and the rules below are property-tested.

The rules, and why:

* **The latest effective change wins.** Among changes with the same effective time the later *recorded*
  one wins (a correction); then denial beats unknown beats grant (when in doubt, do not reach out); then
  the remaining fields give a total order, so the state never depends on the order in which changes
  arrived or on duplicates. One exception: an "unknown" never ends a denial, only a grant does (a field
  cleared at the source must not reopen an opt-out).
* **A change is in force from its effective time; a denial already from when it was recorded.** An opt-out
  dated a little ahead (clock skew between systems) or scheduled for a date is honoured at once: honouring
  an opt-out early is always safe, honouring a grant early never is.
* **Policy per channel** says what "nothing on record" and an explicit "unknown" count as. For ads that is
  always *denied* (Google's rule for Customer Match in the EEA, and ours everywhere: no ad upload without a
  recorded grant). A channel may also accept grants only under some lawful bases.
* **Global suppression lists** (e-mail addresses, domains with their sub-domains, account keys) deny every
  channel whatever the timeline says.
* **leadrelay never turns an opt-out into an opt-in:** :func:`never_reopt_in` refuses any outgoing write
  that would move a denial to anything else.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Protocol

from connectors.base import ConsentChange, ConsentStatus, LeadrelayError
from sync.identity import email_domain, normalize_domain, normalize_email


class Channel(enum.StrEnum):
    EMAIL = "email"
    ADS = "ads"
    SALES_OUTREACH = "sales_outreach"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @classmethod
    def parse(cls, value: str) -> Channel:
        """``"Sales outreach"``, ``"sales-outreach"`` and ``"sales"`` all name :attr:`SALES_OUTREACH`."""
        text = _token(value)
        found = _CHANNEL_ALIASES.get(text)
        if found is None:
            raise ValueError(f"unknown consent channel {value!r}; channels: {', '.join(c.value for c in cls)}")
        return found


_CHANNEL_ALIASES = {"email": Channel.EMAIL, "e_mail": Channel.EMAIL, "ads": Channel.ADS,
                    "advertising": Channel.ADS, "sales_outreach": Channel.SALES_OUTREACH,
                    "sales": Channel.SALES_OUTREACH, "outreach": Channel.SALES_OUTREACH}
# A source's change on one of these applies to every channel (a global unsubscribe).
ALL_CHANNELS = frozenset({"all", "any", "global", "*"})


class LawfulBasis(enum.StrEnum):
    """The GDPR Art. 6 bases a grant can rest on."""

    CONSENT = "consent"
    LEGITIMATE_INTEREST = "legitimate_interest"
    CONTRACT = "contract"
    LEGAL_OBLIGATION = "legal_obligation"
    VITAL_INTERESTS = "vital_interests"
    PUBLIC_TASK = "public_task"

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")

    @classmethod
    def parse(cls, value: str) -> LawfulBasis:
        text = _token(value)
        text = {"legitimate_interests": "legitimate_interest", "vital_interest": "vital_interests"}.get(text, text)
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"unknown lawful basis {value!r}; bases: {', '.join(b.value for b in cls)}") from None


def _token(value: str) -> str:
    return "_".join(value.strip().lower().replace("-", " ").split())


def _aware(value: datetime, what: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} must be timezone-aware (got {value.isoformat()})")
    return value.astimezone(UTC)


def _when(value: datetime) -> str:
    return f"{value.astimezone(UTC):%Y-%m-%d %H:%M} UTC"


# --------------------------------------------------------------------------------------------------
# The timeline

# Ties at the same effective and recorded time: denial wins, then unknown, then grant.
_STATUS_RANK = {ConsentStatus.GRANTED: 0, ConsentStatus.UNKNOWN: 1, ConsentStatus.DENIED: 2}


@dataclass(frozen=True, slots=True)
class ConsentEvent:
    """One change of one person's consent on one channel: what, since when, on what basis, from where.

    ``effective_at`` is when the change took effect (the source's time); ``recorded_at`` is when leadrelay
    stored it. Both are timezone-aware and kept in UTC.
    """

    person: str
    channel: Channel
    status: ConsentStatus
    effective_at: datetime
    recorded_at: datetime
    basis: LawfulBasis | None = None
    source: str | None = None
    key: str = ""  # the source's id of the change, the last tie-break

    def __post_init__(self) -> None:
        if not self.person:
            raise ValueError("a consent event needs a person")
        channel = self.channel if isinstance(self.channel, Channel) else Channel.parse(self.channel)
        object.__setattr__(self, "channel", channel)
        object.__setattr__(self, "status", ConsentStatus(self.status))
        object.__setattr__(self, "effective_at", _aware(self.effective_at, "effective_at"))
        object.__setattr__(self, "recorded_at", _aware(self.recorded_at, "recorded_at"))

    def in_force_at(self, now: datetime) -> bool:
        """From the effective time on; a denial already from when it was recorded (see the module docs)."""
        if self.status is ConsentStatus.DENIED and self.recorded_at <= now:
            return True
        return self.effective_at <= now

    def precedence(self) -> tuple[Any, ...]:
        """The total order of the fold: the greatest in force wins."""
        return (self.effective_at, self.recorded_at, _STATUS_RANK[self.status],
                self.basis.value if self.basis else "", self.source or "", self.key)

    def describe(self) -> str:
        """``ads consent granted 2025-03-01 09:00 UTC (basis: consent; source: hubspot form)``."""
        details = []
        if self.basis is not None:
            details.append(f"basis: {self.basis.label}")
        if self.source:
            details.append(f"source: {self.source}")
        tail = f" ({'; '.join(details)})" if details else ""
        return f"{self.channel.label} consent {self.status.value} {_when(self.effective_at)}{tail}"


def events_from_change(change: ConsentChange, recorded_at: datetime) -> tuple[ConsentEvent, ...]:
    """The events one source change stands for: one, or one per channel for a global change ("all").

    An unknown channel raises ``ValueError`` (the pipeline quarantines the row with that reason). An
    unrecognised lawful basis is dropped rather than refused, so that a denial is never lost over it; a
    grant without a recognised basis then counts only on channels that accept any basis.
    """
    channels = (tuple(Channel) if _token(change.channel) in ALL_CHANNELS else (Channel.parse(change.channel),))
    basis = None
    if change.lawful_basis:
        try:
            basis = LawfulBasis.parse(change.lawful_basis)
        except ValueError:
            basis = None
    return tuple(
        ConsentEvent(person=change.lead_key, channel=channel, status=change.status, effective_at=change.effective_at,
                     recorded_at=recorded_at, basis=basis, source=change.source, key=change.key)
        for channel in channels
    )


class ConsentState:
    """Every person's consent timeline per channel, in precedence order; built by :func:`fold`.

    Immutable; two states are equal when they hold the same timelines, whatever order the events came in.
    """

    __slots__ = ("_timelines",)
    __hash__ = None  # type: ignore[assignment]  # equality by content, like a mapping

    def __init__(self, timelines: Mapping[tuple[str, Channel], tuple[ConsentEvent, ...]] | None = None) -> None:
        self._timelines: dict[tuple[str, Channel], tuple[ConsentEvent, ...]] = dict(timelines or {})

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ConsentState) and self._timelines == other._timelines

    def __repr__(self) -> str:
        return f"ConsentState({len(self._timelines)} timelines)"

    def timeline(self, person: str, channel: Channel) -> tuple[ConsentEvent, ...]:
        """The person's changes on the channel, lowest precedence first."""
        return self._timelines.get((person, channel), ())

    def current(self, person: str, channel: Channel, now: datetime) -> ConsentEvent | None:
        """The change in force at ``now`` (``None``: nothing on record yet).

        That is the latest change in force, except that an "unknown" never ends a denial: a field cleared at
        the source (a migration, a mapping that yields nulls) must not reopen an opt-out; only a grant can.
        """
        latest: ConsentEvent | None = None
        for event in reversed(self.timeline(person, channel)):
            if not event.in_force_at(now):
                continue
            if event.status is not ConsentStatus.UNKNOWN:
                return event if latest is None or event.status is ConsentStatus.DENIED else latest
            if latest is None:
                latest = event
        return latest

    def people(self) -> frozenset[str]:
        return frozenset(person for person, _ in self._timelines)

    def events(self) -> tuple[ConsentEvent, ...]:
        return tuple(e for key in sorted(self._timelines) for e in self._timelines[key])

    def with_events(self, events: Iterable[ConsentEvent]) -> ConsentState:
        """This state with more events folded in (the same as folding everything at once)."""
        return fold((*self.events(), *events))


def fold(events: Iterable[ConsentEvent]) -> ConsentState:
    """Fold changes into a state. Order-independent and idempotent: duplicates and late arrivals give the
    same state as the changes sorted and deduplicated."""
    grouped: dict[tuple[str, Channel], set[ConsentEvent]] = {}
    for event in events:
        grouped.setdefault((event.person, event.channel), set()).add(event)
    return ConsentState({key: tuple(sorted(group, key=ConsentEvent.precedence)) for key, group in grouped.items()})


# --------------------------------------------------------------------------------------------------
# Policy


class PolicyError(LeadrelayError, ValueError):
    """A consent policy mapping is invalid; ``problems`` are ``(key path, what is wrong)`` pairs."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(f"{path}: {problem}" for path, problem in self.problems))


@dataclass(frozen=True, slots=True)
class ChannelPolicy:
    """What counts on one channel: ``unknown_means`` is what nothing on record, or an explicit "unknown",
    counts as; ``bases`` (``None``: any) are the lawful bases under which a grant counts."""

    channel: Channel
    unknown_means: ConsentStatus
    bases: frozenset[LawfulBasis] | None = None

    def __post_init__(self) -> None:
        if self.unknown_means not in (ConsentStatus.GRANTED, ConsentStatus.DENIED):
            raise ValueError("unknown_means must be granted or denied")
        if self.channel is Channel.ADS and self.unknown_means is ConsentStatus.GRANTED:
            raise ValueError("for ads, unknown always counts as denied: an ad upload needs a recorded grant "
                             "(Google requires it for Customer Match in the EEA)")
        if self.bases is not None and not self.bases:
            raise ValueError("bases must name at least one lawful basis (leave it out to accept any)")


@dataclass(frozen=True, slots=True)
class Suppressions:
    """Global do-not-contact lists: e-mail addresses, domains (their sub-domains too) and account keys.

    Values are normalised as :mod:`sync.identity` normalises them, so ``" Bob@Acme.COM"`` matches.
    """

    emails: frozenset[str] = frozenset()
    domains: frozenset[str] = frozenset()
    accounts: frozenset[str] = frozenset()

    @classmethod
    def of(cls, emails: Iterable[str] = (), domains: Iterable[str] = (), accounts: Iterable[str] = ()) -> Suppressions:
        """Normalised lists; values that do not normalise raise :class:`PolicyError` naming list and index."""
        lists = {"emails": list(emails), "domains": list(domains), "accounts": list(accounts)}
        problems = _suppression_problems(lists, "")
        if problems:
            raise PolicyError(problems)
        return cls(frozenset(e for e in map(normalize_email, lists["emails"]) if e),
                   frozenset(d for d in map(normalize_domain, lists["domains"]) if d),
                   frozenset(a.strip() for a in lists["accounts"] if a.strip()))

    def match(self, person: PersonLike) -> str | None:
        """Why the person is suppressed (never the address itself: reasons end up in reports), or ``None``."""
        email = normalize_email(person.email)
        if email is not None and email in self.emails:
            return "the e-mail address is on the suppression list"
        domain = email_domain(person.email)
        while domain:
            if domain in self.domains:
                return f"the e-mail domain {domain} is on the suppression list"
            domain = domain.partition(".")[2] if "." in domain.partition(".")[2] else None
        account = (person.account_key or "").strip()
        if account and account in self.accounts:
            return f"account {account} is on the suppression list"
        return None


def _suppression_problems(data: Mapping[str, Any], prefix: str) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for name, normalise in (("emails", normalize_email), ("domains", normalize_domain),
                            ("accounts", lambda v: v.strip() or None)):
        values = data.get(name, [])
        if not isinstance(values, list | tuple):
            problems.append((f"{prefix}{name}", "must be a list of strings"))
            continue
        for i, value in enumerate(values):
            if not isinstance(value, str) or normalise(value) is None:
                problems.append((f"{prefix}{name}[{i}]", f"{value!r} is not a valid {name[:-1]}"))
    return problems


DEFAULT_CHANNELS: Mapping[Channel, ChannelPolicy] = MappingProxyType({
    Channel.EMAIL: ChannelPolicy(Channel.EMAIL, ConsentStatus.DENIED),
    Channel.ADS: ChannelPolicy(Channel.ADS, ConsentStatus.DENIED),
    # B2B sales outreach commonly rests on legitimate interest: no record does not stop routing.
    Channel.SALES_OUTREACH: ChannelPolicy(Channel.SALES_OUTREACH, ConsentStatus.GRANTED),
})


@dataclass(frozen=True, slots=True)
class ConsentPolicy:
    """The policy of every channel and the global suppression lists."""

    channels: Mapping[Channel, ChannelPolicy] = field(default_factory=lambda: DEFAULT_CHANNELS)
    suppressions: Suppressions = Suppressions()

    def __post_init__(self) -> None:
        # Read-only, so that a policy (and the default one) cannot change under a decision.
        object.__setattr__(self, "channels", MappingProxyType(dict(self.channels)))

    def for_channel(self, channel: Channel) -> ChannelPolicy:
        return self.channels.get(channel) or DEFAULT_CHANNELS[channel]

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ConsentPolicy:
        """From the TOML shape below; every problem is collected into one :class:`PolicyError`::

            [consent.ads]            # also: email, sales_outreach
            unknown_means = "denied"
            bases = ["consent"]      # optional: the lawful bases a grant may rest on
            [consent.suppressions]
            emails = ["ceo@rival.com"]
            domains = ["rival.com"]
            accounts = ["0015g00000ABC"]
        """
        problems: list[tuple[str, str]] = []
        channels = dict(DEFAULT_CHANNELS)
        suppressions = Suppressions()
        for name, table in data.items():
            if name == "suppressions":
                if not isinstance(table, Mapping):
                    problems.append((name, "must be a table"))
                    continue
                problems += [(f"suppressions.{k}", "unknown key; expected emails, domains, accounts")
                             for k in table if k not in ("emails", "domains", "accounts")]
                found = _suppression_problems(table, "suppressions.")
                problems += found
                if not found:
                    suppressions = Suppressions.of(table.get("emails", ()), table.get("domains", ()),
                                                   table.get("accounts", ()))
                continue
            try:
                channel = Channel(name)
            except ValueError:
                problems.append((name, f"unknown key; expected suppressions or a channel "
                                       f"({', '.join(c.value for c in Channel)})"))
                continue
            parsed = _channel_policy(channel, table, problems)
            if parsed is not None:
                channels[channel] = parsed
        if problems:
            raise PolicyError(problems)
        return cls(channels, suppressions)


def _channel_policy(channel: Channel, table: Any, problems: list[tuple[str, str]]) -> ChannelPolicy | None:
    if not isinstance(table, Mapping):
        problems.append((channel.value, "must be a table"))
        return None
    before = len(problems)
    problems += [(f"{channel.value}.{k}", "unknown key; expected unknown_means, bases")
                 for k in table if k not in ("unknown_means", "bases")]
    unknown_means = DEFAULT_CHANNELS[channel].unknown_means
    raw = table.get("unknown_means", unknown_means.value)
    if raw not in ("granted", "denied"):
        problems.append((f"{channel.value}.unknown_means", f"must be 'granted' or 'denied', got {raw!r}"))
    else:
        unknown_means = ConsentStatus(raw)
    bases: frozenset[LawfulBasis] | None = None
    if "bases" in table:
        raw_bases = table["bases"]
        if not isinstance(raw_bases, list) or not raw_bases:
            problems.append((f"{channel.value}.bases", "must be a non-empty list of lawful bases"))
        else:
            parsed: set[LawfulBasis] = set()
            for i, value in enumerate(raw_bases):
                try:
                    parsed.add(LawfulBasis.parse(value) if isinstance(value, str) else LawfulBasis(value))
                except ValueError as exc:
                    problems.append((f"{channel.value}.bases[{i}]", str(exc)))
            bases = frozenset(parsed)
    if len(problems) > before:
        return None
    try:
        return ChannelPolicy(channel, unknown_means, bases)
    except ValueError as exc:
        problems.append((f"{channel.value}.unknown_means", str(exc)))
        return None


# --------------------------------------------------------------------------------------------------
# Decisions


class PersonLike(Protocol):
    """What consent needs to know about a person (a :class:`connectors.base.Lead` fits)."""

    @property
    def key(self) -> str: ...
    @property
    def email(self) -> str | None: ...
    @property
    def account_key(self) -> str | None: ...


@dataclass(frozen=True, slots=True)
class Person:
    """A person known only by key (and perhaps e-mail and account), for callers without a Lead at hand."""

    key: str
    email: str | None = None
    account_key: str | None = None


@dataclass(frozen=True, slots=True)
class ConsentDecision:
    """Whether the person may be reached on the channel now, and why, in words a person can read.

    ``recorded`` is the status on record (``None``: nothing); ``suppressed`` says a suppression list decided.
    """

    allowed: bool
    reason: str
    recorded: ConsentStatus | None = None
    suppressed: bool = False

    @property
    def denied_by_person(self) -> bool:
        """The person (or a suppression list) said no, as opposed to "nothing on record"."""
        return self.suppressed or self.recorded is ConsentStatus.DENIED


def decide(state: ConsentState, channel: Channel, policy: ConsentPolicy, person: PersonLike,
           now: datetime) -> ConsentDecision:
    """May ``person`` be reached on ``channel`` at ``now``? Suppression lists first, then the change in
    force, read through the channel's policy."""
    now = _aware(now, "now")
    suppressed = policy.suppressions.match(person)
    if suppressed is not None:
        return ConsentDecision(False, f"{channel.label}: {suppressed}", suppressed=True,
                               recorded=_recorded(state.current(person.key, channel, now)))
    rules = policy.for_channel(channel)
    event = state.current(person.key, channel, now)
    if event is None or event.status is ConsentStatus.UNKNOWN:
        allowed = rules.unknown_means is ConsentStatus.GRANTED
        said = f"no {channel.label} consent on record" if event is None else event.describe()
        return ConsentDecision(allowed, f"{said}; unknown counts as {rules.unknown_means.value} for "
                                        f"{channel.label}", recorded=_recorded(event))
    if event.status is ConsentStatus.DENIED:
        return ConsentDecision(False, event.describe(), recorded=event.status)
    if rules.bases is not None and event.basis not in rules.bases:
        basis = "" if event.basis else " without a recognised lawful basis"
        accepted = ", ".join(sorted(b.label for b in rules.bases))
        return ConsentDecision(False, f"{event.describe()}{basis}, but {channel.label} accepts only: {accepted}",
                               recorded=event.status)
    return ConsentDecision(True, event.describe(), recorded=event.status)


def _recorded(event: ConsentEvent | None) -> ConsentStatus | None:
    return event.status if event is not None else None


@dataclass(frozen=True, slots=True)
class ConsentView:
    """A state read through a policy: what audiences and routing are handed.

    ``people`` (key → person) lets a decision asked by key alone still match the suppression lists by
    e-mail and account; a key not in it is decided on its timeline and account-less, address-less.
    """

    state: ConsentState
    policy: ConsentPolicy = ConsentPolicy()
    people: Mapping[str, PersonLike] = field(default_factory=dict)

    def person(self, key: str) -> PersonLike:
        return self.people.get(key) or Person(key)

    def decide(self, person: PersonLike | str, channel: Channel | str, now: datetime) -> ConsentDecision:
        who = self.person(person) if isinstance(person, str) else person
        return decide(self.state, channel if isinstance(channel, Channel) else Channel.parse(channel), self.policy,
                      who, now)

    def allows(self, key: str, channel: Channel | str, now: datetime) -> bool:
        """``(lead_key, channel, now) -> bool``: the shape :func:`sync.routing.route` takes as ``consent``."""
        return self.decide(key, channel, now).allowed


# --------------------------------------------------------------------------------------------------
# Outgoing writes


class ReOptInRefused(LeadrelayError):
    """An outgoing write would turn an opt-out back into an opt-in; leadrelay never sends it."""


def _status(value: ConsentStatus | str | None) -> ConsentStatus | None:
    return None if value is None else ConsentStatus(value)


def is_reopt_in(current: ConsentStatus | str | None, proposed: ConsentStatus | str | None) -> bool:
    """Whether writing ``proposed`` over ``current`` would weaken an opt-out (denied → granted or unknown).

    ``proposed`` ``None`` means the write leaves the field alone, which never weakens anything.
    """
    now, then = _status(current), _status(proposed)
    return now is ConsentStatus.DENIED and then is not None and then is not ConsentStatus.DENIED


def never_reopt_in(current: ConsentStatus | str | None, proposed: ConsentStatus | str | None, *,
                   what: str = "") -> None:
    """Raise :class:`ReOptInRefused` for a write that would turn a denial into anything else; the planner
    calls this for every consent field it is about to send."""
    if is_reopt_in(current, proposed):
        subject = f" for {what}" if what else ""
        raise ReOptInRefused(f"refused to change a denial to {_status(proposed)}{subject}: leadrelay never "
                             "turns an opt-out back into an opt-in")


class GoogleConsent(enum.StrEnum):
    """Google Ads API ``ConsentStatus``."""

    GRANTED = "GRANTED"
    DENIED = "DENIED"
    UNSPECIFIED = "UNSPECIFIED"


def google_ads_consent(state: ConsentState, policy: ConsentPolicy, person: PersonLike,
                       now: datetime) -> dict[str, str]:
    """The ``consent`` fields sent with a Google Ads upload: ``ad_user_data`` and ``ad_personalization``.

    GRANTED when ads consent allows the upload; DENIED when the person said no or is suppressed;
    UNSPECIFIED when nothing usable is on record (which Google, like our ads policy, treats as no consent
    in the EEA). leadrelay keeps one ads channel, so both fields carry the same value.
    """
    decision = decide(state, Channel.ADS, policy, person, now)
    if decision.allowed:
        value = GoogleConsent.GRANTED
    elif decision.denied_by_person:
        value = GoogleConsent.DENIED
    else:
        value = GoogleConsent.UNSPECIFIED
    return {"ad_user_data": value.value, "ad_personalization": value.value}


__all__ = [
    "ALL_CHANNELS",
    "DEFAULT_CHANNELS",
    "Channel",
    "ChannelPolicy",
    "ConsentDecision",
    "ConsentEvent",
    "ConsentPolicy",
    "ConsentState",
    "ConsentView",
    "GoogleConsent",
    "LawfulBasis",
    "Person",
    "PersonLike",
    "PolicyError",
    "ReOptInRefused",
    "Suppressions",
    "decide",
    "events_from_change",
    "fold",
    "google_ads_consent",
    "is_reopt_in",
    "never_reopt_in",
]
