"""Delivery from the outbox: per-record outcomes, bisection, lookups, stops — on both store backends."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorConfig,
    FixConfiguration,
    GiveUp,
    OperationSpec,
    Outcome,
    OutcomeUnknown,
    QuotaExhausted,
    RecordOutcome,
    WriteRecord,
)
from sync.outbox import Deliverer
from sync.planner import DesiredWrite, plan
from sync.store import Store

NOW = datetime(2026, 3, 1, tzinfo=UTC)
Script = Callable[[str, Sequence[WriteRecord]], list[RecordOutcome]]


class ScriptedDestination(Connector):
    """A destination whose answers a test scripts; it remembers what it 'holds'."""

    name = "scripted"
    config_model = ConnectorConfig
    capabilities = Capabilities(operations={
        "update": OperationSpec(max_batch_size=4),
        "create": OperationSpec(max_batch_size=4, idempotent=False),
    })

    def __init__(self, script: Script | None = None) -> None:
        self.script = script
        self.calls: list[tuple[str, list[str]]] = []
        self.held: dict[str, str] = {}

    async def check(self) -> None:
        return None

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        self.calls.append((operation, [r.target for r in records]))
        if self.script is not None:
            return self.script(operation, records)
        for r in records:
            self.held[r.idempotency_key] = r.target
        return [RecordOutcome(r.idempotency_key, Outcome.ACKNOWLEDGED) for r in records]

    async def lookup(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        return [RecordOutcome(r.idempotency_key, Outcome.ACKNOWLEDGED, remote_id="found")
                if r.idempotency_key in self.held else RecordOutcome(r.idempotency_key, Outcome.UNKNOWN)
                for r in records]


def _enqueue(store: Store, n: int, operation: str = "update") -> None:
    desired = [DesiredWrite("dest", operation, f"t{i}", {"score": i}, "r") for i in range(n)]
    with store.unit() as u:
        u.enqueue("pipe", plan(desired, {}, {}).ops, None, NOW)


async def _deliver(store: Store, dest: Connector) -> tuple[dict[str, int], str | None]:
    with store.unit() as u:
        report = await Deliverer(u, dest, "dest", clock=lambda: NOW).deliver()
    return dict(report.outcomes), report.stopped


@pytest.mark.anyio
async def test_batches_respect_the_destination_maximum(store: Store) -> None:
    """Ten operations with a batch limit of four go out as 4 + 4 + 2 and all land in the ledger."""
    _enqueue(store, 10)
    dest = ScriptedDestination()
    outcomes, _ = await _deliver(store, dest)
    assert sorted(len(t) for _, t in dest.calls) == [2, 4, 4]
    assert outcomes == {"acknowledged": 10}
    with store.unit() as u:
        assert len(u.ledger("dest", "update", [f"t{i}" for i in range(10)])) == 10
        assert u.open_operations("dest") == []


@pytest.mark.anyio
async def test_partial_batch_acknowledges_only_the_successes(store: Store) -> None:
    """Per-record outcomes: the rejected record becomes a dead letter, the retryable one stays open."""
    def script(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        out = []
        for r in records:
            if r.target == "t1":
                out.append(RecordOutcome(r.idempotency_key, Outcome.REJECTED, "INVALID_EMAIL"))
            elif r.target == "t2":
                out.append(RecordOutcome(r.idempotency_key, Outcome.RETRYABLE, "UNABLE_TO_LOCK_ROW"))
            else:
                out.append(RecordOutcome(r.idempotency_key, Outcome.ACKNOWLEDGED))
        return out

    _enqueue(store, 4)
    outcomes, _ = await _deliver(store, ScriptedDestination(script))
    assert outcomes == {"acknowledged": 2, "rejected": 1, "retryable": 1}
    with store.unit() as u:
        assert set(u.ledger("dest", "update", ["t0", "t1", "t2", "t3"])) == {"t0", "t3"}
        assert [o.target for o in u.open_operations("dest")] == ["t2"]
        dead = u.dead_letters()
    assert [(d["target"], d["last_error"]) for d in dead] == [("t1", "INVALID_EMAIL")]


@pytest.mark.anyio
async def test_whole_batch_rejection_is_bisected_to_the_bad_record(store: Store) -> None:
    """A batch refused because of one record is split until only that record is rejected."""
    def script(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if any(r.target == "t2" for r in records):
            raise GiveUp("Property values were not valid", status=400)
        return [RecordOutcome(r.idempotency_key, Outcome.ACKNOWLEDGED) for r in records]

    _enqueue(store, 4)
    outcomes, _ = await _deliver(store, ScriptedDestination(script))
    assert outcomes == {"acknowledged": 3, "rejected": 1}
    with store.unit() as u:
        assert [d["target"] for d in u.dead_letters()] == ["t2"]


@pytest.mark.anyio
async def test_missing_outcomes_are_never_taken_as_success(store: Store) -> None:
    """A destination answering fewer outcomes than records sent leaves the unanswered ones open."""
    def script(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        return [RecordOutcome(records[0].idempotency_key, Outcome.ACKNOWLEDGED)]

    _enqueue(store, 3)
    outcomes, _ = await _deliver(store, ScriptedDestination(script))
    assert outcomes == {"acknowledged": 1, "unknown": 2}
    with store.unit() as u:
        assert len(u.open_operations("dest")) == 2


@pytest.mark.anyio
async def test_unknown_create_is_looked_up_before_creating_again(store: Store) -> None:
    """After a create whose answer was lost, the next delivery finds it by key instead of duplicating it."""
    dest = ScriptedDestination()

    def lost_answer(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        for r in records:
            dest.held[r.idempotency_key] = r.target  # it happened ...
        raise OutcomeUnknown("read timeout")          # ... but the answer never came

    _enqueue(store, 2, operation="create")
    dest.script = lost_answer
    outcomes, _ = await _deliver(store, dest)
    assert outcomes == {"unknown": 2}
    dest.script = None
    outcomes, _ = await _deliver(store, dest)
    assert outcomes == {"found_by_lookup": 2}
    assert len(dest.calls) == 1  # no second create
    with store.unit() as u:
        assert u.open_operations("dest") == []


@pytest.mark.anyio
async def test_quota_exhaustion_stops_delivery_and_keeps_the_rest_open(store: Store) -> None:
    """A spent daily quota ends the destination's delivery cleanly; nothing is lost."""
    def script(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        raise QuotaExhausted("daily limit", retry_after=3600, resets_at=NOW + timedelta(hours=1))

    _enqueue(store, 8)
    _, stopped = await _deliver(store, ScriptedDestination(script))
    assert stopped is not None
    assert "quota" in stopped
    assert "resumes after 2026-03-01T01:00:00+00:00" in stopped
    with store.unit() as u:
        assert len(u.open_operations("dest")) == 8


@pytest.mark.parametrize("operation_only", [True, False])
@pytest.mark.anyio
async def test_a_configuration_error_of_one_operation_holds_back_only_that_operation(
        store: Store, operation_only: bool) -> None:
    """A configuration problem the connector scopes to one operation (a missing custom field) leaves that
    operation queued, said once, while the destination's other operations are delivered; an unscoped one (bad
    credentials) stops the destination's delivery. Nothing is lost either way."""
    def script(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if op == "update":  # declared first: delivered first
            raise FixConfiguration("no field 'Score__c'", connector="scripted", operation_only=operation_only)
        return [RecordOutcome(r.idempotency_key, Outcome.ACKNOWLEDGED, remote_id="new") for r in records]

    _enqueue(store, 8, "update")
    _enqueue(store, 3, "create")
    dest = ScriptedDestination(script)
    with store.unit() as u:
        report = await Deliverer(u, dest, "dest", clock=lambda: NOW).deliver()
    with store.unit() as u:
        still_open = {op.operation for op in u.open_operations("dest")}
        open_count = len(u.open_operations("dest"))
    if operation_only:
        assert report.stopped is None
        assert report.errors == ["update: configuration: scripted: no field 'Score__c' (update waits in the outbox)"]
        assert [c[0] for c in dest.calls].count("update") == 1  # not retried batch after batch in the run
        assert report.outcomes["acknowledged"] == 3
        assert (still_open, open_count) == ({"update"}, 8)
    else:
        assert report.stopped == "configuration: scripted: no field 'Score__c'"
        assert "create" not in [c[0] for c in dest.calls]
        assert (still_open, open_count) == ({"update", "create"}, 11)


class Crash(BaseException):
    """Stands in for the process dying mid-request (not an Exception: nothing may catch it)."""


@pytest.mark.anyio
async def test_create_is_durably_in_flight_before_it_is_sent(store: Store) -> None:
    """A create whose process dies mid-request is found by lookup on the next run, not created twice."""
    dest = ScriptedDestination()

    def dies_after_the_effect(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        for r in records:
            dest.held[r.idempotency_key] = r.target
        raise Crash

    _enqueue(store, 3, operation="create")
    dest.script = dies_after_the_effect
    with pytest.raises(Crash):
        await _deliver(store, dest)
    with store.unit() as u:  # what a restarted process finds: committed before the request left
        assert {o.status for o in u.open_operations("dest")} == {"unknown"}
    dest.script = None
    outcomes, _ = await _deliver(store, dest)
    assert outcomes == {"found_by_lookup": 3}
    assert len(dest.calls) == 1


@pytest.mark.anyio
async def test_idempotent_updates_are_not_marked_in_flight(store: Store) -> None:
    """Updates that die mid-request stay pending and are simply sent again (no lookup needed)."""
    def dies(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        raise Crash

    _enqueue(store, 2)
    with pytest.raises(Crash):
        await _deliver(store, ScriptedDestination(dies))
    with store.unit() as u:
        assert {o.status for o in u.open_operations("dest")} == {"pending"}


@pytest.mark.anyio
async def test_dead_letter_is_superseded_by_a_newer_desired_state(store: Store) -> None:
    """A rejected update is not replayable once a newer payload for the same record is queued."""
    def reject(op: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        return [RecordOutcome(r.idempotency_key, Outcome.REJECTED, "INVALID_OPTION") for r in records]

    _enqueue(store, 1)
    await _deliver(store, ScriptedDestination(reject))
    with store.unit() as u:
        assert len(u.dead_letters()) == 1
        u.enqueue("pipe", plan([DesiredWrite("dest", "update", "t0", {"score": 99}, "r")], {}, {}).ops, None, NOW)
        assert u.dead_letters() == []
        assert [o.payload["score"] for o in u.open_operations("dest")] == [99]


@pytest.mark.anyio
async def test_outbox_is_read_a_window_at_a_time(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    """A queue larger than the read window is delivered completely, window after window, in outbox order."""
    import sync.outbox

    monkeypatch.setattr(sync.outbox, "WINDOW", 5)
    _enqueue(store, 12)
    dest = ScriptedDestination()
    outcomes, _ = await _deliver(store, dest)
    assert outcomes == {"acknowledged": 12}
    assert [len(t) for _, t in dest.calls] == [4, 1, 4, 1, 2]  # batches never span two windows
    assert [t for _, targets in dest.calls for t in targets] == [f"t{i}" for i in range(12)]
