"""Kit specs of the built-in connectors: HubSpot and Salesforce (source and destination), Meta, Google Ads
and LinkedIn (destinations); Marketo's lives in ``tests/connectors/test_marketo_conformance.py``.

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
from connectors.google_ads import GoogleAdsConnector
from connectors.http import HttpLayer
from connectors.hubspot import HubSpotConnector
from connectors.linkedin import LinkedInConnector
from connectors.meta import MetaConnector
from connectors.salesforce import SalesforceConnector
from connectors.sandbox import GoogleAdsSandbox, HubSpotSandbox, LinkedInSandbox, MetaSandbox, SalesforceSandbox
from connectors.sandbox._google_ads_wire import quota_error
from connectors.testing import DestinationKit, FakeResponse, KitClock, RecordedCall, SourceKit

HUBSPOT_TOKEN = "pat-na1-planted-kit-token-5c1e9a"
HUBSPOT_BAD_TOKEN = "pat-na1-planted-wrong-token-77aa01"
META_TOKEN = "EAAG-planted-kit-token-3b2c1d"
META_BAD_TOKEN = "EAAG-planted-wrong-token-0e9f8a"
META_APP_SECRET = "planted-kit-app-secret-4411"
META_ACCOUNT = "1000000000001"
SF_CLIENT_ID = "3MVG9-kit-consumer-key"
SF_SECRET = "planted-kit-sf-client-secret-6d1f"
SF_REFRESH = "5Aep861-planted-kit-refresh-token-92bc"
SF_BAD_REFRESH = "5Aep861-planted-wrong-refresh-token-03ad"
GADS_DEV_TOKEN = "planted-kit-dev-token-Qx81"
GADS_CLIENT_ID = "kit-client.apps.googleusercontent.com"
GADS_SECRET = "planted-kit-gads-secret-7b2e"
GADS_REFRESH = "1//planted-kit-gads-refresh-4c9a"
GADS_BAD_REFRESH = "1//planted-wrong-gads-refresh-5d0b"
GADS_CUSTOMER = "1234567890"
LINKEDIN_TOKEN = "AQV-planted-kit-linkedin-token-81fe"
LINKEDIN_BAD_TOKEN = "AQV-planted-wrong-linkedin-token-2a7c"
LINKEDIN_ACCOUNT = "500000001"


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class HubSpotKit(SourceKit, DestinationKit):
    """HubSpot: contacts and companies pulled through search; score updates, tasks and account scores (on
    companies) written."""

    connector: ClassVar[type[Connector]] = HubSpotConnector
    bad_credentials: ClassVar[Mapping[str, Any]] = {"token": HUBSPOT_BAD_TOKEN}
    streams_under_test: ClassVar[Sequence[str]] = ("leads", "accounts", "opportunities")
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
        elif stream == "opportunities":  # a deal on a company, associated as HubSpot does (unlabelled + primary)
            props = {"dealname": f"Kit deal {index}", "dealstage": "closedwon", "amount": str(100 * index),
                     "hs_is_closed": "true", "hs_is_closed_won": "true", "createdate": iso(modified_at),
                     "closedate": iso(modified_at), "hs_lastmodifieddate": iso(modified_at)}
            fake.put_object("deals", {"id": object_id, "properties": props})
            company = str(90_000 + index)
            fake.put_object("companies", {"id": company, "properties": {"name": f"Kit {index} Ltd"}})
            for type_id in (341, 5):
                fake.associate("deals", object_id, "companies", company, type_id)
        else:
            props = {"name": f"Kit {index} Ltd", "domain": f"kit{index}.example",
                     "hs_lastmodifieddate": iso(modified_at)}
            fake.put_object("companies", {"id": object_id, "properties": props})
        return object_id

    def is_write(self, call: RecordedCall) -> bool:
        return call.method != "GET" and not call.path.endswith("/search")

    def sample_records(self, fake: HubSpotSandbox, operation: str, count: int) -> list[WriteRecord]:
        if operation == "update_account":
            return [self._account_score(fake) for _ in range(count)]
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

    @staticmethod
    def _account_score(fake: HubSpotSandbox) -> WriteRecord:
        n = len(fake.objects["companies"]) + 1
        company = fake.create("companies", {"name": f"Sample {n} Ltd", "domain": f"sample{n}.example"})
        key = f"account:{company}:{n}"
        return WriteRecord(company, key, {"account_score": n % 99 + 1, "account_band": "B", "model_version": key})

    def rejected_record(self, fake: HubSpotSandbox, operation: str) -> WriteRecord | None:
        if operation == "update_account":  # no such company: a 207 OBJECT_NOT_FOUND for this input
            return WriteRecord("999999999", "account:missing", {"account_score": 5, "model_version": "account:missing"})
        if operation == "update_lead":  # no such contact: a 207 OBJECT_NOT_FOUND for this input
            return WriteRecord("999999999", "score:missing", {"score": 5, "model_version": "score:missing"})
        contact = fake.create("contacts", {"email": "rejected-task@example.com"})
        return WriteRecord(contact, "task:bad-priority", {"subject": "x", "due_at": iso(fake.clock()),
                                                          "priority": "URGENT"})

    def effects(self, fake: HubSpotSandbox, operation: str, records: Sequence[WriteRecord]) -> dict[str, int]:
        if operation == "update_account":
            companies = fake.objects["companies"]
            return {r.idempotency_key: int((companies.get(r.target) or {}).get("properties", {}).get(
                "leadrelay_account_model_version") == r.idempotency_key) for r in records}
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


def _ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


class SalesforceKit(SourceKit, DestinationKit):
    """Salesforce: Leads, Accounts, Tasks and opt-outs by SOQL on SystemModstamp; scores, owners, tasks and
    account scores (on Accounts) written through sObject Collections. The fake's org runs a lead assignment
    rule, so a write without ``Sforce-Auto-Assign: FALSE`` loses the owner it set (and the owner check sees it)."""

    connector: ClassVar[type[Connector]] = SalesforceConnector
    bad_credentials: ClassVar[Mapping[str, Any]] = {"refresh_token": SF_BAD_REFRESH}
    streams_under_test: ClassVar[Sequence[str]] = ("leads", "accounts", "opportunities", "activities", "consent")
    overlap_seconds: ClassVar[float] = 300.0
    paging_rows: ClassVar[int] = 450  # Salesforce's smallest page is 200 rows: three pages
    batch_probe: ClassVar[int] = 200
    # Salesforce's throttle (403 REQUEST_LIMIT_EXCEEDED) carries no Retry-After of its own; the kit's
    # answer adds one (as a proxy or the sandbox's ``retry_after`` knob does) in both forms.

    def make_fake(self, clock: KitClock) -> SalesforceSandbox:
        fake = SalesforceSandbox(client_id=SF_CLIENT_ID, client_secret=SF_SECRET, refresh_token=SF_REFRESH,
                                 clock=clock, limits=None)
        fake.assignment_rule_owner = fake.insert("User", {"Name": "Assignment Rule Queue", "IsActive": True})
        return fake

    def config(self, base_url: str) -> dict[str, Any]:
        return {"client_id": SF_CLIENT_ID, "client_secret": SF_SECRET, "refresh_token": SF_REFRESH,
                "login_url": base_url, "page_size": 200, "overlap_seconds": self.overlap_seconds}

    def make_connector(self, config: ConnectorConfig, http: HttpLayer, clock: KitClock) -> Connector:
        return SalesforceConnector(config, http, now=clock)

    def _person(self, fake: SalesforceSandbox) -> str:
        existing = getattr(fake, "kit_person", None)
        if existing is None:
            existing = fake.insert("Lead", {"LastName": "Kit", "Company": "Kit Ltd"}, modified_ms=0, created_ms=0)
            fake.kit_person = existing  # type: ignore[attr-defined]
        return str(existing)

    def add_row(self, fake: SalesforceSandbox, stream: str, index: int, modified_at: datetime) -> str:
        at = _ms(modified_at)
        if stream == "leads":
            return fake.insert("Lead", {"LastName": f"Kit{index}", "Company": "Kit Ltd",
                                        "Email": f"kit{index}@example.com"}, modified_ms=at, created_ms=at)
        if stream == "accounts":
            return fake.insert("Account", {"Name": f"Kit {index} Ltd", "Website": f"https://kit{index}.example",
                                           "NumberOfEmployees": 10 + index}, modified_ms=at, created_ms=at)
        if stream == "opportunities":
            return fake.insert("Opportunity", {"Name": f"Kit deal {index}", "StageName": "Prospecting",
                                               "CloseDate": "2026-12-31", "Amount": 100.0 * index, "IsClosed": False,
                                               "IsWon": False}, modified_ms=at, created_ms=at)
        if stream == "activities":
            return fake.insert("Task", {"WhoId": self._person(fake), "Type": "Call", "Subject": f"Call {index}"},
                               modified_ms=at, created_ms=at)
        lead = fake.insert("Lead", {"LastName": f"Kit{index}", "Company": "Kit Ltd", "HasOptedOutOfEmail": True},
                           modified_ms=at, created_ms=at)
        return f"{lead}:email:{at}"

    def is_write(self, call: RecordedCall) -> bool:
        return call.method in ("POST", "PATCH") and "/oauth2/" not in call.path

    def throttle_response(self, retry_after: str) -> FakeResponse:
        return FakeResponse.json(403, [{"message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                                        "errorCode": "REQUEST_LIMIT_EXCEEDED"}], {"Retry-After": retry_after})

    def server_error_response(self) -> FakeResponse:
        return FakeResponse.json(503, [{"message": "Server temporarily unavailable, please try again",
                                        "errorCode": "SERVER_UNAVAILABLE"}])

    def _owner(self, fake: SalesforceSandbox, n: int) -> str:
        return fake.insert("User", {"Name": f"Rep {n}", "IsActive": True, "Email": f"rep{n}@example.com"})

    def sample_records(self, fake: SalesforceSandbox, operation: str, count: int) -> list[WriteRecord]:
        records = []
        if operation == "update_account":
            for _ in range(count):
                n = len(fake.records["Account"]) + 1
                account = fake.insert("Account", {"Name": f"Sample {n} Ltd", "Website": f"https://sample{n}.example"})
                key = f"update_account:{account}:{n}"
                records.append(WriteRecord(account, key, {"account_score": n % 99 + 1, "account_band": "B",
                                                          "model_version": key}))
            return records
        for _ in range(count):
            n = len(fake.records["Lead"]) + 1
            lead = fake.insert("Lead", {"LastName": f"Sample{n}", "Company": "Kit Ltd",
                                        "Email": f"sample{n}@example.com", "OwnerId": fake.integration_user})
            key = f"{operation}:{lead}:{n}"
            payload: dict[str, Any]
            if operation == "update_lead":
                payload = {"score": n % 99 + 1, "band": "A", "reasons": ["kit"], "model_version": key,
                           "scored_at": iso(fake.clock()), "owner_id": self._owner(fake, n)}
            elif operation == "assign_owner":
                payload = {"owner_id": self._owner(fake, n)}
            else:
                payload = {"subject": f"Call {n}", "body": "kit", "due_at": iso(fake.clock()), "priority": "HIGH"}
            records.append(WriteRecord(lead, key, payload))
        return records

    def rejected_record(self, fake: SalesforceSandbox, operation: str) -> WriteRecord | None:
        if operation == "update_account":  # no such account: INVALID_CROSS_REFERENCE_KEY for this record only
            return WriteRecord("001000000000999AAA", "update_account:missing",
                               {"account_score": 5, "model_version": "x"})
        lead = fake.insert("Lead", {"LastName": "Rejected", "Company": "Kit Ltd"})
        if operation == "update_lead":  # no such lead: INVALID_CROSS_REFERENCE_KEY for this record only
            return WriteRecord("00Q000000000999AAA", "update_lead:missing", {"score": 5, "model_version": "x"})
        if operation == "assign_owner":  # no such user
            return WriteRecord(lead, "assign_owner:bad-user", {"owner_id": "005000000000999AAA"})
        return WriteRecord("00Q000000000999AAA", "create_task:missing-who", {"subject": "x"})

    def effects(self, fake: SalesforceSandbox, operation: str, records: Sequence[WriteRecord]) -> dict[str, int]:
        found = {}
        for record in records:
            row = fake.get(record.target) or {}
            if operation == "update_lead":
                owner = record.payload.get("owner_id")
                applied = row.get("Leadrelay_Model_Version__c") == record.idempotency_key and (
                    owner is None or row.get("OwnerId") == owner)
                found[record.idempotency_key] = int(applied)
            elif operation == "assign_owner":
                found[record.idempotency_key] = int(row.get("OwnerId") == record.payload.get("owner_id"))
            elif operation == "update_account":
                version = row.get("Leadrelay_Account_Model_Version__c")
                found[record.idempotency_key] = int(version == record.idempotency_key)
            else:
                found[record.idempotency_key] = sum(
                    1 for task in fake.records["Task"].values()
                    if task.get("Leadrelay_Operation_Key__c") == record.idempotency_key)
        return found


class GoogleAdsKit(DestinationKit):
    """Google Ads Customer Match: create → addOperations → run → poll, 40 identifiers a request so that
    splitting is exercised; the fake applies a job's operations when it ends (60 s of the kit's clock)."""

    connector: ClassVar[type[Connector]] = GoogleAdsConnector
    bad_credentials: ClassVar[Mapping[str, Any]] = {"refresh_token": GADS_BAD_REFRESH}
    max_records_per_request: ClassVar[Mapping[str, int]] = {"audience_add": 40, "audience_remove": 40}
    batch_probe: ClassVar[int] = 120
    # Google's throttle says how long in the body (quotaErrorDetails.retryDelay, a Duration in seconds):
    # there is no HTTP-date form to check.
    retry_after_forms: ClassVar[Sequence[str]] = ("seconds",)

    def make_fake(self, clock: KitClock) -> GoogleAdsSandbox:
        return GoogleAdsSandbox(developer_token=GADS_DEV_TOKEN, client_id=GADS_CLIENT_ID, client_secret=GADS_SECRET,
                                refresh_token=GADS_REFRESH, customer_id=GADS_CUSTOMER, clock=clock,
                                processing_seconds=60.0)

    def config(self, base_url: str) -> dict[str, Any]:
        return {"developer_token": GADS_DEV_TOKEN, "client_id": GADS_CLIENT_ID, "client_secret": GADS_SECRET,
                "refresh_token": GADS_REFRESH, "customer_id": GADS_CUSTOMER, "base_url": base_url,
                "token_url": f"{base_url}/token", "identifiers_per_request": 40, "poll_interval_seconds": 30,
                "max_poll_seconds": 300}

    def is_write(self, call: RecordedCall) -> bool:
        return call.path.endswith((":create", ":addOperations", ":run"))

    def count_records(self, call: RecordedCall, operation: str) -> int | None:
        body = call.json_body()
        if not call.path.endswith(":addOperations") or not isinstance(body, dict):
            return None
        return sum(len(op.get("create", op.get("remove", {})).get("userIdentifiers", []))
                   for op in body.get("operations", []))

    def throttle_response(self, retry_after: str) -> FakeResponse:
        error = quota_error("RESOURCE_TEMPORARILY_EXHAUSTED", "Too many requests (conformance kit).",
                            float(retry_after), "Requests per developer token")
        return FakeResponse.json(error.status, error.body("v21"), error.headers)

    def server_error_response(self) -> FakeResponse:
        return FakeResponse.json(503, {"error": {"code": 503, "message": "The service is currently unavailable.",
                                                 "status": "UNAVAILABLE"}})

    def _list(self, fake: GoogleAdsSandbox) -> str:
        return next(iter(fake.user_lists), None) or fake.create_user_list("kit")

    def sample_records(self, fake: GoogleAdsSandbox, operation: str, count: int) -> list[WriteRecord]:
        user_list = self._list(fake)
        start = getattr(fake, "kit_people", 0)
        fake.kit_people = start + count  # type: ignore[attr-defined]
        consent = {"ad_user_data": "GRANTED", "ad_personalization": "GRANTED"}
        records = []
        for n in range(start, start + count):
            email = f" Kit.Person{n}@Example.com "
            if operation == "audience_remove":
                fake.user_lists[user_list].membership.add([("hashedEmail", sha(email.strip().lower()))])
            records.append(WriteRecord(f"lead-{n}", f"{operation}:{user_list}:{n}",
                                       {"audience_id": user_list, "consent": consent, "email": email}))
        return records

    def rejected_record(self, fake: GoogleAdsSandbox, operation: str) -> WriteRecord | None:
        self._list(fake)  # a list Google does not have: INVALID_USER_LIST_ID for its records only
        return WriteRecord("lead-x", f"{operation}:no-such-list", {"audience_id": "999999999",
                                                                     "email": "nobody@example.com"})

    def effects(self, fake: GoogleAdsSandbox, operation: str, records: Sequence[WriteRecord]) -> dict[str, int]:
        found = {}
        for record in records:
            user_list = str(record.payload["audience_id"])
            if user_list not in fake.user_lists:
                found[record.idempotency_key] = 0
                continue
            member = sha(str(record.payload["email"]).strip().lower()) in fake.member_values(user_list)
            found[record.idempotency_key] = int(member if operation == "audience_add" else not member)
        return found


class LinkedInKit(DestinationKit):
    """LinkedIn DMP segment users: ADD/REMOVE elements in BATCH_CREATE requests of 25 (splitting exercised)."""

    connector: ClassVar[type[Connector]] = LinkedInConnector
    bad_credentials: ClassVar[Mapping[str, Any]] = {"access_token": LINKEDIN_BAD_TOKEN}
    max_records_per_request: ClassVar[Mapping[str, int]] = {"audience_add": 25, "audience_remove": 25}
    batch_probe: ClassVar[int] = 80
    # LinkedIn's 429 carries no Retry-After and no rate headers (apis.md §6.3): the connector keeps its own
    # back-off schedule (tests/connectors/test_linkedin_sandbox.py), so neither wait form applies.
    retry_after_forms: ClassVar[Sequence[str]] = ()

    def make_fake(self, clock: KitClock) -> LinkedInSandbox:
        return LinkedInSandbox(token=LINKEDIN_TOKEN, ad_account_id=LINKEDIN_ACCOUNT, clock=clock)

    def config(self, base_url: str) -> dict[str, Any]:
        return {"access_token": LINKEDIN_TOKEN, "ad_account_id": LINKEDIN_ACCOUNT, "base_url": f"{base_url}/rest",
                "elements_per_request": 25}

    def server_error_response(self) -> FakeResponse:
        return FakeResponse.json(503, {"status": 503, "code": "SERVICE_UNAVAILABLE",
                                       "message": "Service unavailable (conformance kit)"})

    def _segment(self, fake: LinkedInSandbox) -> str:
        return next(iter(fake.segments), None) or fake.create_segment("kit")

    def sample_records(self, fake: LinkedInSandbox, operation: str, count: int) -> list[WriteRecord]:
        segment = self._segment(fake)
        start = getattr(fake, "kit_people", 0)
        fake.kit_people = start + count  # type: ignore[attr-defined]
        records = []
        for n in range(start, start + count):
            email = f"Kit.Person{n}@Example.com"
            if operation == "audience_remove":
                fake.segments[segment].add([("SHA256_EMAIL", sha(email.lower()))])
            records.append(WriteRecord(f"lead-{n}", f"{operation}:{segment}:{n}",
                                       {"audience_id": segment, "email": email}))
        return records

    def rejected_record(self, fake: LinkedInSandbox, operation: str) -> WriteRecord | None:
        self._segment(fake)  # a segment LinkedIn does not have: 404 for its records only
        return WriteRecord("lead-x", f"{operation}:no-such-segment", {"audience_id": "999999999",
                                                                        "email": "nobody@example.com"})

    def effects(self, fake: LinkedInSandbox, operation: str, records: Sequence[WriteRecord]) -> dict[str, int]:
        found = {}
        for record in records:
            segment = str(record.payload["audience_id"])
            if segment not in fake.segments:
                found[record.idempotency_key] = 0
                continue
            member = sha(str(record.payload["email"]).lower()) in fake.member_values(segment)
            found[record.idempotency_key] = int(member if operation == "audience_add" else not member)
        return found
