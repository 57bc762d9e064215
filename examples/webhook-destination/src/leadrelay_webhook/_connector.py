"""The webhook connector: declarations, the credential check, and batches written record by record.

The protocol (what any receiver implements, see :mod:`leadrelay_webhook.fake`)::

    POST <url><path>                 Content-Type: application/json
    X-Leadrelay-Timestamp: <unix s>  X-Leadrelay-Signature: v1=<hmac-sha256 of "<timestamp>.<body>">
    Idempotency-Key: <sha256 of the operation and the records' keys>
    {"operation": "update_lead", "records": [{"id": <idempotency key>, "target": "...", "payload": {...}}]}

    200 {"results": [{"id": "...", "status": "ok" | "rejected" | "retry", "message"?: "...", "remote_id"?: "..."}]}

A receiver must treat each record's ``id`` as an idempotency key (applying a record twice is a no-op),
which is why every operation is declared idempotent: resending after a lost answer is safe.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar, cast

import httpx

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorConfig,
    FixConfiguration,
    GiveUp,
    OperationSpec,
    Outcome,
    OutcomeUnknown,
    RateLimit,
    RecordOutcome,
    RetryLater,
    WriteRecord,
)
from connectors.http import HttpLayer, parse_retry_after

from ._config import WebhookConfig
from .signing import SigningAuth

NAME = "webhook"
OPERATIONS = ("update_lead", "assign_owner", "create_task")
MAX_BATCH = 500  # records per write_batch; split into requests of records_per_request
_STATUS = {"ok": Outcome.ACKNOWLEDGED, "rejected": Outcome.REJECTED, "retry": Outcome.RETRYABLE}


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return moment.isoformat()
    raise TypeError(f"{type(value).__name__} value cannot be sent as JSON")


class WebhookConnector(Connector):
    """Posts batches of operations to a receiver, signed, and reads one result per record."""

    name: ClassVar[str] = NAME
    config_model: ClassVar[type[ConnectorConfig]] = WebhookConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations={op: OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True)
                    for op in OPERATIONS},
        rate_limit=RateLimit(10, 1.0),  # a polite default for someone else's endpoint
    )

    config: WebhookConfig

    def __init__(self, config: ConnectorConfig, http: HttpLayer, *, now: Callable[[], float] = time.time) -> None:
        if not isinstance(config, WebhookConfig):
            raise TypeError(f"WebhookConnector needs a WebhookConfig, got {type(config).__name__}")
        super().__init__(config, http)
        self._secret = config.signing_secret.get_secret_value()
        self._now = now
        self._auth = SigningAuth(self._secret, now)

    @classmethod
    def client_base_url(cls, config: ConnectorConfig) -> str:
        return cast(WebhookConfig, config).url

    # ------------------------------------------------------------------------------------------------
    # Classifying answers: what the caller does next

    def _scrub(self, text: str) -> str:
        return text.replace(self._secret, "***")

    def classify(self, response: httpx.Response) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        message = self._scrub(f"receiver answered HTTP {status}: {_message(response)}")
        when = datetime.fromtimestamp(self._now(), UTC)
        wait = parse_retry_after(response.headers.get("Retry-After"), now=when)
        if status in (401, 403):
            raise FixConfiguration(f"{message} — check signing_secret, and that both clocks are right "
                                   "(stale timestamps are refused)", connector=NAME, status=status)
        if status == 429:
            raise RetryLater(message, connector=NAME, status=status, retry_after=wait, rate_limited=True)
        if status in (408, 425) or status >= 500:
            raise RetryLater(message, connector=NAME, status=status, retry_after=wait)
        if status == 413:
            raise GiveUp(f"{message} — lower records_per_request", connector=NAME, status=status)
        raise GiveUp(message, connector=NAME, status=status)

    async def _post(self, body: Mapping[str, Any], key: str) -> httpx.Response:
        content = json.dumps(body, separators=(",", ":"), default=_jsonable).encode()
        return await self.http.request(
            "POST", self.config.path, classify=self.classify, content=content, auth=self._auth,
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
        )

    # ------------------------------------------------------------------------------------------------
    # The contract

    async def check(self) -> None:
        """A signed ``ping`` with no records: a wrong secret comes back 401, i.e. FixConfiguration."""
        await self._post({"operation": "ping", "records": []}, "ping")

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation not in OPERATIONS:
            raise GiveUp(f"unknown operation {operation!r}; operations: {', '.join(OPERATIONS)}", connector=NAME)
        if not records:
            return []
        settled: dict[int, RecordOutcome] = {}
        wire: list[tuple[int, dict[str, Any]]] = []
        for index, record in enumerate(records):
            item = {"id": record.idempotency_key, "target": record.target, "payload": dict(record.payload)}
            try:
                json.dumps(item, default=_jsonable)
            except TypeError as exc:  # refused here, before anything is sent
                settled[index] = RecordOutcome(record.idempotency_key, Outcome.REJECTED, f"payload: {exc}")
                continue
            wire.append((index, item))
        size = self.config.records_per_request
        for start in range(0, len(wire), size):
            chunk = wire[start:start + size]
            try:
                await self._send(operation, chunk, records, settled)
            except RetryLater as exc:
                if not settled:
                    raise  # nothing landed: the framework retries the whole batch
                # Earlier requests landed: keep their outcomes, give the rest back.
                outcome = Outcome.UNKNOWN if isinstance(exc, OutcomeUnknown) else Outcome.RETRYABLE
                for index, item in wire[start:]:
                    settled[index] = RecordOutcome(item["id"], outcome, f"batch interrupted: {exc}")
                break
        return [settled[i] for i in range(len(records))]

    async def _send(self, operation: str, chunk: list[tuple[int, dict[str, Any]]],
                    records: Sequence[WriteRecord], settled: dict[int, RecordOutcome]) -> None:
        ids = [item["id"] for _, item in chunk]
        key = hashlib.sha256("\n".join([operation, *ids]).encode()).hexdigest()
        response = await self._post({"operation": operation, "records": [item for _, item in chunk]}, key)
        answers = _results(response)
        for index, item in chunk:
            answer = answers.get(item["id"])
            if answer is None:
                settled[index] = RecordOutcome(item["id"], Outcome.UNKNOWN, "the receiver did not answer for it")
                continue
            outcome = _STATUS.get(str(answer.get("status")), Outcome.UNKNOWN)
            reason = None if outcome is Outcome.ACKNOWLEDGED else self._scrub(str(answer.get("message") or
                                                                                 answer.get("status")))
            remote = answer.get("remote_id")
            settled[index] = RecordOutcome(records[index].idempotency_key, outcome, reason,
                                           str(remote) if remote is not None else None)


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.reason_phrase or "no message"
    if isinstance(body, dict):
        for key in ("error", "message"):
            if isinstance(body.get(key), str):
                return str(body[key])
    return response.reason_phrase or "no message"


def _results(response: httpx.Response) -> dict[str, Mapping[str, Any]]:
    """The answer's results by record id (the receiver may answer in any order)."""
    try:
        body = response.json()
    except ValueError:
        raise RetryLater("the receiver's answer is not JSON", connector=NAME, status=response.status_code) from None
    rows = body.get("results") if isinstance(body, dict) else None
    return {str(row["id"]): row for row in rows or () if isinstance(row, dict) and "id" in row}


__all__ = ["OPERATIONS", "WebhookConnector"]
