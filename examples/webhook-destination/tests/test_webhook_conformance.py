"""The webhook connector through the leadrelay conformance kit, against the bundled fake receiver."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from leadrelay_webhook import WebhookConnector
from leadrelay_webhook.fake import WebhookReceiver

from connectors.base import Connector, ConnectorConfig, WriteRecord
from connectors.http import HttpLayer
from connectors.testing import DestinationConformance, KitClock

SECRET = "whsec-planted-kit-secret-8d7c6b5a"  # noqa: S105 - a planted test value, not a secret


class TestWebhookConformance(DestinationConformance):
    """Every destination check of the kit, for every operation the connector declares."""

    connector: ClassVar[type[Connector]] = WebhookConnector
    bad_credentials: ClassVar[Mapping[str, Any]] = {"signing_secret": "whsec-planted-wrong-secret-0000"}
    # 10 a request (set in config below), so a batch of 35 takes four requests: splitting is exercised.
    max_records_per_request: ClassVar[Mapping[str, int]] = dict.fromkeys(WebhookConnector.capabilities.operations, 10)
    batch_probe: ClassVar[int] = 35

    def make_fake(self, clock: KitClock) -> WebhookReceiver:
        return WebhookReceiver(secret=SECRET, clock=clock)

    def config(self, base_url: str) -> dict[str, Any]:
        return {"url": base_url, "signing_secret": SECRET, "records_per_request": 10}

    def make_connector(self, config: ConnectorConfig, http: HttpLayer, clock: KitClock) -> Connector:
        return WebhookConnector(config, http, now=clock.timestamp)  # sign with the kit's clock

    def sample_records(self, fake: WebhookReceiver, operation: str, count: int) -> list[WriteRecord]:
        start = getattr(fake, "kit_count", 0)
        fake.kit_count = start + count  # type: ignore[attr-defined]
        payloads = {
            "update_lead": lambda n: {"score": n % 99 + 1, "band": "A", "reasons": ["kit"], "model_version": "m1",
                                      "scored_at": "2026-06-01T09:00:00+00:00"},
            "assign_owner": lambda n: {"owner_id": f"owner-{n}"},
            "create_task": lambda n: {"subject": f"Call lead {n}", "body": "", "due_at": "2026-06-02T09:00:00Z",
                                      "priority": "HIGH"},
        }
        return [WriteRecord(f"lead-{n}", f"{operation}:lead-{n}:v1", payloads[operation](n))
                for n in range(start, start + count)]

    def rejected_record(self, fake: WebhookReceiver, operation: str) -> WriteRecord | None:
        bad = {"update_lead": {"score": 150}, "assign_owner": {"owner_id": ""},
               "create_task": {"subject": "x", "due_at": "2026-06-02T09:00:00Z", "priority": "URGENT"}}
        return WriteRecord("lead-bad", f"{operation}:lead-bad", bad[operation])

    def effects(self, fake: WebhookReceiver, operation: str, records: Sequence[WriteRecord]) -> dict[str, int]:
        return {r.idempotency_key: fake.applied[r.idempotency_key] for r in records}
