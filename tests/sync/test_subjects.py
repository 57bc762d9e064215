"""sync.subjects: firmographics from the account, or from the lead itself when the source has no account."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sync.subjects import build_subjects

AT = datetime(2026, 6, 1, tzinfo=UTC)


def lead(key: str, account_key: str | None = None, **attributes: Any) -> dict[str, Any]:
    return {"key": key, "email": f"{key}@acme.example", "account_key": account_key, "country": "DE",
            "title": "CTO", "created_at": AT, "attributes": attributes}


def test_a_lead_without_account_brings_its_own_firmographics() -> None:
    """A Marketo-style lead (no account) is scored on the industry, size and revenue it carries itself."""
    [subject] = build_subjects([lead("7", industry="Software", employees=250, annual_revenue=1.5e7)], {}, {})
    assert subject.attributes["industry"] == "Software"
    assert subject.attributes["employees"] == 250
    assert subject.attributes["annual_revenue"] == 1.5e7


def test_the_account_wins_and_fills_only_what_it_has() -> None:
    """The account's values win; a value the account lacks comes from the lead, and numbers kept as text
    are read as numbers."""
    accounts = {"a1": {"industry": "Retail", "employees": None, "annual_revenue": 2e6, "country": "FR"}}
    [subject] = build_subjects([lead("8", "a1", industry="Software", employees="1,200")], accounts, {})
    assert subject.attributes["industry"] == "Retail"
    assert subject.attributes["employees"] == 1200.0
    assert subject.attributes["annual_revenue"] == 2e6


def test_nothing_known_stays_missing() -> None:
    """Without account or lead values the firmographics are None (not 0, not ""), and junk is not guessed."""
    [plain, junk] = build_subjects([lead("9"), lead("10", industry="  ", employees="many", annual_revenue=True)],
                                   {}, {})
    for subject in (plain, junk):
        assert [subject.attributes[k] for k in ("industry", "employees", "annual_revenue")] == [None, None, None]
