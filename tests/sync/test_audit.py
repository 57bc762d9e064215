"""The hash-chained audit log, run identically on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

import sync.audit  # registers the audit tables before the store fixture creates them
from sync.audit import (
    GENESIS,
    AuditEntry,
    AuditRow,
    anchor,
    append,
    canonical_json,
    entry_hash,
    head,
    read,
    verify,
)
from sync.store import Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _entries(n: int, start: int = 0) -> list[AuditEntry]:
    return [AuditEntry("consent" if i % 2 else "audience", f"lead-{i}",
                       {"decision": "add", "score": i, "reasons": ["pricing page"], "at": NOW},
                       NOW + timedelta(seconds=i))
            for i in range(start, start + n)]


def _log(store: Store, *batches: int, anchored: bool = True) -> None:
    """Append batches (one unit each, as runs do), anchoring after each."""
    start = 0
    for run, size in enumerate(batches, start=1):
        with store.unit() as u:
            append(u.conn, u.dialect, "main", run, _entries(size, start))
            if anchored:
                anchor(u.conn, u.dialect, NOW + timedelta(hours=run))
        start += size


def _verify(store: Store, known_head: str | None = None) -> sync.audit.Verification:
    with store.unit() as u:
        return verify(u.conn, u.dialect, known_head=known_head)


def _sql(store: Store, statement: str, **params: object) -> None:
    with store.engine.begin() as conn:
        conn.execute(sa.text(statement), params)


def test_a_clean_chain_verifies(store: Store) -> None:
    """Entries appended over several runs, anchored after each, verify with no problem."""
    _log(store, 3, 5, 2)
    result = _verify(store)
    assert (result.ok, result.checked, result.problems, result.anchors) == (True, 10, [], 3)
    with store.unit() as u:
        assert result.head_hash == head(u.conn)[1]
        assert head(u.conn)[0] == 10


def test_an_empty_log_verifies(store: Store) -> None:
    """A store with no entries (and an anchor of that emptiness) is a valid log."""
    with store.unit() as u:
        made = anchor(u.conn, u.dialect, NOW)
    assert (made.entries, made.head_hash) == (0, GENESIS)
    assert _verify(store).ok


def test_append_returns_the_head_and_hashes_the_canonical_form(store: Store) -> None:
    """The returned head is the last entry's hash, recomputable from sha256(prev + canonical JSON)."""
    entry = AuditEntry("routing", "lead-7", {"rep": "r1", "why": {"b": 2, "a": 1}},
                       datetime(2026, 3, 1, 13, 0, tzinfo=timezone(timedelta(hours=1))))
    with store.unit() as u:
        returned = append(u.conn, u.dialect, "main", None, [entry])
        stored = read(u.conn, subject="lead-7")
    body = ('{"at":"2026-03-01T12:00:00.000000Z","data":{"rep":"r1","why":{"a":1,"b":2}},"id":1,'
            '"kind":"routing","pipeline":"main","run_id":null,"subject":"lead-7"}')
    assert returned == hashlib.sha256((GENESIS + body).encode()).hexdigest() == stored[0].hash
    assert stored[0].at == NOW
    assert stored[0].data == {"rep": "r1", "why": {"a": 1, "b": 2}}


def test_canonical_json_is_one_spelling_per_content() -> None:
    """Key order, time zone and set order do not change the canonical text."""
    berlin = timezone(timedelta(hours=1))
    one = canonical_json({"b": {3, 1, 2}, "a": datetime(2026, 3, 1, 13, 0, tzinfo=berlin)})
    two = canonical_json({"a": datetime(2026, 3, 1, 12, 0, tzinfo=UTC), "b": {2, 3, 1}})
    assert one == two == '{"a":"2026-03-01T12:00:00.000000Z","b":[1,2,3]}'
    with pytest.raises(TypeError, match="not JSON serializable: object"):
        canonical_json({"x": object()})


def test_thousands_of_entries_append_in_one_call_and_verify(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """3,000 entries append in one call; verification reads them in chunks and names a removal at a boundary."""
    monkeypatch.setattr(sync.audit, "CHUNK", 1_000)
    with store.unit() as u:
        append(u.conn, u.dialect, "main", 1, _entries(3_000))
        anchor(u.conn, u.dialect, NOW)
    assert (_verify(store).ok, _verify(store).checked) == (True, 3_000)
    _sql(store, "DELETE FROM audit_log WHERE id = 2001")  # the first row of the third chunk
    result = _verify(store)
    assert (result.ok, result.checked) == (False, 2_999)
    assert result.problems == ["entry 2001 missing: removed from the log"]


def test_changed_data_is_detected_naming_the_entry(store: Store) -> None:
    """Editing one entry's data shows as that entry's hash mismatch, and nothing else."""
    _log(store, 5)
    _sql(store, "UPDATE audit_log SET data = :d WHERE id = 3", d='{"decision":"remove"}')
    result = _verify(store)
    assert not result.ok
    assert result.problems == ["entry 3: altered — its hash does not match its content"]


@pytest.mark.parametrize("column", ["subject", "kind", "pipeline", "at", "run_id"])
def test_every_hashed_column_is_covered(store: Store, column: str) -> None:
    """Changing any hashed column of an entry (not just its data) is detected."""
    _log(store, 3)
    value: object = {"subject": "someone-else", "kind": "holdout", "pipeline": "other", "run_id": 99,
                     "at": datetime(2020, 1, 1)}[column]
    _sql(store, f"UPDATE audit_log SET {column} = :v WHERE id = 2", v=value)  # noqa: S608 (a fixed column name)
    assert _verify(store).problems == ["entry 2: altered — its hash does not match its content"]


def test_a_rehashed_edit_breaks_the_next_link_and_the_anchor(store: Store) -> None:
    """Recomputing an edited entry's own hash still shows: the next entry's link and the anchor disagree."""
    _log(store, 4)
    with store.unit() as u:
        row = u.conn.execute(sa.select(AuditRow.__table__).where(AuditRow.__table__.c.id == 4)).one()
    forged = entry_hash(row.prev_hash, 4, row.at, row.pipeline, row.run_id, row.kind, row.subject, '{"x":1}')
    _sql(store, "UPDATE audit_log SET data = :d, hash = :h WHERE id = 4", d='{"x":1}', h=forged)
    assert _verify(store).problems == [
        f"anchor 1: recorded {row.hash[:12]}… as the hash of entry 4, which is {forged[:12]}…: the entry or the "
        "anchor was changed"]
    _log(store, 1, anchored=False)  # a later entry links to the forged hash; rewrite 4 back to show the link check
    _sql(store, "UPDATE audit_log SET data = :d, hash = :h WHERE id = 4", d=row.data, h=row.hash)
    assert "entry 5: prev_hash does not match the hash of entry 4" in _verify(store).problems[0]


def test_a_deleted_middle_entry_is_detected_naming_it(store: Store) -> None:
    """Deleting entry 3 of 6 reports entry 3 as removed."""
    _log(store, 6)
    _sql(store, "DELETE FROM audit_log WHERE id = 3")
    assert _verify(store).problems == ["entry 3 missing: removed from the log"]


def test_deleted_first_entries_are_detected(store: Store) -> None:
    """Deleting the oldest entries is a gap at the start of the chain."""
    _log(store, 5)
    _sql(store, "DELETE FROM audit_log WHERE id <= 2")
    assert _verify(store).problems == ["entries 1–2 missing: removed from the log"]


def test_deleted_tail_entries_are_detected_by_the_anchor(store: Store) -> None:
    """Deleting the newest entries is caught by the anchor, which names the missing ids."""
    _log(store, 4, 3)
    _sql(store, "DELETE FROM audit_log WHERE id >= 6")
    assert _verify(store).problems == [
        "anchor 2 recorded 7 entries but the log ends at entry 5: entries 6–7 removed from the tail"]


def test_tail_deletion_with_its_anchor_is_caught_by_a_head_kept_elsewhere(store: Store) -> None:
    """Deleting the tail and the last anchor passes the chain check but not a head hash copied out earlier."""
    _log(store, 4, 3)
    with store.unit() as u:
        kept = head(u.conn)[1]
    _sql(store, "DELETE FROM audit_log WHERE id >= 6")
    _sql(store, "DELETE FROM audit_anchor WHERE id = 2")
    assert _verify(store).ok
    result = _verify(store, known_head=kept)
    assert result.problems == [f"the head hash kept elsewhere ({kept[:12]}…) is not in the log: entries were "
                               "removed or rewritten"]


@pytest.mark.parametrize(("change", "expected"), [
    ("UPDATE audit_anchor SET entries = 5, head_hash = :h WHERE id = 2",
     ["anchor 2: altered — its hash does not match its content"]),
    ("DELETE FROM audit_anchor WHERE id = 1",
     ["anchor 1 missing: removed from audit_anchor"]),
])
def test_an_edited_or_removed_anchor_is_detected(store: Store, change: str, expected: list[str]) -> None:
    """An anchor edited to cover a shortened log, or a removed anchor, is named."""
    _log(store, 5, 2)
    with store.unit() as u:
        fifth = u.conn.execute(sa.text("SELECT hash FROM audit_log WHERE id = 5")).scalar_one()
    _sql(store, change, h=fifth)
    assert _verify(store).problems == expected


def test_dry_run_leaves_no_entries_and_no_gap(store: Store) -> None:
    """A rolled-back unit (a dry run) appends nothing, and the next real append continues the chain."""
    _log(store, 2)
    with store.unit(dry_run=True) as u:
        append(u.conn, u.dialect, "main", None, _entries(3, 2))
        anchor(u.conn, u.dialect, NOW)
        assert head(u.conn)[0] == 5
    with store.unit() as u:
        assert head(u.conn)[0] == 2
        assert u.count("audit_anchor") == 1
    _log(store, 1)
    assert _verify(store).ok


def test_read_narrows_by_subject_run_and_kind(store: Store) -> None:
    """One person's story comes back in order, with its data decoded."""
    _log(store, 4, 4)
    with store.unit() as u:
        assert [(e.id, e.run_id) for e in read(u.conn, subject="lead-5")] == [(6, 2)]
        assert [e.subject for e in read(u.conn, run_id=1, kind="consent")] == ["lead-1", "lead-3"]
        assert read(u.conn, limit=1)[0].data["at"] == "2026-03-01T12:00:00.000000Z"


def test_problems_are_capped(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A wholesale rewrite reports the first problems and how many more, not an unbounded list."""
    monkeypatch.setattr(sync.audit, "MAX_PROBLEMS", 3)
    _log(store, 6)
    _sql(store, "UPDATE audit_log SET subject = 'x'")
    assert _verify(store).problems[3:] == ["… and 3 more problems"]


@pytest.fixture
def second(store: Store) -> Iterator[Store]:
    """Another store on the same database: a second agent."""
    other = Store(store.url)
    yield other
    other.close()


def _in_thread(store: Store, started: threading.Event, errors: list[BaseException]) -> threading.Thread:
    def run() -> None:
        try:
            with store.unit() as u:
                started.set()
                append(u.conn, u.dialect, "other", None, _entries(2, 100))
        except BaseException as exc:  # noqa: BLE001 (handed to the test thread to fail there)
            errors.append(exc)

    return threading.Thread(target=run)


def _waiting_for_advisory_lock(store: Store) -> bool:
    key = sync.audit.LOCK_KEY & 0xFFFF_FFFF_FFFF_FFFF  # a bigint key shows as (classid, objid) = (high, low)
    with store.engine.connect() as conn:
        return bool(conn.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1 "
            "AND classid::bigint = :high AND objid::bigint = :low"), {"high": key >> 32, "low": key & 0xFFFF_FFFF}
        ).scalar())


def test_concurrent_appends_queue_instead_of_forking(store: Store, second: Store) -> None:
    """While one transaction appends, another agent's append waits for it, then continues the same chain."""
    started = threading.Event()
    errors: list[BaseException] = []
    with store.unit() as u:
        append(u.conn, u.dialect, "main", 1, _entries(3))
        thread = _in_thread(second, started, errors)
        thread.start()
        assert started.wait(30)
        if store.dialect == "postgresql":  # see the other agent block on the lock before this one commits
            deadline = time.monotonic() + 30
            while not _waiting_for_advisory_lock(store):
                assert time.monotonic() < deadline, "the second append never waited for the lock"
    thread.join(60)
    assert not thread.is_alive()
    assert errors == []
    result = _verify(store)
    assert (result.ok, result.checked) == (True, 5)
    with store.unit() as u:
        assert [e.pipeline for e in read(u.conn)] == ["main"] * 3 + ["other"] * 2


def test_sqlite_append_takes_the_write_lock_before_reading_the_head(tmp_path: Path) -> None:
    """On SQLite a second writer cannot even read the head while a first append is uncommitted."""
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    first = Store(url)
    first.create_all()
    impatient = Store(url)
    impatient.engine.dispose()
    impatient.engine = sa.create_engine(url, connect_args={"timeout": 0})
    try:
        with first.unit() as u:
            append(u.conn, u.dialect, "main", 1, _entries(1))
            statements: list[str] = []
            sa.event.listen(impatient.engine, "before_cursor_execute",
                            lambda _c, _cur, statement, *_: statements.append(statement))
            with pytest.raises(sa.exc.OperationalError, match="database is locked"), impatient.unit() as other:
                append(other.conn, other.dialect, "other", None, _entries(1))
            assert statements == ["BEGIN IMMEDIATE"]
    finally:
        first.close()
        impatient.close()
