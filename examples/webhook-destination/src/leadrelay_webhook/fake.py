"""A webhook receiver that follows the protocol, as an ASGI app: for tests, the kit and demos.

It checks what a careful receiver checks — the signature, the timestamp's age, the Idempotency-Key
header, at most ``max_records`` per request — validates each record by its operation, and applies each
record id once (a resent record is answered ``ok`` again and not applied twice). ``applied`` counts how
many times each record took effect: what tests assert on.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

PRIORITIES = ("LOW", "MEDIUM", "HIGH")


def _problem(operation: str, record: Mapping[str, Any]) -> str | None:
    """Why a record is refused, or ``None``."""
    payload = record.get("payload")
    if not record.get("target"):
        return "target: missing"
    if not isinstance(payload, dict):
        return "payload: not an object"
    if operation == "update_lead":
        score = payload.get("score")
        if score is not None and (not isinstance(score, int) or not 1 <= score <= 99):
            return f"score: {score!r} is not an integer from 1 to 99"
    elif operation == "assign_owner":
        if not payload.get("owner_id"):
            return "owner_id: missing"
    elif operation == "create_task":
        if not payload.get("subject") or not payload.get("due_at"):
            return "subject and due_at are required"
        if payload.get("priority", "MEDIUM") not in PRIORITIES:
            return f"priority: {payload.get('priority')!r} is not one of {', '.join(PRIORITIES)}"
    else:
        return f"operation {operation!r} is not supported by this receiver"
    return None


class WebhookReceiver:
    """The receiver's state, served by :attr:`app`. ``clock`` gives UTC now (inject it in tests)."""

    def __init__(
        self,
        *,
        secret: str,
        clock: Callable[[], datetime] | None = None,
        path: str = "/leadrelay/batch",
        max_records: int = 100,
        tolerance_seconds: float = 300.0,
    ) -> None:
        self._secret = secret
        self.clock = clock or (lambda: datetime.now(UTC))
        self.max_records = max_records
        self.tolerance_seconds = tolerance_seconds
        self.records: dict[str, dict[str, Any]] = {}   # record id -> the record as first applied
        self.applied: Counter[str] = Counter()          # record id -> times it took effect
        self.requests = 0
        self.app = Starlette(routes=[Route(path, self._batch, methods=["POST"])])

    def __repr__(self) -> str:
        return f"WebhookReceiver(records={len(self.records)}, secret=***)"

    async def _batch(self, request: Request) -> JSONResponse:
        self.requests += 1
        body = await request.body()
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not verify(self._secret, timestamp, body, signature):
            return JSONResponse({"error": "invalid signature"}, status_code=401)
        if abs(self.clock().timestamp() - int(timestamp)) > self.tolerance_seconds:
            return JSONResponse({"error": "timestamp outside the tolerance"}, status_code=401)
        if not request.headers.get("idempotency-key"):
            return JSONResponse({"error": "Idempotency-Key header missing"}, status_code=400)
        try:
            data = json.loads(body)
            operation, records = str(data["operation"]), list(data["records"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "body must be {operation, records}"}, status_code=400)
        if len(records) > self.max_records:
            return JSONResponse({"error": f"at most {self.max_records} records per request"}, status_code=413)
        results = [self._apply(operation, record) for record in records if isinstance(record, dict)]
        return JSONResponse({"results": results})

    def _apply(self, operation: str, record: dict[str, Any]) -> dict[str, Any]:
        record_id = str(record.get("id") or "")
        problem = "id: missing" if not record_id else _problem(operation, record)
        if problem is not None:
            return {"id": record_id, "status": "rejected", "message": problem}
        if record_id not in self.records:  # the id is the idempotency key: apply once
            self.records[record_id] = {"operation": operation, **record}
            self.applied[record_id] += 1
        return {"id": record_id, "status": "ok", "remote_id": f"wh-{list(self.records).index(record_id) + 1}"}


__all__ = ["WebhookReceiver"]
