"""The conformance kit against the Marketo connector and its sandbox, over loopback sockets."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from connectors.base import Connector, ConnectorConfig, WriteRecord
from connectors.http import HttpLayer
from connectors.marketo import MarketoConnector
from connectors.sandbox.marketo import MarketoSandbox
from connectors.testing import ConnectorConformance, DestinationKit, KitClock, RecordedCall, SourceKit

CLIENT_ID = "kit-client"
SECRET = "planted-kit-marketo-secret-9d8c"
BAD_SECRET = "planted-kit-wrong-secret-1a2b"


class MarketoKit(SourceKit, DestinationKit):
    """Marketo: leads and activities through paging tokens; scores and static-list membership written."""

    connector: ClassVar[type[Connector]] = MarketoConnector
    bad_credentials: ClassVar[Mapping[str, Any]] = {"client_secret": BAD_SECRET}
    streams_under_test: ClassVar[Sequence[str]] = ("leads", "activities")

    def make_fake(self, clock: KitClock) -> MarketoSandbox:
        return MarketoSandbox(credentials={CLIENT_ID: SECRET}, clock=clock, activity_scan=4)

    def config(self, base_url: str) -> dict[str, Any]:
        return {"base_url": base_url, "client_id": CLIENT_ID, "client_secret": SECRET, "page_size": 5,
                "start_date": "2000-01-01T00:00:00Z"}

    def make_connector(self, config: ConnectorConfig, http: HttpLayer, clock: KitClock) -> Connector:
        return MarketoConnector(config, http, now=clock)

    def add_row(self, fake: MarketoSandbox, stream: str, index: int, modified_at: datetime) -> str:
        at_ms = int(modified_at.timestamp() * 1000)
        lead = fake.state.create_lead({"email": f"kit{index}@example.com"}, at_ms, created_ms=at_ms)
        if stream == "leads":
            return str(lead)
        return fake.state.append(lead, at_ms, 1, primary=f"page {index}",
                                 attributes=[{"name": "Webpage URL", "value": f"https://x.test/{index}"}]).guid

    def is_write(self, call: RecordedCall) -> bool:
        return call.method in ("POST", "DELETE") and "/identity/" not in call.path and b"_method=GET" not in call.body

    def sample_records(self, fake: MarketoSandbox, operation: str, count: int) -> list[WriteRecord]:
        list_id = next((str(i) for i in fake.state.lists), None) or fake.create_list("kit")
        records = []
        for _ in range(count):
            lead = fake.add_lead(email=f"sample{len(fake.state.leads)}@example.com")
            key = f"{operation}:{lead}"
            if operation == "update_lead":
                payload: dict[str, Any] = {"score": lead % 99 + 1, "band": "A", "reasons": ["kit"],
                                           "model_version": key, "scored_at": "2026-06-01T00:00:00Z"}
            else:
                if operation == "audience_remove":
                    fake.state.lists[int(list_id)][1].add(lead)
                payload = {"audience_id": list_id}
            records.append(WriteRecord(str(lead), key, payload))
        return records

    def rejected_record(self, fake: MarketoSandbox, operation: str) -> WriteRecord | None:
        list_id = next((str(i) for i in fake.state.lists), None) or fake.create_list("kit")
        # A lead that does not exist: skipped with 1004 by sync, list add and list remove alike.
        return WriteRecord("99999999", f"{operation}:missing", {"score": 5, "model_version": "x"}
                           if operation == "update_lead" else {"audience_id": list_id})

    def effects(self, fake: MarketoSandbox, operation: str, records: Sequence[WriteRecord]) -> dict[str, int]:
        found = {}
        for record in records:
            lead = fake.state.leads.get(int(record.target)) if record.target.isdigit() else None
            if operation == "update_lead":
                found[record.idempotency_key] = int(bool(lead) and lead.get("leadrelayModelVersion")
                                                    == record.idempotency_key)
                continue
            members = fake.members(str(record.payload["audience_id"]))
            member = lead is not None and int(record.target) in members
            found[record.idempotency_key] = int(member if operation == "audience_add" else lead is not None
                                                and not member)
        return found


class TestMarketoConformance(MarketoKit, ConnectorConformance):
    """Marketo as a source (leads, activities) and a destination (update_lead, audience_add/remove)."""
