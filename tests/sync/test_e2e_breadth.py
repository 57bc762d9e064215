"""The other built-in connectors end to end, over real loopback sockets: Salesforce as source and
destination (scores, owners by routing, follow-up tasks), Marketo (activities into scores, static-list
membership through an audience) and audiences reaching the Google Ads and LinkedIn fakes. Each world runs
the very cycle the CLI runs, with a real model, a SQLite store and one injected clock."""

from __future__ import annotations

import contextlib
import hashlib
import re
import time as wall
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from connectors.sandbox import (
    GoogleAdsSandbox,
    HubSpotSandbox,
    LinkedInSandbox,
    MarketoSandbox,
    SalesforceSandbox,
    generate_dataset,
    serve_on_loopback,
)
from connectors.sandbox.marketo import SANDBOX_ACTIVITY_TYPES
from connectors.testing import FaultyApp, RecordedCall
from sync import config
from sync.decision_store import MembershipRow
from sync.pipeline import CycleReport, load_model, run_cycle
from sync.store import OPEN_STATUSES, Store
from sync.subjects import build_subjects
from tests.sync.rig import T0, TOKEN, FakeTime, outbox_rows

pytestmark = pytest.mark.anyio

SF_CLIENT_ID = "3MVG9-e2e-consumer-key"
SF_SECRET = "planted-e2e-sf-secret-41c2"
SF_REFRESH = "5Aep861-planted-e2e-refresh-9f3d"
MKTO_CLIENT_ID = "e2e-marketo-client"
MKTO_SECRET = "planted-e2e-marketo-secret-0b7e"
GADS_DEV_TOKEN = "planted-e2e-dev-token-55aa"
GADS_CLIENT_ID = "e2e.apps.googleusercontent.com"
GADS_SECRET = "planted-e2e-gads-secret-c3d4"
GADS_REFRESH = "1//planted-e2e-gads-refresh-e5f6"
GADS_CUSTOMER = "1234567890"
LINKEDIN_TOKEN = "AQV-planted-e2e-linkedin-token-a1b2"
LINKEDIN_ACCOUNT = "500000001"
TASK_KEY = "Leadrelay_Operation_Key__c"
COMPOSITE = "/composite/sobjects"
CYCLE_TIMES: dict[str, list[float]] = {}  # cycle wall times by world, printed (with -s) when a world closes


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def expected_email_hash(email: str) -> str:
    """Google and LinkedIn: trim, lowercase, SHA-256 hex (apis.md §5.3, §6.2)."""
    return sha(email.strip().lower())


def expected_phone_hash(phone: str) -> str:
    """Google: E.164 with the leading ``+`` (apis.md §5.3); the test phones are written internationally."""
    return sha("+" + re.sub(r"\D", "", phone))


@dataclass
class World:
    """One pipeline, its sandboxes (recorded by the kit's middleware) and its store."""

    name: str
    time: FakeTime
    settings: config.Settings
    store: Store
    model: Any
    apps: dict[str, FaultyApp] = field(default_factory=dict)

    async def cycle(self) -> CycleReport:
        started = wall.perf_counter()
        report = await run_cycle(self.settings, "main", self.store, clock=self.time.now,
                                 timing=self.time.timing(), model=self.model)
        CYCLE_TIMES.setdefault(self.name, []).append(wall.perf_counter() - started)
        return report

    def open_operations(self) -> int:
        with self.store.unit(dry_run=True) as unit:
            counts = unit.outbox_counts()
        return sum(counts.get(status, 0) for status in OPEN_STATUSES)

    def active_members(self, audience: str) -> set[str]:
        t = MembershipRow.__table__
        with self.store.unit(dry_run=True) as unit:
            return set(unit.conn.execute(sa.select(t.c.person).where(
                t.c.audience == audience, t.c.exited_at.is_(None))).scalars())

    def calls(self, vendor: str) -> list[RecordedCall]:
        return list(self.apps[vendor].calls)


def serve(servers: contextlib.ExitStack, apps: dict[str, FaultyApp], time: FakeTime, vendor: str, app: Any) -> str:
    """Serve ``app`` behind the kit's recording (and fault) middleware on a loopback port."""
    apps[vendor] = FaultyApp(app, time.now)
    return servers.enter_context(serve_on_loopback(apps[vendor], log_level="critical"))


@contextlib.contextmanager
def make_world(name: str, work: Path, model_dir: Path, time: FakeTime, apps: dict[str, FaultyApp],
               connections: dict[str, Any], **rest: Any) -> Iterator[World]:
    settings = config.parse({"store": {"url": f"sqlite:///{work / f'{name}.db'}"},
                             "scoring": {"model_dir": str(model_dir)}, "connections": connections, **rest}, env={})
    store = Store(settings.store.url)
    store.create_all()
    try:
        yield World(name, time, settings, store, load_model(settings), apps)
    finally:
        store.close()
        times = CYCLE_TIMES.pop(name, [])
        print(f"\n[{name}] {len(times)} cycle(s): {', '.join(f'{t:.2f} s' for t in times)}")


# --------------------------------------------------------------------------------------------------
# Salesforce -> score -> Salesforce owners and tasks


@dataclass
class SalesforceWorld:
    world: World
    sf: SalesforceSandbox
    reps: list[str]
    rule_owner: str

    def tasks_by_key(self) -> Counter[str]:
        return Counter(str(t.get(TASK_KEY)) for t in self.sf.records["Task"].values() if t.get(TASK_KEY))


@pytest.fixture
def salesforce(tmp_path: Path, model_dir: Path) -> Iterator[SalesforceWorld]:
    time = FakeTime()
    sf = SalesforceSandbox(client_id=SF_CLIENT_ID, client_secret=SF_SECRET, refresh_token=SF_REFRESH,
                           clock=time.now, limits=None)
    loaded = sf.load(generate_dataset(seed=5, contacts=250, now=T0))
    # The org's lead assignment rule hands every lead it touches to a queue user: an owner written without
    # Sforce-Auto-Assign: FALSE would be overruled.
    rule_owner = sf.insert("User", {"Name": "Assignment Rule Queue", "IsActive": True})
    sf.assignment_rule_owner = rule_owner
    reps = sorted(loaded.users.values())[:3]
    apps: dict[str, FaultyApp] = {}
    with contextlib.ExitStack() as servers:
        url = serve(servers, apps, time, "salesforce", sf.app)
        world = servers.enter_context(make_world("salesforce", tmp_path, model_dir, time, apps, {
            "salesforce": {"type": "salesforce", "client_id": SF_CLIENT_ID, "client_secret": SF_SECRET,
                           "refresh_token": SF_REFRESH, "login_url": url, "rate_limit_requests": 100_000,
                           "lead_fields": {"account_key": "Account__c"}},
        }, routing={"sdr": {"reps": [{"id": r, "daily_capacity": 5} for r in reps],
                            "territories": [{"name": "all", "reps": reps}], "min_score": 20,
                            "take_owned_leads": True, "sla_hours": 24}},
            pipelines={"main": {"source": "salesforce", "destination": "salesforce", "routing": "sdr"}}))
        yield SalesforceWorld(world, sf, reps, rule_owner)


def task_rows(world: World) -> dict[str, dict[str, Any]]:
    return {r["idempotency_key"]: r for r in outbox_rows(world.store) if r["operation"] == "create_task"}


async def test_salesforce_routing_sets_owners_without_auto_assign_and_keys_each_task(
        salesforce: SalesforceWorld) -> None:
    """Routed Salesforce leads get the rep as OwnerId (every PATCH sent Sforce-Auto-Assign: FALSE, so the
    org's assignment rule did not overrule it) and one follow-up Task carrying the operation key."""
    report = await salesforce.world.cycle()
    assert report.status == "succeeded", report.errors
    assigned = report.decisions["routing"]["actions"].get("assign", 0)
    assert 0 < assigned <= 15
    patches = [c for c in salesforce.world.calls("salesforce") if c.method == "PATCH" and c.path.endswith(COMPOSITE)]
    assert patches
    assert {c.headers.get("sforce-auto-assign") for c in patches} == {"FALSE"}
    assert salesforce.sf.stats.auto_assign.count("FALSE") == len(patches)  # as the fake itself saw them
    tasks = task_rows(salesforce.world)
    assert len(tasks) == assigned
    by_key = {str(t[TASK_KEY]): t for t in salesforce.sf.records["Task"].values() if t.get(TASK_KEY)}
    owned = 0
    for key, row in tasks.items():
        assert row["status"] == "acknowledged", row
        task = by_key[key]
        lead = salesforce.sf.get(row["target"].split("#", 1)[0])
        assert lead is not None
        assert task["Id"] == row["remote_id"]
        assert task["WhoId"] == lead["Id"]
        assert task["OwnerId"] in salesforce.reps
        assert not lead.get("IsConverted")  # read-only leads are never routed (Salesforce refuses their writes)
        assert lead["OwnerId"] == task["OwnerId"]
        assert lead["OwnerId"] != salesforce.rule_owner
        owned += 1
    assert owned == len(tasks)
    scored = [lead for lead in salesforce.sf.records["Lead"].values() if lead.get("Leadrelay_Score__c") is not None]
    assert len(scored) > 200  # scores went back too, on the same PATCH as the owners
    assert not [lead for lead in scored if lead.get("IsConverted")]
    # Nothing rejected: no dead letter (converted leads used to be CANNOT_UPDATE_CONVERTED_LEAD every cycle).
    assert {r["status"] for r in outbox_rows(salesforce.world.store)} <= {"acknowledged", "superseded"}


async def test_salesforce_rerun_creates_no_duplicate_task(salesforce: SalesforceWorld) -> None:
    """A second cycle at the same state plans nothing and leaves exactly one Task per operation key."""
    await salesforce.world.cycle()
    before = salesforce.tasks_by_key()
    again = await salesforce.world.cycle()
    assert again.status == "succeeded", again.errors
    assert again.plan["operations"] == []
    assert salesforce.tasks_by_key() == before
    assert set(before.values()) == {1}


async def test_salesforce_lost_task_answer_then_retry_does_not_duplicate(salesforce: SalesforceWorld) -> None:
    """The Task create whose answer is lost (applied, then the connection drops) is found by its key on
    the retry: every routed lead has one Task, each key once, and the ledger knows each Task's id."""
    faulty = salesforce.world.apps["salesforce"]
    faulty.plan.drop_after(match=lambda c: c.method == "POST" and c.path.endswith(COMPOSITE))
    first = await salesforce.world.cycle()
    dropped = [c for c in faulty.calls if c.fault == "drop_after"]
    assert len(dropped) == 1
    for _ in range(5):
        if salesforce.world.open_operations() == 0:
            break
        salesforce.world.time.elapsed += 120
        await salesforce.world.cycle()
    assert salesforce.world.open_operations() == 0
    counts = salesforce.tasks_by_key()
    tasks = task_rows(salesforce.world)
    assert len(tasks) == first.decisions["routing"]["actions"]["assign"]
    assert {k: counts[k] for k in tasks} == dict.fromkeys(tasks, 1)
    assert sum(counts.values()) == len(tasks)
    by_key = {str(t[TASK_KEY]): t["Id"] for t in salesforce.sf.records["Task"].values() if t.get(TASK_KEY)}
    assert {k: r["remote_id"] for k, r in tasks.items()} == {k: by_key[k] for k in tasks}
    assert {r["status"] for r in tasks.values()} == {"acknowledged"}


# --------------------------------------------------------------------------------------------------
# Marketo: activities into scores, scores back, static-list membership through an audience


@dataclass
class MarketoWorld:
    world: World
    mkto: MarketoSandbox
    list_id: str


@pytest.fixture
def marketo(tmp_path: Path, model_dir: Path) -> Iterator[MarketoWorld]:
    time = FakeTime()
    mkto = MarketoSandbox(credentials={MKTO_CLIENT_ID: MKTO_SECRET}, clock=time.now)
    mkto.load(generate_dataset(seed=21, contacts=250, now=T0))
    list_id = mkto.create_list("Hot leads")
    apps: dict[str, FaultyApp] = {}
    with contextlib.ExitStack() as servers:
        url = serve(servers, apps, time, "marketo", mkto.app)
        world = servers.enter_context(make_world("marketo", tmp_path, model_dir, time, apps, {
            "marketo": {"type": "marketo", "base_url": url, "client_id": MKTO_CLIENT_ID,
                        "client_secret": MKTO_SECRET, "start_date": "2020-01-01T00:00:00Z",
                        "activity_types": {str(k): v for k, v in SANDBOX_ACTIVITY_TYPES.items()},
                        "conversion_date_field": "opportunityDate", "rate_limit_calls": 100_000},
        }, consent={"email": {"unknown_means": "granted"}},  # opt-out regime: unsubscribing removes
            # Every scored lead qualifies on score: membership follows e-mail consent.
            audiences={"nurture": {"destination": "marketo", "audience_id": list_id, "channel": "email",
                                  "entry_threshold": 1, "exit_threshold": 0.5}},
            pipelines={"main": {"source": "marketo", "destination": "marketo", "audiences": ["nurture"],
                                "streams": ["leads", "activities", "consent"]}}))
        yield MarketoWorld(world, mkto, list_id)


async def test_marketo_activities_feed_scores_written_back_and_list_membership(marketo: MarketoWorld) -> None:
    """Marketo leads and activities are scored (firmographics from the lead itself), the scores land on the
    Marketo leads, and the static list holds exactly the audience's active members."""
    report = await marketo.world.cycle()
    assert report.status == "succeeded", report.errors
    with marketo.world.store.unit(dry_run=True) as unit:
        scores = unit.scores("marketo")
        activities = unit.count("activity")
    assert activities > 0
    assert len(scores) > 200
    written = {str(k): lead.get("leadrelayScore") for k, lead in marketo.mkto.state.leads.items()}
    assert all(written[key] == pytest.approx(row["score"]) for key, row in scores.items())
    # Firmographics reached the model from the lead record (Marketo has no accounts).
    with marketo.world.store.unit(dry_run=True) as unit:
        leads = unit.load_leads("marketo", unit.lead_keys("marketo"))
    subjects = build_subjects(leads, {}, {})
    assert sum(1 for s in subjects if s.attributes["employees"] is not None) > len(subjects) // 2
    assert sum(1 for s in subjects if s.attributes["industry"] is not None) > len(subjects) // 2
    members = marketo.world.active_members("nurture")
    assert members
    assert {str(m) for m in marketo.mkto.members(marketo.list_id)} == members
    assert report.decisions["audiences"]["nurture"]["adds"] == len(members)


async def test_marketo_unsubscribe_removes_the_lead_from_the_static_list(marketo: MarketoWorld) -> None:
    """A member who unsubscribes in Marketo leaves the static list on the next cycle (audience_remove)."""
    await marketo.world.cycle()
    members = marketo.world.active_members("nurture")
    person = min(members, key=int)
    marketo.world.time.elapsed += 3600
    marketo.mkto.update_lead(int(person), unsubscribed=True)
    report = await marketo.world.cycle()
    assert report.status == "succeeded", report.errors
    assert report.decisions["audiences"]["nurture"]["removed_for_consent"] == 1
    assert int(person) not in marketo.mkto.members(marketo.list_id)
    assert {str(m) for m in marketo.mkto.members(marketo.list_id)} == members - {person}
    removes = [c for c in marketo.world.calls("marketo") if c.method == "DELETE" or b"_method=DELETE" in c.body]
    assert removes


async def test_marketo_opt_out_older_than_the_backfill_never_enters_the_list(marketo: MarketoWorld) -> None:
    """Leads unsubscribed or marked invalid before the backfill window (no change activity pulled) carry the
    denial on their lead record: with e-mail unknown_means = granted they still never join the static list."""
    emailable = sorted(k for k, lead in marketo.mkto.state.leads.items() if "@" in str(lead.get("email")))
    out, invalid = emailable[0], emailable[1]
    # Set on the record without logging a change: as an opt-out dated before the pulled window looks.
    marketo.mkto.state.leads[out]["unsubscribed"] = True
    marketo.mkto.state.leads[invalid]["emailInvalid"] = True
    report = await marketo.world.cycle()
    assert report.status == "succeeded", report.errors
    members = marketo.world.active_members("nurture")
    assert len(members) > 100
    assert {str(out), str(invalid)}.isdisjoint(members)
    assert {out, invalid}.isdisjoint(marketo.mkto.members(marketo.list_id))


# --------------------------------------------------------------------------------------------------
# Audiences reaching Google Ads Customer Match and LinkedIn


@dataclass
class AdsWorld:
    world: World
    hubspot: HubSpotSandbox
    google: GoogleAdsSandbox
    linkedin: LinkedInSandbox
    user_list: str
    segment: str
    phones: dict[str, str]

    def contact(self, key: str) -> dict[str, Any]:
        return dict(self.hubspot.objects["contacts"][key]["properties"])

    def granted(self) -> set[str]:
        return {key for key, c in self.hubspot.objects["contacts"].items()
                if c["properties"].get("leadrelay_ads_consent") == "granted" and c["properties"].get("email")}

    def jobs(self) -> list[Any]:
        return [self.google.job(job_id) for job_id in sorted(self.google.jobs, key=int)]

    def linkedin_elements(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for call in self.world.calls("linkedin"):
            if call.method == "POST" and call.path.endswith("/users") and call.status == 200:
                out += call.json_body()["elements"]
        return out


@pytest.fixture
def ads(tmp_path: Path, model_dir: Path) -> Iterator[AdsWorld]:
    time = FakeTime()
    hubspot = HubSpotSandbox(token=TOKEN, clock=time.now)
    hubspot.load(generate_dataset(seed=5, contacts=250, now=T0))
    phones = {}
    for n, key in enumerate(sorted(hubspot.objects["contacts"], key=int)):
        if n % 2 == 0:  # half the people have a phone, written as people write them
            phones[key] = f"+44 (0)20 7946 {n:04d}".replace("(0)", "") if n % 4 == 0 else f"+1 415-555-{n:04d}"
            hubspot.update("contacts", key, {"phone": phones[key]})
    google = GoogleAdsSandbox(developer_token=GADS_DEV_TOKEN, client_id=GADS_CLIENT_ID, client_secret=GADS_SECRET,
                              refresh_token=GADS_REFRESH, customer_id=GADS_CUSTOMER, clock=time.now,
                              processing_seconds=60.0)
    user_list = google.create_user_list("Hot leads")
    linkedin = LinkedInSandbox(token=LINKEDIN_TOKEN, ad_account_id=LINKEDIN_ACCOUNT, clock=time.now)
    segment = linkedin.create_segment("Hot leads")
    apps: dict[str, FaultyApp] = {}
    with contextlib.ExitStack() as servers:
        hub_url = serve(servers, apps, time, "hubspot", hubspot.app)
        google_url = serve(servers, apps, time, "google_ads", google.app)
        linkedin_url = serve(servers, apps, time, "linkedin", linkedin.app)
        # Every scored person qualifies on score: who gets in is decided by ads consent alone.
        audience = {"entry_threshold": 1, "exit_threshold": 0.5}
        world = servers.enter_context(make_world("ads", tmp_path, model_dir, time, apps, {
            "hubspot": {"type": "hubspot", "token": TOKEN, "base_url": hub_url, "rate_limit_requests": 100_000,
                        "extra_contact_properties": ["phone"]},
            "google_ads": {"type": "google_ads", "developer_token": GADS_DEV_TOKEN, "client_id": GADS_CLIENT_ID,
                           "client_secret": GADS_SECRET, "refresh_token": GADS_REFRESH, "customer_id": GADS_CUSTOMER,
                           "base_url": google_url, "token_url": f"{google_url}/token",
                           "poll_interval_seconds": 30, "max_poll_seconds": 300, "rate_limit_requests": 100_000},
            "linkedin": {"type": "linkedin", "access_token": LINKEDIN_TOKEN, "ad_account_id": LINKEDIN_ACCOUNT,
                         "base_url": f"{linkedin_url}/rest", "rate_limit_requests": 100_000,
                         "linkedin_version": "202605"},  # a month the fake serves at T0 (2026-06-01)
        }, audiences={"google": {"destination": "google_ads", "audience_id": user_list, **audience},
                      "linkedin": {"destination": "linkedin", "audience_id": segment, **audience}},
            pipelines={"main": {"source": "hubspot", "destination": "hubspot",
                                "audiences": ["google", "linkedin"]}}))
        yield AdsWorld(world, hubspot, google, linkedin, user_list, segment, phones)


async def test_google_and_linkedin_receive_the_right_hashes_of_consenting_people_only(ads: AdsWorld) -> None:
    """Both audiences hold exactly their active members, as SHA-256 of the trimmed lowercase e-mail (and, for
    Google, of the E.164 phone with its +), every one of them with ads consent granted; Google's job carries
    that consent as adUserData/adPersonalization GRANTED."""
    report = await ads.world.cycle()
    assert report.status == "succeeded", report.errors
    granted = ads.granted()
    for name in ("google", "linkedin"):
        members = ads.world.active_members(name)
        assert members, name
        assert members <= granted, name
    google_people = ads.world.active_members("google")
    emails = {expected_email_hash(ads.contact(p)["email"]) for p in google_people}
    phones = {expected_phone_hash(ads.phones[p]) for p in google_people if p in ads.phones}
    assert phones
    assert ads.google.member_values(ads.user_list, "hashedEmail") == emails
    assert ads.google.member_values(ads.user_list, "hashedPhoneNumber") == phones
    linkedin_people = ads.world.active_members("linkedin")
    assert ads.linkedin.member_values(ads.segment) == {expected_email_hash(ads.contact(p)["email"])
                                                      for p in linkedin_people}
    jobs = ads.jobs()
    assert jobs
    assert {j.status for j in jobs} == {"SUCCESS"}
    assert all(j.consent == {"adUserData": "GRANTED", "adPersonalization": "GRANTED"} for j in jobs)
    assert {action for e in ads.linkedin_elements() for action in [e["action"]]} == {"ADD"}


async def test_a_revocation_sends_a_google_remove_job_and_a_linkedin_remove_element(ads: AdsWorld) -> None:
    """Withdrawing ads consent removes the person on the next cycle: a Google job of remove operations only
    (adds and removes never share a job) and a LinkedIn REMOVE element, each with the person's hash."""
    await ads.world.cycle()
    both = sorted(ads.world.active_members("google") & ads.world.active_members("linkedin"), key=int)
    person = both[0]
    email_hash = expected_email_hash(ads.contact(person)["email"])
    jobs_before = len(ads.google.jobs)
    ads.world.time.elapsed += 3600
    ads.hubspot.update("contacts", person, {"leadrelay_ads_consent": "denied"})
    report = await ads.world.cycle()
    assert report.status == "succeeded", report.errors
    assert report.decisions["audiences"]["google"]["removed_for_consent"] == 1
    assert report.decisions["audiences"]["linkedin"]["removed_for_consent"] == 1
    new_jobs = ads.jobs()[jobs_before:]
    removes = [j for j in new_jobs if j.kind == "remove"]
    assert len(removes) == 1
    removed = [ids for kind, ids in removes[0].operations]
    assert {"hashedEmail": email_hash} in removed[0]
    for job in ads.jobs():  # no job ever mixed creates and removes
        assert len({kind for kind, _ in job.operations}) == 1, job.operations
    assert email_hash not in ads.google.member_values(ads.user_list, "hashedEmail")
    assert email_hash not in ads.linkedin.member_values(ads.segment)
    removed_elements = [e for e in ads.linkedin_elements() if e["action"] == "REMOVE"]
    assert [e["userIds"] for e in removed_elements] == [[{"idType": "SHA256_EMAIL", "idValue": email_hash}]]


async def test_a_phone_change_swaps_the_google_phone_hash_and_leaves_linkedin_alone(ads: AdsWorld) -> None:
    """A Google member whose phone changes is re-keyed on the next cycle (the remove with the old phone hash
    goes out before the add with the new one, so the person stays in); LinkedIn, which is sent no phone,
    sees no change; a second cycle at that state changes nothing."""
    await ads.world.cycle()
    person = min((p for p in ads.world.active_members("google") if p in ads.phones), key=int)
    old_phone, new_phone = ads.phones[person], "+1 415-555-9999"
    email_hash = expected_email_hash(ads.contact(person)["email"])
    jobs_before = len(ads.google.jobs)
    ads.world.time.elapsed += 3600
    ads.hubspot.update("contacts", person, {"phone": new_phone})
    report = await ads.world.cycle()
    assert report.status == "succeeded", report.errors
    assert report.decisions["audiences"]["google"]["identifiers_changed"] == 1
    assert report.decisions["audiences"]["google"]["email_changed"] == 0
    assert report.decisions["audiences"]["linkedin"]["identifiers_changed"] == 0
    new_jobs = ads.jobs()[jobs_before:]
    assert [j.kind for j in new_jobs] == ["remove", "create"]
    assert {"hashedPhoneNumber": expected_phone_hash(old_phone)} in new_jobs[0].operations[0][1]
    assert {"hashedPhoneNumber": expected_phone_hash(new_phone)} in new_jobs[1].operations[0][1]
    phones = ads.google.member_values(ads.user_list, "hashedPhoneNumber")
    assert expected_phone_hash(new_phone) in phones
    assert expected_phone_hash(old_phone) not in phones
    assert email_hash in ads.google.member_values(ads.user_list, "hashedEmail")
    assert person in ads.world.active_members("google")
    again = await ads.world.cycle()
    assert again.decisions["audiences"]["google"]["identifiers_changed"] == 0

