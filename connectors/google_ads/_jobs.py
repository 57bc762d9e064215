"""Customer Match uploads as offline user data jobs: create → addOperations → run → poll, record by record.

A write batch is one operation kind (``audience_add`` or ``audience_remove``), so a job never mixes
creates and removes, which Google refuses. Records are grouped by user list *and* consent, because
Google applies a job's consent to every person in it ("use separate jobs to upload users with different
consent signals"). Each group becomes one job:

1. ``:create`` the job with the list and the consent (a lost answer only orphans an empty job that is
   never run, so the call is safely repeated);
2. ``:addOperations`` in requests of at most ``identifiers_per_request`` identifiers, with partial
   failure on: an operation Google refuses rejects its records with Google's reason (or leaves them
   retryable when the error is transient), the rest go on;
3. ``:run`` (a resent run that meets JOB_ALREADY_STARTED means the first one arrived);
4. poll the job through GAQL every ``poll_interval_seconds`` for at most ``max_poll_seconds`` (waiting
   through the connector's injectable sleep). SUCCESS acknowledges the records; FAILED makes them
   retryable, or rejected when Google names a reason; a job still running when the wait ends counts as
   accepted, since Google takes hours and set semantics make the upload safe to repeat
   (expectations.md 17: slow application is deferrable, not a failure).

Outcomes of records Google accepted carry the job's resource name as ``remote_id``; :meth:`JobWriter.status`
reads a job later. A list Google refuses (unknown, wrong type) rejects its own records only. When a
request fails after other records were settled, those keep their outcome and the rest become retryable.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from connectors.base import GiveUp, Outcome, OutcomeUnknown, RecordOutcome, RetryLater, WriteRecord
from connectors.google_ads._config import GoogleAdsConfig
from connectors.google_ads._errors import NAME, AdsError, ListUnavailable, json_object, partial_failures
from connectors.google_ads.hashing import IDENTIFIER_FIELDS, BadIdentifier, identifiers

logger = logging.getLogger(__name__)

OPERATIONS = {"audience_add": "create", "audience_remove": "remove"}
MAX_BATCH = 100_000  # records per write_batch: one job per list and consent, so fewer, fuller jobs
CONSENT_VALUES = ("GRANTED", "DENIED", "UNSPECIFIED")
PAYLOAD_KEYS = frozenset({"audience_id", "consent", *IDENTIFIER_FIELDS})
FAILED_REASONS_TRANSIENT = frozenset({"", "UNSPECIFIED", "UNKNOWN"})
_JOB_FIELDS = ("SELECT offline_user_data_job.resource_name, offline_user_data_job.status, "
               "offline_user_data_job.failure_reason, offline_user_data_job.operation_metadata.match_rate_range")
_JOB_NAME = re.compile(r"customers/\d+/offlineUserDataJobs/\d+")

Call = Callable[..., Awaitable[dict[str, Any]]]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class JobStatus:
    """A job as GAQL reports it: ``status`` PENDING/RUNNING/SUCCESS/FAILED, the failure reason and Google's
    match-rate range once known (``MATCH_RANGE_51_TO_60``…)."""

    resource_name: str
    status: str
    failure_reason: str | None = None
    match_rate_range: str | None = None

    @property
    def done(self) -> bool:
        return self.status in ("SUCCESS", "FAILED")


@dataclass(slots=True)
class _Op:
    """One UserData (one person) and the input records it stands for."""

    identifiers: list[dict[str, object]]
    indices: list[int] = field(default_factory=list)


@dataclass(slots=True)
class _Group:
    user_list: str
    consent: tuple[str, str]
    ops: list[_Op] = field(default_factory=list)
    by_key: dict[str, _Op] = field(default_factory=dict)

    def add(self, wire: list[dict[str, object]], index: int) -> None:
        # The same person twice in one batch goes as one operation: one outcome source for both records.
        key = repr(wire)
        op = self.by_key.get(key)
        if op is None:
            op = self.by_key[key] = _Op(wire)
            self.ops.append(op)
        op.indices.append(index)


def _consent(value: Any) -> tuple[str, str] | str:
    """(adUserData, adPersonalization), or the reason the payload's consent is unusable."""
    if value is None:
        return ("UNSPECIFIED", "UNSPECIFIED")  # Google reads a missing consent as not granted in the EEA
    if not isinstance(value, Mapping):
        return "consent: expected an object with ad_user_data and ad_personalization"
    unknown = sorted(set(value) - {"ad_user_data", "ad_personalization"})
    if unknown:
        return f"consent: unknown key(s) {unknown}"
    pair = (value.get("ad_user_data", "UNSPECIFIED"), value.get("ad_personalization", "UNSPECIFIED"))
    if any(v not in CONSENT_VALUES for v in pair):
        return f"consent: values must be one of {CONSENT_VALUES}"
    return (str(pair[0]), str(pair[1]))


def _chunks(ops: Sequence[_Op], limit: int) -> list[list[_Op]]:
    """Consecutive runs of operations holding at most ``limit`` identifiers each."""
    chunks: list[list[_Op]] = []
    current: list[_Op] = []
    count = 0
    for op in ops:
        size = len(op.identifiers)
        if current and count + size > limit:
            chunks.append(current)
            current, count = [], 0
        current.append(op)
        count += size
    if current:
        chunks.append(current)
    return chunks


class JobWriter:
    """Runs audience batches as offline user data jobs through the connector's ``call``."""

    def __init__(self, config: GoogleAdsConfig, call: Call, sleep: Sleep) -> None:
        self._config = config
        self._call = call
        self._sleep = sleep
        self._customer = f"customers/{config.customer_id}"

    async def write(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        """One outcome per record, in order (see the module docstring)."""
        if len(records) > MAX_BATCH:
            raise GiveUp(f"batch of {len(records)} exceeds {MAX_BATCH}", connector=NAME)
        settled: dict[int, RecordOutcome] = {}
        groups = self._prepare(records, settled)
        for number, group in enumerate(groups):
            try:
                await self._run_group(OPERATIONS[operation], group, records, settled)
            except ListUnavailable as exc:
                self._settle(group.ops, records, settled, Outcome.REJECTED, exc.message)
            except (RetryLater, GiveUp) as exc:
                if not settled:
                    raise  # nothing settled yet: the framework retries or splits the whole batch
                outcome = Outcome.UNKNOWN if isinstance(exc, OutcomeUnknown) else Outcome.RETRYABLE
                for rest in groups[number:]:
                    self._settle(rest.ops, records, settled, outcome, f"batch interrupted: {exc}")
                break
        return [settled.get(i) or RecordOutcome(r.idempotency_key, Outcome.UNKNOWN, "not sent")
                for i, r in enumerate(records)]

    async def status(self, resource_name: str) -> JobStatus:
        """The job's state as GAQL reports it."""
        if not _JOB_NAME.fullmatch(resource_name):
            raise GiveUp("not an offline user data job resource name (customers/N/offlineUserDataJobs/N)",
                         connector=NAME)
        where = f"WHERE offline_user_data_job.resource_name = '{resource_name}'"  # checked above: no quoting needed
        query = f"{_JOB_FIELDS} FROM offline_user_data_job {where}"
        body = await self._call("POST", f"/{self._customer}/googleAds:search", json={"query": query})
        rows = body.get("results")
        job = rows[0].get("offlineUserDataJob") if isinstance(rows, list) and rows else None
        if not isinstance(job, Mapping):
            raise GiveUp(f"Google Ads reports no job {resource_name}", connector=NAME)
        metadata = job.get("operationMetadata")
        match = metadata.get("matchRateRange") if isinstance(metadata, Mapping) else None
        reason = job.get("failureReason")
        return JobStatus(resource_name, str(job.get("status") or "UNKNOWN"),
                         str(reason) if reason else None, str(match) if match else None)

    # ------------------------------------------------------------------------------------------------

    def _prepare(self, records: Sequence[WriteRecord], settled: dict[int, RecordOutcome]) -> list[_Group]:
        crm_id = self._config.upload_key_type == "CRM_ID"
        groups: dict[tuple[str, tuple[str, str]], _Group] = {}
        for index, record in enumerate(records):
            payload = record.payload
            unknown = sorted(set(payload) - PAYLOAD_KEYS)
            raw_list = payload.get("audience_id")
            plain = isinstance(raw_list, str | int) and not isinstance(raw_list, bool)
            user_list = str(raw_list).strip() if plain else ""
            consent = _consent(payload.get("consent"))
            wire: list[dict[str, object]] = []
            reason: str | None = None
            if unknown:
                reason = f"unknown payload key(s) {unknown}; expected audience_id, consent and identifiers"
            elif not user_list.isdigit():
                reason = "audience_id: missing or not a numeric Google Ads user list id"
            elif isinstance(consent, str):
                reason = consent
            else:
                try:
                    found = identifiers({k: v for k, v in payload.items() if k in IDENTIFIER_FIELDS},
                                        default_country=self._config.default_country)
                except BadIdentifier as exc:
                    reason = str(exc)
                else:
                    wire = found.wire(crm_id=crm_id)
                    if not wire:
                        reason = ("no identifier Google can match on: needs external_id (CRM_ID list)" if crm_id
                                  else "no identifier Google can match on: needs email, an E.164-able phone, or "
                                       "first name, last name, country and postal code together")
            if reason is not None or isinstance(consent, str):
                settled[index] = RecordOutcome(record.idempotency_key, Outcome.REJECTED, reason)
                continue
            key = (user_list, consent)
            groups.setdefault(key, _Group(f"{self._customer}/userLists/{user_list}", consent)).add(wire, index)
        return list(groups.values())

    async def _run_group(self, kind: str, group: _Group, records: Sequence[WriteRecord],
                         settled: dict[int, RecordOutcome]) -> None:
        job = await self._create(group)
        accepted: list[_Op] = []
        for chunk in _chunks(group.ops, self._config.identifiers_per_request):
            body = {"enablePartialFailure": True, "operations": [{kind: {"userIdentifiers": op.identifiers}}
                                                                  for op in chunk]}
            answer = await self._call("POST", f"/{job}:addOperations", json=body)
            failures = partial_failures(answer)
            for position, op in enumerate(chunk):
                errors = failures.get(position)
                if errors:
                    self._settle([op], records, settled, *self._refused(errors))
                else:
                    accepted.append(op)
        if not accepted:
            return  # nothing to run: the empty job is left PENDING and Google discards it
        try:
            await self._call("POST", f"/{job}:run", json={})
        except GiveUp as exc:
            if "JOB_ALREADY_STARTED" not in exc.message:
                raise
        state = await self._watch(job)
        logger.debug("google_ads: job %s for %s: %d operations, %s", job, group.user_list, len(accepted),
                     state.status if state else "not watched")
        if state is not None and state.status == "FAILED":
            reason = state.failure_reason or ""
            outcome = Outcome.RETRYABLE if reason in FAILED_REASONS_TRANSIENT else Outcome.REJECTED
            self._settle(accepted, records, settled, outcome, f"Google Ads job {job} FAILED: {reason or 'no reason'}",
                         remote_id=job)
        else:
            self._settle(accepted, records, settled, Outcome.ACKNOWLEDGED, None, remote_id=job)

    async def _create(self, group: _Group) -> str:
        metadata = {"userList": group.user_list,
                    "consent": {"adUserData": group.consent[0], "adPersonalization": group.consent[1]}}
        body = {"job": {"type": "CUSTOMER_MATCH_USER_LIST", "customerMatchUserListMetadata": metadata}}
        answer = await self._call("POST", f"/{self._customer}/offlineUserDataJobs:create", json=body)
        name = answer.get("resourceName")
        if not isinstance(name, str) or not name.startswith(f"{self._customer}/offlineUserDataJobs/"):
            raise RetryLater("Google Ads created a job without naming it", connector=NAME)
        return name

    async def _watch(self, job: str) -> JobStatus | None:
        """Poll until the job is done or the wait is over; the last status seen (None: not polled)."""
        waited, state = 0.0, None
        interval, limit = self._config.poll_interval_seconds, self._config.max_poll_seconds
        while waited + interval <= limit:
            await self._sleep(interval)
            waited += interval
            try:
                state = await self.status(job)
            except RetryLater:
                return state  # the job runs whether or not we can watch it
            if state.done:
                break
        return state

    @staticmethod
    def _refused(errors: Sequence[AdsError]) -> tuple[Outcome, str]:
        reason = "Google Ads refused this person: " + "; ".join(e.describe() for e in errors)
        return (Outcome.RETRYABLE if all(e.transient for e in errors) else Outcome.REJECTED), reason

    @staticmethod
    def _settle(ops: Sequence[_Op], records: Sequence[WriteRecord], settled: dict[int, RecordOutcome],
                outcome: Outcome, reason: str | None, *, remote_id: str | None = None) -> None:
        for op in ops:
            for index in op.indices:
                if index not in settled:
                    settled[index] = RecordOutcome(records[index].idempotency_key, outcome, reason, remote_id)


__all__ = ["MAX_BATCH", "OPERATIONS", "PAYLOAD_KEYS", "JobStatus", "JobWriter", "json_object"]
