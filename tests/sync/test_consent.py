"""Consent: the timeline fold, per-channel policy, suppression, the re-opt-in guard and Google's fields."""

from __future__ import annotations

import itertools
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import ConsentChange, ConsentStatus
from sync.consent import (
    Channel,
    ChannelPolicy,
    ConsentEvent,
    ConsentPolicy,
    ConsentState,
    ConsentView,
    LawfulBasis,
    Person,
    PolicyError,
    ReOptInRefused,
    Suppressions,
    decide,
    events_from_change,
    fold,
    google_ads_consent,
    is_reopt_in,
    never_reopt_in,
)

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
PEOPLE = ("p0", "p1", "p2")
GRANTED, DENIED, UNKNOWN = ConsentStatus.GRANTED, ConsentStatus.DENIED, ConsentStatus.UNKNOWN
MANY = settings(max_examples=200, deadline=None)
SOME = settings(max_examples=100, deadline=None)


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def ev(status: ConsentStatus, effective: float, recorded: float | None = None, *, person: str = "p0",
       channel: Channel = Channel.ADS, basis: LawfulBasis | None = LawfulBasis.CONSENT, source: str | None = None,
       key: str = "") -> ConsentEvent:
    return ConsentEvent(person, channel, status, at(effective), at(effective if recorded is None else recorded),
                        basis, source, key)


# Few distinct values on purpose: ties of effective and recorded time are where the fold's rules matter.
# An event is drawn as one integer and decoded field by field: generation is then cheap enough for
# thousands of timelines per property within the test budget.
HOURS = range(-48, 13)
STATUSES_ = tuple(ConsentStatus)
BASES: tuple[LawfulBasis | None, ...] = (None, *LawfulBasis)
SOURCES = (None, "hubspot", "web form")
KEYS = ("", "c1", "c2")
EVENT_SPACE = len(PEOPLE) * len(Channel) * len(STATUSES_) * len(HOURS) ** 2 * len(BASES) * len(SOURCES) * len(KEYS)


def decode(n: int) -> ConsentEvent:
    # Hypothesis favours small integers; multiplying by a prime larger than every field size permutes the
    # space so that every field, not just the low ones, takes all its values.
    n = n * 1_000_003 % EVENT_SPACE
    fields = []
    for size in (len(PEOPLE), len(Channel), len(STATUSES_), len(HOURS), len(HOURS), len(BASES), len(SOURCES)):
        n, digit = divmod(n, size)
        fields.append(digit)
    person, channel, status, effective, recorded, basis, source = fields
    return ConsentEvent(PEOPLE[person], tuple(Channel)[channel], STATUSES_[status], at(HOURS[effective]),
                        at(HOURS[recorded]), BASES[basis], SOURCES[source], KEYS[n % len(KEYS)])


events = st.integers(0, EVENT_SPACE - 1).map(decode)
timelines = st.lists(events, max_size=16)
nows = st.integers(-60, 24).map(at)
seeds = st.integers(0, 2**32 - 1)


def _policies() -> list[ConsentPolicy]:
    out = []
    ads_bases = (None, frozenset({LawfulBasis.CONSENT}), frozenset({LawfulBasis.CONSENT, LawfulBasis.CONTRACT}))
    email_bases = (None, frozenset({LawfulBasis.LEGITIMATE_INTEREST}))
    suppressions = (Suppressions(), Suppressions.of(emails=["p1@acme.com"]), Suppressions.of(domains=["acme.com"]),
                    Suppressions.of(domains=["eu.other.org"], accounts=["acct-1"]))
    for ads, email, means, sales, suppressed in itertools.product(ads_bases, email_bases, (GRANTED, DENIED),
                                                                 (GRANTED, DENIED), suppressions):
        out.append(ConsentPolicy({Channel.ADS: ChannelPolicy(Channel.ADS, DENIED, ads),
                                  Channel.EMAIL: ChannelPolicy(Channel.EMAIL, means, email),
                                  Channel.SALES_OUTREACH: ChannelPolicy(Channel.SALES_OUTREACH, sales)}, suppressed))
    return out


policies = st.sampled_from(_policies())
PERSONS = [Person(key, email, account) for key, email, account in itertools.product(
    PEOPLE, (None, "p1@acme.com", "p2@sales.acme.com", "p0@other.org", "p0@eu.other.org"), (None, "acct-1"))]
people = st.sampled_from(PERSONS)


def oracle_current(all_events: list[ConsentEvent], person: str, channel: Channel, now: datetime) -> ConsentEvent | None:
    """The specification, brute force: the greatest (effective, recorded, denial-first, …) change in force,
    unless that is an "unknown" and the greatest known change is a denial."""
    rank = {GRANTED: 0, UNKNOWN: 1, DENIED: 2}
    in_force = [e for e in all_events if e.person == person and e.channel == channel
                and (e.effective_at <= now or (e.status is DENIED and e.recorded_at <= now))]

    def order(e: ConsentEvent) -> tuple[object, ...]:
        return (e.effective_at, e.recorded_at, rank[e.status], e.basis or "", e.source or "", e.key)

    latest = max(in_force, default=None, key=order)
    known = max((e for e in in_force if e.status is not UNKNOWN), default=None, key=order)
    if latest is not None and latest.status is UNKNOWN and known is not None and known.status is DENIED:
        return known
    return latest


# --------------------------------------------------------------------------------------------------
# The fold


def arrivals(timeline: list[ConsentEvent]) -> list[list[ConsentEvent]]:
    """The timeline as it stood after each arrival: every prefix is a timeline of its own, which lets one
    generated example check many timelines."""
    return [timeline[:n] for n in range(len(timeline) + 1)]


@MANY
@given(timelines, seeds, nows)
def test_fold_is_independent_of_arrival_order(timeline: list[ConsentEvent], seed: int, now: datetime) -> None:
    """Changes arriving in any order, late or early, fold into the same state and the same current status."""
    rnd = random.Random(seed)
    expected = fold(timeline)
    for _ in range(3):
        shuffled = list(timeline)
        rnd.shuffle(shuffled)
        state = fold(shuffled)
        assert state == expected
        for person, channel in itertools.product(PEOPLE, Channel):
            assert state.current(person, channel, now) == expected.current(person, channel, now)


@MANY
@given(timelines, nows)
def test_current_is_the_latest_change_in_force(timeline: list[ConsentEvent], now: datetime) -> None:
    """The status in force is the latest effective change; ties go to the later record, then to denial."""
    for known in arrivals(timeline):
        state = fold(known)
        for person, channel in itertools.product(PEOPLE, Channel):
            assert state.current(person, channel, now) == oracle_current(known, person, channel, now)


@MANY
@given(timelines, events, nows)
def test_a_later_change_never_loses_to_an_older_one(timeline: list[ConsentEvent], new: ConsentEvent,
                                                    now: datetime) -> None:
    """A change dated after all others of its person and channel is in force (an unknown never ends a denial)."""
    for known in arrivals(timeline):
        same = [e for e in known if (e.person, e.channel) == (new.person, new.channel)]
        latest = max((e.effective_at for e in same), default=new.effective_at - timedelta(hours=1))
        effective = max(new.effective_at, latest + timedelta(minutes=1))
        later = ConsentEvent(new.person, new.channel, new.status, effective, effective, new.basis, new.source,
                             new.key)
        when = max(now, effective)
        before = fold(known).current(new.person, new.channel, when)
        expected = before if later.status is UNKNOWN and before is not None and before.status is DENIED else later
        assert fold([*known, later]).current(new.person, new.channel, when) == expected


@SOME
@given(timelines, timelines)
def test_fold_is_idempotent_and_incremental(first: list[ConsentEvent], second: list[ConsentEvent]) -> None:
    """Folding duplicates changes nothing, and folding in two steps equals folding everything at once."""
    everything = fold([*first, *second])
    assert fold([*first, *second, *first]) == everything
    assert fold(first).with_events(second) == everything
    assert fold(everything.events()) == everything


def test_same_effective_time_the_later_record_wins() -> None:
    """A correction recorded later for the same effective time replaces the earlier record."""
    state = fold([ev(DENIED, -5, recorded=-5), ev(GRANTED, -5, recorded=-1)])
    assert state.current("p0", Channel.ADS, NOW).status is GRANTED


def test_exact_tie_favours_denial() -> None:
    """Two changes with the same effective and recorded time: the denial wins, whatever the arrival order."""
    grant, denial = ev(GRANTED, -5), ev(DENIED, -5)
    assert fold([grant, denial]).current("p0", Channel.ADS, NOW) == denial
    assert fold([denial, grant]).current("p0", Channel.ADS, NOW) == denial


def test_unknown_never_ends_a_denial_but_a_grant_does() -> None:
    """A status cleared to "unknown" after an opt-out leaves the opt-out standing; a new grant ends it."""
    state = fold([ev(DENIED, -10), ev(UNKNOWN, -5)])
    assert state.current("p0", Channel.SALES_OUTREACH, NOW) is None
    assert state.current("p0", Channel.ADS, NOW).status is DENIED
    assert not decide(fold([ev(DENIED, -10, channel=Channel.SALES_OUTREACH),
                            ev(UNKNOWN, -5, channel=Channel.SALES_OUTREACH)]),
                      Channel.SALES_OUTREACH, ConsentPolicy(), Person("p0"), NOW).allowed
    assert fold([ev(DENIED, -10), ev(UNKNOWN, -5), ev(GRANTED, -2)]).current("p0", Channel.ADS, NOW).status is GRANTED
    assert fold([ev(GRANTED, -10), ev(UNKNOWN, -5)]).current("p0", Channel.ADS, NOW).status is UNKNOWN


def test_grant_dated_ahead_is_not_in_force_yet() -> None:
    """A grant takes effect at its effective time, not when it was recorded."""
    state = fold([ev(DENIED, -10), ev(GRANTED, 3, recorded=-1)])
    assert state.current("p0", Channel.ADS, NOW).status is DENIED
    assert state.current("p0", Channel.ADS, at(3)).status is GRANTED


def test_denial_dated_ahead_is_honoured_once_recorded() -> None:
    """An opt-out recorded now but dated later (clock skew, a scheduled opt-out) is honoured at once."""
    state = fold([ev(GRANTED, -10), ev(DENIED, 2, recorded=-1)])
    assert state.current("p0", Channel.ADS, NOW).status is DENIED
    assert state.current("p0", Channel.ADS, at(-2)).status is GRANTED


def test_naive_times_are_refused() -> None:
    """Times without a zone would compare wrongly across systems; they are refused with a clear message."""
    with pytest.raises(ValueError, match="effective_at must be timezone-aware"):
        ConsentEvent("p0", Channel.ADS, GRANTED, datetime(2025, 1, 1), NOW)
    with pytest.raises(ValueError, match="now must be timezone-aware"):
        decide(ConsentState(), Channel.ADS, ConsentPolicy(), Person("p0"), datetime(2025, 1, 1))


# --------------------------------------------------------------------------------------------------
# From the source's records


def test_global_change_applies_to_every_channel() -> None:
    """A source's change on channel "all" (a global unsubscribe) becomes one change per channel."""
    change = ConsentChange("c9", "p0", "all", DENIED, at(-1), "consent", "hubspot")
    made = events_from_change(change, NOW)
    assert {e.channel for e in made} == set(Channel)
    assert all(e.status is DENIED and e.recorded_at == NOW and e.key == "c9" for e in made)


def test_source_channel_and_basis_spellings_are_understood() -> None:
    """"Sales" means sales outreach and "Legitimate interests" the lawful basis, as CRMs spell them."""
    (event,) = events_from_change(ConsentChange("c1", "p0", "Sales", GRANTED, at(-1), "Legitimate interests"), NOW)
    assert event.channel is Channel.SALES_OUTREACH
    assert event.basis is LawfulBasis.LEGITIMATE_INTEREST


def test_unknown_channel_is_refused_but_unknown_basis_never_loses_a_denial() -> None:
    """An unknown channel raises (the row is quarantined); an odd lawful basis is dropped, the denial kept."""
    with pytest.raises(ValueError, match="unknown consent channel 'fax'"):
        events_from_change(ConsentChange("c1", "p0", "fax", DENIED, at(-1)), NOW)
    (event,) = events_from_change(ConsentChange("c2", "p0", "ads", DENIED, at(-1), "gut feeling"), NOW)
    assert event.status is DENIED
    assert event.basis is None


# --------------------------------------------------------------------------------------------------
# Decisions


@MANY
@given(timelines, policies, people, nows)
def test_ads_are_allowed_only_with_a_granted_record(timeline: list[ConsentEvent], policy: ConsentPolicy,
                                                    person: Person, now: datetime) -> None:
    """No ads decision allows a person without a grant in force, on an accepted basis, and not suppressed."""
    for known in arrivals(timeline):
        if decide(fold(known), Channel.ADS, policy, person, now).allowed:
            current = oracle_current(known, person.key, Channel.ADS, now)
            assert current is not None
            assert current.status is GRANTED
            bases = policy.for_channel(Channel.ADS).bases
            assert bases is None or current.basis in bases
            assert policy.suppressions.match(person) is None


@MANY
@given(timelines, policies, people, nows)
def test_a_denial_in_force_or_a_suppression_always_denies(timeline: list[ConsentEvent], policy: ConsentPolicy,
                                                          person: Person, now: datetime) -> None:
    """On every channel, a denial in force or a suppression list entry means not allowed."""
    for known, channel in itertools.product(arrivals(timeline), Channel):
        decision = decide(fold(known), channel, policy, person, now)
        current = oracle_current(known, person.key, channel, now)
        if (current is not None and current.status is DENIED) or policy.suppressions.match(person):
            assert not decision.allowed
            assert decision.denied_by_person


@SOME
@given(timelines, policies, people, nows, st.sampled_from(Channel), seeds)
def test_decisions_are_deterministic(timeline: list[ConsentEvent], policy: ConsentPolicy, person: Person,
                                     now: datetime, channel: Channel, seed: int) -> None:
    """The same changes (in any order), policy, person and time always give the same decision and reason."""
    shuffled = list(timeline)
    random.Random(seed).shuffle(shuffled)
    assert decide(fold(timeline), channel, policy, person, now) == decide(fold(shuffled), channel, policy, person, now)


def test_unknown_means_per_channel() -> None:
    """Nothing on record: ads and e-mail say no by default, sales outreach yes; a policy can change e-mail."""
    state, person = ConsentState(), Person("p0")
    assert not decide(state, Channel.ADS, ConsentPolicy(), person, NOW).allowed
    assert not decide(state, Channel.EMAIL, ConsentPolicy(), person, NOW).allowed
    assert decide(state, Channel.SALES_OUTREACH, ConsentPolicy(), person, NOW).allowed
    lenient = ConsentPolicy.from_mapping({"email": {"unknown_means": "granted"}})
    assert decide(state, Channel.EMAIL, lenient, person, NOW).allowed
    explicit_unknown = fold([ev(UNKNOWN, -1)])
    assert not decide(explicit_unknown, Channel.ADS, lenient, person, NOW).allowed


def test_reasons_read_like_sentences() -> None:
    """Each decision says, in plain words, what was on record, when, on what basis and from where."""
    policy = ConsentPolicy.from_mapping({"ads": {"bases": ["consent"]},
                                         "suppressions": {"domains": ["rival.com"], "accounts": ["acct-9"]}})
    granted = fold([ev(GRANTED, -24, source="hubspot form")])
    assert decide(granted, Channel.ADS, policy, Person("p0"), NOW).reason == (
        "ads consent granted 2025-05-31 12:00 UTC (basis: consent; source: hubspot form)")
    denied = fold([ev(DENIED, -2, basis=None, source="unsubscribe link")])
    assert decide(denied, Channel.ADS, policy, Person("p0"), NOW).reason == (
        "ads consent denied 2025-06-01 10:00 UTC (source: unsubscribe link)")
    assert decide(ConsentState(), Channel.ADS, policy, Person("p0"), NOW).reason == (
        "no ads consent on record; unknown counts as denied for ads")
    interest = fold([ev(GRANTED, -1, basis=LawfulBasis.LEGITIMATE_INTEREST)])
    assert decide(interest, Channel.ADS, policy, Person("p0"), NOW).reason == (
        "ads consent granted 2025-06-01 11:00 UTC (basis: legitimate interest), but ads accepts only: consent")
    no_basis = fold([ev(GRANTED, -1, basis=None)])
    assert decide(no_basis, Channel.ADS, policy, Person("p0"), NOW).reason == (
        "ads consent granted 2025-06-01 11:00 UTC without a recognised lawful basis, but ads accepts only: consent")
    assert decide(granted, Channel.ADS, policy, Person("p0", "Jo@EU.Rival.com"), NOW).reason == (
        "ads: the e-mail domain rival.com is on the suppression list")
    assert decide(granted, Channel.ADS, policy, Person("p0", account_key="acct-9"), NOW).reason == (
        "ads: account acct-9 is on the suppression list")


def test_suppressed_address_is_matched_normalised_and_not_repeated() -> None:
    """A suppressed address matches however it is written, and the reason does not repeat the address."""
    policy = ConsentPolicy(suppressions=Suppressions.of(emails=[" Jo@Acme.COM "]))
    decision = decide(fold([ev(GRANTED, -1)]), Channel.EMAIL, policy, Person("p0", "jo@acme.com"), NOW)
    assert not decision.allowed
    assert decision.suppressed
    assert "jo@acme.com" not in decision.reason


def test_view_answers_by_key_with_the_suppression_lists_applied() -> None:
    """Asked by lead key and channel name (routing's shape), the view still matches the suppression lists."""
    policy = ConsentPolicy(suppressions=Suppressions.of(domains=["rival.com"]))
    view = ConsentView(fold([ev(GRANTED, -1, person=p, channel=Channel.SALES_OUTREACH) for p in PEOPLE]), policy,
                       {"p1": Person("p1", "jo@rival.com")})
    assert view.allows("p0", "sales", NOW)
    assert not view.allows("p1", "sales_outreach", NOW)
    assert view.decide("p1", Channel.SALES_OUTREACH, NOW).reason == (
        "sales outreach: the e-mail domain rival.com is on the suppression list")


# --------------------------------------------------------------------------------------------------
# Policy from configuration


def test_ads_unknown_cannot_be_configured_as_granted() -> None:
    """Configuring ads to treat unknown as granted is refused, with the reason."""
    with pytest.raises(PolicyError, match=r"ads\.unknown_means: for ads, unknown always counts as denied"):
        ConsentPolicy.from_mapping({"ads": {"unknown_means": "granted"}})


def test_policy_problems_are_all_listed_with_their_key_path() -> None:
    """Every problem of a consent table is reported at once, each with its key path."""
    with pytest.raises(PolicyError) as caught:
        ConsentPolicy.from_mapping({
            "fax": {},
            "email": {"unknown_means": "maybe", "colour": "red"},
            "sales_outreach": {"bases": ["hunch"]},
            "suppressions": {"emails": ["not-an-address"], "domains": "acme.com"},
        })
    assert caught.value.problems == (
        ("fax", "unknown key; expected suppressions or a channel (email, ads, sales_outreach)"),
        ("email.colour", "unknown key; expected unknown_means, bases"),
        ("email.unknown_means", "must be 'granted' or 'denied', got 'maybe'"),
        ("sales_outreach.bases[0]", "unknown lawful basis 'hunch'; bases: consent, legitimate_interest, contract, "
                                    "legal_obligation, vital_interests, public_task"),
        ("suppressions.emails[0]", "'not-an-address' is not a valid email"),
        ("suppressions.domains", "must be a list of strings"),
    )


def test_policy_from_mapping_reads_every_option() -> None:
    """A full consent table becomes the policy it describes; channels left out keep their defaults."""
    policy = ConsentPolicy.from_mapping({
        "ads": {"unknown_means": "denied", "bases": ["consent"]},
        "email": {"unknown_means": "granted", "bases": ["consent", "legitimate interest"]},
        "suppressions": {"emails": ["A@B.com"], "domains": ["https://www.Rival.com/x"], "accounts": ["acct-1"]},
    })
    assert policy.for_channel(Channel.ADS).bases == {LawfulBasis.CONSENT}
    assert policy.for_channel(Channel.EMAIL) == ChannelPolicy(
        Channel.EMAIL, GRANTED, frozenset({LawfulBasis.CONSENT, LawfulBasis.LEGITIMATE_INTEREST}))
    assert policy.for_channel(Channel.SALES_OUTREACH).unknown_means is GRANTED
    assert policy.suppressions == Suppressions(frozenset({"a@b.com"}), frozenset({"rival.com"}), frozenset({"acct-1"}))


# --------------------------------------------------------------------------------------------------
# Outgoing writes


STATUSES = [None, GRANTED, DENIED, UNKNOWN, "granted", "denied", "unknown"]


@pytest.mark.parametrize(("current", "proposed"), list(itertools.product(STATUSES, STATUSES)))
def test_never_reopt_in_refuses_exactly_the_weakening_of_a_denial(current: object, proposed: object) -> None:
    """Every pair of statuses: only moving a denial to something other than denial is refused."""
    weakens = current in (DENIED, "denied") and proposed not in (None, DENIED, "denied")
    assert is_reopt_in(current, proposed) is weakens  # type: ignore[arg-type]
    if weakens:
        with pytest.raises(ReOptInRefused, match="never turns an opt-out back into an opt-in"):
            never_reopt_in(current, proposed, what="p0 email")  # type: ignore[arg-type]
    else:
        never_reopt_in(current, proposed)  # type: ignore[arg-type]


@pytest.mark.parametrize(("timeline", "person", "expected"), [
    ([ev(GRANTED, -1)], Person("p0"), "GRANTED"),
    ([ev(DENIED, -1)], Person("p0"), "DENIED"),
    ([ev(GRANTED, -1)], Person("p0", "jo@rival.com"), "DENIED"),
    ([ev(UNKNOWN, -1)], Person("p0"), "UNSPECIFIED"),
    ([], Person("p0"), "UNSPECIFIED"),
    ([ev(GRANTED, -1, basis=LawfulBasis.CONTRACT)], Person("p0"), "UNSPECIFIED"),
])
def test_google_ads_consent_fields(timeline: list[ConsentEvent], person: Person, expected: str) -> None:
    """Google's ad_user_data and ad_personalization follow the ads decision: granted, said no, or not known."""
    policy = ConsentPolicy.from_mapping({"ads": {"bases": ["consent"]}, "suppressions": {"domains": ["rival.com"]}})
    assert google_ads_consent(fold(timeline), policy, person, NOW) == {
        "ad_user_data": expected, "ad_personalization": expected}
