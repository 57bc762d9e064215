"""Identity: who a person is, which account they belong to, and who else they might be.

Pure functions, no I/O. Scoring uses the first slice (an address's domain and whether it is a free-mail
provider); the decisions build on the rest:

* :func:`normalize_email` / :func:`normalize_domain` — trim and lowercase, as every module compares values.
* :func:`domain_key` — the stricter key domains are *matched* on: scheme, ``user@``, ``www.``, path, query,
  port and trailing dot stripped, internationalised names in punycode (``münchen.de`` →
  ``xn--mnchen-3ya.de``, IDNA 2003 as Python's codec does it — both sides go through the same function, so
  the variant does not matter), and anything that is not a host name rejected.
* :func:`match_account` / :class:`AccountIndex` — a person's account by e-mail domain, with a confidence:
  the same domain scores :data:`EXACT`; a sub-domain of an account's domain (``eu.acme.com`` →
  ``acme.com``) scores :data:`SUBDOMAIN` minus :data:`PER_LEVEL` per extra label. Several accounts sharing
  the domain is **not** a match: the result names the candidates with confidence 0 and
  ``account_key=None``, because guessing between two CRM accounts would attach people to the wrong company
  (a report can say why, and the lead stays unattached). Free-mail domains never match — neither a person's
  address at one nor an account that lists one as its domain. A person whose domain is a *parent* of the
  account's (``acme.com`` vs ``eu.acme.com``) is not matched either: a subsidiary does not own the group.
* :func:`find_duplicates` — people whose addresses reach the same mailbox, reported and never merged.
* :func:`email_changes` / :class:`EmailHistory` — a changed address keeps the person's key; the change
  carries the old address so removals can be sent with the identifiers that were once added.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

# Consumer mailbox providers: their domains say nothing about the company a person works for.
FREE_MAIL_DOMAINS = frozenset({
    "gmail.com", "googlemail.com", "yahoo.com", "yahoo.co.uk", "yahoo.fr", "hotmail.com", "hotmail.co.uk",
    "outlook.com", "live.com", "msn.com", "aol.com", "icloud.com", "me.com", "mac.com", "proton.me",
    "protonmail.com", "gmx.de", "gmx.net", "web.de", "mail.com", "yandex.ru", "qq.com", "163.com",
    "zoho.com", "fastmail.com", "t-online.de", "orange.fr", "free.fr", "libero.it", "btinternet.com",
})

# Registries' shared second levels: an account "domain" like co.uk (bad CRM data) would otherwise claim every
# company under it as a sub-domain. Not the full public-suffix list — just the ones CRM data shows.
_SHARED_SUFFIXES = frozenset({
    "co.uk", "org.uk", "ac.uk", "gov.uk", "me.uk", "ltd.uk", "plc.uk", "com.au", "net.au", "org.au",
    "co.nz", "co.jp", "ne.jp", "or.jp", "co.kr", "com.br", "com.cn", "com.hk", "com.sg", "com.tw", "co.in",
    "co.za", "com.mx", "com.ar", "com.tr", "co.il", "com.pl", "co.at", "or.at",
})

# Confidence that a person works at the matched account.
EXACT = 0.95
SUBDOMAIN = 0.8
PER_LEVEL = 0.1  # each label beyond the first below the account's domain
SUBDOMAIN_FLOOR = 0.5

_GMAIL = frozenset({"gmail.com", "googlemail.com"})
_LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?")


def normalize_email(value: str | None) -> str | None:
    """Trim and lowercase; ``None`` for anything that is not ``local@domain.tld``."""
    if value is None:
        return None
    text = value.strip().lower()
    local, at, domain = text.rpartition("@")
    if not at or not local or "." not in domain or " " in text or domain.startswith(".") or domain.endswith("."):
        return None
    return text


def normalize_domain(value: str | None) -> str | None:
    """``https://www.Acme.com/about`` -> ``acme.com``."""
    if value is None:
        return None
    text = value.strip().lower()
    for prefix in ("https://", "http://"):
        text = text.removeprefix(prefix)
    text = text.split("/", 1)[0].split(":", 1)[0].removeprefix("www.").strip(".")
    return text or None


def email_domain(value: str | None) -> str | None:
    email = normalize_email(value)
    return email.rpartition("@")[2] if email else None


def is_free_mail(domain: str | None) -> bool:
    return (normalize_domain(domain) or "") in FREE_MAIL_DOMAINS


def domain_key(value: str | None) -> str | None:
    """The key domains are matched on (see the module docstring); ``None`` when no host name is left."""
    if value is None:
        return None
    text = value.strip().lower()
    text = re.sub(r"^[a-z][a-z0-9+.-]*://", "", text)  # any scheme, not only http(s)
    text = re.split(r"[/?#]", text, maxsplit=1)[0].rpartition("@")[2].split(":", 1)[0].strip(".")
    if not text.isascii():
        try:
            # Python's idna codec: punycode per label; full-width and ideographic full stops read as dots.
            text = text.encode("idna").decode("ascii").lower().strip(".")
        except UnicodeError:  # an empty or over-long label: not a host name
            return None
    while text.startswith("www."):
        text = text[4:]
    labels = text.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        return None
    return text


def _parents(domain: str) -> Iterable[str]:
    """``a.b.acme.com`` -> ``b.acme.com``, ``acme.com``, ``com`` — nearest first."""
    rest = domain
    while "." in rest:
        rest = rest.partition(".")[2]
        yield rest


_FREE_KEYS = frozenset(k for k in map(domain_key, FREE_MAIL_DOMAINS) if k)


def _free(domain: str) -> bool:
    # A sub-domain of a provider (mail.yahoo.com, and the like) is still consumer mail.
    return domain in _FREE_KEYS or any(p in _FREE_KEYS for p in _parents(domain))


# --------------------------------------------------------------------------------------------------
# Accounts


@dataclass(frozen=True, slots=True)
class AccountMatch:
    """A person's account, or why there is none although a domain matched.

    ``account_key`` is ``None`` when several accounts share the domain (``candidates`` names them, sorted,
    and ``confidence`` is 0): leadrelay does not guess between CRM accounts.
    """

    account_key: str | None
    confidence: float
    reason: str
    domain: str  # the person's domain, as matched
    account_domain: str
    candidates: tuple[str, ...]

    @property
    def ambiguous(self) -> bool:
        return self.account_key is None


@dataclass(frozen=True, slots=True)
class AccountIndex:
    """Account keys by normalised domain, built once per cycle and matched against many people."""

    domains: Mapping[str, tuple[str, ...]]
    skipped: tuple[tuple[str, str], ...] = ()  # (account key, why its domain cannot identify anyone)

    @classmethod
    def build(cls, accounts: Iterable[tuple[str, str | None]]) -> AccountIndex:
        """Index ``(account key, domain)`` pairs; an account may appear with several domains."""
        found: dict[str, set[str]] = {}
        skipped: list[tuple[str, str]] = []
        for key, raw in accounts:
            domain = domain_key(raw)
            if domain is None:
                skipped.append((key, "no domain" if not (raw or "").strip() else "not a host name"))
            elif _free(domain):
                skipped.append((key, f"{domain} is a free-mail domain"))
            elif domain in _SHARED_SUFFIXES:
                skipped.append((key, f"{domain} is a registry suffix shared by many companies"))
            else:
                found.setdefault(domain, set()).add(key)
        return cls({d: tuple(sorted(keys)) for d, keys in found.items()}, tuple(skipped))

    def match(self, email: str | None) -> AccountMatch | None:
        """The account of the person with this address; ``None`` for free mail, bad addresses, no match."""
        domain = domain_key(email_domain(email))
        if domain is None or _free(domain):
            return None
        for level, candidate in enumerate((domain, *_parents(domain))):
            keys = self.domains.get(candidate)
            if keys:
                return _match(domain, candidate, level, keys)
        return None


def _match(domain: str, account_domain: str, level: int, keys: tuple[str, ...]) -> AccountMatch:
    if len(keys) > 1:
        named = ", ".join(keys[:5]) + (f" and {len(keys) - 5} more" if len(keys) > 5 else "")
        return AccountMatch(None, 0.0, f"{len(keys)} accounts share the domain {account_domain} ({named}): "
                            "ambiguous, not matched", domain, account_domain, keys)
    if level == 0:
        return AccountMatch(keys[0], EXACT, f"e-mail domain {domain} is the account's domain",
                            domain, account_domain, keys)
    confidence = max(SUBDOMAIN_FLOOR, round(SUBDOMAIN - PER_LEVEL * (level - 1), 4))
    return AccountMatch(keys[0], confidence,
                        f"e-mail domain {domain} is a sub-domain of the account's domain {account_domain}",
                        domain, account_domain, keys)


def match_account(email: str | None, accounts: Mapping[str, str | None] | AccountIndex) -> AccountMatch | None:
    """Match a person to an account by e-mail domain (``accounts``: key → domain, or a built index).

    Pass an :class:`AccountIndex` when matching many people: a mapping is indexed afresh on every call.
    """
    index = accounts if isinstance(accounts, AccountIndex) else AccountIndex.build(accounts.items())
    return index.match(email)


# --------------------------------------------------------------------------------------------------
# Duplicates


def mailbox_key(email: str | None) -> str | None:
    """The mailbox an address reaches, as far as that is certain without asking the provider.

    Only Gmail's documented rules apply, and only at gmail.com / googlemail.com (the same mailboxes): dots
    in the local part are ignored and ``+tag`` is dropped. Elsewhere the normalised address is the key —
    plus-addressing is not universal (some company servers treat ``+`` as an ordinary character), and two
    people wrongly reported as one is worse than a duplicate missed.
    """
    email = normalize_email(email)
    if email is None:
        return None
    local, _, domain = email.rpartition("@")
    if domain in _GMAIL:
        mailbox = local.partition("+")[0].replace(".", "")
        if mailbox:
            return f"{mailbox}@gmail.com"
    return email


@dataclass(frozen=True, slots=True)
class DuplicateGroup:
    """People (keys, sorted) whose addresses reach one mailbox: reported for a human, never merged."""

    address: str
    keys: tuple[str, ...]


def find_duplicates(people: Iterable[tuple[str, str | None]]) -> list[DuplicateGroup]:
    """Groups of two or more people sharing a mailbox (see :func:`mailbox_key`), sorted by address.

    A key that appears twice counts with its last address, so every key is in at most one group.
    """
    latest: dict[str, str] = {}
    for key, email in people:
        mailbox = mailbox_key(email)
        if mailbox is None:
            latest.pop(key, None)
        else:
            latest[key] = mailbox
    by_mailbox: dict[str, list[str]] = {}
    for key, mailbox in latest.items():
        by_mailbox.setdefault(mailbox, []).append(key)
    return [DuplicateGroup(address, tuple(sorted(keys)))
            for address, keys in sorted(by_mailbox.items()) if len(keys) > 1]


# --------------------------------------------------------------------------------------------------
# E-mail changes


@dataclass(frozen=True, slots=True)
class EmailChange:
    """The person ``key`` had ``old`` and now has ``new`` (``None``: the address was removed)."""

    key: str
    old: str
    new: str | None


def _changed(key: str, old: str | None, new: str | None) -> EmailChange | None:
    # Compared as normalised, not by mailbox: j.doe@gmail.com → jdoe@gmail.com is the same mailbox but a
    # different identifier to an ad platform, which must get the old one removed.
    if old is not None and old != new:
        return EmailChange(key, old, new)
    return None


def email_changes(previous: Mapping[str, str | None], current: Mapping[str, str | None]) -> list[EmailChange]:
    """People present in both snapshots whose normalised address differs, sorted by key.

    A person who had no valid address before has nothing to take back, so gaining one is not a change.
    """
    out = []
    for key in sorted(previous.keys() & current.keys()):
        change = _changed(key, normalize_email(previous[key]), normalize_email(current[key]))
        if change is not None:
            out.append(change)
    return out


@dataclass(frozen=True)
class EmailHistory:
    """Every address each person has had, oldest first, and their current one. Immutable.

    Fed with pages of changed people (:meth:`observe`), not full snapshots: a key left out keeps its state.
    """

    history: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    current: Mapping[str, str | None] = field(default_factory=dict)

    def observe(self, people: Mapping[str, str | None]) -> tuple[EmailHistory, list[EmailChange]]:
        """The history after these people's current addresses, and the changes they make (sorted by key)."""
        history = dict(self.history)
        current = dict(self.current)
        changes = []
        for key in sorted(people):
            new = normalize_email(people[key])
            change = _changed(key, current.get(key), new)
            if change is not None:
                changes.append(change)
            current[key] = new
            if new is not None and new not in history.get(key, ()):
                history[key] = (*history.get(key, ()), new)
        return EmailHistory(history, current), changes

    def addresses(self, key: str) -> tuple[str, ...]:
        """Every address the person has had (the identifiers a removal may need), oldest first."""
        return tuple(self.history.get(key, ()))

    def owners(self, email: str | None) -> tuple[str, ...]:
        """Keys of everyone who has ever had this address, sorted (more than one: it was reassigned)."""
        address = normalize_email(email)
        return tuple(sorted(k for k, seen in self.history.items() if address in seen)) if address else ()

    @classmethod
    def from_dict(cls, data: Mapping[str, Sequence[str]], current: Mapping[str, str | None] | None = None
                  ) -> EmailHistory:
        """Rebuild from :meth:`as_dict`; the current address defaults to each person's latest one."""
        history = {k: tuple(v) for k, v in data.items()}
        return cls(history, dict(current) if current is not None else {k: v[-1] for k, v in history.items() if v})

    def as_dict(self) -> dict[str, list[str]]:
        return {k: list(v) for k, v in self.history.items()}


__all__ = [
    "EXACT", "FREE_MAIL_DOMAINS", "PER_LEVEL", "SUBDOMAIN", "SUBDOMAIN_FLOOR", "AccountIndex", "AccountMatch",
    "DuplicateGroup", "EmailChange", "EmailHistory", "domain_key", "email_changes", "email_domain",
    "find_duplicates", "is_free_mail", "mailbox_key", "match_account", "normalize_domain", "normalize_email",
]
