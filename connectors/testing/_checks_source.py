"""Source checks: canonical records, paging to the end, incremental cursors, resuming after a failure
mid-stream, late rows.

Rows are seeded through the author's ``add_row`` with modification times the kit chooses (one minute
apart, in the past of the kit's clock), then pulled the way the framework pulls: page by page, keeping the
cursor of the last page whose records were stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from connectors.base import Account, Activity, ConnectorError, ConsentChange, Lead, Opportunity, Page, Record

from ._failures import ConformanceFailure, NotApplicable, keys_text
from ._faults import FakeResponse, RecordedCall
from ._rig import Rig
from ._spec import SourceKit


@dataclass(slots=True)
class _Pull:
    pages: list[Page] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    cursor: str | None = None        # the cursor the framework would have stored
    error: ConnectorError | None = None
    calls: list[RecordedCall] = field(default_factory=list)


def kit_server_error() -> FakeResponse:
    """A plain 503: every classifier must treat it as transient."""
    return FakeResponse.json(503, {"status": "error", "message": "Service unavailable (conformance kit)"})


async def _pull(rig: Rig, stream: str, cursor: str | None) -> _Pull:
    result = _Pull(cursor=cursor)
    mark = rig.app.mark()
    try:
        async for page in rig.connector.pull(stream, cursor):
            result.pages.append(page)
            result.keys += [record.key for record in page.records]
            if page.cursor is not None:
                result.cursor = page.cursor
    except ConnectorError as exc:
        result.error = exc
    result.calls = rig.app.since(mark)
    return result


def _seed(kit: SourceKit, rig: Rig, stream: str, count: int, *, start: int = 0,
          newest: datetime | None = None) -> dict[str, datetime]:
    """``count`` rows a minute apart, the newest at ``newest`` (default: an hour before the clock)."""
    top = newest or rig.clock() - timedelta(hours=1)
    seeded: dict[str, datetime] = {}
    for n in range(count):
        at = top - timedelta(minutes=count - 1 - n)
        seeded[kit.add_row(rig.fake, stream, start + n, at)] = at
    return seeded


def _served_on(calls: list[RecordedCall], key: str) -> int | None:
    """The 1-based number of the request (of ``calls``) whose answer carried ``key``."""
    token = f'"{key}"'.encode()
    for number, call in enumerate(calls, start=1):
        if token in call.response_body:
            return number
    return None


def _missing_message(stream: str, missing: list[str], pull: _Pull) -> str:
    by_page: dict[int | None, list[str]] = {}
    for key in missing:
        by_page.setdefault(_served_on(pull.calls, key), []).append(key)
    parts = []
    for page, keys in sorted(by_page.items(), key=lambda item: (item[0] is None, item[0] or 0)):
        if page is None:
            parts.append(
                f"rows {keys_text(keys)} were never even requested (pull() made {len(pull.calls)} request(s)): "
                "did pull() stop before the last page, while the answer still had a next-page link?"
            )
        else:
            call = pull.calls[page - 1]
            parts.append(
                f"page {page} of stream {stream!r} ({call.where}, HTTP {call.status}) was fetched but its rows "
                f"{keys_text(keys)} were never yielded: did pull() skip that page or drop rows while mapping them?"
            )
    return "; ".join(parts)


# The canonical record types each built-in stream name may carry (a lead's own conversion activity and
# consent come with it on some vendors). A stream of another name may carry any record type.
STREAM_RECORDS: dict[str, tuple[type, ...]] = {
    "leads": (Lead, Activity, ConsentChange),
    "accounts": (Account,),
    "opportunities": (Opportunity,),
    "activities": (Activity,),
    "consent": (ConsentChange,),
}


def _aware(value: Any) -> bool:
    return isinstance(value, datetime) and value.tzinfo is not None and value.utcoffset() is not None


def _text_or_none(value: Any) -> bool:
    return value is None or (isinstance(value, str) and bool(value.strip()))


def record_problems(stream: str, record: Record) -> list[str]:
    """What breaks the data contract in one pulled record (empty: nothing), each naming the field."""
    allowed = STREAM_RECORDS.get(stream)
    kind = type(record).__name__
    if allowed is not None and not isinstance(record, allowed):
        names = ", ".join(t.__name__ for t in allowed)
        return [f"{kind} record in stream {stream!r}, which carries {names}"]
    problems = []
    if not isinstance(record.key, str) or not record.key.strip():
        problems.append(f"{kind}.key: {record.key!r} is empty")
    times: dict[str, Any] = {}
    if isinstance(record, Activity):
        times["occurred_at"] = record.occurred_at
    elif isinstance(record, ConsentChange):
        times["effective_at"] = record.effective_at
    else:
        times["updated_at"] = record.updated_at
    if isinstance(record, Opportunity):
        times["created_at"] = record.created_at
    for name, value in times.items():
        if not _aware(value):
            problems.append(f"{kind}.{name}: {value!r} is not a timezone-aware datetime")
    if isinstance(record, Opportunity):
        if record.closed_at is not None and not _aware(record.closed_at):
            problems.append(f"Opportunity.closed_at: {record.closed_at!r} is not a timezone-aware datetime")
        if record.is_won is not None and not isinstance(record.is_won, bool):
            problems.append(f"Opportunity.is_won: {record.is_won!r} is not true, false or None (open)")
        amount = record.amount
        if amount is not None and (isinstance(amount, bool) or not isinstance(amount, int | float)
                                   or not math.isfinite(amount)):
            problems.append(f"Opportunity.amount: {amount!r} is not a finite number")
        for name in ("account_key", "lead_key"):
            if not _text_or_none(getattr(record, name)):
                problems.append(f"Opportunity.{name}: {getattr(record, name)!r} is neither an id nor None")
    return problems


async def canonical_records(kit: SourceKit, stream: str) -> None:
    """Every record a pull yields is a canonical record of its stream that keeps the data contract: a key,
    timezone-aware times (an Opportunity's creation too), and for opportunities ``is_won`` only as a bool."""
    async with Rig(kit) as rig:
        seeded = _seed(kit, rig, stream, 3)
        pull = await _pull(rig, stream, None)
    if pull.error is not None:
        raise ConformanceFailure(f"pull({stream!r}, None) failed against the fake: {pull.error}")
    records = [record for page in pull.pages for record in page.records]
    if not any(record.key in seeded for record in records):
        raise ConformanceFailure(f"stream {stream!r}: none of the seeded rows {keys_text(list(seeded))} was yielded")
    found = [f"record {record.key!r}: {problem}" for record in records for problem in record_problems(stream, record)]
    if found:
        raise ConformanceFailure(
            f"stream {stream!r} yielded records that break the data contract ({'; '.join(found[:5])}): map the "
            "vendor's row to the canonical record fully, or quarantine it (Page.quarantined) with a reason naming "
            "the field"
        )


async def paging_to_the_end(kit: SourceKit, stream: str) -> None:
    """A pull from scratch yields every seeded row exactly once, across several pages, ending with a cursor."""
    async with Rig(kit) as rig:
        seeded = _seed(kit, rig, stream, kit.paging_rows)
        pull = await _pull(rig, stream, None)
    if pull.error is not None:
        raise ConformanceFailure(f"pull({stream!r}, None) failed against the fake: {pull.error}")
    missing = [key for key in seeded if key not in pull.keys]
    if missing:
        raise ConformanceFailure(_missing_message(stream, missing, pull))
    twice = sorted({key for key in pull.keys if key in seeded and pull.keys.count(key) > 1})
    if twice:
        raise ConformanceFailure(
            f"stream {stream!r}: rows {keys_text(twice)} were yielded more than once in one pull from scratch: "
            "does pull() re-request a page, or not advance its page token?"
        )
    if len(pull.calls) < 2:
        raise ConformanceFailure(
            f"stream {stream!r}: all {len(seeded)} rows came in one request, so paging was not exercised: lower "
            "the page size in the kit's config() (a page of 5 rows, say) or raise paging_rows"
        )
    if pull.cursor is None:
        raise ConformanceFailure(
            f"stream {stream!r}: no page carried a cursor, so the next pull would start from scratch: set "
            "Page.cursor to resume after the page"
        )


async def incremental_cursor(kit: SourceKit, stream: str) -> None:
    """A pull from the stored cursor yields what changed since, and not the old rows outside the overlap."""
    async with Rig(kit) as rig:
        old = _seed(kit, rig, stream, kit.paging_rows)
        first = await _pull(rig, stream, None)
        if first.error is not None or first.cursor is None:
            raise ConformanceFailure(f"stream {stream!r}: the first pull gave no cursor ({first.error})")
        rig.clock.advance(kit.overlap_seconds + 3_600)
        new = _seed(kit, rig, stream, 2, start=kit.paging_rows, newest=rig.clock() - timedelta(seconds=1))
        second = await _pull(rig, stream, first.cursor)
    if second.error is not None:
        raise ConformanceFailure(f"pull({stream!r}, cursor) failed against the fake: {second.error}")
    missing = [key for key in new if key not in second.keys]
    if missing:
        raise ConformanceFailure(
            f"stream {stream!r}: rows {keys_text(missing)} changed after the first pull but the pull from its "
            f"cursor did not yield them: does pull() read changes since the cursor ({first.cursor!r})?"
        )
    newest_old = max(old.values())
    horizon = newest_old - timedelta(seconds=kit.overlap_seconds)
    stale = [key for key in second.keys if key in old and old[key] < horizon]
    if stale:
        raise ConformanceFailure(
            f"stream {stream!r}: the pull from the cursor yielded {len(stale)} unchanged row(s) "
            f"({keys_text(stale)}) from before the overlap window of {kit.overlap_seconds:g} s: does pull() "
            "filter by the cursor, and does the cursor hold the newest modification time of its page? (If the "
            "connector re-reads a longer window on purpose, set overlap_seconds in the kit to match.)"
        )


async def resume_after_failure(kit: SourceKit, stream: str) -> None:
    """A pull that fails mid-stream, resumed from the last stored cursor, loses no row."""
    async with Rig(kit) as rig:
        seeded = _seed(kit, rig, stream, kit.paging_rows)
        seen = {"n": 0}

        def from_second_request(call: RecordedCall) -> bool:
            seen["n"] += 1
            return seen["n"] >= 2

        rig.app.plan.respond(kit_server_error(), times=None, match=from_second_request)
        broken = await _pull(rig, stream, None)
        rig.app.plan.clear()
        resumed = await _pull(rig, stream, broken.cursor)
    if broken.error is None:
        raise ConformanceFailure(
            f"stream {stream!r}: the fake answered 503 to every request after the first, yet pull() ended without "
            "raising: it must raise (RetryLater) so that the framework keeps the cursor of the last good page "
            "instead of storing one past rows it never read"
        )
    lost = [key for key in seeded if key not in broken.keys and key not in resumed.keys]
    if lost:
        raise ConformanceFailure(
            f"stream {stream!r}: rows {keys_text(lost)} were lost across a failure mid-stream: pull() failed after "
            f"{len(broken.pages)} page(s) and the pull resumed from that page's cursor {broken.cursor!r} never "
            "yielded them. A page's cursor must cover only rows already yielded (the newest modification time "
            "seen so far, not a page token or the end of the query)"
        )


async def late_rows_in_overlap(kit: SourceKit, stream: str) -> None:
    """A row that shows up after a pull, stamped inside the overlap window before its cursor, is read next."""
    if kit.overlap_seconds <= 0:
        raise NotApplicable("overlap_seconds is 0: the connector declares no overlap window")
    async with Rig(kit) as rig:
        old = _seed(kit, rig, stream, 3)
        first = await _pull(rig, stream, None)
        late_at = max(old.values()) - timedelta(seconds=kit.overlap_seconds / 2)
        late = kit.add_row(rig.fake, stream, 10_000, late_at)
        second = await _pull(rig, stream, first.cursor)
    if second.error is not None:
        raise ConformanceFailure(f"pull({stream!r}, cursor) failed against the fake: {second.error}")
    if late not in second.keys:
        raise ConformanceFailure(
            f"stream {stream!r}: row {late!r}, stamped {kit.overlap_seconds / 2:g} s before the newest row of the "
            f"first pull (inside the {kit.overlap_seconds:g} s overlap window) but visible only after it, was not "
            "yielded by the next pull: re-read from the cursor minus the overlap window, since vendors' change "
            "feeds lag their writes"
        )


__all__ = [
    "STREAM_RECORDS",
    "canonical_records",
    "incremental_cursor",
    "late_rows_in_overlap",
    "paging_to_the_end",
    "record_problems",
    "resume_after_failure",
]
