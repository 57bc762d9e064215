"""The dataset generator: deterministic, realistic shapes, and a conversion signal a model can learn."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime

import pytest

from connectors.sandbox import Dataset, HubSpotSandbox, generate_dataset
from connectors.sandbox._wire import parse_time
from connectors.sandbox.generator import EVENT_TYPES

NOW = datetime(2026, 6, 1, tzinfo=UTC)
DAY_MS = 86_400_000


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return generate_dataset(seed=11, contacts=4000, now=NOW)


def test_same_seed_same_dataset() -> None:
    """Two runs with one seed give identical datasets; another seed gives a different one."""
    a = generate_dataset(seed=3, contacts=200, now=NOW)
    b = generate_dataset(seed=3, contacts=200, now=NOW)
    c = generate_dataset(seed=4, contacts=200, now=NOW)
    assert a == b
    assert a.contacts != c.contacts


def test_shapes_are_hubspot_shaped(dataset: Dataset) -> None:
    """Objects carry string properties and ISO timestamps; events use the documented types and fields."""
    contact = dataset.contacts[0]
    assert set(contact) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert all(isinstance(v, str) for c in dataset.contacts[:200] for v in c["properties"].values())
    assert {
        "email",
        "firstname",
        "lastname",
        "jobtitle",
        "country",
        "createdate",
        "lastmodifieddate",
        "lifecyclestage",
    } <= set(contact["properties"])
    company = dataset.companies[0]["properties"]
    assert {"name", "domain", "industry", "numberofemployees", "country", "annualrevenue"} <= set(company)
    assert {e["eventType"] for e in dataset.events} == set(EVENT_TYPES)
    assert all(e["objectType"] == "contact" and e["occurredAt"].endswith("Z") for e in dataset.events[:500])
    times = [e["occurredAt"] for e in dataset.events]
    assert times == sorted(times)
    assert 10 <= len(dataset.events) / len(dataset.contacts) <= 40
    assert len({c["properties"]["email"] for c in dataset.contacts}) == len(dataset.contacts)
    free = sum(
        c["properties"]["email"].endswith(
            ("gmail.com", "yahoo.com", "outlook.com", "hotmail.com", "icloud.com", "gmx.de")
        )
        for c in dataset.contacts
    )
    assert 0.10 < free / len(dataset.contacts) < 0.20


def test_conversion_rate_is_realistic(dataset: Dataset) -> None:
    """Between 5% and 12% of contacts became opportunities, each with the lifecycle date recorded."""
    converted = [c for c in dataset.contacts if c["properties"]["lifecyclestage"] == "opportunity"]
    assert 0.05 <= len(converted) / len(dataset.contacts) <= 0.12
    for c in converted:
        at = parse_time(c["properties"]["hs_lifecyclestage_opportunity_date"])
        assert at is not None
        assert (
            parse_time(c["properties"]["createdate"]) <= at <= parse_time(c["properties"]["lastmodifieddate"])
        )


def test_converters_view_pricing_more_before_converting(dataset: Dataset) -> None:
    """In the 21 days before converting, converters view pricing/demo pages far more than others do."""
    views: dict[str, list[int]] = defaultdict(list)
    for e in dataset.events:
        if e["eventType"] == "e_visited_page" and e["properties"]["hs_url"].endswith(("/pricing", "/demo")):
            views[e["objectId"]].append(parse_time(e["occurredAt"]) or 0)
    now = parse_time(NOW.isoformat()) or 0
    converter_counts, other_counts = [], []
    for c in dataset.contacts:
        props = c["properties"]
        created = parse_time(props["createdate"]) or 0
        if props["lifecyclestage"] == "opportunity":
            end = parse_time(props["hs_lifecyclestage_opportunity_date"]) or 0
            converter_counts.append(sum(end - 21 * DAY_MS <= t < end for t in views[c["id"]]))
        else:
            end = created + (now - created) // 2  # a comparable window inside their history
            other_counts.append(sum(end - 21 * DAY_MS <= t < end for t in views[c["id"]]))
    converter_mean = sum(converter_counts) / len(converter_counts)
    other_mean = sum(other_counts) / len(other_counts)
    assert converter_mean > 3 * other_mean
    assert sum(n == 0 for n in converter_counts) > 0.1 * len(converter_counts)  # noisy, not a give-away


def test_malformed_records_are_listed_and_broken() -> None:
    """malformed_share breaks listed contacts (or their company) in the documented ways only."""
    data = generate_dataset(seed=9, contacts=400, now=NOW, malformed_share=0.2)
    contacts = {c["id"]: c["properties"] for c in data.contacts}
    companies = {c["id"]: c["properties"] for c in data.companies}
    kinds = {problem for _, _, problem in data.malformed}
    assert kinds == {"invalid_email", "missing_createdate", "unknown_lifecyclestage", "non_numeric_employees"}
    for object_type, key, problem in data.malformed:
        if problem == "invalid_email":
            assert "@" not in contacts[key]["email"]
        elif problem == "missing_createdate":
            assert "createdate" not in contacts[key]
        elif problem == "unknown_lifecyclestage":
            assert contacts[key]["lifecyclestage"] == "hot_lead"
        else:
            assert object_type == "companies"
            assert not companies[key]["numberofemployees"].isdigit()


def test_sandbox_loads_a_dataset(dataset: Dataset) -> None:
    """A loaded dataset is served: objects, owners, events and contact-company associations."""
    sandbox = HubSpotSandbox()
    sandbox.load(dataset)
    contact = next(c for c in dataset.contacts if "associatedcompanyid" in c["properties"])
    assert len(sandbox.objects["contacts"]) == len(dataset.contacts)
    assert len(sandbox.owners) == len(dataset.owners)
    assert sandbox.associations[("contacts", contact["id"], "companies")] == {
        contact["properties"]["associatedcompanyid"]: {279}
    }
    assert len(sandbox.events) == len(dataset.events)
