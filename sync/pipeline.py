"""One cycle: pull -> store -> score -> plan -> outbox -> deliver -> acknowledge.

The dry run is this very function with ``dry_run=True``: it pulls (reads only), stores, scores, plans and
enqueues inside the store's unit of work, skips delivery, and the unit rolls everything back — so the
plan it prints is the plan a real run would enqueue, and nothing changes anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from connectors import registry
from connectors.base import (
    Account,
    Activity,
    Connector,
    ConnectorError,
    FixConfiguration,
    Lead,
    QuotaExhausted,
)
from connectors.http import HttpLayer, RetrySettings, Sleep, TokenBucket, build_client
from sync.config import ConnectionSettings, PipelineSettings, Settings
from sync.outbox import Deliverer
from sync.planner import DesiredWrite, Plan, plan, score_moved
from sync.store import Store, Unit
from sync.subjects import build_subjects

if TYPE_CHECKING:
    from scoring import FeatureFrame, ScoreBatch, ScoringModel

Clock = Callable[[], datetime]
Transports = Mapping[str, httpx.AsyncBaseTransport]
STREAM_ORDER = ("accounts", "leads", "activities")
SCORE_OPERATION = "update_lead"
# Pages are committed together with their cursor; committing every few thousand records instead of every
# page keeps that guarantee (a crash loses uncommitted pages *and* their cursor moves) at a fraction of the
# fsyncs.
COMMIT_EVERY = 5_000


def utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass
class CycleReport:
    """What one cycle read, decided, planned and delivered; printed by the CLI (text or JSON)."""

    pipeline: str
    dry_run: bool
    started_at: datetime
    run_id: int | None = None
    status: str = "running"
    read: Counter[str] = field(default_factory=Counter)
    changed: Counter[str] = field(default_factory=Counter)
    quarantined: int = 0
    quarantine_samples: list[dict[str, Any]] = field(default_factory=list)
    scored: int = 0
    model_version: str | None = None
    scoring_note: str | None = None
    plan: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    delivery: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase
    finished_at: datetime | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "dry_run": self.dry_run, "run_id": self.run_id, "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "read": dict(self.read), "changed": dict(self.changed), "quarantined": self.quarantined,
            "quarantine_samples": self.quarantine_samples, "scored": self.scored,
            "model_version": self.model_version, "scoring_note": self.scoring_note, "plan": self.plan,
            "samples": self.samples, "delivery": self.delivery, "errors": self.errors,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
        }


@dataclass(frozen=True, slots=True)
class Timing:
    """How the cycle waits: real time by default; tests inject a fake that moves a fake clock."""

    sleep: Sleep = asyncio.sleep
    monotonic: Callable[[], float] = time.monotonic


def build_connector(
    connection: ConnectionSettings,
    name: str,
    retry: RetrySettings,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timing: Timing = Timing(),
) -> Connector:
    """Instantiate a configured connector with its HTTP layer (client, retry policy, rate budget)."""
    cls = registry.get(connection.type)
    options = connection.options
    limit = cls.rate_limit_for(options)
    client = build_client(cls.client_base_url(options), headers=cls.client_headers(options), transport=transport)
    limiter = TokenBucket(limit, clock=timing.monotonic, sleep=timing.sleep) if limit is not None else None
    return cls(options, HttpLayer(client, name=name, retry=retry, limiter=limiter, sleep=timing.sleep))


def retry_settings(settings: Settings) -> RetrySettings:
    r = settings.retry
    return RetrySettings(attempts=r.attempts, initial_wait=r.initial_wait, max_wait=r.max_wait,
                         max_retry_after=r.max_retry_after, timeout=r.timeout)


def load_model(settings: Settings) -> ScoringModel | None:
    directory = Path(settings.scoring.model_dir)
    if not (directory / "model.onnx").exists():
        return None
    from scoring import ScoringModel

    return ScoringModel.load(directory)


class Cycle:
    """The state of one running cycle; each step is a method so tests and the daemon can reuse them."""

    def __init__(self, settings: Settings, name: str, unit: Unit, report: CycleReport, *, clock: Clock,
                 now: datetime, source: Connector, destination: Connector,
                 model: ScoringModel | None, scoring_on: bool = True) -> None:
        self.settings = settings
        self.name = name
        self.pipe: PipelineSettings = settings.pipelines[name]
        self.unit = unit
        self.report = report
        self.clock = clock
        self.now = now
        self.source = source
        self.destination = destination
        self.model = model
        self.scoring_on = scoring_on
        self.affected: set[str] = set()

    # -- pull + store -------------------------------------------------------------------------------

    async def pull(self) -> None:
        src = self.pipe.source
        wanted = [s for s in STREAM_ORDER if s in self.pipe.streams and s in self.source.capabilities.streams]
        changed_accounts: set[str] = set()
        for stream in wanted:
            cursor = self.unit.get_cursor(self.name, stream)
            uncommitted = 0
            try:
                async for page in self.source.pull(stream, cursor):
                    leads = [r for r in page.records if isinstance(r, Lead)]
                    accounts = [r for r in page.records if isinstance(r, Account)]
                    activities = [r for r in page.records if isinstance(r, Activity)]
                    self.report.read[stream] += len(page.records)
                    if accounts:
                        changed = self.unit.upsert_accounts(src, accounts)
                        changed_accounts |= changed
                        self.report.changed["accounts"] += len(changed)
                    if leads:
                        changed = self.unit.upsert_leads(src, leads)
                        self.affected |= changed
                        self.report.changed["leads"] += len(changed)
                    if activities:
                        fresh, touched = self.unit.add_activities(src, activities)
                        self.affected |= touched
                        self.report.changed["activities"] += fresh
                    if page.quarantined:
                        self.unit.quarantine(src, page.quarantined, self.report.run_id, self.now)
                        self.report.quarantined += len(page.quarantined)
                        for q in page.quarantined[: max(0, 10 - len(self.report.quarantine_samples))]:
                            self.report.quarantine_samples.append(
                                {"stream": q.stream, "key": q.key, "reason": q.reason})
                    if page.cursor is not None:
                        # Same transaction as the page's rows: the cursor never passes unstored data.
                        self.unit.set_cursor(self.name, stream, page.cursor, self.now)
                    uncommitted += len(page.records) + len(page.quarantined)
                    if uncommitted >= COMMIT_EVERY:
                        self.unit.checkpoint()
                        uncommitted = 0
                self.unit.checkpoint()
            except FixConfiguration:
                raise
            except ConnectorError as exc:
                self.report.errors.append(f"pull {stream}: {exc}")
                if isinstance(exc, QuotaExhausted):
                    break
        if changed_accounts:
            self.affected |= self.unit.leads_of_accounts(src, changed_accounts)

    # -- score --------------------------------------------------------------------------------------

    def score(self) -> list[DesiredWrite]:
        if not self.scoring_on:
            self.report.scoring_note = "scoring off for this run (pull only)"
            return []
        if self.model is None:
            self.report.scoring_note = (f"no model in {self.settings.scoring.model_dir}: "
                                        "run `leadrelay train` to create one; nothing was scored")
            return []
        from scoring import compute_features

        src = self.pipe.source
        due_before = self.now - timedelta(hours=self.settings.scoring.rescore_after_hours)
        keys = sorted(self.unit.existing_leads(src, self.affected) | self.unit.leads_scored_before(src, due_before))
        since = self.now - timedelta(days=self.pipe.activity_retention_days)
        desired: list[DesiredWrite] = []
        step = self.settings.scoring.batch_size
        self.report.model_version = self.model.version
        for start in range(0, len(keys), step):
            chunk = keys[start:start + step]
            leads = self.unit.load_leads(src, chunk)
            accounts = self.unit.load_accounts(src, [x["account_key"] for x in leads if x["account_key"]])
            activities = self.unit.load_activities(src, chunk, since)
            subjects = build_subjects(leads, accounts, activities)
            frame = compute_features(self.model.spec, subjects, self.now)
            previous = self.unit.scores(src, chunk)
            batch = self._score_with_reasons(frame, previous)
            rows = []
            for subject, s in zip(subjects, batch.rows(), strict=True):
                before = previous.get(subject.key)
                positive, negative = s.reasons_positive, s.reasons_negative
                if not positive and not negative and before is not None:
                    positive, negative = before["reasons_positive"], before["reasons_negative"]
                rows.append({"lead_key": subject.key, "probability": s.probability, "score": s.score,
                             "band": s.band, "reasons_positive": list(positive),
                             "reasons_negative": list(negative), "model_version": s.model_version,
                             "scored_at": self.now})
                if self.pipe.push_scores:
                    top = f": {positive[0]}" if positive else ""
                    desired.append(DesiredWrite(
                        destination=self.pipe.destination, operation=SCORE_OPERATION, target=subject.key,
                        payload={"score": s.score, "band": s.band, "reasons": list(positive),
                                 "model_version": s.model_version, "scored_at": self.now.isoformat()},
                        reason=f"scored {s.score} (band {s.band}){top}",
                    ))
            self.unit.save_scores(src, rows)
            self.unit.checkpoint()
            self.report.scored += len(rows)
        return desired

    def _score_with_reasons(self, frame: FeatureFrame, previous: Mapping[str, Mapping[str, Any]]) -> ScoreBatch:
        """Reasons cost one model run per feature group, so they are worded only for leads whose score,
        band or model changed; the others keep the reasons they already have."""
        assert self.model is not None
        quick = self.model.score(frame, reasons=False)
        changed = [i for i, (key, score, band) in enumerate(zip(frame.keys, quick.score, quick.band, strict=True))
                   if (before := previous.get(key)) is None or before["score"] != int(score)
                   or before["band"] != str(band) or before["model_version"] != quick.model_version]
        if not changed:
            return quick
        return self.model.score(frame, reason_rows=changed)

    # -- plan + enqueue -----------------------------------------------------------------------------

    def plan(self, desired: list[DesiredWrite]) -> Plan:
        slots = {(d.destination, d.operation) for d in desired}
        ledger = {slot: self.unit.ledger(slot[0], slot[1], [d.target for d in desired if
                                                              (d.destination, d.operation) == slot])
                  for slot in slots}
        queued = {slot: self.unit.open_targets(*slot) for slot in slots}
        result = plan(desired, ledger, queued,
                      material={SCORE_OPERATION: score_moved(self.pipe.min_score_change)})
        self.unit.enqueue(self.name, result.ops, self.report.run_id, self.clock())
        self.unit.checkpoint()
        self.report.plan = result.summary()
        self.report.samples = [
            {"destination": op.destination, "operation": op.operation, "target": op.target,
             "reason": op.reason, "payload": dict(op.payload)} for op in result.ops[:10]
        ]
        return result

    # -- deliver ------------------------------------------------------------------------------------

    async def deliver(self) -> None:
        deliverer = Deliverer(self.unit, self.destination, self.pipe.destination, clock=self.clock)
        result = await deliverer.deliver()
        self.report.delivery.append(result.as_dict())
        if result.stopped:
            self.report.errors.append(f"deliver {self.pipe.destination}: {result.stopped}")


async def run_cycle(
    settings: Settings,
    name: str,
    store: Store,
    *,
    dry_run: bool = False,
    clock: Clock = utcnow,
    transports: Transports | None = None,
    model: ScoringModel | None = None,
    timing: Timing = Timing(),
    score: bool = True,
) -> CycleReport:
    """Run one cycle of pipeline ``name``; with ``dry_run`` nothing is written anywhere; with
    ``score=False`` it only pulls (a backfill before the first model)."""
    if name not in settings.pipelines:
        raise KeyError(f"no pipeline named {name!r} (configured: {', '.join(settings.pipelines)})")
    pipe = settings.pipelines[name]
    now = clock()
    report = CycleReport(pipeline=name, dry_run=dry_run, started_at=now)
    transports = transports or {}
    retry = retry_settings(settings)
    built: dict[str, Connector] = {}
    for conn_name in {pipe.source, pipe.destination}:
        built[conn_name] = build_connector(settings.connections[conn_name], conn_name, retry,
                                           transport=transports.get(conn_name), timing=timing)
    if model is None and score:
        model = load_model(settings)
    try:
        with store.unit(dry_run=dry_run) as unit:
            report.run_id = unit.start_run(name, now, dry_run=dry_run)
            cycle = Cycle(settings, name, unit, report, clock=clock, now=now, source=built[pipe.source],
                          destination=built[pipe.destination], model=model, scoring_on=score)
            try:
                mark = time.perf_counter()
                await cycle.pull()
                report.seconds["pull"] = time.perf_counter() - mark
                mark = time.perf_counter()
                desired = cycle.score()
                report.seconds["score"] = time.perf_counter() - mark
                mark = time.perf_counter()
                cycle.plan(desired)
                report.seconds["plan"] = time.perf_counter() - mark
                if not dry_run:
                    mark = time.perf_counter()
                    await cycle.deliver()
                    report.seconds["deliver"] = time.perf_counter() - mark
                report.status = "partial" if report.errors else "succeeded"
            except FixConfiguration as exc:
                report.status = "failed"
                report.errors.append(str(exc))
            report.finished_at = clock()
            unit.finish_run(report.run_id, report.finished_at, report.status, _counts(report),
                            "; ".join(report.errors) or None)
    finally:
        for connector in built.values():
            with contextlib.suppress(RuntimeError):
                await connector.http.client.aclose()
    return report


def _counts(report: CycleReport) -> dict[str, Any]:
    return {"read": dict(report.read), "changed": dict(report.changed), "quarantined": report.quarantined,
            "scored": report.scored, "plan": report.plan,
            "delivery": [d["outcomes"] for d in report.delivery]}


def run_cycle_sync(settings: Settings, name: str, store: Store, **kwargs: Any) -> CycleReport:
    return asyncio.run(run_cycle(settings, name, store, **kwargs))


__all__ = ["CycleReport", "Timing", "build_connector", "load_model", "run_cycle", "run_cycle_sync"]
