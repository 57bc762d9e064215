"""The LinkedIn connector: matched-audience (DMP segment) users added and removed in BATCH_CREATE requests.

Each record becomes one element ``{"action": "ADD"|"REMOVE", "userIds": [{"idType": "SHA256_EMAIL",
"idValue": "<hash>"}], …}``; records are grouped by segment and sent ``elements_per_request`` at a time.
LinkedIn answers one ``{"status": 201}`` per element, in input order: a 2xx acknowledges the record, a
4xx rejects it with LinkedIn's message, anything else (429, 5xx) leaves it retryable. An answer with a
different number of elements than sent is not trusted (the request is retried; ADD and REMOVE are
idempotent per id, so a resend is harmless). A segment LinkedIn refuses (404/403) rejects its own
records; when a request fails after others were acknowledged, those keep their outcome and the rest
become retryable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import httpx

from connectors.base import (
    Capabilities,
    Connector,
    ConnectorConfig,
    GiveUp,
    OperationSpec,
    Outcome,
    OutcomeUnknown,
    RateLimit,
    RecordOutcome,
    RetryLater,
    WriteRecord,
)
from connectors.http import Classify, HttpLayer

from ._config import MAX_ELEMENTS_PER_REQUEST, LinkedInConfig
from ._errors import NAME, Classifier, SegmentUnavailable, WallClock, json_object
from .hashing import ID_TYPES, clean_country, clean_name, hashed_email

logger = logging.getLogger(__name__)

ACTIONS = {"audience_add": "ADD", "audience_remove": "REMOVE"}
PAYLOAD_KEYS = frozenset({"audience_id", "email", "phone", "first_name", "last_name", "city", "state", "zip",
                          "country", "external_id"})
MAX_BATCH = 10 * MAX_ELEMENTS_PER_REQUEST


class LinkedInConnector(Connector):
    """LinkedIn Matched Audiences as a destination: people added to and removed from DMP segments.

    ``audience_id`` is the DMP segment id; identifiers other than e-mail (and, with ``send_names``, first
    and last name and country) are accepted and not sent: LinkedIn's user segments match on those only.
    """

    name: ClassVar[str] = NAME
    config_model: ClassVar[type[ConnectorConfig]] = LinkedInConfig
    capabilities: ClassVar[Capabilities] = Capabilities(
        operations={operation: OperationSpec(max_batch_size=MAX_BATCH, idempotent=True, per_record_results=True)
                    for operation in ACTIONS},
        rate_limit=RateLimit(600, 60.0),
    )

    config: LinkedInConfig

    def __init__(self, config: ConnectorConfig, http: HttpLayer, *, now: WallClock | None = None) -> None:
        if not isinstance(config, LinkedInConfig):
            raise TypeError(f"LinkedInConnector needs a LinkedInConfig, got {type(config).__name__}")
        super().__init__(config, http)
        self.classify = Classifier(secrets=(config.access_token.get_secret_value(),),
                                   backoff=config.throttle_backoff_seconds,
                                   max_inline_wait=config.max_inline_wait_seconds, now=now)

    @classmethod
    def client_headers(cls, config: ConnectorConfig) -> dict[str, str]:
        cfg = cast(LinkedInConfig, config)
        return {"Authorization": f"Bearer {cfg.access_token.get_secret_value()}",
                "LinkedIn-Version": cfg.linkedin_version, "X-Restli-Protocol-Version": "2.0.0",
                "Accept": "application/json"}

    @classmethod
    def rate_limit_for(cls, config: ConnectorConfig) -> RateLimit:
        return cast(LinkedInConfig, config).rate_limit()

    async def check(self) -> None:
        """List the ad account's segments: a bad token, version or permission raises FixConfiguration."""
        account = f"urn:li:sponsoredAccount:{self.config.ad_account_id}"
        await self.http.request("GET", "/dmpSegments", classify=self.classify,
                                params={"q": "account", "account": account})

    async def write_batch(self, operation: str, records: Sequence[WriteRecord]) -> list[RecordOutcome]:
        if operation not in ACTIONS:
            raise GiveUp(f"unknown operation {operation!r}; operations: {', '.join(ACTIONS)}", connector=NAME)
        if len(records) > MAX_BATCH:
            raise GiveUp(f"batch of {len(records)} exceeds {MAX_BATCH}", connector=NAME)
        settled: dict[int, RecordOutcome] = {}
        groups: dict[str, list[tuple[int, dict[str, Any]]]] = {}
        for index, record in enumerate(records):
            segment, element = self._element(ACTIONS[operation], record.payload)
            if segment is None or isinstance(element, str):
                settled[index] = RecordOutcome(record.idempotency_key, Outcome.REJECTED, str(element))
            else:
                groups.setdefault(segment, []).append((index, element))
        size = self.config.elements_per_request
        pending = [(segment, items[start:start + size]) for segment, items in groups.items()
                   for start in range(0, len(items), size)]
        for number, (segment, chunk) in enumerate(pending):
            try:
                await self._send(segment, chunk, records, settled)
            except SegmentUnavailable as exc:
                self._settle([i for i, _ in chunk], records, settled, Outcome.REJECTED, exc.message)
            except (RetryLater, GiveUp) as exc:
                if not settled:
                    raise
                outcome = Outcome.UNKNOWN if isinstance(exc, OutcomeUnknown) else Outcome.RETRYABLE
                rest = [i for _, later in pending[number:] for i, _ in later]
                self._settle(rest, records, settled, outcome, f"batch interrupted: {exc}")
                break
        return [settled.get(i) or RecordOutcome(r.idempotency_key, Outcome.UNKNOWN, "not sent")
                for i, r in enumerate(records)]

    # ------------------------------------------------------------------------------------------------

    def _element(self, action: str, payload: Mapping[str, Any]) -> tuple[str | None, dict[str, Any] | str]:
        """(segment id, element) or (None, the reason the record cannot be sent)."""
        unknown = sorted(set(payload) - PAYLOAD_KEYS)
        if unknown:
            return None, f"unknown payload key(s) {unknown}; expected audience_id and identifiers"
        segment = payload.get("audience_id")
        if isinstance(segment, bool) or not isinstance(segment, str | int) or not str(segment).strip().isdigit():
            return None, "audience_id: missing or not a numeric LinkedIn DMP segment id"
        texts = {}
        for key in ("email", "first_name", "last_name", "country"):
            value = payload.get(key)
            if value is not None and not isinstance(value, str):
                return None, f"{key}: expected text, got {type(value).__name__}"
            texts[key] = value
        element: dict[str, Any] = {"action": action}
        algorithm = self.config.email_hash
        digest = hashed_email(texts["email"], algorithm) if texts["email"] else None
        if digest is not None:
            element["userIds"] = [{"idType": ID_TYPES[algorithm], "idValue": digest}]
        if self.config.send_names:
            first = clean_name(texts["first_name"]) if texts["first_name"] else None
            last = clean_name(texts["last_name"]) if texts["last_name"] else None
            if first and last:
                element |= {"firstName": first, "lastName": last}
            country = clean_country(texts["country"]) if texts["country"] else None
            if country and "firstName" in element:
                element["country"] = country
        if "userIds" not in element and "firstName" not in element:
            needs = "an e-mail address" + (" or first and last name" if self.config.send_names else "")
            return None, f"no identifier LinkedIn can match on: needs {needs}"
        return str(segment).strip(), element

    async def _send(self, segment: str, chunk: list[tuple[int, dict[str, Any]]], records: Sequence[WriteRecord],
                    settled: dict[int, RecordOutcome]) -> None:
        response = await self.http.request(
            "POST", f"/dmpSegments/{segment}/users", classify=self._expecting(len(chunk)),
            headers={"X-RestLi-Method": "BATCH_CREATE"}, json={"elements": [element for _, element in chunk]})
        answers = (json_object(response) or {}).get("elements") or []
        logger.debug("linkedin: segment %s: %d elements sent", segment, len(chunk))
        for (index, _), answer in zip(chunk, answers, strict=True):
            status = answer.get("status") if isinstance(answer, Mapping) else None
            key = records[index].idempotency_key
            if isinstance(status, int) and 200 <= status < 300:
                settled[index] = RecordOutcome(key, Outcome.ACKNOWLEDGED, remote_id=f"{segment}")
                continue
            error = answer.get("error") if isinstance(answer, Mapping) else None
            text = error.get("message") if isinstance(error, Mapping) else None
            reason = self.classify.scrub(f"LinkedIn element status {status}: {text or 'no message'}")
            transient = not isinstance(status, int) or status == 429 or status >= 500
            settled[index] = RecordOutcome(key, Outcome.RETRYABLE if transient else Outcome.REJECTED, reason)

    def _expecting(self, sent: int) -> Classify:
        """``classify`` for one batch: an answer without one status per element sent is not a success."""

        def classify(response: httpx.Response) -> None:
            self.classify(response)
            answers = (json_object(response) or {}).get("elements")
            if not isinstance(answers, list) or len(answers) != sent:
                got = len(answers) if isinstance(answers, list) else "no"
                raise RetryLater(f"LinkedIn answered {got} element statuses for {sent} elements sent",
                                 connector=NAME, status=response.status_code)

        return classify

    @staticmethod
    def _settle(indices: Sequence[int], records: Sequence[WriteRecord], settled: dict[int, RecordOutcome],
                outcome: Outcome, reason: str) -> None:
        for index in indices:
            if index not in settled:
                settled[index] = RecordOutcome(records[index].idempotency_key, outcome, reason)


__all__ = ["ACTIONS", "LinkedInConnector"]
