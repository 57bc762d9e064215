"""Desired destination state vs the acknowledged ledger -> the minimal set of operations.

Pure: given what each destination should hold, what it has acknowledged and what is already queued,
return the operations to enqueue, each with a stable idempotency key and the reason for it. The dry-run
report is built from the same :class:`Plan`, so what a dry run shows is what a real run enqueues.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sync.store import LedgerEntry, OutboxOp

# Fields that change on every write without changing what the destination shows (a timestamp):
# sent along, never compared.
VOLATILE_FIELDS = frozenset({"scored_at"})

Material = Callable[[Mapping[str, Any], Mapping[str, Any]], bool]


@dataclass(frozen=True, slots=True)
class DesiredWrite:
    """What one destination object should hold, and why."""

    destination: str
    operation: str
    target: str
    payload: Mapping[str, Any]
    reason: str


def payload_hash(payload: Mapping[str, Any]) -> str:
    stable = {k: v for k, v in payload.items() if k not in VOLATILE_FIELDS}
    blob = json.dumps(stable, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def idempotency_key(destination: str, operation: str, target: str, digest: str) -> str:
    """Stable across retries, runs and restarts: the same desired state always gets the same key."""
    raw = f"{destination}\x1f{operation}\x1f{target}\x1f{digest}".encode()
    return "lr-" + hashlib.sha256(raw).hexdigest()[:40]


@dataclass(frozen=True, slots=True)
class Plan:
    ops: tuple[OutboxOp, ...]
    unchanged: int = 0        # already acknowledged as desired
    immaterial: int = 0       # changed too little to be worth a write
    already_queued: int = 0   # the same desired state is already in the outbox
    counts: Mapping[tuple[str, str], int] = field(default_factory=dict)

    def combined(self, other: Plan) -> Plan:
        """The totals of two plans (the operations themselves are left out: they are in the outbox)."""
        counts = Counter(self.counts)
        counts.update(other.counts)
        return Plan((), self.unchanged + other.unchanged, self.immaterial + other.immaterial,
                    self.already_queued + other.already_queued, dict(counts))

    def summary(self) -> dict[str, Any]:
        return {
            "operations": [{"destination": d, "operation": o, "count": n}
                           for (d, o), n in sorted(self.counts.items())],
            "unchanged": self.unchanged,
            "immaterial": self.immaterial,
            "already_queued": self.already_queued,
        }


def plan(
    desired: Sequence[DesiredWrite],
    ledger: Mapping[tuple[str, str], Mapping[str, LedgerEntry]],
    queued: Mapping[tuple[str, str], Mapping[str, str]],
    *,
    material: Mapping[str, Material] | None = None,
    create_once: Collection[str] = (),
) -> Plan:
    """The operations that move each destination from what it acknowledged to what it should hold.

    Operations in ``create_once`` create an object (a follow-up task): one per target, ever — once one is
    acknowledged or queued (in whatever state, an unknown outcome included) no other is planned for it.
    """
    ops: list[OutboxOp] = []
    unchanged = immaterial = already = 0
    counts: Counter[tuple[str, str]] = Counter()
    rules = material or {}
    for want in desired:
        digest = payload_hash(want.payload)
        slot = (want.destination, want.operation)
        acked = ledger.get(slot, {}).get(want.target)
        if acked is not None and (acked.payload_hash == digest or want.operation in create_once):
            unchanged += 1
            continue
        if want.operation in create_once and want.target in queued.get(slot, {}):
            already += 1
            continue
        rule = rules.get(want.operation)
        if acked is not None and rule is not None and not rule(acked.payload, want.payload):
            immaterial += 1
            continue
        if queued.get(slot, {}).get(want.target) == digest:
            already += 1
            continue
        ops.append(OutboxOp(
            idempotency_key=idempotency_key(want.destination, want.operation, want.target, digest),
            destination=want.destination, operation=want.operation, target=want.target,
            payload_hash=digest, payload=dict(want.payload), reason=want.reason,
        ))
        counts[slot] += 1
    return Plan(tuple(ops), unchanged, immaterial, already, dict(counts))


def score_moved(min_change: int) -> Material:
    """Materiality of a score update: the band or model changed, or the score moved by ``min_change``."""

    def rule(previous: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        if previous.get("band") != new.get("band") or previous.get("model_version") != new.get("model_version"):
            return True
        if "owner_id" in new and previous.get("owner_id") != new.get("owner_id"):
            return True
        if "account_band" in new and previous.get("account_band") != new.get("account_band"):
            return True  # the account model's band of the lead's account moved
        try:
            return abs(int(new["score"]) - int(previous["score"])) >= min_change
        except (KeyError, TypeError, ValueError):
            return True

    return rule


__all__ = ["DesiredWrite", "Plan", "idempotency_key", "payload_hash", "plan", "score_moved"]
