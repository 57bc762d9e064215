"""One cycle: pull -> store -> score -> plan -> outbox -> deliver -> acknowledge.

The dry run is this very function with ``dry_run=True``: it pulls (reads only), stores, scores, plans and
enqueues inside the store's unit of work, skips delivery, and the unit rolls everything back — so the
plan it prints is the plan a real run would enqueue, and nothing changes anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
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
    ConsentChange,
    FixConfiguration,
    Lead,
    Opportunity,
    Page,
    QuotaExhausted,
)
from connectors.http import (
    RATE_BUDGETS,
    HttpLayer,
    RateBudgets,
    RetrySettings,
    Sleep,
    account_identity,
    build_client,
)
from sync.alerts import observe_fields
from sync.config import ConnectionSettings, PipelineSettings, Settings
from sync.locks import PipelineBusy, pipeline_lock
from sync.masking import mask_record
from sync.outbox import Deliverer
from sync.planner import DesiredWrite, Plan, plan, score_moved
from sync.prefetch import prefetch
from sync.store import LedgerEntry, Store, Unit
from sync.subjects import build_subjects

if TYPE_CHECKING:
    from scoring import FeatureFrame, ScoreBatch, ScoringModel

Clock = Callable[[], datetime]
Transports = Mapping[str, httpx.AsyncBaseTransport]
STREAM_ORDER = ("accounts", "opportunities", "leads", "activities", "consent")
SCORE_OPERATION = "update_lead"
TASK_OPERATION = "create_task"
ACCOUNT_OPERATION = "update_account"
# Pages are committed together with their cursor; committing every few thousand records instead of every
# page keeps that guarantee (a crash loses uncommitted pages *and* their cursor moves) at a fraction of the
# fsyncs.
COMMIT_EVERY = 5_000
# Pages read ahead of the store: two keep the source busy; more only hold memory.
PREFETCH_PAGES = 2
SAMPLES = 10  # planned operations shown with their reasons in the report


log = logging.getLogger("leadrelay.pipeline")


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
    read_only: int = 0  # scored leads the source refuses writes to (Lead.read_only): scored and stored, not written
    model_version: str | None = None
    scoring_note: str | None = None
    # PSI of the run's scores and top features against the model's training reference (sync.serving).
    drift: dict[str, Any] = field(default_factory=dict)
    challenger: dict[str, Any] = field(default_factory=dict)  # the challenger scored in shadow vs the champion
    account: dict[str, Any] = field(default_factory=dict)  # the account model: its version, accounts scored
    plan: dict[str, Any] = field(default_factory=dict)
    samples: list[dict[str, Any]] = field(default_factory=list)
    operations: list[dict[str, Any]] = field(default_factory=list)  # the whole plan (dry runs only)
    decisions: dict[str, Any] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    delivery: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # wall time per phase
    finished_at: datetime | None = None
    # Fields the source delivered with a value, and the value's type, per stream (sampled; sync.alerts
    # compares them run to run to tell a mapped field vanishing or changing type).
    fields: dict[str, dict[str, str]] = field(default_factory=dict)
    fields_sampled: Counter[str] = field(default_factory=Counter)
    # A cycle on the records a trigger named (``run_cycle(only=...)``): stream -> number of keys asked for.
    targeted: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "pipeline": self.pipeline, "dry_run": self.dry_run, "run_id": self.run_id, "status": self.status,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "read": dict(self.read), "changed": dict(self.changed), "quarantined": self.quarantined,
            "quarantine_samples": self.quarantine_samples, "scored": self.scored, "read_only": self.read_only,
            "model_version": self.model_version, "scoring_note": self.scoring_note, "drift": self.drift,
            "challenger": self.challenger, "account": self.account, "plan": self.plan,
            "samples": self.samples, "operations": self.operations, "decisions": self.decisions,
            "warnings": self.warnings, "delivery": self.delivery, "errors": self.errors,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()}, "fields": self.fields,
            "targeted": self.targeted,
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
    budgets: RateBudgets | None = None,
) -> Connector:
    """Instantiate a configured connector with its HTTP layer (client, retry policy, rate budget).

    The rate limiter is shared per account (connector type, base URL and credentials) through ``budgets``
    (default: the process-wide registry), so pipelines writing to the same portal spend one budget.
    """
    cls = registry.get(connection.type)
    options = connection.options
    limit = cls.rate_limit_for(options)
    base_url, headers = cls.client_base_url(options), cls.client_headers(options)
    client = build_client(base_url, headers=headers, transport=transport)
    limiter = None
    if limit is not None:
        account = account_identity(base_url, headers)
        limiter = (budgets or RATE_BUDGETS).limiter(connection.type, account, limit, clock=timing.monotonic,
                                                    sleep=timing.sleep)
    return cls(options, HttpLayer(client, name=name, retry=retry, limiter=limiter, sleep=timing.sleep))


def retry_settings(settings: Settings) -> RetrySettings:
    r = settings.retry
    return RetrySettings(attempts=r.attempts, initial_wait=r.initial_wait, max_wait=r.max_wait,
                         max_retry_after=r.max_retry_after, timeout=r.timeout)


def load_model(settings: Settings) -> ScoringModel | None:
    """The registry's champion (promotion copies its files to the root of ``scoring.model_dir``), checked
    against the configured feature spec: a mismatch raises :class:`FixConfiguration` naming the inputs."""
    directory = Path(settings.scoring.model_dir)
    if not (directory / "model.onnx").exists():
        return None
    from scoring import ScoringModel
    from sync.serving import check_model

    model = ScoringModel.load(directory)
    check_model(settings, model)
    return model


class Cycle:
    """The state of one running cycle; each step is a method so tests and the daemon can reuse them."""

    def __init__(self, settings: Settings, name: str, unit: Unit, report: CycleReport, *, clock: Clock,
                 now: datetime, source: Connector, destination: Connector,
                 model: ScoringModel | None, scoring_on: bool = True,
                 destinations: Mapping[str, Connector] | None = None,
                 stop: Callable[[], bool] | None = None,
                 only: Mapping[str, Sequence[str]] | None = None,
                 progress: Callable[[dict[str, int]], None] | None = None) -> None:
        self.settings = settings
        self.name = name
        self.pipe: PipelineSettings = settings.pipelines[name]
        self.unit = unit
        self.report = report
        self.clock = clock
        self.now = now
        self.source = source
        self.destination = destination
        # Every connection this pipeline writes to: its destination and its audiences' destinations.
        self.destinations: dict[str, Connector] = {self.pipe.destination: destination, **(destinations or {})}
        self.model = model
        self.scoring_on = scoring_on
        self.challenger: ScoringModel | None = None  # loaded by score(): the registry's, scored in shadow
        self.account_model: ScoringModel | None = None  # loaded by score(): [scoring.account]'s, if trained
        self.account_challenger: ScoringModel | None = None  # loaded by score(): the account registry's, in shadow
        self._account_scores: dict[str, tuple[int, str]] = {}  # account -> (score, band), this cycle
        self._accounts_planned: set[str] = set()  # of those, the ones whose update_account is planned
        self._account_fields_decided: tuple[bool, frozenset[str] | None] | None = None  # see _account_fields
        self._account_watch: Any = None  # serving.DriftWatch of the account model, when it has a reference
        self._account_shadow: Any = None  # serving.ShadowComparison of the account challenger
        self._account_target = ""  # the account question's target event, set by _start_accounts
        self.affected: set[str] = set()
        self.scored_keys: set[str] = set()
        self._owners: dict[str, str] = {}
        self.decisions: Any = None  # sync.decide.Decisions once decided
        self._changed_accounts: set[str] = set()
        self._warned_disposition = False
        self._uncommitted = 0
        self.planned = Plan(())
        self.plan_seconds = 0.0
        # The daemon's stop request (SIGTERM): checked after each stored page and each scored batch, so the
        # cycle ends after the batch in flight, with everything done so far committed.
        self.stop = stop or (lambda: False)
        self.stopped = False
        # The records a trigger named (stream -> source keys): pulled by key instead of by cursor.
        self.only = {stream: list(dict.fromkeys(keys)) for stream, keys in (only or {}).items() if keys} or None
        # Told after each stored page, scored batch and destination delivered (the CLI's progress lines).
        self._progress = progress
        self.pages = 0

    def stopping(self) -> bool:
        if not self.stopped and self.stop():
            self.stopped = True
            self.report.warnings.append("stopped on request after the batch in flight; the rest waits for the "
                                        "next run")
        return self.stopped

    def check_destination(self) -> None:
        """Refuse, before anything is read, a pipeline asking a destination for what it cannot do."""
        wanted: dict[str, list[str]] = {self.pipe.destination: (
            ([SCORE_OPERATION] if self.pipe.push_scores or self.pipe.routing else [])
            + ([TASK_OPERATION] if self.pipe.follow_up is not None or self.pipe.routing else []))}
        for name in self.pipe.audiences:
            destination = self.settings.audiences[name]["destination"]
            wanted.setdefault(destination, []).extend(["audience_add", "audience_remove"])
        for destination, ops in wanted.items():
            operations = self.destinations[destination].capabilities.operations
            missing = [op for op in dict.fromkeys(ops) if op not in operations]
            if missing:
                raise FixConfiguration(
                    f"pipelines.{self.name}: destination {destination!r} cannot {', '.join(missing)} "
                    f"(it offers: {', '.join(operations) or 'no write operations'})")

    def check_model(self) -> None:
        """Refuse, before anything is read, a model trained with another feature spec than the configured one
        (also one handed in by a caller rather than loaded by :func:`load_model`)."""
        if self.model is not None and self.scoring_on:
            from sync.serving import check_model

            check_model(self.settings, self.model)

    # -- pull + store -------------------------------------------------------------------------------

    async def pull(self) -> None:
        if self.only is not None:
            if self._can_fetch():
                await self._pull_named(self.only)
                return
            self.report.warnings.append(
                f"source {self.pipe.source!r} cannot read {', '.join(sorted(self.only))} by key: ran an "
                "incremental pull instead")
            self.only = None
        wanted = [s for s in STREAM_ORDER if s in self.pipe.streams and s in self.source.capabilities.streams]
        for stream in wanted:
            if self.stopping():
                break
            cursor = self.unit.get_cursor(self.name, stream)
            self._uncommitted = 0
            try:
                # The next pages are fetched while this one is stored (in a worker thread, so the event loop
                # keeps the vendor busy): pull time is the slower of the two, not their sum.
                async with contextlib.aclosing(prefetch(self.source.pull(stream, cursor), PREFETCH_PAGES)) as pages:
                    async for page in pages:
                        await asyncio.to_thread(self._store_page, stream, page)
                        if self.stopping():
                            break
                self.unit.checkpoint()
            except FixConfiguration:
                raise
            except ConnectorError as exc:
                self.report.errors.append(f"pull {stream}: {exc}")
                if isinstance(exc, QuotaExhausted):
                    break
        if self._changed_accounts:
            self.affected |= self.unit.leads_of_accounts(self.pipe.source, self._changed_accounts)

    def _can_fetch(self) -> bool:
        assert self.only is not None
        fetchable = self.source.capabilities.fetchable
        return all(stream in fetchable and stream in self.pipe.streams for stream in self.only)

    async def _pull_named(self, only: Mapping[str, list[str]]) -> None:
        """Read just the named records (no cursor moves: cursors belong to incremental pulls) and store them;
        scoring then takes the changed ones as in any cycle. Their activities are not read here (HubSpot
        has no batch read of events by contact): the change the trigger reported is what gets scored, and
        the next scheduled cycle brings the activities."""
        for stream in (s for s in STREAM_ORDER if s in only):
            if self.stopping():
                break
            keys = only[stream]
            self.report.targeted[stream] = len(keys)
            found: set[str] = set()
            try:
                async for page in self.source.fetch(stream, keys):
                    found.update(r.key for r in page.records if isinstance(r, Lead | Account | Opportunity))
                    await asyncio.to_thread(self._store_page, stream, page)
                    if self.stopping():
                        break
                self.unit.checkpoint()
            except FixConfiguration:
                raise
            except ConnectorError as exc:
                self.report.errors.append(f"fetch {stream}: {exc}")
                if isinstance(exc, QuotaExhausted):
                    break
                continue
            missing = [k for k in keys if k not in found]
            if missing and not self.stopped:
                shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5 else "")
                self.report.warnings.append(f"{len(missing)} {stream} key(s) named by the trigger not found at "
                                            f"the source (deleted or merged?): {shown}")
        if self._changed_accounts:
            self.affected |= self.unit.leads_of_accounts(self.pipe.source, self._changed_accounts)

    def _dispositions(self, leads: Sequence[Lead]) -> list[Activity]:
        """``disposition`` events for the page's leads whose disposition field changed (sync.dispositions),
        read against the stored leads before the page replaces them."""
        from sync.dispositions import disposition_changes

        field = self.pipe.disposition_field
        assert field is not None
        stored = {row["key"]: row for row in self.unit.load_leads(self.pipe.source, [lead.key for lead in leads])}
        events, present = disposition_changes(field, leads, stored)
        if not present and not self._warned_disposition:
            self._warned_disposition = True
            self.report.warnings.append(
                f"disposition_field {field!r} is on none of the leads pulled: add it to the source's extra "
                f"properties (HubSpot extra_contact_properties, Salesforce extra_lead_fields)")
        self.report.changed["dispositions"] += len(events)
        return events

    def _store_page(self, stream: str, page: Page) -> None:
        src = self.pipe.source
        leads = [r for r in page.records if isinstance(r, Lead)]
        accounts = [r for r in page.records if isinstance(r, Account)]
        activities = [r for r in page.records if isinstance(r, Activity)]
        consent = [r for r in page.records if isinstance(r, ConsentChange)]
        opportunities = [r for r in page.records if isinstance(r, Opportunity)]
        self.report.read[stream] += len(page.records)
        observe_fields(self.report.fields, self.report.fields_sampled, stream, page.records)
        # What a change makes due for rescoring is marked in the change's own transaction: ``affected`` only
        # lives as long as this run, and the cursor will not bring the change back to the next one.
        if accounts:
            changed = self.unit.upsert_accounts(src, accounts)
            self._changed_accounts |= changed
            self.report.changed["accounts"] += len(changed)
            if changed:
                self.unit.mark_for_rescore(src, self.unit.leads_of_accounts(src, changed))
        if opportunities:
            changed = self.unit.upsert_opportunities(src, opportunities)
            self.report.changed["opportunities"] += len(changed)
            # An account whose opportunities changed is a changed account: the account model rescores it.
            self._changed_accounts |= {o.account_key for o in opportunities if o.key in changed and o.account_key}
        if leads and self.pipe.disposition_field:
            activities = [*activities, *self._dispositions(leads)]
        if leads:
            changed = self.unit.upsert_leads(src, leads)
            self.affected |= changed
            self.unit.mark_for_rescore(src, changed)
            self.report.changed["leads"] += len(changed)
        if activities:
            fresh, touched = self.unit.add_activities(src, activities)
            self.affected |= touched
            self.unit.mark_for_rescore(src, touched)
            self.report.changed["activities"] += fresh
        if consent:
            from sync.decision_store import save_consent

            stored = save_consent(self.unit, src, consent, self.now)
            self.report.changed["consent"] += stored
            if stored:
                touched = {c.lead_key for c in consent}
                self.affected |= touched
        if page.quarantined:
            self.unit.quarantine(src, page.quarantined, self.report.run_id, self.now)
            self.report.quarantined += len(page.quarantined)
            for q in page.quarantined[: max(0, 10 - len(self.report.quarantine_samples))]:
                self.report.quarantine_samples.append({"stream": q.stream, "key": q.key, "reason": q.reason})
        if page.cursor is not None and self.only is None:
            # Same transaction as the page's rows: the cursor never passes unstored data.
            self.unit.set_cursor(self.name, stream, page.cursor, self.now)
        self._uncommitted += len(page.records) + len(page.quarantined)
        self.pages += 1
        self.tell()
        if self._uncommitted >= COMMIT_EVERY:
            self.unit.checkpoint()
            self._uncommitted = 0

    # -- score --------------------------------------------------------------------------------------

    def score(self) -> None:
        """Score the affected leads (and those due a rescore) batch by batch; each batch's desired writes are
        planned and enqueued at once, so memory is bounded by the batch, not by the number of leads."""
        if not self.scoring_on:
            self.report.scoring_note = "scoring off for this run (pull only)"
            return
        if self.model is None:
            self.report.scoring_note = (f"no model in {self.settings.scoring.model_dir}: "
                                        "run `leadrelay train` to create one; nothing was scored")
            return
        from scoring import compute_features

        src = self.pipe.source
        due_before = self.now - timedelta(hours=self.settings.scoring.rescore_after_hours)
        keys = sorted(self.unit.existing_leads(src, self.affected) | self.unit.leads_scored_before(src, due_before)
                      | self.unit.marked_for_rescore(src))
        since = self.now - timedelta(days=self.pipe.activity_retention_days)
        step = self.settings.scoring.batch_size
        self.report.model_version = self.model.version
        from sync import serving

        reference = serving.read_reference(self.settings, self.model.version)
        watch = serving.DriftWatch(reference, self.settings) if reference is not None else None
        self.challenger = serving.load_challenger(self.settings, self.model)
        shadow = serving.ShadowComparison.start(self.challenger.version) if self.challenger is not None else None
        self.account_model = serving.load_account_model(self.settings)
        if self.account_model is not None:
            self._start_accounts()
        if self.pipe.routing is not None:
            from sync.decision_store import owners_by_lead

            # Every score update of a routed lead carries its owner, so a score-only write queued later can
            # never supersede an owner write still waiting in the outbox.
            self._owners = owners_by_lead(self.unit, [self.pipe.routing])
        for start in range(0, len(keys), step):
            if start and self.stopping():
                break
            chunk = keys[start:start + step]
            leads = self.unit.load_leads(src, chunk)
            accounts = self.unit.load_accounts(src, [x["account_key"] for x in leads if x["account_key"]])
            activities = self.unit.load_activities(src, chunk, since)
            subjects = build_subjects(leads, accounts, activities)
            frame = compute_features(self.model.spec, subjects, self.now)
            previous = self.unit.scores(src, chunk)
            batch = self._score_with_reasons(frame, previous)
            if watch is not None:
                watch.add(frame, batch.probability)
            if shadow is not None:
                self._shadow(shadow, subjects, frame, batch)
            by_account = self._score_accounts(accounts, since) if self.account_model is not None else {}
            rows = []
            desired: list[DesiredWrite] = []
            # The source refuses writes to these (a converted Salesforce Lead): no score write, no follow-up.
            read_only = {lead["key"] for lead in leads if lead.get("read_only")}
            for subject, s in zip(subjects, batch.rows(), strict=True):
                before = previous.get(subject.key)
                positive, negative = s.reasons_positive, s.reasons_negative
                if not positive and not negative and before is not None:
                    positive, negative = before["reasons_positive"], before["reasons_negative"]
                rows.append({"lead_key": subject.key, "probability": s.probability, "score": s.score,
                             "band": s.band, "reasons_positive": list(positive),
                             "reasons_negative": list(negative), "model_version": s.model_version,
                             "scored_at": self.now})
                if subject.key in read_only:
                    continue  # scored and stored (explain, drift, training), never written
                if self.pipe.push_scores:
                    top = f": {positive[0]}" if positive else ""
                    payload = {"score": s.score, "band": s.band, "reasons": list(positive),
                               "model_version": s.model_version, "scored_at": self.now.isoformat()}
                    if subject.key in self._owners:
                        payload["owner_id"] = self._owners[subject.key]
                    account_key = subject.attributes.get("account_key")
                    if account_key in by_account:  # the account model's score of the lead's account
                        payload["account_score"], payload["account_band"] = by_account[account_key]
                    desired.append(DesiredWrite(
                        destination=self.pipe.destination, operation=SCORE_OPERATION, target=subject.key,
                        payload=payload, reason=f"scored {s.score} (band {s.band}){top}",
                    ))
            if self.pipe.follow_up is not None:
                desired.extend(self._follow_ups(leads, [r for r in rows if r["lead_key"] not in read_only]))
            self.report.read_only += len(read_only)
            self.unit.save_scores(src, rows)
            self.unit.audit([("score", r["lead_key"], {"score": r["score"], "band": r["band"],
                                                       "probability": round(float(r["probability"]), 6),
                                                       "model_version": r["model_version"],
                                                       "reasons": r["reasons_positive"][:3]}) for r in rows], self.now)
            self.scored_keys.update(chunk)
            self.report.scored += len(rows)
            self.plan(desired)  # commits the scores together with the operations they call for
        if watch is not None:
            self.report.drift = watch.result()
            warning = serving.drift_warning(self.report.drift)
            if warning:
                self.report.warnings.append(warning)
        if shadow is not None:
            self.report.challenger = shadow.result()
            self.report.seconds["shadow"] = shadow.seconds
        if self.account_model is not None:
            self._score_changed_accounts(since)
            self._finish_accounts()

    def _shadow(self, shadow: Any, subjects: list[Any], frame: FeatureFrame, batch: ScoreBatch, *,
                entity: str = "lead") -> None:
        """Score the batch with the challenger too (``entity="account"``: the account model's challenger) and
        store its scores: compared in the report, never planned (a challenger trained with its own spec gets its
        own features, computed the same way)."""
        from scoring import compute_features
        from sync.decision_store import save_account_shadow_scores, save_shadow_scores

        challenger, champion = ((self.account_challenger, self.account_model) if entity == "account"
                                else (self.challenger, self.model))
        assert challenger is not None
        assert champion is not None
        mark = time.perf_counter()
        own = frame if challenger.spec == champion.spec else compute_features(challenger.spec, subjects, self.now)
        other = challenger.score(own, reasons=False)
        shadow.add(batch, other)
        save = save_account_shadow_scores if entity == "account" else save_shadow_scores
        save(self.unit, self.pipe.source, other.model_version, [
            {f"{entity}_key": key, "probability": p, "score": sc, "band": b, "champion_probability": cp,
             "scored_at": self.now}
            for key, p, sc, b, cp in zip(other.keys, other.probability.tolist(), other.score.tolist(),
                                         other.band.tolist(), batch.probability.tolist(), strict=True)])
        shadow.seconds += time.perf_counter() - mark

    def _start_accounts(self) -> None:
        """The account model's run: its report entry, its drift watch (against its own training reference) and
        its challenger in shadow, as the lead model has."""
        from sync import serving
        from sync.training import account_question

        assert self.account_model is not None
        self._account_target = account_question(self.settings).target.event
        self.report.account = {"model_version": self.account_model.version, "scored": 0}
        self.report.seconds["account"] = 0.0
        reference = serving.read_reference(self.settings, self.account_model.version,
                                           root=serving.account_dir(self.settings))
        self._account_watch = (serving.DriftWatch(reference, self.settings, entity="account")
                               if reference is not None else None)
        self.account_challenger = serving.load_account_challenger(self.settings, self.account_model)
        self._account_shadow = (serving.ShadowComparison.start(self.account_challenger.version)
                                if self.account_challenger is not None else None)

    def _score_changed_accounts(self, since: datetime) -> None:
        """Score, batch by batch, the accounts that changed this cycle (their row, or their opportunities) and
        were not scored with a lead batch — accounts without leads among them. Their scores are stored and kept
        in ``_account_scores`` like the others."""
        pending = sorted(self._changed_accounts - self._account_scores.keys())
        step = self.settings.scoring.batch_size
        for start in range(0, len(pending), step):
            if self.stopping():
                break
            self._score_accounts(self.unit.load_accounts(self.pipe.source, pending[start:start + step]), since)
            self.plan([])  # commits the scores together with their update_account operations

    def _finish_accounts(self) -> None:
        """The account model's drift (with a warning line over a threshold) and challenger comparison."""
        from sync import serving

        if self._account_watch is not None:
            drift = self._account_watch.result()
            if drift:
                self.report.account["drift"] = drift
                warning = serving.drift_warning(drift, "account")
                if warning:
                    self.report.warnings.append(warning)
        if self._account_shadow is not None:
            self.report.account["challenger"] = self._account_shadow.result()
            self.report.seconds["account_shadow"] = self._account_shadow.seconds

    def _score_accounts(self, accounts: Mapping[str, Mapping[str, Any]], since: datetime) -> dict[str, tuple[int, str]]:
        """Score the batch's accounts not yet scored this cycle with the account model (one ONNX call), from
        all their leads' activities in the retention window; store the scores; (score, band) by account. The
        batch also feeds the account model's drift watch and its challenger in shadow. Account scores ride on
        the leads' score updates."""
        from scoring import compute_features
        from sync.decision_store import save_account_scores
        from sync.subjects import build_account_subjects

        assert self.account_model is not None
        mark = time.perf_counter()
        src = self.pipe.source
        todo = {k: v for k, v in accounts.items() if k not in self._account_scores}
        if todo:
            members = self.unit.load_leads(src, sorted(self.unit.leads_of_accounts(src, todo)))
            by_account: dict[str, list[dict[str, Any]]] = {}
            for lead in members:
                by_account.setdefault(lead["account_key"], []).append(lead)
            activities = self.unit.load_activities(src, [lead["key"] for lead in members], since)
            subjects = build_account_subjects(todo, by_account, activities, as_of=self.now)
            frame = compute_features(self.account_model.spec, subjects, self.now)
            scored = self.account_model.score(frame, reasons=False)
            if self._account_watch is not None:
                watched = self._drift_population(sorted(todo), scored.keys)
                self._account_watch.add(frame.take(watched), scored.probability[watched])
            if self._account_shadow is not None:
                self._shadow(self._account_shadow, subjects, frame, scored, entity="account")
            rows = [{"account_key": key, "probability": p, "score": s, "band": b,
                     "model_version": scored.model_version, "scored_at": self.now}
                    for key, p, s, b in zip(scored.keys, scored.probability.tolist(), scored.score.tolist(),
                                            scored.band.tolist(), strict=True)]
            save_account_scores(self.unit, src, rows)
            self.unit.audit([("account_score", r["account_key"], {
                "score": r["score"], "band": r["band"], "probability": round(float(r["probability"]), 6),
                "model_version": r["model_version"]}) for r in rows], self.now)
            self._account_scores.update({r["account_key"]: (int(r["score"]), str(r["band"])) for r in rows})
            self.report.account["scored"] += len(rows)
        self.report.seconds["account"] += time.perf_counter() - mark
        return {k: self._account_scores[k] for k in accounts if k in self._account_scores}

    def _drift_population(self, keys: Sequence[str], scored: Sequence[str]) -> Any:
        """Rows of ``scored`` that belong to the account model's training population: with the default
        question (an opportunity created), accounts with no opportunity yet — an account already in a deal was
        never a training example, and its engagement would read as drift."""
        import numpy as np

        from sync.subjects import OPPORTUNITY_EVENT

        rows = np.arange(len(scored))
        if self._account_target != OPPORTUNITY_EVENT:
            return rows
        taken = self.unit.opportunities_of_accounts(self.pipe.source, keys, until=self.now)
        return rows[np.array([key not in taken for key in scored], dtype=bool)]

    def _follow_ups(self, leads: list[dict[str, Any]], rows: list[dict[str, Any]]) -> list[DesiredWrite]:
        """A follow-up task for each lead at or over the threshold (planned once per lead, ever)."""
        rule = self.pipe.follow_up
        assert rule is not None
        by_key = {lead["key"]: lead for lead in leads}
        out = []
        for row in rows:
            if row["score"] < rule.min_score:
                continue
            lead = by_key.get(row["lead_key"], {})
            name = " ".join(p for p in (lead.get("first_name"), lead.get("last_name")) if p) \
                or lead.get("email") or row["lead_key"]
            words = {"name": name, "score": row["score"], "band": row["band"], "email": lead.get("email") or "",
                     "reasons": "; ".join(row["reasons_positive"][:3]) or "none given"}
            payload = {"subject": rule.subject.format(**words), "body": rule.body.format(**words),
                       "due_at": (self.now + timedelta(hours=rule.due_hours)).isoformat(),
                       "priority": rule.priority}
            if lead.get("owner_id"):
                payload["owner_id"] = lead["owner_id"]
            out.append(DesiredWrite(destination=self.pipe.destination, operation=TASK_OPERATION,
                                    target=row["lead_key"], payload=payload,
                                    reason=f"scored {row['score']} ≥ {rule.min_score}: follow-up task"))
        return out

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

    def plan_accounts(self) -> None:
        """Plan what is left of this cycle's account scores: those scored outside a lead batch (changed accounts
        without leads). Every :meth:`plan` takes the accounts scored since the previous one along."""
        if self._account_writes_due():
            self.plan([])

    def _account_writes_due(self) -> bool:
        return self.account_model is not None and len(self._account_scores) > len(self._accounts_planned)

    def _account_writes(self) -> list[DesiredWrite]:
        """An ``update_account`` for each account scored since the last plan (so it is enqueued in the very
        transaction that stores the account's score, and a crash never leaves a stored score unplanned). The
        planner drops those whose score, band and model the destination already acknowledged. None when the
        destination cannot write accounts or maps no account score field: the report says why, once."""
        if not self._account_writes_due():
            return []
        fresh = sorted(self._account_scores.keys() - self._accounts_planned)
        self._accounts_planned.update(fresh)
        writes, keys = self._account_fields()
        if not writes:
            return []
        assert self.account_model is not None
        version = self.account_model.version
        out: list[DesiredWrite] = []
        for account in fresh:
            score, band = self._account_scores[account]
            payload: dict[str, Any] = {"account_score": score, "account_band": band, "model_version": version}
            if keys is not None:  # what the destination does not map is neither sent nor compared
                payload = {k: v for k, v in payload.items() if k in keys}
            out.append(DesiredWrite(destination=self.pipe.destination, operation=ACCOUNT_OPERATION, target=account,
                                    payload=payload, reason=f"account scored {score} (band {band})"))
        return out

    def _account_fields(self) -> tuple[bool, frozenset[str] | None]:
        """Whether account scores are written to accounts at all (if not, the report says why), and the payload
        keys the destination writes for ``update_account`` (``None``: all). Decided once per cycle."""
        if self._account_fields_decided is not None:
            return self._account_fields_decided
        name = self.pipe.destination
        destination = self.destinations[name]
        keys = destination.payload_keys(ACCOUNT_OPERATION)
        why = None
        if not self.pipe.push_scores:
            why = "push_scores is off"
        elif ACCOUNT_OPERATION not in destination.capabilities.operations:
            why = f"destination {name!r} ({destination.name}) cannot {ACCOUNT_OPERATION}"
        elif name != self.pipe.source:
            # Account keys are the source's ids: they name the destination's objects only in the same system.
            why = f"destination {name!r} is not the source {self.pipe.source!r} whose account ids were scored"
        elif keys is not None and not keys:
            why = f"destination {name!r} maps no account score field (see its connector's account score map)"
        if why is not None:
            self.report.account["not_written"] = f"account scores not written to accounts: {why}"
        self._account_fields_decided = (why is None, keys)
        return self._account_fields_decided

    # -- decide -------------------------------------------------------------------------------------

    def decide(self) -> None:
        """Identity, consent, routing, audiences and holdouts (sync.decide); their writes are planned like
        scores'. Identity (duplicate people, account matches) is reported on every run."""
        from sync.decide import Decide

        decide = Decide(self, self.settings.consent_policy())
        deciding = self.pipe.routing is not None or bool(self.pipe.audiences)
        if not deciding or self.model is None or not self.scoring_on:
            if deciding:
                # Routing and audiences act on scores; without this run's scores they would act on stale ones.
                self.report.warnings.append("no scores this run: routing and audiences were not decided")
            self.report.decisions = {"identity": decide.identify()}
            return
        decisions = decide.run(self.scored_keys)
        self.unit.audit(decisions.audit, self.now)
        self.report.decisions = decisions.as_dict()
        self.report.warnings.extend(decisions.warnings)
        self.decisions = decisions

    # -- plan + enqueue -----------------------------------------------------------------------------

    def plan(self, desired: list[DesiredWrite]) -> Plan:
        """Plan one batch of desired writes against the ledger and the outbox, enqueue, and add it to the
        cycle's plan summary. The accounts scored since the last plan come along (update_account)."""
        mark = time.perf_counter()
        desired = [*desired, *self._account_writes()]
        slots = {(d.destination, d.operation) for d in desired}
        once = {op for name in {d.destination for d in desired}
                for op, spec in self.destinations[name].capabilities.operations.items() if not spec.idempotent}
        ledger: dict[tuple[str, str], Mapping[str, LedgerEntry]] = {}
        queued: dict[tuple[str, str], Mapping[str, str]] = {}
        for slot in slots:
            targets = [d.target for d in desired if (d.destination, d.operation) == slot]
            ledger[slot] = self.unit.ledger(*slot, targets)
            if slot[1] in once:  # a create-once operation in any state (even dead-lettered) blocks another
                queued[slot] = dict.fromkeys(self.unit.planned_targets(*slot, targets), "")
            else:
                queued[slot] = self.unit.open_targets(*slot, targets)
        result = plan(desired, ledger, queued, create_once=once,
                      material={SCORE_OPERATION: score_moved(self.pipe.min_score_change)})
        self.unit.enqueue(self.name, result.ops, self.report.run_id, self.clock())
        self.unit.audit([("operation", op.target, {"key": op.idempotency_key, "destination": op.destination,
                                                   "operation": op.operation, "reason": op.reason})
                         for op in result.ops], self.now)
        self.unit.checkpoint()
        self.planned = self.planned.combined(result)
        self.report.plan = self.planned.summary()
        # Reports mask personal data (an audience payload carries e-mails and names): `leadrelay explain
        # --reveal` shows it for an authorised audit.
        self.report.samples.extend(
            {"destination": op.destination, "operation": op.operation, "target": op.target,
             "reason": op.reason, "payload": dict(mask_record(op.payload))}
            for op in result.ops[:max(0, SAMPLES - len(self.report.samples))])
        if self.unit.dry_run:  # an audit shows the whole plan, operation by operation
            self.report.operations.extend(
                {"destination": op.destination, "operation": op.operation, "target": op.target,
                 "idempotency_key": op.idempotency_key, "reason": op.reason} for op in result.ops)
        self.plan_seconds += time.perf_counter() - mark
        self.tell()
        return result

    # -- deliver ------------------------------------------------------------------------------------

    async def deliver(self) -> None:
        for name, connector in self.destinations.items():
            result = await Deliverer(self.unit, connector, name, clock=self.clock).deliver()
            self.report.delivery.append(result.as_dict())
            self.report.errors.extend(f"deliver {name}: {error}" for error in result.errors)
            if result.stopped:
                self.report.errors.append(f"deliver {name}: {result.stopped}")
            self.tell()

    def tell(self) -> None:
        """Hand the progress so far to the ``progress`` callback, if any."""
        if self._progress is not None:
            self._progress({"pages": self.pages, "read": sum(self.report.read.values()),
                            "scored": self.report.scored,
                            "delivered": sum(sum(d["outcomes"].values()) for d in self.report.delivery)})


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
    agent: str | None = None,
    stop: Callable[[], bool] | None = None,
    only: Mapping[str, Sequence[str]] | None = None,
    progress: Callable[[dict[str, int]], None] | None = None,
) -> CycleReport:
    """Run one cycle of pipeline ``name``; with ``dry_run`` nothing is written anywhere; with
    ``score=False`` it only pulls (a backfill before the first model). ``agent`` is recorded on the run row;
    once ``stop()`` is true the cycle ends after the page or batch in flight (status ``stopped``).

    ``only`` (stream -> source keys, e.g. a webhook's contact ids) pulls just those records by key when the
    source can (``capabilities.fetchable``), moving no cursor; scoring, decisions, planning and delivery are
    the same as in any cycle. A source that cannot read by key gets an incremental pull instead (warned).
    ``progress`` is called with the counts so far (pages, read, scored, delivered) as the cycle goes."""
    if name not in settings.pipelines:
        raise KeyError(f"no pipeline named {name!r} (configured: {', '.join(settings.pipelines)})")
    pipe = settings.pipelines[name]
    now = clock()
    report = CycleReport(pipeline=name, dry_run=dry_run, started_at=now)
    # A dry run changes nothing, so it needs no lock (and creates no lock file); a real run holds it
    # throughout, and an overlapping trigger is recorded as skipped before anything is built or loaded.
    held = contextlib.ExitStack()
    try:
        if not dry_run:
            held.enter_context(pipeline_lock(store, name))
    except PipelineBusy as exc:
        return _skipped(store, report, clock, exc, agent)
    with held:
        transports = transports or {}
        retry = retry_settings(settings)
        writes_to = [pipe.destination, *(settings.audiences[a]["destination"] for a in pipe.audiences)]
        built = {conn_name: build_connector(settings.connections[conn_name], conn_name, retry,
                                            transport=transports.get(conn_name), timing=timing)
                 for conn_name in dict.fromkeys([pipe.source, *writes_to])}
        if model is None and score:
            model = load_model(settings)
        try:
            with store.unit(dry_run=dry_run) as unit:
                if dry_run:
                    # A store from an older version is migrated inside this transaction (it opens one even on
                    # SQLite), so the run sees the current schema and the rollback leaves the store as it was.
                    unit.ensure_schema()
                else:
                    unit.close_abandoned_runs(name, now)
                report.run_id = unit.start_run(name, now, dry_run=dry_run, agent=agent)
                unit.audit_context = (name, report.run_id)
                cycle = Cycle(settings, name, unit, report, clock=clock, now=now, source=built[pipe.source],
                              destination=built[pipe.destination], model=model, scoring_on=score,
                              destinations={n: built[n] for n in writes_to}, stop=stop, only=only,
                              progress=progress)
                await _run_steps(cycle, report, dry_run=dry_run)
                report.finished_at = clock()
                if not dry_run:
                    from sync import audit

                    audit.anchor(unit.conn, unit.dialect, report.finished_at)
                unit.finish_run(report.run_id, report.finished_at, report.status, _counts(report),
                                "; ".join(report.errors) or None)
                _log_cycle(report)
        finally:
            for connector in built.values():
                with contextlib.suppress(RuntimeError):
                    await connector.http.client.aclose()
    return report


async def _run_steps(cycle: Cycle, report: CycleReport, *, dry_run: bool) -> None:
    """Pull, score (planning batch by batch), deliver; each step's seconds go into the report."""
    try:
        cycle.check_destination()
        cycle.check_model()
        mark = time.perf_counter()
        await cycle.pull()
        report.seconds["pull"] = time.perf_counter() - mark
        mark = time.perf_counter()
        cycle.score()  # plans and enqueues batch by batch
        report.seconds["score"] = time.perf_counter() - mark - cycle.plan_seconds
        mark, planned = time.perf_counter(), cycle.plan_seconds
        cycle.decide()
        report.seconds["decide"] = time.perf_counter() - mark - (cycle.plan_seconds - planned)
        cycle.plan_accounts()  # every account scored above, however it came to be scored
        report.plan = cycle.planned.summary()
        report.seconds["plan"] = cycle.plan_seconds
        if not dry_run and not cycle.stopping():
            mark = time.perf_counter()
            await cycle.deliver()
            report.seconds["deliver"] = time.perf_counter() - mark
        report.status = "stopped" if cycle.stopped else "partial" if report.errors else "succeeded"
    except FixConfiguration as exc:
        report.status = "failed"
        report.errors.append(str(exc))


def _skipped(store: Store, report: CycleReport, clock: Clock, busy: PipelineBusy, agent: str | None = None
             ) -> CycleReport:
    """Record a trigger that found its pipeline running: a run row with status ``skipped`` and why."""
    report.status = "skipped"
    report.errors.append(str(busy))
    report.finished_at = clock()
    with store.unit() as unit:
        report.run_id = unit.start_run(report.pipeline, report.started_at, dry_run=False, agent=agent)
        unit.finish_run(report.run_id, report.finished_at, "skipped", {}, str(busy))
    return report


def _log_cycle(report: CycleReport) -> None:
    """One line per finished cycle, and one per error, each with the pipeline and the run id."""
    where = {"pipeline": report.pipeline, "run_id": report.run_id}
    for error in report.errors:
        log.warning("%s", error, extra=where)
    outcomes: Counter[str] = Counter()
    for d in report.delivery:
        outcomes.update(d.get("outcomes", {}))
    planned = sum(o["count"] for o in report.plan.get("operations", []))
    log.info("%s %s: read %s, quarantined %d, scored %d, planned %d operation(s), delivered %s",
             "dry run" if report.dry_run else "cycle", report.status, dict(report.read), report.quarantined,
             report.scored, planned, dict(outcomes), extra=where)


def _counts(report: CycleReport) -> dict[str, Any]:
    return {"read": dict(report.read), "changed": dict(report.changed), "quarantined": report.quarantined,
            "scored": report.scored, "read_only": report.read_only, "drift": report.drift,
            "challenger": report.challenger, "account": report.account, "plan": report.plan,
            "delivery": [d["outcomes"] for d in report.delivery]}


def run_cycle_sync(settings: Settings, name: str, store: Store, **kwargs: Any) -> CycleReport:
    return asyncio.run(run_cycle(settings, name, store, **kwargs))


__all__ = ["CycleReport", "Timing", "build_connector", "load_model", "run_cycle", "run_cycle_sync"]
