"""Identity: normalisation, account matching by domain, duplicate people and e-mail changes."""

from __future__ import annotations

import string

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sync.identity import (
    EXACT,
    FREE_MAIL_DOMAINS,
    SUBDOMAIN,
    AccountIndex,
    EmailChange,
    EmailHistory,
    domain_key,
    email_changes,
    email_domain,
    find_duplicates,
    is_free_mail,
    mailbox_key,
    match_account,
    normalize_domain,
    normalize_email,
)

PROPERTY = settings(max_examples=200, deadline=None)
ASCII = string.ascii_letters + string.digits + "._+-"
LABEL = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=8)
DOMAIN = st.builds(lambda labels, tld: ".".join([*labels, tld]), st.lists(LABEL, min_size=1, max_size=3),
                   st.sampled_from(["com", "io", "de", "co.uk"]))
LOCAL = st.text(ASCII, min_size=1, max_size=12)
EMAIL = st.builds(lambda local, domain: f"{local}@{domain}", LOCAL, DOMAIN)
SPACE = st.text(" \t\n", max_size=3)


# -- normalisation --------------------------------------------------------------------------------


def test_existing_normalisation_is_unchanged() -> None:
    """The first slice's functions behave as scoring and consent rely on."""
    assert normalize_email(" Bob@Acme.COM ") == "bob@acme.com"
    assert normalize_email("bob@localhost") is None
    assert normalize_email("bob@acme.com.") is None
    assert normalize_domain("https://www.Acme.com/about") == "acme.com"
    assert email_domain("Jane@EU.Acme.com") == "eu.acme.com"
    assert is_free_mail("GMail.com")
    assert not is_free_mail("acme.com")


@pytest.mark.parametrize(("raw", "expected"), [
    ("https://user:pw@WWW.Acme.com:8080/about?x=1#top", "acme.com"),
    ("ftp://acme.com", "acme.com"),
    ("acme.com.", "acme.com"),
    ("www.www.acme.com", "acme.com"),
    ("münchen.de", "xn--mnchen-3ya.de"),
    ("http://xn--mnchen-3ya.de/", "xn--mnchen-3ya.de"),
    ("ＡＣＭＥ。com", "acme.com"),
    ("localhost", None),
    ("acme..com", None),
    ("acme com", None),
    ("", None),
    (None, None),
])
def test_domain_key_strips_everything_but_the_host(raw: str | None, expected: str | None) -> None:
    """Scheme, credentials, www., port, path, case and trailing dot go; IDN becomes punycode; junk is None."""
    assert domain_key(raw) == expected


@PROPERTY
@given(st.one_of(st.text(max_size=30), EMAIL, DOMAIN, st.builds("{}@{}.{}".format, st.text(max_size=8),
                                                                 st.text(max_size=8), st.text(max_size=4))))
def test_normalisation_is_idempotent(value: str) -> None:
    """Normalising a normalised value changes nothing, for any text at all."""
    for normalise in (normalize_email, domain_key, mailbox_key):
        once = normalise(value)
        assert once is None or normalise(once) == once


@PROPERTY
@given(EMAIL, SPACE, SPACE, st.booleans())
def test_email_normalisation_ignores_case_and_surrounding_space(email: str, before: str, after: str,
                                                                upper: bool) -> None:
    """The same address in another case or padded with whitespace normalises, matches and dedupes alike."""
    variant = before + (email.upper() if upper else email.swapcase()) + after
    assert normalize_email(variant) == normalize_email(email)
    assert mailbox_key(variant) == mailbox_key(email)
    assert domain_key(email_domain(variant)) == domain_key(email_domain(email))


@PROPERTY
@given(DOMAIN, st.sampled_from(["", "http://", "https://", "HTTPS://"]), st.sampled_from(["", "www.", "WWW."]),
       st.sampled_from(["", "/", "/about", ":443/x?y", "."]))
def test_domain_key_ignores_url_decoration(domain: str, scheme: str, www: str, tail: str) -> None:
    """A company's website in any of its usual spellings gives the same key as its bare domain."""
    assert domain_key(scheme + www + domain.upper() + tail) == domain_key(domain) == domain


# -- matching -------------------------------------------------------------------------------------


ACCOUNTS = {"acme": "https://www.acme.com/", "beta-1": "beta.io", "beta-2": "BETA.io", "muc": "münchen.de"}


def test_exact_domain_matches_with_high_confidence() -> None:
    """The person's domain equal to the account's (however the account spells it) is a confident match."""
    match = match_account("Jane.Doe@ACME.com", ACCOUNTS)
    assert match is not None
    assert (match.account_key, match.confidence) == ("acme", EXACT)
    assert "acme.com is the account's domain" in match.reason


def test_subdomain_matches_with_lower_confidence_the_deeper_it_is() -> None:
    """eu.acme.com matches acme.com below an exact match; each further label lowers the confidence."""
    one = match_account("j@eu.acme.com", ACCOUNTS)
    two = match_account("j@sales.eu.acme.com", ACCOUNTS)
    assert one is not None
    assert two is not None
    assert one.account_key == two.account_key == "acme"
    assert EXACT > one.confidence == SUBDOMAIN > two.confidence > 0
    assert "sub-domain of the account's domain acme.com" in one.reason


def test_nearest_account_wins_over_a_parent_account() -> None:
    """An account on eu.acme.com takes eu.acme.com people from the group account on acme.com."""
    index = AccountIndex.build([("group", "acme.com"), ("eu", "eu.acme.com")])
    eu = index.match("j@eu.acme.com")
    group = index.match("j@acme.com")
    assert eu is not None
    assert group is not None
    assert (eu.account_key, eu.confidence) == ("eu", EXACT)
    assert group.account_key == "group"


def test_a_parent_domain_does_not_match_a_subsidiary_account() -> None:
    """A person at acme.com is not attached to the account of eu.acme.com."""
    assert match_account("j@acme.com", {"eu": "eu.acme.com"}) is None


def test_accounts_sharing_a_domain_are_ambiguous_and_not_matched() -> None:
    """Two accounts on one domain: no account is chosen, confidence is 0, both are named."""
    match = match_account("j@beta.io", ACCOUNTS)
    assert match is not None
    assert match.ambiguous
    assert (match.account_key, match.confidence, match.candidates) == (None, 0.0, ("beta-1", "beta-2"))
    assert "2 accounts share the domain beta.io (beta-1, beta-2)" in match.reason


def test_idn_domains_match_in_either_spelling() -> None:
    """An account given in Unicode matches a person whose domain is written in punycode, and back."""
    for email in ("j@münchen.de", "j@xn--mnchen-3ya.de", "j@MÜNCHEN.de"):
        match = match_account(email, ACCOUNTS)
        assert match is not None, email
        assert match.account_key == "muc", email


def test_an_account_is_indexed_once_per_domain() -> None:
    """The same account listed twice with one domain is one candidate, not an ambiguity."""
    match = match_account("j@acme.com", AccountIndex.build([("a", "acme.com"), ("a", "www.acme.com")]))
    assert match is not None
    assert match.account_key == "a"


def test_unusable_account_domains_are_skipped_with_a_reason() -> None:
    """Free-mail, shared-suffix, missing and malformed account domains never index, and say why."""
    index = AccountIndex.build([("g", "gmail.com"), ("uk", "co.uk"), ("n", None), ("x", "not a domain"),
                                ("ok", "acme.co.uk")])
    assert dict(index.skipped) == {"g": "gmail.com is a free-mail domain",
                                   "uk": "co.uk is a registry suffix shared by many companies",
                                   "n": "no domain", "x": "not a host name"}
    assert set(index.domains) == {"acme.co.uk"}
    assert match_account("j@other.co.uk", index) is None


@pytest.mark.parametrize("email", [None, "", "not-an-address", "j@nowhere.org"])
def test_no_match_without_a_usable_matching_address(email: str | None) -> None:
    """Missing, malformed and unknown addresses match nothing."""
    assert match_account(email, ACCOUNTS) is None


@PROPERTY
@given(LOCAL, st.sampled_from(sorted(FREE_MAIL_DOMAINS)), st.sampled_from(["", "mail.", "eu."]), st.booleans())
def test_free_mail_never_matches(local: str, free: str, sub: str, upper: bool) -> None:
    """A free-mail address matches no account, even one that lists the provider's domain as its own."""
    email = f"{local}@{sub}{free.upper() if upper else free}"
    accounts = {"provider": free, "acme": "acme.com", "sub": f"{sub}{free}" if sub else "x.io"}
    assert match_account(email, accounts) is None


@PROPERTY
@given(st.lists(st.tuples(st.sampled_from("abcdef"), DOMAIN), max_size=8), EMAIL)
def test_a_match_is_the_nearest_indexed_domain_with_a_valid_confidence(accounts: list[tuple[str, str]],
                                                                       email: str) -> None:
    """Any match names an indexed domain that is the person's or a parent of it, with confidence in [0, 1]."""
    index = AccountIndex.build(accounts)
    match = index.match(email)
    domain = domain_key(email_domain(email))
    assert domain is not None
    if match is None:
        assert all(not (domain == d or domain.endswith("." + d)) for d in index.domains)
        return
    assert 0.0 <= match.confidence <= 1.0
    assert domain == match.account_domain or domain.endswith("." + match.account_domain)
    assert match.candidates == index.domains[match.account_domain]
    assert (match.account_key is None) == (len(match.candidates) > 1)


# -- duplicates -----------------------------------------------------------------------------------


def test_gmail_dots_plus_tags_and_googlemail_are_one_mailbox() -> None:
    """Gmail's documented rules merge j.doe+x@googlemail.com and JDoe@gmail.com into one report."""
    groups = find_duplicates([("1", "j.doe+news@googlemail.com"), ("2", "JDoe@gmail.com"), ("3", "jdoe2@gmail.com")])
    assert [(g.address, g.keys) for g in groups] == [("jdoe@gmail.com", ("1", "2"))]


def test_plus_tags_and_dots_elsewhere_are_different_people() -> None:
    """Outside Gmail, a+b@ and a@ (or a.b@ and ab@) are kept apart: a false merge is worse than a miss."""
    assert find_duplicates([("1", "a+b@acme.com"), ("2", "a@acme.com"), ("3", "a.b@acme.com"),
                            ("4", "ab@acme.com")]) == []


def test_a_key_counts_once_with_its_last_address() -> None:
    """The same person listed twice is not their own duplicate, and only their last address counts."""
    groups = find_duplicates([("1", "x@acme.com"), ("1", "x@acme.com"), ("2", "y@acme.com"), ("2", "x@acme.com"),
                              ("3", "y@acme.com"), ("3", None)])
    assert [(g.address, g.keys) for g in groups] == [("x@acme.com", ("1", "2"))]


PEOPLE = st.lists(st.tuples(st.text("0123456789", min_size=1, max_size=3),
                            st.one_of(st.none(), st.sampled_from(["a@acme.com", "A@Acme.com ", "a.b@gmail.com",
                                                                  "ab+x@googlemail.com", "b@acme.com", "bad"]),
                                      EMAIL)), max_size=30)


@PROPERTY
@given(PEOPLE)
def test_duplicate_groups_are_a_partition_of_shared_mailboxes(people: list[tuple[str, str | None]]) -> None:
    """Every key is in at most one group; a group is exactly the keys whose last address reaches its mailbox."""
    groups = find_duplicates(people)
    keys = [k for g in groups for k in g.keys]
    assert len(keys) == len(set(keys))
    last = dict(people)
    for group in groups:
        assert list(group.keys) == sorted(group.keys)
        assert len(group.keys) >= 2
        assert {k for k, e in last.items() if mailbox_key(e) == group.address} == set(group.keys)
    assert [g.address for g in groups] == sorted(g.address for g in groups)
    grouped = {g.address for g in groups}
    mailboxes = [mailbox_key(e) for e in last.values() if mailbox_key(e)]
    assert grouped == {m for m in mailboxes if mailboxes.count(m) > 1}


# -- e-mail changes -------------------------------------------------------------------------------


def test_a_changed_address_keeps_the_key_and_carries_the_old_one() -> None:
    """Same key, new address: one change naming the old address (for removals) and the new one."""
    previous = {"1": "Old@Acme.com", "2": "same@acme.com", "3": None, "4": "gone@acme.com", "5": "x@acme.com"}
    current = {"1": "new@acme.com", "2": " SAME@acme.com", "3": "first@acme.com", "4": None, "6": "n@acme.com"}
    assert email_changes(previous, current) == [EmailChange("1", "old@acme.com", "new@acme.com"),
                                                EmailChange("4", "gone@acme.com", None)]


def test_gmail_dot_change_is_a_change_of_identifier() -> None:
    """j.doe@ → jdoe@gmail.com reaches the same mailbox but hashes differently, so it is a change."""
    assert email_changes({"1": "j.doe@gmail.com"}, {"1": "jdoe@gmail.com"}) == [
        EmailChange("1", "j.doe@gmail.com", "jdoe@gmail.com")]


def test_history_keeps_every_address_and_only_the_people_observed_change() -> None:
    """Observed page by page, the history keeps each person's addresses in order and who ever had one."""
    history, changes = EmailHistory().observe({"1": "a@acme.com", "2": None})
    assert changes == []
    history, changes = history.observe({"1": "b@acme.com", "2": "c@acme.com"})
    assert changes == [EmailChange("1", "a@acme.com", "b@acme.com")]
    history, changes = history.observe({"3": "A@acme.com"})  # a page without 1 and 2 leaves them as they are
    assert changes == []
    history, changes = history.observe({"1": "a@acme.com"})  # back to an earlier address: still a change
    assert changes == [EmailChange("1", "b@acme.com", "a@acme.com")]
    assert history.addresses("1") == ("a@acme.com", "b@acme.com")
    assert history.owners(" A@ACME.com") == ("1", "3")
    assert EmailHistory.from_dict(history.as_dict()).addresses("1") == history.addresses("1")


@PROPERTY
@given(st.lists(st.dictionaries(st.sampled_from("123"), st.one_of(st.none(), st.sampled_from(
    ["a@acme.com", "b@acme.com", "B@acme.com", "bad"])), max_size=3), max_size=6))
def test_history_changes_agree_with_snapshot_changes(pages: list[dict[str, str | None]]) -> None:
    """Observing pages one by one reports exactly the changes between consecutive states of each person."""
    history = EmailHistory()
    state: dict[str, str | None] = {}
    for page in pages:
        history, changes = history.observe(page)
        before = {k: state[k] for k in page if k in state}
        assert changes == email_changes(before, page)
        state.update(page)
        for key, email in page.items():
            if normalize_email(email):
                assert normalize_email(email) in history.addresses(key)
