"""The planner: desired state vs acknowledged ledger -> the minimal set of operations."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from sync.planner import DesiredWrite, idempotency_key, payload_hash, plan, score_moved
from sync.store import LedgerEntry


def _want(target: str, score: int, band: str = "B", **extra: object) -> DesiredWrite:
    payload = {"score": score, "band": band, "model_version": "v1", **extra}
    return DesiredWrite("hs", "update_lead", target, payload, "scored")


def _acked(w: DesiredWrite) -> LedgerEntry:
    return LedgerEntry(payload_hash(w.payload), w.payload, None)


def test_acknowledged_state_produces_no_operation() -> None:
    """What the destination already acknowledged is not sent again."""
    w = _want("1", 50)
    result = plan([w], {("hs", "update_lead"): {"1": _acked(w)}}, {})
    assert result.ops == ()
    assert result.unchanged == 1


def test_volatile_timestamp_does_not_make_a_change() -> None:
    """A new scored_at alone is not a change worth a write."""
    a, b = _want("1", 50, scored_at="2026-01-01"), _want("1", 50, scored_at="2026-02-01")
    assert payload_hash(a.payload) == payload_hash(b.payload)


def test_attempted_but_unacknowledged_write_is_planned_again() -> None:
    """A write that was only attempted (not in the ledger) is planned again: failed rows are retried."""
    result = plan([_want("1", 50)], {}, {})
    assert len(result.ops) == 1
    assert result.ops[0].reason == "scored"


def test_same_desired_state_already_queued_is_not_queued_twice() -> None:
    """An operation already in the outbox with the same payload is counted, not duplicated."""
    w = _want("1", 50)
    result = plan([w], {}, {("hs", "update_lead"): {"1": payload_hash(w.payload)}})
    assert result.ops == ()
    assert result.already_queued == 1


def test_small_score_moves_are_immaterial_but_band_changes_are_not() -> None:
    """Below min_score_change nothing is sent, unless the band changed."""
    old = _want("1", 50)
    ledger = {("hs", "update_lead"): {"1": _acked(old)}}
    rules = {"update_lead": score_moved(5)}
    assert plan([_want("1", 53)], ledger, {}, material=rules).immaterial == 1
    assert len(plan([_want("1", 56)], ledger, {}, material=rules).ops) == 1
    assert len(plan([_want("1", 51, band="A")], ledger, {}, material=rules).ops) == 1


@given(st.text(min_size=1, max_size=20), st.integers(0, 99), st.integers(0, 99))
def test_idempotency_key_is_stable_and_distinguishes_payloads(target: str, a: int, b: int) -> None:
    """The same desired state always gets the same key; a different payload gets a different key."""
    ka = idempotency_key("hs", "update_lead", target, payload_hash({"score": a}))
    assert ka == idempotency_key("hs", "update_lead", target, payload_hash({"score": a}))
    kb = idempotency_key("hs", "update_lead", target, payload_hash({"score": b}))
    assert (ka == kb) == (a == b)


def test_create_once_operation_is_never_planned_twice_for_a_target() -> None:
    """A follow-up task is planned once per lead: not again when acknowledged, nor while one is queued."""
    first = DesiredWrite("crm", "create_task", "lead-1", {"subject": "call", "due_at": "2026-01-02"}, "hot")
    later = DesiredWrite("crm", "create_task", "lead-1", {"subject": "call", "due_at": "2026-01-09"}, "hot")
    assert len(plan([first], {}, {}, create_once={"create_task"}).ops) == 1
    acked = {("crm", "create_task"): {"lead-1": LedgerEntry("other-hash", {}, "task-9")}}
    assert plan([later], acked, {}, create_once={"create_task"}).ops == ()
    queued = {("crm", "create_task"): {"lead-1": ""}}
    result = plan([later], {}, queued, create_once={"create_task"})
    assert result.ops == ()
    assert result.already_queued == 1
    # the same write without create-once semantics would be planned again (its payload changed)
    assert len(plan([later], acked, {}).ops) == 1
