"""The sync test rig: an injected clock, settings for a sandbox portal, a seeded sandbox on a loopback port,
and helpers that read what the destination holds and compare it with the agent's ledger.

Shared by the pipeline, fault-injection and crash tests (through ``tests/sync/conftest.py``) and by
``bench/bench_faults.py``, so the benchmark measures exactly what CI asserts.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from connectors.sandbox import HubSpotLimits, HubSpotSandbox, generate_dataset, serve_on_loopback
from connectors.sandbox.faults import Fate, FaultInjector, FaultSettings, InjectedDisconnect
from sync import config
from sync.config import Settings
from sync.pipeline import CycleReport, Timing, load_model, run_cycle
from sync.store import OPEN_STATUSES, OutboxRow, Store
from sync.training import train_from_store

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
TOKEN = "test-token"
DESTINATION = "hubspot"
SCORE_OPERATION = "update_lead"
TASK_OPERATION = "create_task"
# What the agent writes on a contact, scored_at left out: it is a timestamp, sent along and never compared.
SCORE_PROPERTIES = ("leadrelay_score", "leadrelay_band", "leadrelay_reasons", "leadrelay_model_version")
TASK_KEY = "leadrelay_operation_key"
TASK_PROPERTIES = ("hs_task_subject", "hs_task_body", "hs_timestamp", "hs_task_priority", "hs_task_status",
                   "hs_task_type", "hubspot_owner_id", TASK_KEY)


class FakeTime:
    """One injected clock for the sandbox and the agent: waiting moves it forward instantly."""

    def __init__(self, start: datetime = T0) -> None:
        self.start = start
        self.elapsed = 0.0
        self.waits: list[float] = []

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self.elapsed)

    def monotonic(self) -> float:
        return self.elapsed

    async def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.elapsed += seconds

    def timing(self) -> Timing:
        return Timing(sleep=self.sleep, monotonic=self.monotonic)


def build_settings(base_url: str, work: Path, model_dir: Path, *, retry: Mapping[str, Any] | None = None,
                   **pipeline: Any) -> Settings:
    """One HubSpot connection used as source and destination, a SQLite store in ``work``, rate limits high."""
    return config.parse({
        "store": {"url": f"sqlite:///{work / 'store.db'}"},
        "retry": dict(retry or {}),
        "scoring": {"model_dir": str(model_dir)},
        "connections": {"hubspot": {"type": "hubspot", "token": TOKEN, "base_url": base_url,
                                    "rate_limit_requests": 100_000}},
        "pipelines": {"main": {"source": "hubspot", "destination": DESTINATION, **pipeline}},
    }, env={})


def train_model(work: Path) -> Path:
    """A real model trained from a sandbox history (in-process transport, to keep it fast); its folder."""
    settings, store = pull_history(work)
    train_from_store(settings, "main", store, now=T0)
    store.close()
    return work / "model"


def pull_history(work: Path) -> tuple[Settings, Store]:
    """Settings with ``[scoring.account]`` (its registry in ``work/account``) and a store holding a sandbox
    history — 1,200 contacts with their companies, deals and activities, pulled in-process as of T0 — for the
    account-model tests to train from."""
    sandbox = HubSpotSandbox(token=TOKEN, clock=lambda: T0)
    sandbox.load(generate_dataset(seed=11, contacts=1200, now=T0))
    settings = build_settings("http://sandbox", work, work / "model")
    settings = settings.model_copy(update={"scoring": settings.scoring.model_copy(
        update={"account": config.AccountScoringSettings(model_dir=str(work / "account"))})})
    store = Store(settings.store.url)
    store.create_all()
    asyncio.run(run_cycle(settings, "main", store, clock=lambda: T0, score=False,
                          transports={"hubspot": httpx.ASGITransport(app=sandbox.app)}))
    return settings, store


class Rig:
    """A seeded sandbox on a loopback port, a store and settings pointing at it.

    ``scoring_clock`` is the cycle's clock (scoring "now", due dates, timestamps); by default the fake time.
    Fixing it at one instant keeps scores and task payloads identical across cycles and across rigs, while
    waits still move the fake time (rate windows, Retry-After).
    """

    def __init__(self, sandbox: HubSpotSandbox, base_url: str, work: Path, model_dir: Path, time: FakeTime,
                 *, scoring_clock: Callable[[], datetime] | None = None, retry: Mapping[str, Any] | None = None,
                 **pipeline: Any) -> None:
        self.sandbox = sandbox
        self.time = time
        self.clock = scoring_clock or time.now
        self.settings = build_settings(base_url, work, model_dir, retry=retry, **pipeline)
        self.store = Store(self.settings.store.url)
        self.store.create_all()
        self.model = load_model(self.settings)

    async def cycle(self, *, dry_run: bool = False, model: bool = True) -> CycleReport:
        return await run_cycle(self.settings, "main", self.store, dry_run=dry_run, clock=self.clock,
                               timing=self.time.timing(), model=self.model, score=model)

    def snapshot(self) -> dict[str, Any]:
        """Everything a dry run must leave untouched."""
        with self.store.unit(dry_run=True) as u:
            return {
                "counts": {t: u.count(t) for t in ("lead", "account", "opportunity", "activity", "score", "ledger",
                                                   "outbox", "run", "quarantine", "cursor")},
                "cursors": [u.get_cursor("main", s) for s in ("accounts", "opportunities", "leads", "activities")],
                "outbox": u.outbox_counts(),
                "scores": u.scores("hubspot"),
            }

    def open_operations(self) -> int:
        with self.store.unit(dry_run=True) as u:
            counts = u.outbox_counts()
        return sum(counts.get(status, 0) for status in OPEN_STATUSES)

    async def drain(self, *, max_cycles: int = 20, pause: float = 60.0) -> list[CycleReport]:
        """Run cycles until the outbox holds nothing open (at most ``max_cycles``), ``pause`` fake seconds
        apart; the reports of every cycle run."""
        reports = []
        for _ in range(max_cycles):
            reports.append(await self.cycle())
            if self.open_operations() == 0:
                break
            self.time.elapsed += pause
        return reports


def make_rig(servers: contextlib.ExitStack, work: Path, model_dir: Path, contacts: int = 250, *, seed: int = 5,
             limits: HubSpotLimits | None = None, faults: FaultSettings | None = None, fault_seed: int = 0,
             malformed_share: float = 0.0, scoring_clock: Callable[[], datetime] | None = None,
             retry: Mapping[str, Any] | None = None, wrap: Callable[[ASGIApp], ASGIApp] | None = None,
             **pipeline: Any) -> Rig:
    """A rig whose sandbox (``contacts`` from dataset ``seed``; ``faults`` drawn by ``fault_seed``; its app
    wrapped by ``wrap``) is served on loopback until ``servers`` closes; its store lives in ``work``."""
    time = FakeTime()
    sandbox = HubSpotSandbox(token=TOKEN, clock=time.now, limits=limits, faults=faults, seed=fault_seed)
    sandbox.load(generate_dataset(seed=seed, contacts=contacts, now=T0, malformed_share=malformed_share))
    app = wrap(sandbox.app) if wrap is not None else sandbox.app
    # Injected disconnects are logged by uvicorn as application errors: expected noise under faults.
    quiet = faults is not None or wrap is not None
    base_url = servers.enter_context(serve_on_loopback(app, log_level="critical" if quiet else "warning"))
    work.mkdir(parents=True, exist_ok=True)
    return Rig(sandbox, base_url, work, model_dir, time, scoring_clock=scoring_clock, retry=retry, **pipeline)


def contact_scores(sandbox: HubSpotSandbox) -> dict[str, str]:
    return {cid: rec["properties"].get("leadrelay_score") or "" for cid, rec in sandbox.objects["contacts"].items()}


# --------------------------------------------------------------------------------------------------
# What the destination holds


@dataclass
class DestinationState:
    """What leadrelay wrote into a HubSpot portal, by contact id."""

    scores: dict[str, dict[str, str | None]]          # the leadrelay_* score properties of every contact
    tasks: dict[str, list[dict[str, str | None]]]     # every task associated with the contact
    orphan_tasks: list[str] = field(default_factory=list)  # task ids associated with no contact

    def tasks_per_contact(self) -> Counter[str]:
        return Counter({cid: len(tasks) for cid, tasks in self.tasks.items()})

    def duplicate_task_keys(self) -> list[str]:
        keys = Counter(t[TASK_KEY] for tasks in self.tasks.values() for t in tasks)
        return sorted(str(k) for k, n in keys.items() if n > 1)


def destination_state(sandbox: HubSpotSandbox) -> DestinationState:
    scores = {cid: {p: rec["properties"].get(p) for p in SCORE_PROPERTIES}
              for cid, rec in sandbox.objects["contacts"].items()}
    tasks: dict[str, list[dict[str, str | None]]] = {}
    orphans = []
    for tid, task in sandbox.objects["tasks"].items():
        if task["archived"]:
            continue
        linked = sorted(sandbox.associations.get(("tasks", tid, "contacts"), {}))
        if not linked:
            orphans.append(tid)
        for cid in linked:
            tasks.setdefault(cid, []).append({p: task["properties"].get(p) for p in TASK_PROPERTIES})
    return DestinationState(scores, tasks, orphans)


def outbox_rows(store: Store) -> list[dict[str, Any]]:
    """Every operation the agent ever enqueued, in order."""
    t = OutboxRow.__table__
    with store.unit(dry_run=True) as u:
        return [dict(r._mapping) for r in u.conn.execute(sa.select(t).order_by(t.c.id))]


def ledger_mismatches(store: Store, sandbox: HubSpotSandbox) -> list[str]:
    """Where the agent's ledger and the sandbox disagree; empty when every acknowledged score is on its
    contact, every acknowledged task exists once under its key on its contact, and no task exists that the
    ledger does not know."""
    problems: list[str] = []
    with store.unit(dry_run=True) as u:
        targets = list(sandbox.objects["contacts"])
        scores = u.ledger(DESTINATION, SCORE_OPERATION, targets)
        tasks = u.ledger(DESTINATION, TASK_OPERATION, targets)
    contacts = sandbox.objects["contacts"]
    for cid, entry in scores.items():
        p = entry.payload
        expected = {"leadrelay_score": str(p["score"]), "leadrelay_band": p["band"],
                    "leadrelay_reasons": "; ".join(p["reasons"]) or None,
                    "leadrelay_model_version": p["model_version"]}
        held = {k: contacts[cid]["properties"].get(k) or None for k in expected} if cid in contacts else None
        if held != expected:
            problems.append(f"contact {cid}: ledger says {expected}, sandbox holds {held}")
    by_key = {t["properties"].get(TASK_KEY): tid for tid, t in sandbox.objects["tasks"].items() if not t["archived"]}
    acked = {r["idempotency_key"]: r for r in outbox_rows(store)
             if r["operation"] == TASK_OPERATION and r["status"] == "acknowledged"}
    for key, row in acked.items():
        tid = by_key.get(key)
        linked = set(sandbox.associations.get(("tasks", tid, "contacts"), {})) if tid else set()
        if tid is None or tid != row["remote_id"] or linked != {row["target"]}:
            problems.append(f"task {key} for contact {row['target']}: acknowledged as {row['remote_id']}, "
                            f"sandbox has {tid} linked to {sorted(linked)}")
        if row["target"] not in tasks:
            problems.append(f"task {key} acknowledged but contact {row['target']} has no ledger entry")
    for key, tid in by_key.items():
        if key not in acked:
            problems.append(f"task {tid} (key {key}) is in the sandbox but not acknowledged in the ledger")
    return problems


# --------------------------------------------------------------------------------------------------
# Faults


FAULT_KINDS = ("429 storm", "5xx", "drop before effect", "drop after effect", "reset before effect",
               "reset after effect")


def injected_faults(faults: FaultSettings, seed: int, requests: int) -> Counter[str]:
    """The request faults a sandbox with ``faults`` and ``seed`` dealt to its first ``requests`` requests, by
    kind. The injector is deterministic by seed and request number, so replaying as many draws as the
    sandbox served requests tells what it did (in whatever order concurrent requests took them)."""
    injector = FaultInjector(faults, seed)
    kinds: Counter[str] = Counter()
    for _ in range(requests):
        fault = injector.for_request()
        if fault.fate is Fate.STORM_429:
            kinds["429 storm"] += 1
        elif fault.fate is Fate.SERVER_ERROR:
            kinds["5xx"] += 1
        elif fault.fate in (Fate.DROP_BEFORE, Fate.DROP_AFTER):
            drop = "reset" if fault.stall == 0.0 else "drop"
            kinds[f"{drop} {'after' if fault.fate is Fate.DROP_AFTER else 'before'} effect"] += 1
    return kinds


def poisoned_operations(store: Store, faults: FaultSettings, seed: int) -> set[tuple[str, str]]:
    """(operation, target) of every enqueued operation whose input the sandbox refuses whole: a score update
    by its contact id, a task by its trace id (the operation's key) — as HubSpotSandbox decides them."""
    injector = FaultInjector(faults, seed)
    out = set()
    for row in outbox_rows(store):
        key = row["target"] if row["operation"] == SCORE_OPERATION else row["idempotency_key"]
        if injector.poisoned(key):
            out.add((row["operation"], row["target"]))
    return out


def dead_letters(store: Store) -> set[tuple[str, str]]:
    with store.unit(dry_run=True) as u:
        return {(d["operation"], d["target"]) for d in u.dead_letters()}


class DropAfterEffect:
    """ASGI middleware: the ``nth`` request to ``method path`` that takes effect (its 2xx answer reports results)
    loses its answer — the connection drops after the effect — on top of the app's own faults."""

    def __init__(self, app: ASGIApp, method: str, path: str, nth: int = 1) -> None:
        self.app, self.method, self.path = app, method, path
        self.left = nth
        self.dropped = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.left <= 0 or scope["type"] != "http" or (scope["method"], scope["path"]) != (self.method, self.path):
            await self.app(scope, receive, send)
            return
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        try:
            await self.app(scope, receive, hold)
        except BaseException:
            for message in held:  # the app's own fault (a drop): pass it on as it was
                await send(message)
            raise
        status = held[0]["status"] if held else 500
        body = b"".join(m.get("body", b"") for m in held if m["type"] == "http.response.body")
        if 200 <= status < 300 and json.loads(body or b"{}").get("results"):
            self.left -= 1
            if self.left == 0:
                self.dropped += 1
                await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"64")]})
                raise InjectedDisconnect
        for message in held:
            await send(message)


# --------------------------------------------------------------------------------------------------
# The fault scenario: one sync of a portal, with follow-up tasks, under every kind of fault at once

CONTACTS = 400
HOT = 4  # the follow-up threshold: about one lead in five of this portal scores 4 or more
TASK_CREATE_PATH = "/crm/v3/objects/tasks/batch/create"
FAULTS = FaultSettings(
    error_rate=0.08,                          # 500/502/503/504, no effect
    storm_429=0.04, storm_429_length=3,       # bursts of 429s
    timeout_rate=0.06,                        # dropped after a stall; half of them after the effect
    reset_rate=0.06,                          # reset at once; half of them after the effect
    partial_failure_rate=0.03,                # 207: single inputs fail (transient)
    batch_rejection_share=0.01,               # poisoned inputs: their whole batch is refused (400)
)


def scenario_options() -> dict[str, Any]:
    """The pipeline of the fault scenario. Every cycle scores "as of" T0, so scores and task payloads (due
    dates, hence operation keys) are the same in every cycle and in the fault-free run; waits still move the
    fake time. Ten tries per request make a pull that gives up (and scores on partial data) practically
    impossible, so the only differences left to find are delivery's."""
    return {"scoring_clock": lambda: T0, "follow_up": {"min_score": HOT}, "retry": {"attempts": 10}}


@dataclass
class Reference:
    """The fault-free run: what the destination holds and what the agent scored."""

    state: DestinationState
    scores: dict[str, dict[str, Any]]


@dataclass
class FaultRun:
    """One seed's run under faults, repeated until nothing is open, and what it left behind."""

    seed: int
    reports: list[CycleReport]
    open_left: int
    requests: int
    injected: Counter[str]
    status_codes: Counter[int]
    rejected_batches: int
    dropped_after_create: int
    state: DestinationState
    scores: dict[str, dict[str, Any]]
    poisoned: set[tuple[str, str]]
    dead: set[tuple[str, str]]
    dead_reasons: list[str]
    ledger_problems: list[str]

    def outcomes(self, name: str) -> int:
        return sum(d["outcomes"].get(name, 0) for r in self.reports for d in r.delivery)


def stored_scores(store: Store) -> dict[str, dict[str, Any]]:
    """The agent's latest score of each lead, without the time it was computed."""
    with store.unit(dry_run=True) as u:
        return {k: {c: v for c, v in row.items() if c != "scored_at"} for k, row in u.scores(DESTINATION).items()}


async def run_reference(servers: contextlib.ExitStack, work: Path, model_dir: Path) -> Reference:
    rig = make_rig(servers, work, model_dir, CONTACTS, **scenario_options())
    await rig.drain()
    return Reference(destination_state(rig.sandbox), stored_scores(rig.store))


async def run_with_faults(servers: contextlib.ExitStack, work: Path, model_dir: Path, seed: int, *,
                          faults: FaultSettings = FAULTS, max_cycles: int = 20) -> FaultRun:
    """The scenario under ``faults`` drawn by ``seed``, plus one task create that is applied and whose answer
    is lost (so every run takes the look-up path); cycles repeat until nothing is open."""
    drops: list[DropAfterEffect] = []

    def wrap(app: ASGIApp) -> ASGIApp:
        drops.append(DropAfterEffect(app, "POST", TASK_CREATE_PATH))
        return drops[0]

    rig = make_rig(servers, work, model_dir, CONTACTS, faults=faults, fault_seed=seed, wrap=wrap,
                   **scenario_options())
    reports = await rig.drain(max_cycles=max_cycles)
    stats = rig.sandbox.stats
    requests = sum(stats.requests.values())
    with rig.store.unit(dry_run=True) as u:
        reasons = [d["last_error"] or "" for d in u.dead_letters()]
    return FaultRun(
        seed=seed, reports=reports, open_left=rig.open_operations(), requests=requests,
        injected=injected_faults(faults, seed, requests), status_codes=Counter(stats.status_codes),
        rejected_batches=stats.rejected_batches, dropped_after_create=drops[0].dropped,
        state=destination_state(rig.sandbox), scores=stored_scores(rig.store),
        poisoned=poisoned_operations(rig.store, faults, seed), dead=dead_letters(rig.store), dead_reasons=reasons,
        ledger_problems=ledger_mismatches(rig.store, rig.sandbox),
    )


@dataclass
class Differences:
    """How a run under faults differs from the fault-free run, poisoned inputs set aside."""

    scores: list[str]         # contacts whose score properties are not the reference's (all missing updates)
    tasks: list[str]          # contacts whose tasks are not the reference's
    duplicates: int           # tasks beyond one per contact, plus tasks sharing an operation key
    missing: int              # score updates and hot leads' tasks the reference has and this run lacks
    poison_leaked: list[str]  # poisoned operations whose effect is in the destination anyway


def compare(reference: Reference, run: FaultRun) -> Differences:
    poisoned_scores = {t for op, t in run.poisoned if op == SCORE_OPERATION}
    poisoned_tasks = {t for op, t in run.poisoned if op == TASK_OPERATION}
    ref, got = reference.state, run.state
    scores = sorted(c for c in ref.scores if c not in poisoned_scores and got.scores.get(c) != ref.scores[c])
    tasks = sorted(c for c in set(ref.tasks) | set(got.tasks)
                   if c not in poisoned_tasks and got.tasks.get(c) != ref.tasks.get(c))
    duplicates = sum(n - 1 for n in got.tasks_per_contact().values() if n > 1) + len(got.duplicate_task_keys())
    missing = len(scores) + sum(1 for c in tasks if len(got.tasks.get(c, [])) < len(ref.tasks.get(c, [])))
    leaked = sorted([f"{SCORE_OPERATION} {c}" for c in poisoned_scores if any(got.scores[c].values())]
                    + [f"{TASK_OPERATION} {c}" for c in poisoned_tasks if got.tasks.get(c)])
    return Differences(scores, tasks, duplicates, missing, leaked)


__all__ = [
    "CONTACTS",
    "DESTINATION",
    "FAULTS",
    "FAULT_KINDS",
    "HOT",
    "T0",
    "TOKEN",
    "DestinationState",
    "Differences",
    "DropAfterEffect",
    "FakeTime",
    "FaultRun",
    "Reference",
    "Rig",
    "build_settings",
    "compare",
    "contact_scores",
    "dead_letters",
    "destination_state",
    "injected_faults",
    "ledger_mismatches",
    "make_rig",
    "outbox_rows",
    "poisoned_operations",
    "run_reference",
    "run_with_faults",
    "scenario_options",
    "stored_scores",
    "train_model",
]
