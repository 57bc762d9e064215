"""Crash consistency: the real CLI (``python -m sync.cli -c CONFIG sync``) killed with SIGKILL at chosen points
— during the pull, between and inside batch writes, and between a write's effect and its answer — and
restarted until a run completes; nothing is lost and nothing is duplicated.

The sandbox is served on loopback by this test process, so its state survives the agent's death. A small
ASGI middleware in front of it counts the agent's requests by kind and kills the agent at the armed one:
before the sandbox sees the request, or after the sandbox applied it but before the answer leaves.

The agent scores with its own real-time clock, so its scores cannot be compared with a reference run's;
each test compares the sandbox with the agent's own store (its scores and its ledger) instead.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.sandbox import HubSpotSandbox, generate_dataset, serve_on_loopback
from sync.decision_store import AccountScoreRow
from sync.store import OPEN_STATUSES, Store
from tests.sync.rig import DESTINATION, TASK_OPERATION, TOKEN, destination_state, ledger_mismatches, outbox_rows
from tests.sync.test_accounts import account_model  # noqa: F401 - the module-scoped trained account model

ROOT = Path(__file__).resolve().parents[2]
CONTACTS = 300  # three score batches of at most 100
HOT = 4  # follow-up threshold: about one lead in five of this portal
AGENT_TIMEOUT = 120.0  # seconds one agent run may take before the test gives up on it


@dataclass(frozen=True)
class KillPoint:
    """Kill the agent at its ``nth`` request of ``kind`` in a run: before the sandbox sees it, or after the
    sandbox applied it and before the answer is sent (``after_effect``)."""

    kind: str
    nth: int
    after_effect: bool = False


def request_kind(method: str, path: str) -> str:
    if path.startswith("/events/"):
        return "events"
    if path == "/crm/v3/objects/contacts/batch/update":
        return "update"
    if path == "/crm/v3/objects/companies/batch/update":
        return "account_update"
    if path == "/crm/v3/objects/tasks/batch/create":
        return "create"
    if path == "/crm/v3/objects/tasks/search":
        return "lookup"
    if method == "POST" and path.endswith("/search"):
        return "objects"  # companies and contacts, pulled by search
    return "other"


class KillSwitch:
    """ASGI middleware: counts requests by kind for the current agent run and SIGKILLs it at the armed point."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.pid: int | None = None
        self.point: KillPoint | None = None
        self.counts: Counter[str] = Counter()
        self.fired = threading.Event()

    def arm(self, point: KillPoint | None) -> None:
        """Before a new agent run: count from zero, kill at ``point`` (``None``: let it run)."""
        self.counts = Counter()
        self.fired.clear()
        self.point = point

    def _kill(self) -> None:
        self.point = None
        if self.pid is not None:  # None: a request left over from an agent already dead
            os.kill(self.pid, signal.SIGKILL)
            self.fired.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        kind = request_kind(scope["method"], scope["path"])
        self.counts[kind] += 1
        point = self.point
        if point is None or point.kind != kind or point.nth != self.counts[kind]:
            await self.app(scope, receive, send)
            return
        if not point.after_effect:
            self._kill()  # the request never reaches the sandbox
            return

        async def swallow(message: Message) -> None:
            if message["type"] == "http.response.start":
                self._kill()  # applied; the agent dies before a byte of the answer leaves

        await self.app(scope, receive, swallow)


@dataclass
class Portal:
    """A sandbox portal behind a kill switch, and an agent configuration pointing at it."""

    sandbox: HubSpotSandbox
    switch: KillSwitch
    config: Path
    store: Store

    def run_agent(self, point: KillPoint | None = None) -> subprocess.CompletedProcess[str]:
        """One ``leadrelay sync`` run, killed at ``point`` if the run gets there; returns once it has exited."""
        command = [sys.executable, "-m", "sync.cli", "-c", str(self.config), "sync", "--json"]
        self.switch.arm(point)
        with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}) as agent:
            self.switch.pid = agent.pid  # long before its first request: the agent imports for a second or more
            try:
                out, err = agent.communicate(timeout=AGENT_TIMEOUT)
            except subprocess.TimeoutExpired:
                agent.kill()
                out, err = agent.communicate()
                raise AssertionError(f"the agent hung ({self.switch.counts}):\n{err}") from None
            finally:
                self.switch.pid = None
        return subprocess.CompletedProcess(command, agent.returncode, out, err)

    def crash(self, point: KillPoint) -> None:
        """Run the agent and require it to die at ``point``."""
        done = self.run_agent(point)
        assert self.switch.fired.is_set(), f"the agent never reached {point}: {self.switch.counts}\n{done.stderr}"
        assert done.returncode == -signal.SIGKILL, done.stderr

    def run_to_completion(self, *, runs: int = 3) -> list[dict[str, Any]]:
        """Restart the agent until a run succeeds and leaves nothing open; the reports of those runs."""
        reports = []
        for _ in range(runs):
            done = self.run_agent()
            assert done.returncode == 0, done.stderr
            reports.append(json.loads(done.stdout))
            if reports[-1]["status"] == "succeeded" and self.open_operations() == 0:
                return reports
        raise AssertionError(f"still open after {runs} runs: {reports[-1]}")

    def open_operations(self) -> int:
        with self.store.unit(dry_run=True) as u:
            counts = u.outbox_counts()
        return sum(counts.get(status, 0) for status in OPEN_STATUSES)

    def scores(self) -> dict[str, dict[str, Any]]:
        with self.store.unit(dry_run=True) as u:
            return u.scores(DESTINATION)


def write_config(path: Path, base_url: str, store_url: str, model_dir: Path, account_dir: Path | None = None) -> None:
    account = f'\n[scoring.account]\nmodel_dir = "{account_dir}"\n' if account_dir is not None else ""
    path.write_text(f"""
[store]
url = "{store_url}"

[scoring]
model_dir = "{model_dir}"
{account}
[connections.hubspot]
type = "hubspot"
token = "{TOKEN}"
base_url = "{base_url}"
rate_limit_requests = 100000

[pipelines.main]
source = "hubspot"
destination = "{DESTINATION}"

[pipelines.main.follow_up]
min_score = {HOT}
""", encoding="utf-8")


@pytest.fixture
def portal(tmp_path: Path, model_dir: Path) -> Iterator[Portal]:
    with open_portal(tmp_path, model_dir) as made:
        yield made


@contextlib.contextmanager
def open_portal(tmp_path: Path, model_dir: Path, account_dir: Path | None = None) -> Iterator[Portal]:
    # The agent scores as of the real now: the portal's history ends now too, inside its retention window.
    now = datetime.now(UTC).replace(microsecond=0)
    sandbox = HubSpotSandbox(token=TOKEN)
    sandbox.load(generate_dataset(seed=21, contacts=CONTACTS, now=now))
    switch = KillSwitch(sandbox.app)
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    # A request the switch answers by killing its sender is an application error to uvicorn: quiet it.
    with serve_on_loopback(switch, log_level="critical") as base_url:
        write_config(tmp_path / "leadrelay.toml", base_url, store_url, model_dir, account_dir)
        store = Store(store_url)
        try:
            yield Portal(sandbox, switch, tmp_path / "leadrelay.toml", store)
        finally:
            store.close()


def kill_points(seed: int) -> list[KillPoint]:
    """Three kills chosen by ``seed``, in the order a sync meets them: while pulling companies or contacts;
    at one of the three score batches, before it reaches the sandbox or after it took effect; and after the
    sandbox created the follow-up tasks, before the agent hears so."""
    rng = random.Random(seed)
    return [
        KillPoint("objects", rng.randint(1, 3)),
        KillPoint("update", rng.randint(1, 3), after_effect=rng.random() < 0.5),
        KillPoint("create", 1, after_effect=True),
    ]


def assert_nothing_lost_or_duplicated(portal: Portal) -> set[str]:
    """Every lead's latest score is on its contact; each hot lead has exactly one task and no contact more
    than one; the ledger is the sandbox; nothing is open and nothing was rejected. Returns the hot leads."""
    scores = portal.scores()
    state = destination_state(portal.sandbox)
    assert len(scores) == len(portal.sandbox.objects["contacts"]) == CONTACTS
    assert {k: state.scores[k]["leadrelay_score"] for k in scores} == {k: str(s["score"]) for k, s in scores.items()}
    assert {k: state.scores[k]["leadrelay_band"] for k in scores} == {k: s["band"] for k, s in scores.items()}
    hot = {k for k, s in scores.items() if s["score"] >= HOT}
    tasks = state.tasks_per_contact()
    assert hot
    assert hot <= set(tasks)
    assert set(tasks.values()) == {1}
    assert state.duplicate_task_keys() == []
    assert state.orphan_tasks == []
    assert ledger_mismatches(portal.store, portal.sandbox) == []
    rows = outbox_rows(portal.store)
    assert {r["status"] for r in rows} <= {"acknowledged", "superseded"}
    return hot


@pytest.mark.parametrize("seed", [5])
def test_kills_during_the_first_sync_lose_and_duplicate_nothing(portal: Portal, seed: int) -> None:
    """Killed while pulling, at a score batch, and after the task create took effect, then restarted: every
    score lands, each hot lead gets exactly one task (found by its key, not created again), ledger = sandbox."""
    for point in kill_points(seed):
        portal.crash(point)
    reports = portal.run_to_completion()
    hot = assert_nothing_lost_or_duplicated(portal)
    assert set(destination_state(portal.sandbox).tasks) == hot  # no rescoring yet: the hot leads, no other
    found = sum(d["outcomes"].get("found_by_lookup", 0) for r in reports for d in r["delivery"])
    tasks = [r for r in outbox_rows(portal.store) if r["operation"] == TASK_OPERATION]
    assert found > 0  # the tasks created by the killed run were looked up by key ...
    assert all(r["attempts"] >= 1 for r in tasks)  # ... after a send the ledger never heard back from
    with portal.store.unit(dry_run=True) as u:  # the killed runs are on record as abandoned, none left running
        statuses = [r["status"] for r in u.runs(limit=100)]
    assert statuses.count("abandoned") == len(kill_points(seed))
    assert "running" not in statuses


def test_a_kill_after_changed_leads_are_stored_still_rescores_them(portal: Portal) -> None:
    """Contacts changed in the CRM, stored by a run that is then killed before scoring, are rescored by the
    next run and their new scores reach the CRM."""
    portal.run_to_completion()
    before = portal.scores()
    changed_at = datetime.now(UTC)
    changed = sorted(portal.sandbox.objects["contacts"], key=int)[:: CONTACTS // 10]
    for cid in changed:
        portal.sandbox.update("contacts", cid, {"jobtitle": "Chief Revenue Officer"})
    portal.crash(KillPoint("events", 1))  # contacts stored (the leads stream is committed), nothing scored
    with portal.store.unit(dry_run=True) as u:
        stored = {row["key"]: row["title"] for row in u.load_leads("hubspot", changed)}
    assert stored == dict.fromkeys(changed, "Chief Revenue Officer")
    assert portal.scores() == before
    portal.run_to_completion()
    after = portal.scores()
    assert [cid for cid in changed if after[cid]["scored_at"] < changed_at] == []  # none left stale
    assert any(after[cid]["score"] != before[cid]["score"] for cid in changed)  # the change mattered
    assert_nothing_lost_or_duplicated(portal)


@pytest.mark.parametrize("after_effect", [False, True])
def test_a_kill_at_an_account_score_write_loses_nothing(
        tmp_path: Path, model_dir: Path, account_model: dict[str, Any], after_effect: bool) -> None:  # noqa: F811
    """Killed at the first companies batch update (update_account) — before the CRM saw it, or after the CRM
    applied it and before the answer left — the restarted agent delivers it: every account it scored carries
    its stored score and band, the ledger is the sandbox and nothing is left open."""
    with open_portal(tmp_path, model_dir, account_model["dir"]) as portal:
        portal.crash(KillPoint("account_update", 1, after_effect=after_effect))
        applied = [c["properties"].get("leadrelay_account_score") for c in portal.sandbox.objects["companies"].values()]
        assert any(applied) is after_effect  # the killed run's batch took effect only when killed after it
        portal.run_to_completion()
        with portal.store.unit(dry_run=True) as u:
            stored = {r.account_key: (str(r.score), r.band)
                      for r in u.conn.execute(sa.select(AccountScoreRow.__table__))}
        companies = portal.sandbox.objects["companies"]
        assert stored
        assert {k: (companies[k]["properties"].get("leadrelay_account_score"),
                    companies[k]["properties"].get("leadrelay_account_band")) for k in stored} == stored
        assert ledger_mismatches(portal.store, portal.sandbox) == []
        assert {r["status"] for r in outbox_rows(portal.store)} <= {"acknowledged", "superseded"}
