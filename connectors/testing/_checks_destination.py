"""Destination checks: batches, limits, Retry-After, server errors, partial batches, replay and look-up.

Every check runs against a fresh fake behind the kit's fault middleware and judges outcomes by what the
fake holds afterwards (the author's ``effects`` hook), not by what the connector says: an acknowledged
record that took no effect is a lost write, one that took effect twice a duplicate.
"""

from __future__ import annotations

import email.utils
from collections.abc import Sequence
from datetime import timedelta

from connectors.base import GiveUp, Outcome, RecordOutcome, RetryLater, WriteRecord

from ._failures import ConformanceFailure, NotApplicable
from ._faults import RecordedCall
from ._rig import Rig
from ._spec import DestinationKit

_TOLERANCE = 1.5  # seconds of slack above a requested wait
# Below an HTTP-date wait: the date has whole seconds, and a connector that reads the real clock (not the
# kit's) sees the set-up time of the check as already waited. Ignoring the header still fails: 0.5 s.
_DATE_TOLERANCE = 3.0


def _verify(kit: DestinationKit, rig: Rig, operation: str, records: Sequence[WriteRecord],
            outcomes: Sequence[RecordOutcome], what: str) -> dict[str, int]:
    """Outcomes line up with the input; none acknowledged without effect; nothing applied twice."""
    sent = [r.idempotency_key for r in records]
    got = [o.idempotency_key for o in outcomes]
    if got != sent:
        raise ConformanceFailure(
            f"{operation} ({what}): write_batch returned {len(got)} outcome(s) for {len(sent)} record(s), or not in "
            "input order: return exactly one RecordOutcome per input record, in the order they were given"
        )
    effects = dict(kit.effects(rig.fake, operation, records))
    for position, (record, outcome) in enumerate(zip(records, outcomes, strict=True), start=1):
        count = effects.get(record.idempotency_key, 0)
        if outcome.outcome is Outcome.ACKNOWLEDGED and count < 1:
            raise ConformanceFailure(
                f"{operation} ({what}): record {position} of {len(records)} (key {record.idempotency_key!r}) was "
                "reported ACKNOWLEDGED but took no effect in the fake: acknowledge only what the vendor confirmed "
                "for that record (read the per-record results of the answer)"
            )
        if count > 1:
            raise ConformanceFailure(
                f"{operation} ({what}): record {position} (key {record.idempotency_key!r}) took effect {count} "
                "times: a duplicate"
            )
    return effects


def _all_acknowledged(operation: str, outcomes: Sequence[RecordOutcome], what: str) -> None:
    for position, outcome in enumerate(outcomes, start=1):
        if outcome.outcome is not Outcome.ACKNOWLEDGED:
            raise ConformanceFailure(
                f"{operation} ({what}): record {position} of {len(outcomes)} came back {outcome.outcome.value} "
                f"({outcome.reason}) though the fake accepts it"
            )


def _writes(kit: DestinationKit, calls: Sequence[RecordedCall]) -> list[RecordedCall]:
    return [call for call in calls if kit.is_write(call)]


async def one_batch(kit: DestinationKit, operation: str) -> None:
    """A small batch is written, every record acknowledged and applied once."""
    async with Rig(kit) as rig:
        records = kit.sample_records(rig.fake, operation, 3)
        outcomes = await rig.connector.write_batch(operation, records)
        _verify(kit, rig, operation, records, outcomes, "one batch")
        _all_acknowledged(operation, outcomes, "one batch")


async def batch_limits(kit: DestinationKit, operation: str) -> None:
    """A batch of max_batch_size (up to ``batch_probe``) is written whole; no request exceeds the vendor's cap."""
    spec = kit.connector.capabilities.operations[operation]
    size = min(spec.max_batch_size, kit.batch_probe)
    cap = kit.request_cap(operation)
    async with Rig(kit) as rig:
        records = kit.sample_records(rig.fake, operation, size)
        mark = rig.app.mark()
        outcomes = await rig.connector.write_batch(operation, records)
        _verify(kit, rig, operation, records, outcomes, f"a batch of {size}")
        _all_acknowledged(operation, outcomes, f"a batch of {size}")
        writes = _writes(kit, rig.app.since(mark))
    counts = [kit.count_records(call, operation) for call in writes]
    if not writes or all(count is None for count in counts):
        raise ConformanceFailure(
            f"{operation}: the kit could not count the records in any write request: override count_records() "
            "in the kit to read the vendor's request body"
        )
    for call, count in zip(writes, counts, strict=True):
        if count is not None and count > cap:
            raise ConformanceFailure(
                f"{operation}: a request ({call.where}) carried {count} records but the vendor takes at most {cap} "
                f"per request: split write_batch's records into requests of at most {cap} (max_batch_size is "
                f"{spec.max_batch_size})"
            )


async def empty_batch(kit: DestinationKit, operation: str) -> None:
    """An empty batch returns no outcomes and makes no call."""
    async with Rig(kit) as rig:
        outcomes = await rig.connector.write_batch(operation, [])
        calls = list(rig.app.calls)
    if outcomes:
        raise ConformanceFailure(f"{operation}: write_batch with no records returned {len(outcomes)} outcome(s)")
    if calls:
        raise ConformanceFailure(
            f"{operation}: write_batch with no records made {len(calls)} request(s) ({calls[0].where}): return [] "
            "before calling the vendor"
        )


async def _throttled_write(kit: DestinationKit, operation: str, header: str | None, wait: float) -> None:
    form = "seconds" if header is not None else "http-date"
    if form not in kit.retry_after_forms:
        raise NotApplicable(f"the vendor's rate-limit answers carry no {form} wait (retry_after_forms)")
    async with Rig(kit) as rig:
        value = header or email.utils.format_datetime(rig.clock() + timedelta(seconds=wait), usegmt=True)
        records = kit.sample_records(rig.fake, operation, 2)
        rig.app.plan.respond(kit.throttle_response(value), match=kit.is_write)
        mark = rig.app.mark()
        try:
            outcomes = await rig.connector.write_batch(operation, records)
        except Exception as exc:  # noqa: BLE001 - judged below
            raise ConformanceFailure(
                f"{operation}: after one rate-limited answer (Retry-After: {value}) write_batch raised "
                f"{type(exc).__name__}: {exc} — classify the vendor's rate-limit answer as RetryLater(rate_limited="
                "True, retry_after=<seconds>) so that the HTTP layer waits and retries"
            ) from None
        _verify(kit, rig, operation, records, outcomes, f"after a 429 with Retry-After: {value}")
        _all_acknowledged(operation, outcomes, f"after a 429 with Retry-After: {value}")
        writes = _writes(kit, rig.app.since(mark))
    throttled = next(i for i, call in enumerate(writes) if call.fault == "respond")
    if throttled + 1 >= len(writes):
        raise ConformanceFailure(f"{operation}: the rate-limited request was never sent again")
    waited = (writes[throttled + 1].at - writes[throttled].at).total_seconds()
    if waited < wait - (_DATE_TOLERANCE if header is None else 0.0):
        raise ConformanceFailure(
            f"{operation}: the retry came {waited:g} s after a rate-limited answer that asked for {wait:g} s "
            f"(Retry-After: {value}): read the header with connectors.http.parse_retry_after (it takes both "
            "seconds and HTTP dates) and pass it as RetryLater(retry_after=...)"
        )
    if waited > wait + _TOLERANCE:
        raise ConformanceFailure(
            f"{operation}: the retry came {waited:g} s after a rate-limited answer that asked for {wait:g} s "
            f"(Retry-After: {value}): honour the vendor's wait as given, without adding a back-off on top"
        )


async def retry_after_seconds(kit: DestinationKit, operation: str) -> None:
    """A 429 with ``Retry-After: 7`` is retried 7 s later (on the kit's clock) and the batch lands once."""
    await _throttled_write(kit, operation, "7", 7.0)


async def retry_after_http_date(kit: DestinationKit, operation: str) -> None:
    """A 429 whose ``Retry-After`` is an HTTP date 9 s ahead is retried about 9 s later."""
    await _throttled_write(kit, operation, None, 9.0)


async def server_error_then_success(kit: DestinationKit, operation: str) -> None:
    """A 5xx is retried; the batch then lands, each record once."""
    async with Rig(kit) as rig:
        records = kit.sample_records(rig.fake, operation, 2)
        rig.app.plan.respond(kit.server_error_response(), match=kit.is_write)
        try:
            outcomes = await rig.connector.write_batch(operation, records)
        except Exception as exc:  # noqa: BLE001
            raise ConformanceFailure(
                f"{operation}: after one server error (HTTP {kit.server_error_response().status}) write_batch raised "
                f"{type(exc).__name__}: {exc} — classify 5xx answers as RetryLater so the HTTP layer retries"
            ) from None
        _verify(kit, rig, operation, records, outcomes, "after a server error")
        _all_acknowledged(operation, outcomes, "after a server error")


async def partial_batch(kit: DestinationKit, operation: str) -> None:
    """In a batch with one record the fake refuses, that record is REJECTED with a reason, the others land."""
    spec = kit.connector.capabilities.operations[operation]
    async with Rig(kit) as rig:
        bad = kit.rejected_record(rig.fake, operation)
        if bad is None:
            raise NotApplicable(f"the kit names no record the fake refuses for {operation}")
        first, last = kit.sample_records(rig.fake, operation, 2)
        records = [first, bad, last]
        try:
            outcomes = await rig.connector.write_batch(operation, records)
        except GiveUp as exc:
            if spec.per_record_results:
                raise ConformanceFailure(
                    f"{operation}: a batch with one refused record raised GiveUp ({exc}) though the operation "
                    "declares per_record_results: return one outcome per record, the refused one REJECTED"
                ) from None
            outcomes = [await _alone(rig, operation, record) for record in records]  # the framework bisects
        _verify(kit, rig, operation, records, outcomes, "a partial batch")
    for position, (record, outcome) in enumerate(zip(records, outcomes, strict=True), start=1):
        if record is bad and outcome.outcome is not Outcome.REJECTED:
            raise ConformanceFailure(
                f"{operation}: record {position} of 3 (key {record.idempotency_key!r}), which the fake refused, "
                f"was reported {outcome.outcome.value.upper()}: report each record's own result — read the "
                "per-record errors of the vendor's answer and return REJECTED with the vendor's reason"
            )
        if record is bad and not outcome.reason:
            raise ConformanceFailure(
                f"{operation}: the refused record was REJECTED without a reason: pass the vendor's message so that "
                "the dead letter says what to fix"
            )
        if record is not bad and outcome.outcome is not Outcome.ACKNOWLEDGED:
            raise ConformanceFailure(
                f"{operation}: record {position} of 3, which the fake accepts, was reported "
                f"{outcome.outcome.value.upper()} ({outcome.reason}) because a neighbour failed: attribute errors "
                "to the records they name"
            )


async def _alone(rig: Rig, operation: str, record: WriteRecord) -> RecordOutcome:
    try:
        (outcome,) = await rig.connector.write_batch(operation, [record])
    except GiveUp as exc:
        return RecordOutcome(record.idempotency_key, Outcome.REJECTED, str(exc))
    return outcome


async def safe_replay(kit: DestinationKit, operation: str) -> None:
    """An idempotent operation sent twice, or resent after a dropped answer, takes effect once."""
    spec = kit.connector.capabilities.operations[operation]
    if not spec.idempotent:
        raise NotApplicable(f"{operation} is not idempotent (see the look-up check)")
    async with Rig(kit) as rig:
        records = kit.sample_records(rig.fake, operation, 3)
        await rig.connector.write_batch(operation, records)
        again = await rig.connector.write_batch(operation, records)
        _verify(kit, rig, operation, records, again, "sent twice")
        _all_acknowledged(operation, again, "sent twice")
        dropped = kit.sample_records(rig.fake, operation, 2)
        rig.app.plan.drop_after(match=kit.is_write)
        try:
            outcomes = await rig.connector.write_batch(operation, dropped)
        except RetryLater:
            outcomes = []
        if any(o.outcome is not Outcome.ACKNOWLEDGED for o in outcomes) or not outcomes:
            outcomes = await rig.connector.write_batch(operation, dropped)  # the framework resends
        _verify(kit, rig, operation, dropped, outcomes, "resent after a dropped answer")
        _all_acknowledged(operation, outcomes, "resent after a dropped answer")


async def idempotency_key_lookup(kit: DestinationKit, operation: str) -> None:
    """A non-idempotent write whose answer was lost is not repeated, and lookup() finds it by its key."""
    spec = kit.connector.capabilities.operations[operation]
    if spec.idempotent:
        raise NotApplicable(f"{operation} is idempotent (see the replay check)")
    async with Rig(kit) as rig:
        records = kit.sample_records(rig.fake, operation, 2)
        never_sent = kit.sample_records(rig.fake, operation, 1)
        rig.app.plan.drop_after(match=kit.is_write)
        try:
            outcomes = await rig.connector.write_batch(operation, records)
        except RetryLater:
            outcomes = [RecordOutcome(r.idempotency_key, Outcome.UNKNOWN) for r in records]
        _verify(kit, rig, operation, records, outcomes, "after a dropped answer")
        found = await rig.connector.lookup(operation, [*records, *never_sent])
        effects = dict(kit.effects(rig.fake, operation, [*records, *never_sent]))
    if [o.idempotency_key for o in found] != [r.idempotency_key for r in [*records, *never_sent]]:
        raise ConformanceFailure(f"{operation}: lookup() must return one outcome per record, in input order")
    for record, outcome in zip(records, found, strict=False):
        if effects.get(record.idempotency_key, 0) == 1 and (
            outcome.outcome is not Outcome.ACKNOWLEDGED or not outcome.remote_id
        ):
            raise ConformanceFailure(
                f"{operation}: lookup() did not find the object created for key {record.idempotency_key!r} (it is "
                f"in the fake; lookup said {outcome.outcome.value}): carry WriteRecord.idempotency_key into the "
                "created object (a unique or external-id field) and search by it in lookup(), returning "
                "ACKNOWLEDGED with remote_id"
            )
    if found[-1].outcome is Outcome.ACKNOWLEDGED:
        raise ConformanceFailure(
            f"{operation}: lookup() reported key {never_sent[0].idempotency_key!r} as created though it was never "
            "sent: only report keys the vendor actually holds"
        )


__all__ = [
    "batch_limits",
    "empty_batch",
    "idempotency_key_lookup",
    "one_batch",
    "partial_batch",
    "retry_after_http_date",
    "retry_after_seconds",
    "safe_replay",
    "server_error_then_success",
]
