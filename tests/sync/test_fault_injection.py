"""Nothing lost, nothing duplicated under faults: the same sync, over real loopback sockets, against a sandbox
that deals 5xx, 429 storms, connections dropped before and after the effect, resets, 207 partial failures
and whole-batch rejections (seeded), repeated until nothing is open, ends where a fault-free run ends.

The scenario lives in ``rig.py`` (``run_with_faults``), shared with ``bench/bench_faults.py``, which runs it
over many more seeds. Each cycle scores as of one fixed instant, so scores and task keys are the reference
run's; the one thing faults may change is what the destination was told.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.sync.rig import (
    FAULT_KINDS,
    HOT,
    SCORE_OPERATION,
    TASK_CREATE_PATH,
    TASK_OPERATION,
    DropAfterEffect,
    FaultRun,
    Reference,
    compare,
    run_reference,
    run_with_faults,
    scenario_options,
)

SEEDS = (1, 7, 11, 36)  # each deals every fault kind at least twice within its first 110 requests
MAX_CYCLES = 20


@pytest.fixture(scope="module")
def reference(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Reference]:
    """The fault-free run of the scenario, once for every seed."""
    with contextlib.ExitStack() as servers:
        yield asyncio.run(run_reference(servers, tmp_path_factory.mktemp("reference"), model_dir))


@pytest.fixture(scope="module", params=SEEDS, ids=[f"seed{s}" for s in SEEDS])
def run(request: pytest.FixtureRequest, model_dir: Path, tmp_path_factory: pytest.TempPathFactory
        ) -> Iterator[FaultRun]:
    """The scenario under this seed's faults, run until the outbox holds nothing open."""
    with contextlib.ExitStack() as servers:
        work = tmp_path_factory.mktemp(f"faults{request.param}")
        yield asyncio.run(run_with_faults(servers, work, model_dir, request.param, max_cycles=MAX_CYCLES))


def test_every_kind_of_fault_was_dealt(run: FaultRun) -> None:
    """The seed's run met every fault kind, 207s, whole-batch rejections, and task creates whose answer was lost
    after they took effect (the scripted drop, or the sandbox's own): those were looked up, not created again."""
    assert {kind for kind in FAULT_KINDS if run.injected[kind] > 0} == set(FAULT_KINDS), run.injected
    assert run.status_codes[207] > 0
    assert run.rejected_batches > 0
    assert run.outcomes("found_by_lookup") > 0


def test_the_outbox_drains_within_bounded_cycles(run: FaultRun) -> None:
    """Every operation settles (acknowledged or dead-lettered) within the cycle bound; no cycle fails or gives
    up a pull, and only the first scores (the clock is fixed and the portal does not change)."""
    assert run.open_left == 0, f"still open after {len(run.reports)} cycles"
    assert 1 < len(run.reports) <= MAX_CYCLES  # the faults left work for later cycles, and it got done
    assert [r.errors for r in run.reports if r.status != "succeeded"] == []
    assert run.reports[0].scored > 0
    assert [r.scored for r in run.reports[1:]] == [0] * (len(run.reports) - 1)


def test_scores_are_the_fault_free_runs(run: FaultRun, reference: Reference) -> None:
    """The agent scored every lead exactly as the fault-free run did: faults only touch delivery."""
    assert run.scores == reference.scores


def test_destination_equals_the_fault_free_run_but_for_poisoned_inputs(run: FaultRun, reference: Reference) -> None:
    """Every contact's leadrelay_* properties and tasks equal the fault-free run's, except the poisoned inputs,
    whose effect is absent."""
    diff = compare(reference, run)
    assert diff.scores == []
    assert diff.tasks == []
    assert diff.missing == 0
    assert diff.poison_leaked == []


def test_each_hot_lead_has_exactly_one_task(run: FaultRun, reference: Reference) -> None:
    """Each lead at or over the threshold has exactly one task (none if its task was poisoned), no other lead
    has one, every task hangs on a contact, and no two tasks share an operation key."""
    hot = {k for k, s in reference.scores.items() if s["score"] >= HOT}
    poisoned = {t for op, t in run.poisoned if op == TASK_OPERATION}
    assert hot - poisoned
    assert run.state.tasks_per_contact() == dict.fromkeys(hot - poisoned, 1)
    assert run.state.duplicate_task_keys() == []
    assert run.state.orphan_tasks == []


def test_the_ledger_is_what_the_sandbox_holds(run: FaultRun) -> None:
    """What the ledger says was acknowledged is exactly what the sandbox holds, and the sandbox holds nothing
    the ledger does not know."""
    assert run.ledger_problems == []


def test_dead_letters_are_exactly_the_poisoned_inputs(run: FaultRun) -> None:
    """Bisection isolated each poisoned input: the dead letters are exactly those, with HubSpot's reason,
    and nothing else was rejected."""
    assert run.poisoned
    assert {op for op, _ in run.poisoned} <= {SCORE_OPERATION, TASK_OPERATION}
    assert run.dead == run.poisoned
    assert all("were not accepted" in reason for reason in run.dead_reasons)


class TaskSearchOutage:
    """ASGI middleware: while ``down``, every task search is answered ``status`` with HubSpot's ``body``."""

    def __init__(self, app: ASGIApp, status: int, body: dict[str, Any]) -> None:
        self.app, self.status, self.body = app, status, json.dumps(body).encode()
        self.down = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.down or scope["type"] != "http" or scope["path"] != "/crm/v3/objects/tasks/search":
            await self.app(scope, receive, send)
            return
        await send({"type": "http.response.start", "status": self.status,
                    "headers": [(b"content-type", b"application/json;charset=utf-8")]})
        await send({"type": "http.response.body", "body": self.body})


SEARCH_DOWN = {"status": "error", "message": "Service Unavailable", "correlationId": "c0ffee",
               "category": "SERVICE_UNAVAILABLE"}
DAILY_SPENT = {"status": "error", "message": "You have reached your daily limit.", "errorType": "RATE_LIMIT",
               "correlationId": "c0ffee", "policyName": "DAILY", "groupName": "api-calls-daily"}


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "body", "why"), [(503, SEARCH_DOWN, "unknown outcome(s) not looked up"),
                                                     (429, DAILY_SPENT, "quota exhausted")],
                         ids=["search-down", "daily-quota-spent"])
async def test_a_failed_lookup_holds_unknown_tasks_back_and_the_cycle_ends_cleanly(
        rig_factory: Any, status: int, body: dict[str, Any], why: str) -> None:
    """Unknown task outcomes that cannot be looked up (search failing, daily quota spent) are neither created
    again nor fatal: the cycle finishes as partial, saying why, and the next one finds the tasks."""
    outages: list[TaskSearchOutage] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        outages.append(TaskSearchOutage(DropAfterEffect(app, "POST", TASK_CREATE_PATH), status, body))
        return outages[0]

    rig = rig_factory(contacts=200, wrap=wrap, **scenario_options())
    first = await rig.cycle()  # the task create is applied and its answer lost: every task's outcome unknown
    created = len(rig.sandbox.objects["tasks"])
    assert first.delivery[0]["outcomes"]["unknown"] == created > 0
    outages[0].down = True
    rig.time.elapsed += 60
    second = await rig.cycle()
    assert second.status == "partial"
    assert any(why in error for error in second.errors), second.errors
    assert len(rig.sandbox.objects["tasks"]) == created  # nothing created blind
    with rig.store.unit(dry_run=True) as u:
        assert u.outbox_counts()["unknown"] == created
        assert u.runs("main")[0]["status"] == "partial"  # the run is on record as finished
    outages[0].down = False
    rig.time.elapsed += 2 * 86_400  # past any daily reset
    third = await rig.cycle()
    assert third.status == "succeeded", third.errors
    assert third.delivery[0]["outcomes"]["found_by_lookup"] == created
    assert rig.open_operations() == 0
    assert len(rig.sandbox.objects["tasks"]) == created
