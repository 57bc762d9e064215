"""Delivery from the durable outbox: batching, per-record outcomes, dead letters.

Operations are in the outbox (committed) before anything is sent. Each batch is no larger than the
destination allows; its outcome is recorded record by record and committed before the next batch, so a
crash between send and acknowledgement leaves the operation open and the next run sends it again —
harmless for idempotent operations, and for the others the agent first looks the idempotency key up.
A whole batch the destination refuses is split in halves until the bad records are isolated.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn

from connectors.base import (
    Connector,
    ConnectorError,
    FixConfiguration,
    GiveUp,
    OperationSpec,
    Outcome,
    OutcomeUnknown,
    QuotaExhausted,
    RecordOutcome,
    RetryLater,
    WriteRecord,
)
from sync.audiences import ADD_OPERATION, REMOVE_OPERATION, stay_person
from sync.store import StoredOp, Unit

Clock = Callable[[], datetime]
AUDIENCE_OPERATIONS = frozenset({ADD_OPERATION, REMOVE_OPERATION})
IN_FLIGHT = "sent; no answer stored yet"
WINDOW = 5_000  # open operations read from the outbox at a time


@dataclass
class DeliveryReport:
    destination: str
    outcomes: Counter[str] = field(default_factory=Counter)
    batches: int = 0
    stopped: str | None = None  # why delivery stopped early (quota, credentials), if it did
    rejected_samples: list[dict[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # failures that held some operations back for this run

    def as_dict(self) -> dict[str, object]:
        return {"destination": self.destination, "outcomes": dict(self.outcomes), "batches": self.batches,
                "stopped": self.stopped, "rejected_samples": self.rejected_samples, "errors": self.errors}


class _Stop(Exception):
    """Ends this destination's delivery for the run; open operations wait for the next one."""


def _record(op: StoredOp) -> WriteRecord:
    return WriteRecord(target=object_id(op.target, op.operation, op.payload), idempotency_key=op.idempotency_key,
                       payload=op.payload)


def _stay(op: StoredOp) -> tuple[str, str] | None:
    """(audience, person) of an audience operation on a stay target, else None."""
    audience = str((op.payload or {}).get("audience_id") or "")
    person = stay_person(op.target, audience)
    return None if person is None else (audience, person)


def object_id(target: str, operation: str = "", payload: Mapping[str, Any] | None = None) -> str:
    """The destination object a ledger target names, which is what a connector gets as ``WriteRecord.target``.

    A target may add ``#<n>`` to tell apart several operations on one object (a lead's first follow-up task and
    a reroute's). An audience operation's target is the stay (``<audience_id>:<person>@<entered_at>``, see
    sync.audiences.membership_target): the connector gets the person's key (the source's lead id), which an
    id-based list (Marketo) adds; hash-based audiences use the identifiers in the payload. The ledger, the
    idempotency key and ``supersede_stays`` keep the stay."""
    if operation in AUDIENCE_OPERATIONS and payload is not None:
        person = stay_person(target, str(payload.get("audience_id") or ""))
        if person is not None:
            return person
    return target.partition("#")[0]


class Deliverer:
    """Sends one destination's open operations and records every outcome in the store."""

    def __init__(self, unit: Unit, connector: Connector, destination: str, *, clock: Clock,
                 concurrency: int = 4) -> None:
        self.unit = unit
        self.connector = connector
        self.destination = destination
        self.clock = clock
        self.concurrency = max(1, concurrency)
        self.report = DeliveryReport(destination)
        self._skipped: set[str] = set()  # operations a configuration problem of their own holds back this run

    async def deliver(self) -> DeliveryReport:
        caps = self.connector.capabilities.operations
        # Audience removes go before adds: when a member's identifiers change, the old row's remove and the
        # new row's add share the person (and maybe an e-mail hash), and a remove landing after the add
        # would take the person out again.
        blocked: set[tuple[str, str]] = set()
        for operation, spec in sorted(caps.items(), key=lambda item: item[0] != REMOVE_OPERATION):
            if operation == ADD_OPERATION and REMOVE_OPERATION in caps:
                blocked = self._open_removes()
            after = 0
            # A window of the outbox at a time: memory stays flat however many operations are queued. An
            # operation that fails in this run is behind the window and waits for the next run.
            while self.report.stopped is None and operation not in self._skipped:
                ops = self.unit.open_operations(self.destination, operation, after_id=after, limit=WINDOW)
                if not ops:
                    break
                after = ops[-1].id
                if blocked:
                    waiting = [op for op in ops if _stay(op) in blocked]
                    self.report.outcomes["waiting_for_remove"] += len(waiting)
                    ops = [op for op in ops if _stay(op) not in blocked]
                await self._deliver_window(operation, spec, ops)
            if self.report.stopped is not None:
                break
        return self.report

    def _open_removes(self) -> set[tuple[str, str]]:
        """(audience, person) of the audience removes still open after this run sent its removes: an add for
        the same person waits for the next run, so it can never land before the remove."""
        found: set[tuple[str, str]] = set()
        after = 0
        while ops := self.unit.open_operations(self.destination, REMOVE_OPERATION, after_id=after, limit=WINDOW):
            after = ops[-1].id
            found.update(key for key in map(_stay, ops) if key is not None)
        return found

    async def _deliver_window(self, operation: str, spec: OperationSpec, ops: list[StoredOp]) -> None:
        if not ops:
            return
        if not spec.idempotent:
            try:
                ops = await self._resolve_unknown(operation, ops, spec.max_batch_size)
            except _Stop:
                return
        batches = [ops[i:i + spec.max_batch_size] for i in range(0, len(ops), spec.max_batch_size)]
        gate = asyncio.Semaphore(self.concurrency)

        async def one(batch: Sequence[StoredOp]) -> None:
            async with gate:
                if self.report.stopped is None and operation not in self._skipped:
                    await self._send(operation, batch)

        results = await asyncio.gather(*(one(b) for b in batches), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, _Stop):
                raise result

    async def _resolve_unknown(self, operation: str, ops: list[StoredOp], size: int) -> list[StoredOp]:
        """Before creating again, ask the destination whether an unknown outcome actually happened. Those the
        destination cannot be asked about now stay unknown and are not sent (that could create them twice);
        the next run asks again."""
        unknown = [op for op in ops if op.status == "unknown"]
        if not unknown:
            return ops
        settled: set[str] = set()  # found (and acknowledged), or held back because the look-up failed
        for i in range(0, len(unknown), size):
            chunk = unknown[i:i + size]
            try:
                results = await self.connector.lookup(operation, [_record(op) for op in chunk])
            except QuotaExhausted as exc:
                self._stop_for_quota(exc)
            except FixConfiguration as exc:
                if exc.operation_only:
                    self._skip(operation, exc)
                    raise _Stop(str(exc)) from None
                self._stop(f"configuration: {exc}")
            except ConnectorError as exc:
                held = unknown[i:]
                self.report.outcomes["unresolved"] += len(held)
                self.report.errors.append(f"{operation}: {len(held)} unknown outcome(s) not looked up: {exc}")
                settled.update(op.idempotency_key for op in held)
                break
            by_key = {r.idempotency_key: r for r in results}
            acks = [(op, by_key[op.idempotency_key].remote_id) for op in chunk
                    if op.idempotency_key in by_key and by_key[op.idempotency_key].ok]
            self.unit.acknowledge(acks, self.clock())
            self.unit.checkpoint()
            settled.update(op.idempotency_key for op, _ in acks)
            self.report.outcomes["found_by_lookup"] += len(acks)
        return [op for op in ops if op.idempotency_key not in settled]

    async def _send(self, operation: str, batch: Sequence[StoredOp]) -> None:
        self.report.batches += 1
        if not self.connector.capabilities.operations[operation].idempotent:
            # Durably "sent, no answer" before the request leaves: if we die before the answer is stored,
            # the next run looks the key up instead of creating the object a second time.
            self.unit.mark([(op, "unknown", IN_FLIGHT) for op in batch], self.clock())
            self.unit.checkpoint()
        try:
            results = await self.connector.write_batch(operation, [_record(op) for op in batch])
        except QuotaExhausted as exc:
            self._stop_for_quota(exc)
        except FixConfiguration as exc:
            if exc.operation_only:
                self._skip(operation, exc)
                return
            self._stop(f"configuration: {exc}")
        except OutcomeUnknown as exc:
            self._apply(batch, [RecordOutcome(op.idempotency_key, Outcome.UNKNOWN, str(exc)) for op in batch])
        except RetryLater as exc:
            self._apply(batch, [RecordOutcome(op.idempotency_key, Outcome.RETRYABLE, str(exc)) for op in batch])
        except GiveUp as exc:
            if len(batch) == 1:
                self._apply(batch, [RecordOutcome(batch[0].idempotency_key, Outcome.REJECTED, exc.message)])
                return
            # One bad record can sink a whole batch: bisect until the bad ones stand alone.
            half = len(batch) // 2
            await self._send(operation, batch[:half])
            await self._send(operation, batch[half:])
        else:
            self._apply(batch, self._match(batch, results))

    def _stop_for_quota(self, exc: QuotaExhausted) -> NoReturn:
        when = f"; delivery resumes after {exc.resets_at.isoformat()}" if exc.resets_at else ""
        self._stop(f"quota exhausted: {exc}{when}")

    def _skip(self, operation: str, exc: FixConfiguration) -> None:
        """This operation waits for the next run (its records stay queued); the others go on. Said once."""
        if operation not in self._skipped:
            self._skipped.add(operation)
            self.report.errors.append(f"{operation}: configuration: {exc} ({operation} waits in the outbox)")

    def _stop(self, why: str) -> NoReturn:
        self.report.stopped = why
        raise _Stop(why)

    @staticmethod
    def _match(batch: Sequence[StoredOp], results: Sequence[RecordOutcome]) -> list[RecordOutcome]:
        """One outcome per sent record; a missing or extra answer is never taken as success."""
        by_key = {r.idempotency_key: r for r in results}
        if len(results) != len(batch):
            note = f"destination answered {len(results)} outcomes for {len(batch)} records"
            return [RecordOutcome(op.idempotency_key, Outcome.UNKNOWN, note)
                    if op.idempotency_key not in by_key or not by_key[op.idempotency_key].ok
                    else by_key[op.idempotency_key] for op in batch]
        return [by_key.get(op.idempotency_key,
                           RecordOutcome(op.idempotency_key, Outcome.UNKNOWN, "no outcome for this record"))
                for op in batch]

    def _apply(self, batch: Sequence[StoredOp], results: Sequence[RecordOutcome]) -> None:
        now = self.clock()
        acks: list[tuple[StoredOp, str | None]] = []
        others: list[tuple[StoredOp, str, str | None]] = []
        for op, result in zip(batch, results, strict=True):
            self.report.outcomes[result.outcome.value] += 1
            if result.ok:
                acks.append((op, result.remote_id))
                continue
            others.append((op, result.outcome.value, result.reason))
            if result.outcome is Outcome.REJECTED and len(self.report.rejected_samples) < 10:
                self.report.rejected_samples.append(
                    {"target": op.target, "operation": op.operation, "reason": result.reason or ""})
        self.unit.acknowledge(acks, now)
        self.unit.mark(others, now)
        self.unit.checkpoint()


__all__ = ["Deliverer", "DeliveryReport"]
