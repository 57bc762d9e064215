"""Kit specs of the built-in connectors: HubSpot (source and destination) and Meta (destination).

Each spec tells the conformance kit how to make the connector's sandbox fake, a valid config and the
records its checks write; ``tests/connectors/test_conformance_builtin.py`` turns them into test classes,
and the broken-connector tests reuse them with a faulty connector class swapped in.
"""

from __future__ import annotations

import hashlib
import json
import urllib.parse
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from connectors.base import Connector, ConnectorConfig, WriteRecord
from connectors.http import HttpLayer
from connectors.hubspot import HubSpotConnector
from connectors.meta import MetaConnector
from connectors.sandbox import HubSpotSandbox, MetaSandbox
from connectors.testing import DestinationKit, KitClock, RecordedCall, SourceKit

HUBSPOT_TOKEN = "pat-na1-planted-kit-token-5c1e9a"
HUBSPOT_BAD_TOKEN = "pat-na1-planted-wrong-token-77aa01"
META_TOKEN = "EAAG-planted-kit-token-3b2c1d"
META_BAD_TOKEN = "EAAG-planted-wrong-token-0e9f8a"
META_APP_SECRET = "planted-kit-app-secret-4411"
META_ACCOUNT = "1000000000001"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class HubSpotKit(SourceKit, DestinationKit):
    """HubSpot: contacts and companies pulled through search; score updates and tasks written."""

    connector: ClassVar[type[Connector]] = HubSpotConnector
    bad_credentials: ClassVar[Mapping[str, Any]] = {"token": HUBSPOT_BAD_TOKEN}
    streams_under_test: ClassVar[Sequence[str]] = ("leads", "accounts")
    overlap_seconds: ClassVar[float] = 300.0

    def make_fake(self, clock: KitClock) -> HubSpotSandbox:
        return HubSpotSandbox(token=HUBSPOT_TOKEN, clock=clock, limits=None)

    def config(self, base_url: str) -> dict[str, Any]:
        return {"token": HUBSPOT_TOKEN, "base_url": base_url, "page_size": 5, "overlap_seconds": self.overlap_seconds}

    def make_connector(self, config: ConnectorConfig, http: HttpLayer, clock: KitClock) -> Connector:
        return HubSpotConnector(config, http, now=clock)

    def add_row(self, fake: HubSpotSandbox, stream: str, index: int, modified_at: datetime) -> str:
        object_id = str(500 + index)
        if stream == "leads":
            props = {"email": f"kit{index}@example.com", "firstname": f"Kit{index}",
                     "lastmodifieddate": iso(modified_at)}
            fake.put_object("contacts", {"id": object_id, "properties": props})
        else:
            props = {"name": f"Kit {index} Ltd", "domain": f"kit{index}.example",
                     "hs_lastmodifieddate": iso(modified_at)}
            fake.put_object("companies", {"id": object_id, "properties": props})
        return object_id

    def is_write(self, call: RecordedCall) -> bool:
        return call.method != "GET" and not call.path.endswith("/search")

    def sample_records(self, fake: HubSpotSandbox, operation: str, count: int) -> list[WriteRecord]:
        records = []
        for _ in range(count):
            n = len(fake.objects["contacts"]) + 1
            contact = fake.create("contacts", {"email": f"sample{n}@example.com"})
            if operation == "update_lead":
                key = f"score:{contact}:{n}"
                payload: dict[str, Any] = {"score": n % 99 + 1, "band": "A", "reasons": ["kit"],
                                           "model_version": key, "scored_at": iso(fake.clock())}
            else:
                key = f"task:{contact}:{n}"
                payload = {"subject": f"Call {n}", "body": "kit", "due_at": iso(fake.clock()), "priority": "HIGH"}
            records.append(WriteRecord(contact, key, payload))
        return records

    def rejected_record(self, fake: HubSpotSandbox, operation: str) -> WriteRecord | None:
        if operation == "update_lead":  # no such contact: a 207 OBJECT_NOT_FOUND for this input
            return WriteRecord("999999999", "score:missing", {"score": 5, "model_version": "score:missing"})
        contact = fake.create("contacts", {"email": "rejected-task@example.com"})
        return WriteRecord(contact, "task:bad-priority", {"subject": "x", "due_at": iso(fake.clock()),
                                                          "priority": "URGENT"})

    def effects(self, fake: HubSpotSandbox, operation: str, records: Sequence[WriteRecord]) -> dict[str, int]:
        if operation == "update_lead":
            found = {}
            for record in records:
                obj = fake.objects["contacts"].get(record.target)
                props = obj["properties"] if obj else {}
                found[record.idempotency_key] = int(props.get("leadrelay_model_version") == record.idempotency_key)
            return found
        keys = [t["properties"].get("leadrelay_operation_key") for t in fake.objects["tasks"].values()]
        return {record.idempotency_key: keys.count(record.idempotency_key) for record in records}


class MetaKit(DestinationKit):
    """Meta Custom Audiences: hashed adds and removes, 25 rows a request so that splitting is exercised."""

    connector: ClassVar[type[Connector]] = MetaConnector
    bad_credentials: ClassVar[Mapping[str, Any]] = {"access_token": META_BAD_TOKEN}
    max_records_per_request: ClassVar[Mapping[str, int]] = {"audience_add": 25, "audience_remove": 25}
    batch_probe: ClassVar[int] = 80

    def make_fake(self, clock: KitClock) -> MetaSandbox:
        return MetaSandbox(token=META_TOKEN, app_secret=META_APP_SECRET, ad_account_id=META_ACCOUNT, clock=clock)

    def config(self, base_url: str) -> dict[str, Any]:
        return {"access_token": META_TOKEN, "app_secret": META_APP_SECRET, "ad_account_id": META_ACCOUNT,
                "base_url": f"{base_url}/v25.0", "rows_per_request": 25}

    def count_records(self, call: RecordedCall, operation: str) -> int | None:
        form = urllib.parse.parse_qs(call.body.decode())
        if "payload" not in form:
            return None
        return len(json.loads(form["payload"][0])["data"])

    def sample_records(self, fake: MetaSandbox, operation: str, count: int) -> list[WriteRecord]:
        audience = next(iter(fake.audiences), None) or fake.create_audience("kit")
        start = getattr(fake, "kit_people", 0)
        fake.kit_people = start + count  # type: ignore[attr-defined]
        records = []
        for n in range(start, start + count):
            email = f"Kit.Person{n}@Example.com"
            if operation == "audience_remove":
                fake.audiences[audience].membership.add({"EMAIL": sha(email.lower())})
            records.append(WriteRecord(f"lead-{n}", f"{operation}:{audience}:{n}",
                                       {"audience_id": audience, "email": email, "country": "US"}))
        return records

    def rejected_record(self, fake: MetaSandbox, operation: str) -> WriteRecord | None:
        audience = next(iter(fake.audiences), None) or fake.create_audience("kit")
        return WriteRecord("lead-x", f"{operation}:no-identifier", {"audience_id": audience, "city": "Paris"})

    def effects(self, fake: MetaSandbox, operation: str, records: Sequence[WriteRecord]) -> dict[str, int]:
        found = {}
        for record in records:
            audience = str(record.payload["audience_id"])
            email = record.payload.get("email")
            member = email is not None and sha(str(email).lower()) in fake.member_values(audience)
            applied = member if operation == "audience_add" else (email is not None and not member)
            found[record.idempotency_key] = int(applied)
        return found
