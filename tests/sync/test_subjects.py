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


def test_other_attributes_pass_through_lead_first_then_account() -> None:
    """Attributes a declared feature may read (a tech stack, a renewal date) reach the subject: the lead's
    value first, else its account's; a blank lead value falls back, and none overrides a canonical one."""
    accounts = {"a1": {"industry": "Retail", "country": "FR",
                       "attributes": {"technologies": ["Segment", "Snowflake"], "renewal_date": "2026-09-01",
                                      "industry": "Mining"}}}
    [own, inherited, alone] = build_subjects(
        [lead("1", "a1", technologies="salesforce;segment"),
         lead("2", "a1", technologies="", renewal_date=None),
         lead("3", renewal_date="2026-12-01")], accounts, {})
    assert own.attributes["technologies"] == "salesforce;segment"
    assert own.attributes["renewal_date"] == "2026-09-01"
    assert inherited.attributes["technologies"] == ["Segment", "Snowflake"]
    assert inherited.attributes["renewal_date"] == "2026-09-01"
    assert alone.attributes["renewal_date"] == "2026-12-01"
    assert "technologies" not in alone.attributes
    assert own.attributes["industry"] == "Retail"
    assert own.attributes["country"] == "DE"


def test_declared_features_read_passed_through_attributes_at_serving() -> None:
    """compute_features on built subjects reads the tech stack and renewal date that came from the store."""
    from scoring import FeatureSpec, compute_features

    spec = FeatureSpec.from_mapping({"fit": {"tech_stack": {"attribute": "technologies", "wanted": ["segment"]}},
                                     "timing": {"renewal_attribute": "renewal_date"}})
    accounts = {"a1": {"attributes": {"technologies": "Segment | Snowflake", "renewal_date": "2026-07-16"}}}
    frame = compute_features(spec, build_subjects([lead("1", "a1"), lead("2")], accounts, {}), AT)
    names = frame.numeric_names
    assert frame.numeric[0, names.index("tech_stack_match")] == 1.0
    assert frame.numeric[0, names.index("days_to_renewal")] == 45.0
    assert all(v != v for v in frame.numeric[1, [names.index("tech_stack_match"), names.index("days_to_renewal")]])
