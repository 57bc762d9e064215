"""Rescore marks: a change that makes a scored lead due is recorded durably with the change and cleared with
the new score — on SQLite and on PostgreSQL (the crash test proves it end to end on a killed agent)."""

from __future__ import annotations

from datetime import UTC, datetime

from connectors.base import Lead
from sync.store import Store

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _score(key: str, score: int = 40) -> dict[str, object]:
    return {"lead_key": key, "probability": score / 100, "score": score, "band": "B", "reasons_positive": [],
            "reasons_negative": [], "model_version": "m1", "scored_at": NOW}


def test_marks_outlive_the_transaction_and_leave_with_the_new_score(store: Store) -> None:
    """Only scored leads are marked (the others are due anyway); a mark survives its commit, marking twice
    is harmless, and saving the lead's new score clears its mark and no other."""
    with store.unit() as u:
        u.upsert_leads("hs", [Lead(key=k, updated_at=NOW) for k in ("1", "2", "3")])
        u.save_scores("hs", [_score("1"), _score("2")])
        u.mark_for_rescore("hs", ["1", "2", "3"])
    with store.unit() as u:
        assert u.marked_for_rescore("hs") == {"1", "2"}
        assert u.marked_for_rescore("other") == set()
        u.mark_for_rescore("hs", ["1"])
        u.save_scores("hs", [_score("1", 55)])
    with store.unit(dry_run=True) as u:
        assert u.marked_for_rescore("hs") == {"2"}
