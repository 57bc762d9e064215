"""The Marketo connector's writes against the Marketo sandbox over real loopback sockets: scores onto
leads and static-list membership, with Marketo's per-record statuses mapped to outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from connectors.base import GiveUp, Outcome, RecordOutcome, WriteRecord
from connectors.marketo import MarketoConnector
from connectors.sandbox import serve_on_loopback
from connectors.sandbox.marketo import MarketoSandbox
from tests.connectors.test_marketo_rig import Clock, make_connector, make_sandbox

pytestmark = pytest.mark.anyio

SCORE = {"score": 71, "band": "A", "reasons": ["Visited pricing", "Senior title"], "model_version": "m-3",
         "scored_at": "2026-06-01T09:00:00Z"}
SYNC = "POST /rest/v1/leads.json"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sandbox(clock: Clock) -> MarketoSandbox:
    sb = make_sandbox(clock)
    for n in range(400):
        sb.add_lead(email=f"lead{n}@example.com")
    return sb


@pytest.fixture
def base_url(sandbox: MarketoSandbox) -> Iterator[str]:
    with serve_on_loopback(sandbox.app) as url:
        yield url


@pytest.fixture
async def marketo(clock: Clock, base_url: str) -> AsyncIterator[MarketoConnector]:
    connector = make_connector(base_url, clock)
    yield connector
    await connector.http.client.aclose()


def scores(*targets: object) -> list[WriteRecord]:
    return [WriteRecord(str(t), f"score:{t}:{n}", SCORE) for n, t in enumerate(targets)]


def members(list_id: str, *targets: object, op: str = "add") -> list[WriteRecord]:
    return [WriteRecord(str(t), f"{op}:{list_id}:{t}", {"audience_id": list_id, "email": "x@example.com"})
            for t in targets]


def outcomes(results: list[RecordOutcome]) -> list[Outcome]:
    return [r.outcome for r in results]


async def test_scores_land_on_leads_with_per_record_outcomes(marketo: MarketoConnector,
                                                             sandbox: MarketoSandbox) -> None:
    """Scores go out as one updateOnly sync by id; each record's outcome follows its own status, in order:
    updated → acknowledged, lead not found (1004) → rejected with Marketo's reason, bad id → rejected."""
    results = await marketo.write_batch("update_lead", scores(1, 99_999, "lead-abc", 2))
    assert outcomes(results) == [Outcome.ACKNOWLEDGED, Outcome.REJECTED, Outcome.REJECTED, Outcome.ACKNOWLEDGED]
    assert "1004" in (results[1].reason or "")
    assert "not a Marketo lead id" in (results[2].reason or "")
    lead = sandbox.lead(1)
    assert (lead["leadrelayScore"], lead["leadrelayBand"]) == (71, "A")
    assert lead["leadrelayReasons"] == "Visited pricing; Senior title"
    assert sandbox.stats.requests[SYNC] == 1


async def test_unknown_score_field_is_rejected_with_the_reason(clock: Clock, sandbox: MarketoSandbox,
                                                               base_url: str) -> None:
    """A score field missing from the instance is skipped by Marketo (1006) and rejected with that reason."""
    connector = make_connector(base_url, clock, score_fields={"band": "noSuchField"})
    try:
        results = await connector.write_batch("update_lead", scores(3))
    finally:
        await connector.http.client.aclose()
    assert outcomes(results) == [Outcome.REJECTED]
    assert "1006" in (results[0].reason or "")
    assert "noSuchField" in (results[0].reason or "")


async def test_a_lead_twice_in_one_batch_waits_for_the_next(marketo: MarketoConnector) -> None:
    """The same lead twice in one batch: the first is written, the second is retryable (a later batch)."""
    results = await marketo.write_batch("update_lead", scores(5, 5))
    assert outcomes(results) == [Outcome.ACKNOWLEDGED, Outcome.RETRYABLE]


async def test_list_membership_outcomes_follow_reason_codes(marketo: MarketoConnector,
                                                            sandbox: MarketoSandbox) -> None:
    """Adding answers added or skipped 1004 (rejected); removing a non-member is skipped 1015, which is the
    wanted state (acknowledged), and a lead that does not exist is rejected."""
    hot = sandbox.create_list("Hot leads")
    added = await marketo.write_batch("audience_add", members(hot, 1, 2, 88_888))
    assert outcomes(added) == [Outcome.ACKNOWLEDGED, Outcome.ACKNOWLEDGED, Outcome.REJECTED]
    assert "1004" in (added[2].reason or "")
    assert sandbox.members(hot) == {1, 2}
    removed = await marketo.write_batch("audience_remove", members(hot, 1, 3, 77_777, op="remove"))
    assert outcomes(removed) == [Outcome.ACKNOWLEDGED, Outcome.ACKNOWLEDGED, Outcome.REJECTED]
    assert "1015" in (removed[1].reason or "")
    assert sandbox.members(hot) == {2}


async def test_missing_list_rejects_only_its_records(marketo: MarketoConnector, sandbox: MarketoSandbox) -> None:
    """A static list that does not exist (1013) rejects the records meant for it; another list still lands."""
    real = sandbox.create_list("Real")
    results = await marketo.write_batch("audience_add", members("424242", 1, 2) + members(real, 3))
    assert outcomes(results) == [Outcome.REJECTED, Outcome.REJECTED, Outcome.ACKNOWLEDGED]
    assert "424242" in (results[0].reason or "")
    assert "1013" in (results[0].reason or "")
    assert sandbox.members(real) == {3}


async def test_three_hundred_per_call(marketo: MarketoConnector, sandbox: MarketoSandbox) -> None:
    """300 records for two lists go as one call per list; 300 scores as one sync; 301 records are refused."""
    first, second = sandbox.create_list("first"), sandbox.create_list("second")
    batch = members(first, *range(1, 201)) + members(second, *range(201, 301))
    results = await marketo.write_batch("audience_add", batch)
    assert set(outcomes(results)) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.requests[f"POST /rest/v1/lists/{first}/leads.json"] == 1
    assert sandbox.stats.requests[f"POST /rest/v1/lists/{second}/leads.json"] == 1
    assert (len(sandbox.members(first)), len(sandbox.members(second))) == (200, 100)
    written = await marketo.write_batch("update_lead", scores(*range(1, 301)))
    assert set(outcomes(written)) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.requests[SYNC] == 1
    with pytest.raises(GiveUp, match="300"):
        await marketo.write_batch("update_lead", scores(*range(1, 302)))


async def test_payload_too_large_is_split_until_it_fits(clock: Clock) -> None:
    """A sync body over the instance's limit (413) is split in halves until each part fits; every record is
    acknowledged, and a record too large on its own is rejected with the reason."""
    sandbox = make_sandbox(clock, max_body_bytes=6_000)
    for n in range(120):
        sandbox.add_lead(email=f"lead{n}@example.com")
    with serve_on_loopback(sandbox.app) as url:
        connector = make_connector(url, clock)
        try:
            results = await connector.write_batch("update_lead", scores(*range(1, 121)))
            huge = [WriteRecord("7", "huge", {**SCORE, "reasons": ["x" * 7_000]})]
            alone = await connector.write_batch("update_lead", huge)
        finally:
            await connector.http.client.aclose()
    assert set(outcomes(results)) == {Outcome.ACKNOWLEDGED}
    assert sandbox.stats.status_codes[413] >= 2
    assert all(sandbox.lead(n)["leadrelayScore"] == 71 for n in range(1, 121))
    assert outcomes(alone) == [Outcome.REJECTED]
    assert "1 MB" in (alone[0].reason or "")


async def test_unknown_operation_is_refused(marketo: MarketoConnector) -> None:
    """An operation Marketo does not declare raises GiveUp naming the ones it does."""
    with pytest.raises(GiveUp, match="audience_add"):
        await marketo.write_batch("create_task", scores(1))
