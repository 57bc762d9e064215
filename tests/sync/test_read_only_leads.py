"""Read-only leads (``Lead.read_only``, e.g. a converted Salesforce Lead): mapped from ``IsConverted``, stored,
scored, never written to nor routed; over loopback no write to a converted lead is even attempted."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from alembic import command

from connectors.base import ActivityType, Lead
from connectors.salesforce._mapping import BadRow, person_records
from sync import migrations
from sync.report import render_cycle
from sync.routing import (
    Action,
    Candidate,
    Rep,
    RoutingSpec,
    RoutingState,
    Skip,
    Status,
    Territory,
    desired_writes,
    route,
)
from sync.store import Store
from tests.sync import pgdb
from tests.sync.rig import outbox_rows
from tests.sync.test_e2e_breadth import TASK_KEY, SalesforceWorld, salesforce  # noqa: F401 (fixture)

pytestmark = pytest.mark.anyio
empty_url = pgdb.empty_url  # the fixture: SQLite, and a PostgreSQL database of its own

START = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
ROW = {"Id": "00Q000000000001AAA", "SystemModstamp": "2026-03-01T10:00:00.000+0000", "Email": "ann@acme.example",
       "ConvertedDate": "2026-02-27"}


# --------------------------------------------------------------------------------------------------
# Mapping


def test_salesforce_is_converted_makes_the_lead_read_only() -> None:
    """A Lead row with IsConverted true maps to a read-only lead (still with its CONVERSION activity);
    false or missing maps to a writable one; a Contact (no flag field) is never read-only."""
    fields = {"email": "Email"}
    converted = person_records({**ROW, "IsConverted": True}, fields, [], "ConvertedDate", "IsConverted")
    assert isinstance(converted[0], Lead)
    assert converted[0].read_only is True
    assert [a.type for a in converted[1:]] == [ActivityType.CONVERSION]  # the training label is kept
    for flag in ({"IsConverted": False}, {}, {"IsConverted": None}):
        (lead, *_) = person_records({**ROW, **flag}, fields, [], "ConvertedDate", "IsConverted")
        assert isinstance(lead, Lead)
        assert lead.read_only is False
    (contact, *_) = person_records({**ROW, "IsConverted": True}, fields, [], None)
    assert isinstance(contact, Lead)
    assert contact.read_only is False


def test_a_non_boolean_is_converted_names_the_field() -> None:
    """IsConverted as text breaks the data contract: the quarantine reason names the field and value."""
    with pytest.raises(BadRow, match=r"IsConverted: 'yes' is not true or false"):
        person_records({**ROW, "IsConverted": "yes"}, {"email": "Email"}, [], None, "IsConverted")


# --------------------------------------------------------------------------------------------------
# Store


def test_read_only_is_stored_and_a_lead_becoming_read_only_counts_as_changed(store: Store) -> None:
    """The flag round-trips through the lead table; a lead turning read-only is a content change, while
    re-storing an unchanged writable lead is not."""
    at = START
    with store.unit() as unit:
        assert unit.upsert_leads("salesforce", [Lead("a", at, email="a@x.example"), Lead("b", at)]) == {"a", "b"}
    with store.unit() as unit:
        assert unit.upsert_leads("salesforce", [Lead("a", at, email="a@x.example"),
                                                Lead("b", at, read_only=True)]) == {"b"}
        rows = {r["key"]: r["read_only"] for r in unit.load_leads("salesforce", ["a", "b"])}
    assert rows == {"a": False, "b": True}


def test_upgrade_adds_the_flag_and_rereads_salesforce_leads_only(empty_url: str) -> None:
    """Upgrading a 0003 store adds lead.read_only (false for the leads it holds) and drops only the leads
    cursor of a pipeline reading Salesforce, so old converted Leads are read again and flagged."""
    engine = sa.create_engine(empty_url)
    at = datetime(2026, 5, 1, 12, 0)
    with engine.begin() as conn:
        command.upgrade(migrations.config(conn), "0003")
        conn.execute(sa.text("INSERT INTO lead (source, key, updated_at, attributes, content_hash) "
                             "VALUES ('salesforce', '00Q1', :at, '{}', 'h1')"), {"at": at})
        conn.execute(sa.text("INSERT INTO cursor (pipeline, stream, value, updated_at) VALUES "
                             "('sf', 'leads', :sf, :at), ('sf', 'activities', :sf, :at), "
                             "('hs', 'leads', '1714564800000', :at), ('mk', 'leads', 'not json', :at)"),
                     {"sf": '{"Contact":1714564800000,"Lead":1714564800000}', "at": at})
    engine.dispose()
    store = Store(empty_url)
    try:
        assert store.migrate()[1] == migrations.head()
        with store.unit(dry_run=True) as unit:
            cursors = {(p, s) for p, s in unit.conn.execute(sa.text("SELECT pipeline, stream FROM cursor"))}
            flags = unit.conn.execute(sa.text("SELECT read_only FROM lead")).scalars().all()
    finally:
        store.close()
    assert cursors == {("sf", "activities"), ("hs", "leads"), ("mk", "leads")}
    assert [bool(f) for f in flags] == [False]


# --------------------------------------------------------------------------------------------------
# Routing


def spec() -> RoutingSpec:
    return RoutingSpec("inbound", (Rep("ann", 9), Rep("bob", 9)), (Territory("all", ("ann", "bob")),),
                       min_score=50, sla_hours=24)


def everyone(key: str, channel: str, now: datetime) -> bool:
    return True


def test_a_read_only_lead_is_never_routed() -> None:
    """A hot read-only lead is skipped as read_only: no assignment, no owner write, no task."""
    result = route(spec(), [Candidate("a", 95, read_only=True), Candidate("b", 90)], RoutingState(), everyone, START)
    by_lead = {d.lead_key: d for d in result.decisions}
    assert (by_lead["a"].action, by_lead["a"].skip) == (Action.SKIP, Skip.READ_ONLY)
    assert by_lead["b"].action is Action.ASSIGN
    assert {w.target.split("#")[0] for w in desired_writes(result, "salesforce")} == {"b"}
    assert "a" not in result.state.assignments


def test_an_assigned_lead_turning_read_only_is_released_not_rerouted() -> None:
    """Converted while its follow-up was open and then past due: the assignment is released (nothing can be
    written to the lead any more) instead of breaching into a reroute with a new owner and task."""
    first = route(spec(), [Candidate("a", 95)], RoutingState(), everyone, START)
    owner = first.decisions[0].rep_id
    later = START + timedelta(hours=30)
    result = route(spec(), [Candidate("a", 95, owner_id=owner, read_only=True)], first.state, everyone, later)
    (d,) = result.decisions
    assert d.action is Action.RELEASE
    assert result.state.assignments["a"].status is Status.RELEASED
    assert desired_writes(result, "salesforce") == []
    # and it stays quiet afterwards
    assert route(spec(), [Candidate("a", 95, read_only=True)], result.state, everyone,
                 later + timedelta(days=3)).decisions == ()


# --------------------------------------------------------------------------------------------------
# End to end: Salesforce source and destination over loopback


async def test_converted_salesforce_leads_are_scored_but_never_written(salesforce: SalesforceWorld) -> None:  # noqa: F811
    """After a cycle (and a second one) against the Salesforce fake: converted leads have scores in the
    store, no operation in the outbox, no Task and their original owner; no CANNOT_UPDATE_CONVERTED_LEAD
    dead letter exists; the report counts them as read-only, not written."""
    sf = salesforce.sf
    converted = {key for key, row in sf.records["Lead"].items() if row.get("IsConverted")}
    owners_before = {key: sf.records["Lead"][key]["OwnerId"] for key in converted}
    assert len(converted) >= 10  # the dataset converts about one lead in ten
    report = await salesforce.world.cycle()
    assert report.status == "succeeded", report.errors
    again = await salesforce.world.cycle()
    assert again.status == "succeeded", again.errors
    assert report.read_only == len(converted)
    assert report.as_dict()["read_only"] == len(converted)
    assert f"read-only:   {len(converted)} of them not written" in render_cycle(report)
    with salesforce.world.store.unit(dry_run=True) as unit:
        scores = unit.scores("salesforce", sorted(converted))
    assert set(scores) == converted  # scored and stored (explain, drift)
    rows = outbox_rows(salesforce.world.store)
    assert rows, "the writable leads were written"
    assert not [r for r in rows if r["target"].split("#", 1)[0] in converted]
    assert not [r for r in rows if "CANNOT_UPDATE_CONVERTED_LEAD" in (r.get("last_error") or "")]
    assert {r["status"] for r in rows} <= {"acknowledged", "superseded"}  # nothing rejected, nothing dead
    tasks = [t for t in sf.records["Task"].values() if t.get(TASK_KEY)]
    assert tasks
    assert not [t for t in tasks if t["WhoId"] in converted]
    assert {key: sf.records["Lead"][key]["OwnerId"] for key in converted} == owners_before
    assert not [k for k in converted if sf.records["Lead"][k].get("Leadrelay_Score__c") is not None]
    skipped = report.decisions["routing"]["skipped"].get("read_only", 0)
    assert skipped > 0  # hot converted leads were offered to routing and refused there
