"""Audiences: entry and exit with decay, hysteresis and a time-to-live, consent first, guarded removals."""

from __future__ import annotations

import itertools
import random
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import ConsentStatus, Lead
from connectors.meta.hashing import SCHEMA_KEYS, wire_row
from sync.audiences import (
    ADD_OPERATION,
    REMOVE_OPERATION,
    AudienceDecisions,
    AudienceSpec,
    AudienceSpecError,
    Candidate,
    Cause,
    Membership,
    apply,
    audience_writes,
    decayed_score,
    decide,
    lead_identifiers,
    membership_target,
)
from sync.consent import Channel, ConsentEvent, ConsentPolicy, ConsentView, LawfulBasis, fold
from sync.planner import payload_hash, plan
from sync.store import LedgerEntry

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
GRANTED, DENIED, UNKNOWN = ConsentStatus.GRANTED, ConsentStatus.DENIED, ConsentStatus.UNKNOWN
MANY = settings(max_examples=200, deadline=None)
SOME = settings(max_examples=80, deadline=None)


def at(hours: float) -> datetime:
    return NOW + timedelta(hours=hours)


def spec(**changes: object) -> AudienceSpec:
    base = AudienceSpec(name="hot", destination="meta", audience_id="2385", entry_threshold=70, exit_threshold=50)
    return replace(base, **changes)


def grant(person: str, hours: float = -100, basis: LawfulBasis | None = LawfulBasis.CONSENT) -> ConsentEvent:
    return ConsentEvent(person, Channel.ADS, GRANTED, at(hours), at(hours), basis, "hubspot")


def deny(person: str, hours: float = -1) -> ConsentEvent:
    return ConsentEvent(person, Channel.ADS, DENIED, at(hours), at(hours), None, "unsubscribe link")


def member(person: str, *, ours: bool = True, hours: float = -200, audience: str = "hot") -> Membership:
    return Membership(person=person, audience=audience, entered_at=at(hours), entry_reason="earlier",
                      added_by_leadrelay=ours)


def fresh(person: str, score: float, **extra: object) -> Candidate:
    return Candidate(person, score, NOW, {"pricing_page": at(-1)}, **extra)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Generated worlds: a spec, a policy, eight people (source, membership, score, activity, e-mail) and an
# ads consent timeline. Each person and each consent change is drawn as one integer and decoded, so that
# generation stays cheap enough for thousands of decisions within the test budget.

PEOPLE = tuple(f"p{i}" for i in range(8))
SPECS = [
    AudienceSpec(name="hot", destination="meta", audience_id="2385", entry_threshold=entry,
                 exit_threshold=entry - gap, half_life_hours=half_life, ttl_days=ttl, qualifying_activities=kinds,
                 min_source_size=min_size, max_missing_share=share)
    for entry, gap, half_life, ttl, kinds, (min_size, share) in itertools.product(
        (30, 60, 85), (1, 15, 29), (None, 24, 400), (None, 1, 30),
        (None, frozenset({"pricing_page", "form_submit"})), ((1, None), (0, None), (3, 0.5)))
]
POLICIES = [ConsentPolicy.from_mapping({"ads": ads, "suppressions": sup})
            for ads, sup in itertools.product(({}, {"bases": ["consent"]}), ({}, {"domains": ["rival.com"]}))]

IN_SOURCE = (False, True, True, True)
MEMBERSHIP = (None, None, None, "ours", "ours", "foreign")
SCORES: tuple[float | None, ...] = (None, *range(101))
SCORE_AGES = (0, 0, 1, 5, 24, 100, 400)
ACTIVITIES = (None, "pricing_page", "pricing_page", "page_view", "form_submit")
ACTIVITY_AGES = (-2, 0, 0, 12, 30, 200, 800, 2000)  # hours before now; -2 is a time not reached yet
ENTERED_AGES = (1, 50, 500)
EMAILS = (None, "x@acme.com", "x@acme.com", "x@eu.rival.com")
FIRST_CONSENT = (None, LawfulBasis.CONSENT, LawfulBasis.CONSENT, LawfulBasis.CONSENT, LawfulBasis.LEGITIMATE_INTEREST)
PERSON_FIELDS = (IN_SOURCE, MEMBERSHIP, SCORES, SCORE_AGES, ACTIVITIES, ACTIVITY_AGES, ENTERED_AGES, EMAILS,
                 FIRST_CONSENT)
PERSON_SPACE = 1
for _options in PERSON_FIELDS:
    PERSON_SPACE *= len(_options)

EVENT_HOURS = range(-100, 6)
EVENT_DELAYS = (-5, 0, 2, 10)  # recorded this many hours after taking effect (negative: recorded ahead)
STATUSES = (GRANTED, GRANTED, DENIED, UNKNOWN)
BASES = (None, LawfulBasis.CONSENT, LawfulBasis.LEGITIMATE_INTEREST)
EVENT_SPACE = len(PEOPLE) * len(STATUSES) * len(EVENT_HOURS) * len(EVENT_DELAYS) * len(BASES)


def _digits(n: int, sizes: Sequence[int]) -> list[int]:
    # Hypothesis favours small integers; multiplying by a prime larger than every field size permutes the
    # space so that every field, not just the low ones, takes all its values.
    space = 1
    for size in sizes:
        space *= size
    n = n * 1_000_003 % space
    out = []
    for size in sizes:
        n, digit = divmod(n, size)
        out.append(digit)
    return out


def decode_event(n: int) -> ConsentEvent:
    person, status, hour, delay, basis = _digits(n, (len(PEOPLE), len(STATUSES), len(EVENT_HOURS),
                                                     len(EVENT_DELAYS), len(BASES)))
    effective = at(EVENT_HOURS[hour])
    return ConsentEvent(PEOPLE[person], Channel.ADS, STATUSES[status], effective,
                        effective + timedelta(hours=EVENT_DELAYS[delay]), BASES[basis], "crm")


@dataclass(frozen=True)
class World:
    spec: AudienceSpec
    policy: ConsentPolicy
    members: tuple[Membership, ...]
    people: tuple[Candidate, ...]
    events: tuple[ConsentEvent, ...]

    def view(self, events: Sequence[ConsentEvent] | None = None) -> ConsentView:
        return ConsentView(fold(self.events if events is None else events), self.policy)

    def decide(self, events: Sequence[ConsentEvent] | None = None, now: datetime = NOW) -> AudienceDecisions:
        return decide(self.spec, self.members, self.people, self.view(events), now)

    def arrivals(self) -> list[tuple[ConsentEvent, ...]]:
        """The consent timeline after each arrival: one generated world checks many timelines."""
        first = sum(1 for e in self.events if e.effective_at == at(-300))
        return [self.events[:n] for n in range(first, len(self.events) + 1)]


def decode_world(spec_: AudienceSpec, policy: ConsentPolicy, codes: Sequence[int], events: Sequence[int]) -> World:
    members: list[Membership] = []
    people: list[Candidate] = []
    # Most people granted ads consent long ago (under one basis or another); the drawn changes come after.
    timeline: list[ConsentEvent] = []
    for key, code in zip(PEOPLE, codes, strict=True):
        digits = _digits(code, [len(options) for options in PERSON_FIELDS])
        in_source, membership, score, score_age, activity, activity_age, entered_age, email, basis = (
            options[d] for options, d in zip(PERSON_FIELDS, digits, strict=True))
        if basis is not None:
            timeline.append(ConsentEvent(key, Channel.ADS, GRANTED, at(-300), at(-300), basis, "crm"))
        if membership is not None:
            members.append(Membership(person=key, audience="hot", entered_at=at(-entered_age),
                                      entry_reason="earlier", added_by_leadrelay=membership == "ours"))
        if in_source:
            seen = {activity: at(-activity_age)} if activity else {}
            people.append(Candidate(key, score, at(-score_age) if score is not None else None, seen, email))
    # Past stays and another audience's members must not count.
    members.append(Membership(person="p0", audience="hot", entered_at=at(-900), entry_reason="long ago",
                              added_by_leadrelay=True, exited_at=at(-800), exit_reason="score"))
    members.append(Membership(person="p1", audience="other", entered_at=at(-50), entry_reason="elsewhere",
                              added_by_leadrelay=True))
    timeline += [decode_event(e) for e in events]
    return World(spec_, policy, tuple(members), tuple(people), tuple(timeline))


worlds = st.builds(
    decode_world,
    st.sampled_from(SPECS),
    st.sampled_from(POLICIES),
    st.lists(st.integers(0, PERSON_SPACE - 1), min_size=len(PEOPLE), max_size=len(PEOPLE)),
    st.lists(st.integers(0, EVENT_SPACE - 1), min_size=2, max_size=10),
)


def granted_in_force(world: World, events: Sequence[ConsentEvent], person: str, now: datetime = NOW) -> bool:
    """The specification of "granted ads consent at decision time", brute force: the latest change in force
    (a denial from when it was recorded) is a grant on an accepted basis, and no suppression list names the
    person's e-mail domain. (A later "unknown" cannot matter here: it is not a grant either way.)"""
    rank = {GRANTED: 0, UNKNOWN: 1, DENIED: 2}
    in_force = [e for e in events if e.person == person
                and (e.effective_at <= now or (e.status is DENIED and e.recorded_at <= now))]

    def order(e: ConsentEvent) -> tuple[object, ...]:
        return (e.effective_at, e.recorded_at, rank[e.status], e.basis or "", e.source or "", e.key)

    current = max(in_force, default=None, key=order)
    if current is None or current.status is not GRANTED:
        return False
    bases = world.policy.for_channel(Channel.ADS).bases
    if bases is not None and current.basis not in bases:
        return False
    email = next((c.email for c in world.people if c.key == person), None)
    return not (world.policy.suppressions.domains and email is not None and email.endswith("rival.com"))


def active_members(world: World) -> dict[str, Membership]:
    return {m.person: m for m in world.members if m.audience == "hot" and m.active}


# --------------------------------------------------------------------------------------------------
# The acceptance properties


@MANY
@given(worlds)
def test_no_add_without_granted_ads_consent_at_decision_time(world: World) -> None:
    """Nobody is added to an audience unless a grant of ads consent is in force at decision time."""
    for events in world.arrivals():
        for add in world.decide(events).adds:
            assert granted_in_force(world, events, add.person), add


@MANY
@given(worlds)
def test_every_revocation_removes_in_the_same_decision(world: World) -> None:
    """Every added member without granted ads consent now is removed in this decision, even with the source down."""
    for events, source in itertools.product(world.arrivals(), (world.people, ())):
        decisions = decide(world.spec, world.members, source, world.view(events), NOW)
        removed = {d.person: d for d in decisions.removes}
        for person, stay in active_members(world).items():
            known = {c.key for c in source}
            # Without the source row there is no e-mail to match against the suppression lists.
            view = world if person in known else replace(world, people=())
            if stay.added_by_leadrelay and not granted_in_force(view, events, person):
                assert person in removed, (person, decisions)
                assert removed[person].cause is Cause.CONSENT
                assert removed[person].reason.startswith("ads consent no longer allows it: ")


@MANY
@given(worlds)
def test_only_people_leadrelay_added_are_removed(world: World) -> None:
    """Only stays leadrelay made are removed, only non-members added, and every member is accounted for once."""
    active = active_members(world)
    for events in world.arrivals():
        decisions = world.decide(events)
        for d in decisions.removes:
            assert d.person in active
            assert active[d.person].added_by_leadrelay
            assert d.entered_at == active[d.person].entered_at
        assert all(d.person not in active for d in decisions.adds)
        assert all(not active[d.person].added_by_leadrelay for d in decisions.not_ours)
        leaving = [d.person for d in (*decisions.removes, *decisions.held, *decisions.not_ours)]
        assert len(leaving) == len(set(leaving))
        assert len(decisions.removes) + decisions.kept == len(active)  # held and not-ours members are kept


@MANY
@given(worlds)
def test_thresholds_are_obeyed(world: World) -> None:
    """Adds happen only at or above the entry threshold and score exits only below the exit threshold."""
    s = world.spec
    for events in world.arrivals():
        decisions = world.decide(events)
        assert all(d.score is not None and d.score >= s.entry_threshold for d in decisions.adds)
        for d in (*decisions.removes, *decisions.held):
            if d.cause is Cause.SCORE:
                assert d.score is None or d.score < s.exit_threshold
            if d.score is not None and d.score >= s.exit_threshold:
                assert d.cause is not Cause.SCORE


@MANY
@given(worlds, st.integers(0, 2**32 - 1))
def test_decisions_are_deterministic_whatever_the_input_order(world: World, seed: int) -> None:
    """The same inputs and time give the same decisions, reasons and order, however the inputs are ordered."""
    rnd = random.Random(seed)
    expected = world.decide()
    assert world.decide() == expected
    for _ in range(3):
        members, people, events = list(world.members), list(world.people), list(world.events)
        for part in (members, people, events):
            rnd.shuffle(part)
        assert decide(world.spec, members, people, ConsentView(fold(events), world.policy), NOW) == expected
    assert [d.person for d in expected.adds] == sorted(d.person for d in expected.adds)
    assert [d.person for d in expected.removes] == sorted(d.person for d in expected.removes)


@MANY
@given(worlds)
def test_empty_source_removes_nobody_but_for_consent(world: World) -> None:
    """A source that yields nobody removes only people whose consent no longer allows it, and says why."""
    guarded = replace(world.spec, min_source_size=max(1, world.spec.min_source_size))
    ours = {m.person for m in active_members(world).values() if m.added_by_leadrelay}
    for events in world.arrivals():
        decisions = decide(guarded, world.members, (), world.view(events), NOW)
        assert decisions.adds == ()
        assert all(d.cause is Cause.CONSENT for d in decisions.removes)
        if ours:
            assert any("yielded 0 people" in w for w in decisions.warnings)
            assert {d.person for d in (*decisions.removes, *decisions.held)} == ours


# A score sequence inside the band: the value itself, its age and the half-life say what was stored so
# that the decayed score lands on the value.
band_runs = st.tuples(
    st.sampled_from(SPECS),
    st.lists(st.tuples(st.booleans(), st.lists(st.integers(1, 999), min_size=12, max_size=12)),
             min_size=1, max_size=4),
    st.lists(st.sampled_from((0, 1, 7, 30)), min_size=12, max_size=12),
)


@MANY
@given(band_runs)
def test_membership_never_flaps_inside_the_band(run: tuple[AudienceSpec, list[tuple[bool, list[int]]], list[int]],
                                                ) -> None:
    """Cycle after cycle, a decayed score staying between exit and entry never changes anyone's membership."""
    spec_, people, ages = run
    spec_ = replace(spec_, ttl_days=None)  # activity is not the subject here
    keys = [f"p{i}" for i in range(len(people))]
    members: tuple[Membership, ...] = tuple(member(k) for k, (inside, _) in zip(keys, people, strict=True) if inside)
    consent = ConsentView(fold([grant(k) for k in keys]))
    band = spec_.entry_threshold - spec_.exit_threshold
    for cycle in range(12):
        now = at(cycle * 6)
        age = ages[cycle]
        source = []
        for key, (_, values) in zip(keys, people, strict=True):
            target = spec_.exit_threshold + band * values[cycle] / 1000
            stored = target / decayed_score(1.0, now - timedelta(hours=age), now, spec_.half_life_hours)
            source.append(Candidate(key, stored, now - timedelta(hours=age), {"form_submit": now}))
        decisions = decide(spec_, members, source, consent, now)
        assert decisions.adds == (), decisions
        assert decisions.removes == (), decisions
        members = apply(members, decisions)
    assert {m.person for m in members if m.active} == {k for k, (inside, _) in zip(keys, people, strict=True)
                                                        if inside}


@SOME
@given(worlds, st.sampled_from(PEOPLE), st.lists(st.sampled_from(SPECS), min_size=2, max_size=3))
def test_a_revocation_removes_the_person_from_every_audience(world: World, person: str,
                                                             specs: list[AudienceSpec]) -> None:
    """One denial arriving for a person removes them from every audience leadrelay added them to, at once."""
    # Dated after every other change (recorded now, so in force now even when dated ahead): the latest word.
    latest = max((e.effective_at for e in world.events), default=NOW) + timedelta(minutes=1)
    events = (*world.events, ConsentEvent(person, Channel.ADS, DENIED, latest, NOW, None, "unsubscribe link"))
    for i, s in enumerate(specs):
        name = f"a{i}"
        members = [replace(m, audience=name) for m in world.members if m.audience == "hot"]
        decisions = decide(replace(s, name=name), members, world.people, world.view(events), NOW)
        ours = any(m.person == person and m.active and m.added_by_leadrelay for m in members)
        assert (person in {d.person for d in decisions.removes}) is ours
        assert person not in {d.person for d in decisions.adds}


@SOME
@given(st.floats(0, 99), st.integers(0, 5000), st.integers(0, 5000), st.sampled_from((1.0, 24.0, 168.0)))
def test_decay_halves_per_half_life_and_never_grows(score: float, first: int, second: int, half_life: float) -> None:
    """A score halves with every half-life, never grows with time, and does not decay before it was made."""
    made = at(0)
    early, late = sorted((first, second))
    assert decayed_score(score, made, at(late), half_life) <= decayed_score(score, made, at(early), half_life)
    assert decayed_score(score, made, at(half_life), half_life) == pytest.approx(score / 2)
    assert decayed_score(score, made, at(-early), half_life) == score
    assert decayed_score(score, made, at(late), None) == score


# --------------------------------------------------------------------------------------------------
# Examples: rules and their reasons


def test_reasons_say_what_happened_in_plain_words() -> None:
    """Each add and removal carries a reason a marketer can read: score, thresholds, activity, consent."""
    s = spec(half_life_hours=24, ttl_days=14)
    consent = ConsentView(fold([grant(p) for p in ("in", "low", "stale", "gone")] + [deny("revoked")]))
    people = [
        Candidate("in", 95, at(-6), {"pricing_page": at(-3)}),
        Candidate("low", 90, at(-48), {"pricing_page": at(-3)}),
        Candidate("stale", 95, NOW, {"pricing_page": at(-24 * 20)}),
        Candidate("revoked", 99, NOW, {"pricing_page": at(-1)}),
    ]
    members = [member("low"), member("stale"), member("revoked"), member("gone")]
    decisions = decide(s, members, people, consent, NOW)
    assert [(d.person, d.reason) for d in decisions.adds] == [(
        "in", "score 79.9 (decayed from 95 scored 2025-06-01 06:00 UTC) reached the entry threshold 70; last "
              "qualifying activity 2025-06-01 09:00 UTC; ads consent granted 2025-05-28 08:00 UTC (basis: consent; "
              "source: hubspot)")]
    reasons = {d.person: d.reason for d in decisions.removes}
    assert reasons == {
        "gone": "no longer in the source of hot",
        "low": "score 22.5 (decayed from 90 scored 2025-05-30 12:00 UTC) fell below the exit threshold 50",
        "revoked": "ads consent no longer allows it: ads consent denied 2025-06-01 11:00 UTC (source: unsubscribe "
                   "link)",
        "stale": "no qualifying activity since 2025-05-12 12:00 UTC (time-to-live 14 days)",
    }
    assert {d.person: d.cause for d in decisions.removes} == {
        "gone": Cause.LEFT_SOURCE, "low": Cause.SCORE, "revoked": Cause.CONSENT, "stale": Cause.EXPIRED}


def test_entry_reason_names_score_activity_and_consent() -> None:
    """An add says which score reached which threshold, the last qualifying activity, and the grant."""
    decisions = decide(spec(ttl_days=14), [], [fresh("p0", 75)], ConsentView(fold([grant("p0")])), NOW)
    assert [d.reason for d in decisions.adds] == [
        "score 75.0 reached the entry threshold 70; last qualifying activity 2025-06-01 11:00 UTC; ads consent "
        "granted 2025-05-28 08:00 UTC (basis: consent; source: hubspot)"]


def test_no_consent_on_record_means_no_add() -> None:
    """A high score without a recorded ads grant is not added (unknown counts as denied for ads)."""
    decisions = decide(spec(), [], [fresh("p0", 99)], ConsentView(fold([])), NOW)
    assert decisions.adds == ()


def test_stale_activity_blocks_entry_and_ends_a_stay() -> None:
    """Past the time-to-live since the last qualifying activity, nobody enters and members leave."""
    s = spec(ttl_days=7, qualifying_activities=frozenset({"pricing_page"}))
    consent = ConsentView(fold([grant("new"), grant("old")]))
    people = [Candidate("new", 99, NOW, {"pricing_page": at(-24 * 8), "page_view": at(-1)}),
              Candidate("old", 99, NOW, {"pricing_page": at(-24 * 7)})]
    decisions = decide(s, [member("old")], people, consent, NOW)
    assert decisions.adds == ()
    assert [(d.person, d.cause) for d in decisions.removes] == [("old", Cause.EXPIRED)]


def test_people_leadrelay_did_not_add_are_never_removed_and_revocations_are_flagged() -> None:
    """A member someone else added stays even when they would leave; a lost consent is raised as a warning."""
    consent = ConsentView(fold([deny("theirs"), grant("low")]))
    members = [member("theirs", ours=False), member("low", ours=False)]
    decisions = decide(spec(), members, [fresh("theirs", 99), fresh("low", 10)], consent, NOW)
    assert decisions.removes == ()
    assert [d.person for d in decisions.not_ours] == ["low", "theirs"]
    assert decisions.not_ours[0].reason.endswith("not removed: leadrelay did not add this person")
    assert decisions.warnings == (
        "1 member(s) of hot lost ads consent but were not added by leadrelay, which never removes them: remove "
        "them in meta (theirs)",)


def test_a_suppressed_member_missing_from_an_empty_source_is_still_removed() -> None:
    """With the source down, a member whose e-mail domain is suppressed leaves anyway (the view knows it)."""
    policy = ConsentPolicy.from_mapping({"suppressions": {"domains": ["rival.com"]}})
    view = ConsentView(fold([grant("a"), grant("b")]), policy, {"a": Candidate("a", email="a@rival.com")})
    decisions = decide(spec(), [member("a"), member("b")], [], view, NOW)
    assert [(d.person, d.cause) for d in decisions.removes] == [("a", Cause.CONSENT)]
    assert decisions.removes[0].reason == (
        "ads consent no longer allows it: ads: the e-mail domain rival.com is on the suppression list")
    assert [d.person for d in decisions.held] == ["b"]


def test_losing_too_many_members_at_once_holds_removals() -> None:
    """With max_missing_share, a source missing most members at once removes nobody (but for consent)."""
    s = spec(max_missing_share=0.5)
    keys = ["a", "b", "c", "d"]
    consent = ConsentView(fold([grant(k) for k in keys[:3]] + [deny("d")]))
    decisions = decide(s, [member(k) for k in keys], [fresh("a", 90)], consent, NOW)
    assert [(d.person, d.cause) for d in decisions.removes] == [("d", Cause.CONSENT)]
    assert [d.person for d in decisions.held] == ["b", "c"]
    assert decisions.held[0].reason == (
        "no longer in the source of hot; held: 3 of 4 members of hot are missing from its source (75%, guard: at "
        "most 50%); only consent removals are made until it recovers")
    assert decisions.warnings == (decisions.held[0].reason.partition("; held: ")[2],)
    assert len(decide(s, [member(k) for k in keys], [fresh(k, 90) for k in "abc"], consent, NOW).held) == 0


def test_inconsistent_inputs_are_refused() -> None:
    """Two active stays of one person, or one person twice in the source, raise instead of guessing."""
    consent = ConsentView(fold([]))
    with pytest.raises(ValueError, match="p0 has two active memberships of audience hot"):
        decide(spec(), [member("p0"), member("p0", hours=-5)], [], consent, NOW)
    with pytest.raises(ValueError, match="p0 appears twice in the source of audience hot"):
        decide(spec(), [], [fresh("p0", 1), fresh("p0", 2)], consent, NOW)


# --------------------------------------------------------------------------------------------------
# Memberships and writes


def test_apply_keeps_each_stay_with_its_times_and_reasons() -> None:
    """Entering and leaving are recorded as stays with entry and exit times and reasons; a return is a new stay."""
    s, consent = spec(), ConsentView(fold([grant("p0")]))
    first = decide(s, [], [fresh("p0", 80)], consent, at(0))
    members = apply([], first)
    gone = decide(s, members, [Candidate("p0", 10, at(5), {"pricing_page": at(4)})], consent, at(5))
    members = apply(members, gone)
    back = decide(s, members, [Candidate("p0", 90, at(9), {"pricing_page": at(8)})], consent, at(9))
    members = apply(members, back)
    assert [(m.entered_at, m.exited_at, m.added_by_leadrelay) for m in members] == [
        (at(0), at(5), True), (at(9), None, True)]
    assert members[0].entry_reason.startswith("score 80.0 reached the entry threshold 70")
    assert members[0].exit_reason == "score 10.0 fell below the exit threshold 50"


def test_writes_carry_the_audience_id_and_identifiers_meta_accepts() -> None:
    """Adds and removes become Meta audience_add/audience_remove writes whose payload the connector accepts."""
    s = spec()
    consent = ConsentView(fold([grant("in"), deny("out")]))
    decisions = decide(s, [member("out")], [fresh("in", 90), fresh("out", 90)], consent, NOW)
    ids = {"in": {"email": " In@Acme.com ", "first_name": "Ann", "phone": None},
           "out": {"email": "out@acme.com", "country": ""}}
    writes = audience_writes(s, decisions, ids)
    assert [(w.destination, w.operation, w.target) for w in writes] == [
        ("meta", ADD_OPERATION, membership_target("2385", "in", NOW)),
        ("meta", REMOVE_OPERATION, membership_target("2385", "out", at(-200))),
    ]
    assert writes[0].payload == {"audience_id": "2385", "email": " In@Acme.com ", "first_name": "Ann"}
    assert writes[1].payload == {"audience_id": "2385", "email": "out@acme.com"}
    assert writes[1].reason.startswith("ads consent no longer allows it")
    for w in writes:
        assert set(w.payload) <= {"audience_id", *SCHEMA_KEYS}
        assert wire_row({k: v for k, v in w.payload.items() if k != "audience_id"})["EMAIL"]
    with pytest.raises(ValueError, match=r"unknown identifier field\(s\) \['shoe_size'\] for in"):
        audience_writes(s, decisions, {"in": {"shoe_size": "9"}})


def test_a_return_after_removal_is_planned_again() -> None:
    """Each stay has its own ledger target, so a person who left and came back is added again."""
    s, consent = spec(), ConsentView(fold([grant("p0")]))
    first = decide(s, [], [fresh("p0", 80)], consent, at(0))
    ids = {"p0": {"email": "p0@acme.com"}}
    (add,) = audience_writes(s, first, ids)
    ledger = {("meta", ADD_OPERATION): {add.target: LedgerEntry(payload_hash(add.payload), add.payload, None)}}
    members = apply(apply([], first), decide(s, apply([], first), [fresh("p0", 1)], consent, at(1)))
    again = decide(s, members, [Candidate("p0", 90, at(2), {"pricing_page": at(2)})], consent, at(2))
    (readd,) = audience_writes(s, again, ids)
    assert readd.target != add.target
    assert len(plan([readd], ledger, {}).ops) == 1
    assert plan([add], ledger, {}).ops == ()


def test_lead_identifiers_take_canonical_fields_and_named_attributes() -> None:
    """A lead's e-mail, names, country and phone/city/state/zip attributes become the audience identifiers."""
    lead = Lead("l1", NOW, email="a@b.com", first_name="Ann", last_name=None, country="DE",
                attributes={"phone": "+49 30 1234", "zip": 10115, "industry": "Software"})
    assert lead_identifiers(lead) == {"email": "a@b.com", "first_name": "Ann", "country": "DE",
                                      "phone": "+49 30 1234"}


# --------------------------------------------------------------------------------------------------
# Validation


def test_spec_from_mapping_reads_every_option() -> None:
    """A full audience table becomes the spec it describes."""
    parsed = AudienceSpec.from_mapping("hot", {
        "destination": "meta", "audience_id": 2385, "entry_threshold": 70, "exit_threshold": 55.5,
        "half_life_hours": 168, "ttl_days": 30, "channel": "ads", "qualifying_activities": ["pricing_page"],
        "min_source_size": 10, "max_missing_share": 0.5,
    })
    assert parsed == AudienceSpec("hot", "meta", "2385", 70, 55.5, 168, 30, Channel.ADS,
                                  frozenset({"pricing_page"}), 10, 0.5)


def test_spec_problems_are_all_listed_with_their_keys() -> None:
    """Every problem of an audience table is reported at once, by key, saying what is wrong."""
    with pytest.raises(AudienceSpecError) as caught:
        AudienceSpec.from_mapping("hot", {
            "audience_id": "2385", "entry_threshold": 50, "exit_threshold": 60, "ttl_days": 0, "channel": "fax",
            "qualifying_activities": ["tweet"], "max_missing_share": 2, "colour": "red",
        })
    assert caught.value.problems == (
        ("colour", "unknown key"),
        ("destination", "required key is missing"),
        ("exit_threshold", "must be below entry_threshold (60 is not below 50): the gap between them is what stops "
                           "membership from flapping"),
        ("ttl_days", "must be a positive number of days, got 0"),
        ("channel", "must be one of: email, ads, sales_outreach; got 'fax'"),
        ("qualifying_activities", "unknown activity type(s) ['tweet']; known: ['content_download', 'conversion', "
                                  "'email_click', 'email_open', 'form_submit', 'meeting', 'page_view', "
                                  "'pricing_page', 'product_usage', 'sales_touch', 'webinar']"),
        ("max_missing_share", "must be a fraction above 0 and at most 1, got 2"),
    )
    assert str(caught.value).startswith("audience 'hot': colour: unknown key; destination: required key is missing")


@pytest.mark.parametrize(("changes", "message"), [
    ({"entry_threshold": 50, "exit_threshold": 50}, "exit_threshold: must be below entry_threshold"),
    ({"entry_threshold": "high"}, "entry_threshold: must be a number, got 'high'"),
    ({"half_life_hours": -1}, "half_life_hours: must be a positive number of hours, got -1"),
    ({"audience_id": " "}, "audience_id: must be a non-empty string"),
    ({"min_source_size": -1}, "min_source_size: must be a whole number ≥ 0, got -1"),
    ({"qualifying_activities": frozenset()}, "qualifying_activities: must name at least one activity type"),
])
def test_invalid_specs_are_refused_with_a_clear_message(changes: dict[str, object], message: str) -> None:
    """Constructing a spec directly is validated as strictly as reading it from configuration."""
    with pytest.raises(AudienceSpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        spec(**changes)
