"""The Google Ads sandbox's state: Customer Match user lists, offline user data jobs and "known people".

Jobs follow Google's state machine (reference/apis.md §5.1, §5.4): created PENDING; operations may be
added only while PENDING; ``:run`` moves the job to RUNNING (a second run is JOB_ALREADY_STARTED); after
``processing_seconds`` of the sandbox clock it ends SUCCESS — its operations are applied to the list —
or FAILED when the sandbox was told to fail the list's jobs (nothing is applied). A job takes creates or
removes, never both (CONFLICTING_OPERATION), and ``removeAll`` only as its first operation
(INVALID_OPERATION_ORDER).

Each operation is validated as Google does, and refused on its own (partial failure) when it breaks a
rule: no identifiers (MISSING_USER_IDENTIFIER), more than 20 (TOO_MANY_USER_IDENTIFIERS), a hashed value
that is not 64 lowercase hex (INVALID_SHA256_FORMAT), a country that is not two uppercase letters
(INVALID_COUNTRY_CODE), an identifier of the other upload key type (INCOMPATIBLE_UPLOAD_KEY_TYPE).

Membership follows set semantics: a person is merged with the member sharing any identifier; adding
someone twice or removing a non-member changes nothing. "Known people" stand for Google's users: an
operation sharing an identifier with one of them *matches*, which gives the job's match-rate range.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from connectors.sandbox._google_ads_wire import Failure, job_error

_SHA256 = re.compile(r"[0-9a-f]{64}")
_COUNTRY = re.compile(r"[A-Z]{2}")
MAX_IDENTIFIERS_PER_USER = 20
ONEOF = ("hashedEmail", "hashedPhoneNumber", "mobileId", "thirdPartyUserId", "addressInfo")
UPLOAD_KEYS = {"CONTACT_INFO": {"hashedEmail", "hashedPhoneNumber", "addressInfo"},
               "CRM_ID": {"thirdPartyUserId"}, "MOBILE_ADVERTISING_ID": {"mobileId"}}
MATCH_RANGES = ((20, "MATCH_RANGE_LESS_THAN_20"), (31, "MATCH_RANGE_20_TO_30"), (41, "MATCH_RANGE_31_TO_40"),
                (51, "MATCH_RANGE_41_TO_50"), (61, "MATCH_RANGE_51_TO_60"), (71, "MATCH_RANGE_61_TO_70"),
                (81, "MATCH_RANGE_71_TO_80"), (91, "MATCH_RANGE_81_TO_90"), (101, "MATCH_RANGE_91_TO_100"))

Key = tuple[str, str]  # ("hashedEmail", "<hash>"), ("address", "fn|ln|cc|zip")…


def identity(identifiers: Iterable[Mapping[str, Any]]) -> list[Key]:
    """The keys a UserData is known by: each identifier; an address by all four parts together."""
    keys: list[Key] = []
    for identifier in identifiers:
        for name, value in identifier.items():
            if name == "addressInfo" and isinstance(value, Mapping):
                parts = [str(value.get(p, "")) for p in ("hashedFirstName", "hashedLastName", "countryCode",
                                                           "postalCode")]
                if all(parts):
                    keys.append(("address", "|".join(parts)))
            elif isinstance(value, str):
                keys.append((name, value))
    return keys


class Membership:
    """One list's members, merged by shared identifier."""

    def __init__(self) -> None:
        self.members: dict[int, set[Key]] = {}
        self._index: dict[Key, int] = {}
        self._next = 0

    def add(self, keys: list[Key]) -> None:
        found = sorted({self._index[k] for k in keys if k in self._index})
        merged: set[Key] = set(keys)
        for member in found:
            merged |= self._forget(member)
        member = found[0] if found else self._take()
        self.members[member] = merged
        for key in merged:
            self._index[key] = member

    def remove(self, keys: list[Key]) -> None:
        for member in {self._index[k] for k in keys if k in self._index}:
            self._forget(member)

    def clear(self) -> None:
        self.members.clear()
        self._index.clear()

    def _take(self) -> int:
        self._next += 1
        return self._next

    def _forget(self, member: int) -> set[Key]:
        keys = self.members.pop(member)
        for key in keys:
            if self._index.get(key) == member:
                del self._index[key]
        return keys


class KnownPeople:
    """Google's users as far as the sandbox knows them: identifier key → person number."""

    def __init__(self) -> None:
        self._index: dict[Key, int] = {}
        self.count = 0

    def add(self, people: Iterable[Iterable[Mapping[str, Any]]]) -> None:
        """Each person as a list of UserIdentifiers in wire form (``{"hashedEmail": "…"}``…)."""
        for person in people:
            for key in identity(person):
                self._index[key] = self.count
            self.count += 1

    def match(self, keys: Iterable[Key]) -> int | None:
        return next((self._index[k] for k in keys if k in self._index), None)


@dataclass(slots=True)
class UserList:
    id: str
    name: str
    upload_key_type: str = "CONTACT_INFO"
    crm_based: bool = True
    membership: Membership = field(default_factory=Membership)
    fail_jobs: str | None = None  # a failure reason: this list's jobs end FAILED


@dataclass(slots=True)
class Job:
    """One offline user data job; ``operations`` are (kind, identifiers) in the order they were added."""

    id: str
    customer_id: str
    user_list: UserList
    consent: dict[str, str]
    created_ms: int
    status: str = "PENDING"
    kind: str | None = None  # "create" or "remove", fixed by the first such operation
    operations: list[tuple[str, list[dict[str, Any]]]] = field(default_factory=list)
    run_ms: int | None = None
    failure_reason: str = "UNSPECIFIED"
    match_rate_range: str | None = None
    matched: int = 0

    @property
    def resource_name(self) -> str:
        return f"customers/{self.customer_id}/offlineUserDataJobs/{self.id}"

    def resource(self) -> dict[str, Any]:
        """The job as GAQL returns it (proto JSON: camelCase, int64 as strings, enums as names)."""
        metadata: dict[str, Any] = {"userList": f"customers/{self.customer_id}/userLists/{self.user_list.id}",
                                    "consent": dict(self.consent)}
        found: dict[str, Any] = {"resourceName": self.resource_name, "id": self.id, "type": "CUSTOMER_MATCH_USER_LIST",
                                 "status": self.status, "failureReason": self.failure_reason,
                                 "customerMatchUserListMetadata": metadata}
        if self.match_rate_range is not None:
            found["operationMetadata"] = {"matchRateRange": self.match_rate_range}
        return found

    def finish(self, known: KnownPeople) -> None:
        """End a RUNNING job: apply its operations (SUCCESS) or nothing (FAILED)."""
        if self.user_list.fail_jobs is not None:
            self.status, self.failure_reason = "FAILED", self.user_list.fail_jobs
            return
        membership = self.user_list.membership
        people = 0
        for kind, identifiers in self.operations:
            if kind == "removeAll":
                membership.clear()
                continue
            keys = identity(identifiers)
            people += 1
            self.matched += known.match(keys) is not None
            if kind == "create":
                membership.add(keys)
            else:
                membership.remove(keys)
        self.status = "SUCCESS"
        share = self.matched * 100 // people if people else 0
        self.match_rate_range = next(name for bound, name in MATCH_RANGES if share < bound)


def operation_kind(operation: Any) -> tuple[str | None, Any]:
    """(``create``/``remove``/``removeAll``, its UserData) or (None, None) for a malformed operation."""
    if not isinstance(operation, Mapping):
        return None, None
    kinds = [k for k in ("create", "remove", "removeAll") if k in operation]
    if len(kinds) != 1:
        return None, None
    return kinds[0], operation[kinds[0]]


def check_user_data(user_data: Any, upload_key_type: str) -> list[Failure]:
    """Google's rules for one UserData of a create/remove operation; empty when it is fine."""
    if not isinstance(user_data, Mapping):
        return [Failure("fieldError", "REQUIRED", "The required field was not present.")]
    identifiers = user_data.get("userIdentifiers")
    if not isinstance(identifiers, list) or not identifiers:
        return [job_error("MISSING_USER_IDENTIFIER", "User identifier is missing.")]
    if len(identifiers) > MAX_IDENTIFIERS_PER_USER:
        return [job_error("TOO_MANY_USER_IDENTIFIERS",
                          f"Too many user identifiers: at most {MAX_IDENTIFIERS_PER_USER} per user data.")]
    failures: list[Failure] = []
    allowed = UPLOAD_KEYS.get(upload_key_type, set())
    for position, identifier in enumerate(identifiers):
        at: tuple[tuple[str, int | None], ...] = (("user_identifiers", position),)
        names = [n for n in ONEOF if isinstance(identifier, Mapping) and n in identifier]
        if len(names) != 1:
            failures.append(Failure("fieldError", "ONEOF_ALREADY_SET" if names else "REQUIRED",
                                    "A UserIdentifier holds exactly one identifier.", at))
            continue
        name = names[0]
        value = identifier[name]
        if name not in allowed:
            failures.append(job_error("INCOMPATIBLE_UPLOAD_KEY_TYPE",
                                      f"The user list's upload key type {upload_key_type} does not take {name}.", at))
        elif name in ("hashedEmail", "hashedPhoneNumber"):
            if not isinstance(value, str) or not _SHA256.fullmatch(value):
                failures.append(job_error("INVALID_SHA256_FORMAT", "The SHA256 encoded value is malformed.",
                                          (*at, (_snake(name), None))))
        elif name == "addressInfo":
            failures += _check_address(value, at)
        elif not isinstance(value, str) or not value.strip():
            failures.append(Failure("fieldError", "REQUIRED", f"{name} must not be empty.", at))
    return failures


def _check_address(value: Any, at: tuple[tuple[str, int | None], ...]) -> list[Failure]:
    if not isinstance(value, Mapping):
        return [Failure("fieldError", "REQUIRED", "address_info must be an object.", at)]
    failures = []
    for part in ("hashedFirstName", "hashedLastName", "hashedStreetAddress"):
        text = value.get(part)
        if text is not None and (not isinstance(text, str) or not _SHA256.fullmatch(text)):
            failures.append(job_error("INVALID_SHA256_FORMAT", "The SHA256 encoded value is malformed.",
                                      (*at, ("address_info", None), (_snake(part), None))))
    country = value.get("countryCode")
    if country is not None and (not isinstance(country, str) or not _COUNTRY.fullmatch(country)):
        failures.append(job_error("INVALID_COUNTRY_CODE", "The country code is invalid.",
                                  (*at, ("address_info", None), ("country_code", None))))
    return failures


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


__all__ = [
    "MATCH_RANGES",
    "MAX_IDENTIFIERS_PER_USER",
    "Job",
    "KnownPeople",
    "Membership",
    "UserList",
    "check_user_data",
    "identity",
    "operation_kind",
]
