"""The store's contract, run identically on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from connectors.base import Account, Activity, ActivityType, Lead, Quarantined
from sync.planner import DesiredWrite, plan
from sync.store import Store, store_ready

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _lead(key: str, email: str = "x@acme.com", **kw: object) -> Lead:
    return Lead(key=key, updated_at=NOW, email=email, **kw)  # type: ignore[arg-type]


def test_upsert_reports_only_new_or_changed_leads(store: Store) -> None:
    """A lead whose content is unchanged is not reported as changed on a second upsert."""
    with store.unit() as u:
        assert u.upsert_leads("hs", [_lead("1"), _lead("2")]) == {"1", "2"}
        assert u.upsert_leads("hs", [_lead("1"), _lead("2", email="new@acme.com")]) == {"2"}
        assert u.load_leads("hs", ["2"])[0]["email"] == "new@acme.com"


def test_bulk_upsert_of_thousands_of_leads_round_trips(store: Store) -> None:
    """Thousands of leads go in and come back out intact, across chunked IN clauses."""
    leads = [_lead(str(i), email=f"p{i}@acme.com", attributes={"n": i}) for i in range(2500)]
    with store.unit() as u:
        assert len(u.upsert_leads("hs", leads)) == 2500
        rows = u.load_leads("hs", [str(i) for i in range(2500)])
    assert len(rows) == 2500
    assert {r["attributes"]["n"] for r in rows} == set(range(2500))


def test_activities_are_stored_once_and_report_touched_leads(store: Store) -> None:
    """Re-delivered activities (the overlap window) are not stored twice nor reported as new."""
    acts = [Activity("a1", "1", ActivityType.PAGE_VIEW, NOW), Activity("a2", "2", ActivityType.PRICING_PAGE, NOW)]
    with store.unit() as u:
        assert u.add_activities("hs", acts) == (2, {"1", "2"})
        assert u.add_activities("hs", [*acts, Activity("a3", "3", ActivityType.EMAIL_OPEN, NOW)]) == (1, {"3"})
        loaded = u.load_activities("hs", ["1", "2", "3"], NOW - timedelta(days=1))
    assert {k: [t for t, _, _ in v] for k, v in loaded.items()} == {
        "1": ["page_view"], "2": ["pricing_page"], "3": ["email_open"]}
    assert loaded["1"][0][1] == NOW


def test_activity_window_excludes_older_rows(store: Store) -> None:
    """Activities before the retention window are not loaded for scoring."""
    with store.unit() as u:
        u.add_activities("hs", [Activity("old", "1", ActivityType.PAGE_VIEW, NOW - timedelta(days=400)),
                                Activity("new", "1", ActivityType.PAGE_VIEW, NOW)])
        assert len(u.load_activities("hs", ["1"], NOW - timedelta(days=180))["1"]) == 1


def test_dry_run_unit_rolls_everything_back(store: Store) -> None:
    """A dry-run unit sees its own writes while it runs and leaves the store exactly as it was."""
    with store.unit() as u:
        u.set_cursor("p", "leads", "before", NOW)
        u.upsert_leads("hs", [_lead("1")])
    with store.unit(dry_run=True) as u:
        run_id = u.start_run("p", NOW, dry_run=True)
        u.set_cursor("p", "leads", "after", NOW)
        u.upsert_leads("hs", [_lead("2")])
        u.checkpoint()
        assert u.get_cursor("p", "leads") == "after"
        assert u.count("lead") == 2
        assert run_id >= 1
    with store.unit() as u:
        assert u.get_cursor("p", "leads") == "before"
        assert u.count("lead") == 1
        assert u.count("run") == 0


def test_failed_unit_keeps_only_checkpointed_work(store: Store) -> None:
    """Work after the last checkpoint is rolled back when the cycle fails."""
    def cycle_that_crashes() -> None:
        with store.unit() as u:
            u.set_cursor("p", "leads", "page-1", NOW)
            u.checkpoint()
            u.set_cursor("p", "leads", "page-2", NOW)
            raise RuntimeError("crash")

    with pytest.raises(RuntimeError):
        cycle_that_crashes()
    with store.unit() as u:
        assert u.get_cursor("p", "leads") == "page-1"


def test_accounts_and_their_leads(store: Store) -> None:
    """A changed account is reported and leads attached to it can be found."""
    with store.unit() as u:
        assert u.upsert_accounts("hs", [Account("c1", NOW, name="Acme", employees=50)]) == {"c1"}
        assert u.upsert_accounts("hs", [Account("c1", NOW, name="Acme", employees=50)]) == set()
        u.upsert_leads("hs", [_lead("1", account_key="c1"), _lead("2")])
        assert u.leads_of_accounts("hs", ["c1"]) == {"1"}
        assert u.load_accounts("hs", ["c1"])["c1"]["employees"] == 50


def test_quarantine_keeps_reason_and_raw_row(store: Store) -> None:
    """A quarantined row is stored with its reason and raw data, nothing lost."""
    bad = Quarantined("leads", "9", "email: 'not-an-email' is not an e-mail address", {"id": "9", "email": "x"})
    with store.unit() as u:
        u.quarantine("hs", [bad], run_id=None, now=NOW)
        rows = u.quarantined()
    assert rows[0]["reason"].startswith("email:")
    assert rows[0]["raw"] == {"id": "9", "email": "x"}


def test_outbox_enqueue_is_idempotent_and_acknowledgement_moves_the_ledger(store: Store) -> None:
    """The same operation is enqueued once; only an acknowledgement moves the ledger."""
    desired = [DesiredWrite("hs", "update_lead", "1", {"score": 80, "band": "A"}, "r")]
    with store.unit() as u:
        p = plan(desired, {}, {})
        assert u.enqueue("pipe", p.ops, None, NOW) == 1
        assert u.enqueue("pipe", p.ops, None, NOW) == 0
        (op,) = u.open_operations("hs")
        assert u.ledger("hs", "update_lead", ["1"]) == {}
        u.mark([(op, "retryable", "503")], NOW)
        assert u.open_operations("hs")[0].attempts == 1
        u.acknowledge([(op, "remote-1")], NOW)
        assert u.open_operations("hs") == []
        entry = u.ledger("hs", "update_lead", ["1"])["1"]
    assert entry.payload_hash == op.payload_hash
    assert entry.remote_id == "remote-1"


def test_newer_desired_state_supersedes_an_open_operation(store: Store) -> None:
    """When a lead's desired score changes before delivery, only the newest operation stays open."""
    with store.unit() as u:
        first = plan([DesiredWrite("hs", "update_lead", "1", {"score": 50}, "r")], {}, {})
        second = plan([DesiredWrite("hs", "update_lead", "1", {"score": 70}, "r")], {}, {})
        u.enqueue("pipe", first.ops, None, NOW)
        u.enqueue("pipe", second.ops, None, NOW)
        open_ops = u.open_operations("hs")
    assert [o.payload["score"] for o in open_ops] == [70]


def test_scores_are_kept_per_lead_and_due_leads_found(store: Store) -> None:
    """The latest score per lead is kept; never-scored and stale leads are due for rescoring."""
    with store.unit() as u:
        u.upsert_leads("hs", [_lead("1"), _lead("2"), _lead("3")])
        row = {"probability": 0.5, "score": 50, "band": "B", "reasons_positive": ["a"],
               "reasons_negative": [], "model_version": "v1"}
        u.save_scores("hs", [{**row, "lead_key": "1", "scored_at": NOW},
                             {**row, "lead_key": "2", "scored_at": NOW - timedelta(days=3)}])
        u.save_scores("hs", [{**row, "lead_key": "1", "score": 60, "scored_at": NOW}])
        assert u.scores("hs", ["1"])["1"]["score"] == 60
        assert u.leads_scored_before("hs", NOW - timedelta(days=1)) == {"2", "3"}


def test_store_ready_does_not_create_a_sqlite_file(tmp_path: object) -> None:
    """Asking whether a store exists creates nothing (the dry run relies on it)."""
    from pathlib import Path

    path = Path(str(tmp_path)) / "nothing" / "here.db"
    assert store_ready(f"sqlite:///{path}") is False
    assert not path.exists()
    assert not path.parent.exists()
