"""`leadrelay run`: the long-running agent.

One asyncio loop holds the control plane: the apscheduler jobs (each pipeline on its interval or cron,
misfires coalesced, one instance at a time; optional fast polls), the lease heartbeat, and the HTTP
endpoint (``sync.server``: liveness, readiness, metrics, webhooks). Cycles themselves run in worker
threads (``run_cycle`` does blocking store work), so webhooks and scrapes are answered while a cycle runs.

* **One run per pipeline.** Every request for a cycle — a schedule tick, a fast poll, a webhook, a lease
  just taken — goes through the pipeline's :class:`Runner`: requests arriving while a cycle runs are
  coalesced into exactly one follow-up cycle. Across agents a pipeline runs only where its lease is held
  (``sync.leases``); the per-run ``pipeline_lock`` stays the second guard.
* **Near real time.** A verified webhook requests a cycle of the pipelines whose source is that connection,
  at once, on just the records it names: read by id when the source can (``capabilities.fetchable``; ids of
  webhooks arriving during a cycle are united into the next one, up to ``daemon.trigger_max_ids``), else an
  incremental pull. The planner, outbox and ledger are a scheduled cycle's. The time from receipt to the
  end of that cycle's delivery goes into a histogram.
* **Stopping.** SIGTERM (or SIGINT) stops the scheduler and asks running cycles to stop after the page or
  batch in flight; what they did is committed, open operations stay in the durable outbox for the next
  run. Then leases are released (other agents take over at once) and the process exits 0.
* **Start-up.** Everything is checked before anything starts — the config (done by ``config.load``), the
  store, the listening socket — and a failure is one clear message and a non-zero exit.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from connectors.base import FixConfiguration, LeadrelayError
from sync.config import PipelineSettings, Settings, cron_trigger
from sync.leases import Leases, ensure_tables
from sync.metrics import Metrics
from sync.pipeline import CycleReport, build_connector, load_model, retry_settings, run_cycle
from sync.store import Store

if TYPE_CHECKING:
    import uvicorn
    from apscheduler.schedulers.asyncio import AsyncIOScheduler

    from scoring import ScoringModel

log = logging.getLogger("leadrelay.daemon")
Clock = Callable[[], datetime]


class DaemonError(LeadrelayError):
    """The agent cannot start (store unreachable, port taken, ...); nothing was started."""


def utcnow() -> datetime:
    return datetime.now(UTC)


def default_agent_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def schedule_trigger(pipe: PipelineSettings) -> Any:
    """The apscheduler trigger of a pipeline's batch cycles: its cron expression, else its interval."""
    from apscheduler.triggers.interval import IntervalTrigger

    if pipe.cron is not None:
        return cron_trigger(pipe.cron)
    return IntervalTrigger(seconds=pipe.interval_seconds, timezone=UTC)


def next_run(pipe: PipelineSettings, last_started: datetime | None, now: datetime) -> datetime:
    """When the pipeline's next batch cycle is due: the interval after the last start (now if overdue or never
    run), or the cron expression's next time after the last start."""
    if pipe.cron is not None:
        after = last_started or now
        fire = cron_trigger(pipe.cron).get_next_fire_time(None, after + timedelta(microseconds=1))
        return max(fire, now) if fire is not None else now
    if last_started is None:
        return now
    return max(last_started + timedelta(seconds=pipe.interval_seconds), now)


@dataclass
class Runner:
    """Cycle requests of one pipeline: at most one cycle at a time, bursts coalesced into one follow-up."""

    name: str
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    reasons: set[str] = field(default_factory=set)
    triggers: list[float] = field(default_factory=list)  # monotonic receipt times of webhook triggers
    ids: dict[str, None] = field(default_factory=dict)  # lead keys named by the webhooks waiting (ordered set)
    full: bool = False  # a request without ids (schedule, fast poll, lease) is waiting: incremental pull
    task: asyncio.Task[None] | None = None
    running: bool = False
    cycles: int = 0


class Daemon:
    def __init__(self, settings: Settings, store: Store, *, agent: str | None = None, clock: Clock = utcnow,
                 monotonic: Callable[[], float] = time.monotonic,
                 transports: Mapping[str, httpx.AsyncBaseTransport] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.agent = agent or settings.daemon.agent_id or default_agent_id()
        self.clock = clock
        self.monotonic = monotonic
        self.transports = dict(transports or {})
        self.metrics = Metrics()
        self.leases = Leases(store, self.agent, settings.daemon.lease_seconds, clock=clock)
        self.pipelines = sorted(settings.pipelines)
        self.runners = {name: Runner(name) for name in self.pipelines}
        self.stop_requested = threading.Event()  # read by cycles in worker threads
        # Pipelines between their lease check and the end of their cycle; a lease over our fair share is only
        # given back when its pipeline is not in here (both sides hold the guard), so no cycle runs unleased.
        self.busy: set[str] = set()
        self.busy_guard = threading.Lock()
        self._stopping: asyncio.Event | None = None
        self._pool = ThreadPoolExecutor(max_workers=max(2, len(self.pipelines)), thread_name_prefix="cycle")
        self._model: ScoringModel | None = None
        self._model_stamp: float | None = None
        self._model_lock = threading.Lock()
        self.scheduler: AsyncIOScheduler | None = None
        self.server: uvicorn.Server | None = None
        self.port: int | None = None

    # -- start-up checks ----------------------------------------------------------------------------

    @staticmethod
    def prepare_store(settings: Settings) -> Store:
        """Open the store and create missing tables; a clear :class:`DaemonError` if it cannot be reached."""
        import sqlalchemy as sa

        store = Store(settings.store.url)
        try:
            store.create_all()
            ensure_tables(store)
        except sa.exc.SQLAlchemyError as exc:
            store.close()
            raise DaemonError(f"store.url: cannot open the store: {type(exc.orig or exc).__name__}: "
                              f"{str(exc.orig or exc).splitlines()[0]}") from None
        return store

    def bind(self) -> socket.socket:
        """Bind the endpoint's socket before anything starts, so a taken port is an error, not half a daemon."""
        host, port = self.settings.daemon.host, self.settings.daemon.port
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            sock.close()
            raise DaemonError(f"daemon.host/daemon.port: cannot listen on {host}:{port}: {exc.strerror}") from None
        sock.listen(128)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        return sock

    # -- the model, loaded once and reloaded when its file changes --------------------------------------

    def model(self) -> ScoringModel | None:
        path = Path(self.settings.scoring.model_dir) / "model.onnx"
        with self._model_lock:
            try:
                stamp = path.stat().st_mtime
            except OSError:
                self._model, self._model_stamp = None, None
                return None
            if stamp != self._model_stamp:
                self._model, self._model_stamp = load_model(self.settings), stamp
                log.info("model loaded from %s (version %s)", path.parent,
                         getattr(self._model, "version", None))
            return self._model

    # -- running cycles -----------------------------------------------------------------------------

    def request(self, name: str, reason: str, received: float | None = None,
                ids: list[str] | None = None) -> asyncio.Future[None]:
        """Ask for a cycle of ``name``; the future is done when a cycle started after this request ends.
        ``ids`` (a webhook's lead keys) ask for a cycle on just those; without them the cycle is incremental."""
        runner = self.runners[name]
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        if self.stop_requested.is_set():
            done.set_result(None)
            return done
        runner.waiters.append(done)
        runner.reasons.add(reason)
        if received is not None:
            runner.triggers.append(received)
        if ids:
            runner.ids.update(dict.fromkeys(ids))
        else:
            runner.full = True
        if runner.task is None or runner.task.done():
            runner.task = asyncio.create_task(self._drive(runner), name=f"runner-{name}")
        return done

    async def _drive(self, runner: Runner) -> None:
        try:
            while runner.waiters and not self.stop_requested.is_set():
                waiters, runner.waiters = runner.waiters, []
                reasons, runner.reasons = runner.reasons, set()
                triggers, runner.triggers = runner.triggers, []
                ids, full, runner.ids, runner.full = list(runner.ids), runner.full, {}, False
                limit = self.settings.daemon.trigger_max_ids
                only = {"leads": ids} if ids and not full and len(ids) <= limit else None
                runner.running = True
                try:
                    await self._run(runner.name, "+".join(sorted(reasons)), triggers, only)
                finally:
                    runner.running = False
                    runner.cycles += 1
                    for w in waiters:
                        if not w.done():
                            w.set_result(None)
        finally:
            for w in runner.waiters:
                if not w.done():
                    w.set_result(None)
            runner.waiters.clear()

    def _claim(self, name: str) -> bool:
        with self.busy_guard:
            self.busy.add(name)
        if self.leases.still_holds(name):
            return True
        with self.busy_guard:
            self.busy.discard(name)
        return False

    async def _run(self, name: str, reason: str, triggers: list[float],
                   only: Mapping[str, list[str]] | None = None) -> CycleReport | None:
        if not await asyncio.to_thread(self._claim, name):
            self.metrics.leased.labels(name).set(0)
            log.info("pipeline %s: not run (%s): this agent does not hold its lease", name, reason)
            return None
        loop = asyncio.get_running_loop()
        mark = self.monotonic()
        try:
            report = await loop.run_in_executor(self._pool, self._cycle, name, only)
        except Exception as exc:
            self.metrics.runs.labels(name, "error").inc()
            log.exception("pipeline %s: cycle (%s) failed: %s", name, reason, type(exc).__name__)
            return None
        finally:
            with self.busy_guard:
                self.busy.discard(name)
        done = self.monotonic()
        self.metrics.record_report(report, reason.split("+")[0], done - mark)
        for received in triggers:
            self.metrics.latency.labels(name).observe(max(done - received, 0.0))
        delivered = sum(sum(d["outcomes"].values()) for d in report.delivery)
        log.info("pipeline %s: %s (%s%s) in %.2fs: read %s, scored %d, delivered %d%s", name, report.status,
                 reason, f", {sum(report.targeted.values())} by id" if report.targeted else "", done - mark,
                 dict(report.read) or "nothing", report.scored, delivered,
                 f", errors: {'; '.join(report.errors)}" if report.errors else "")
        return report

    def _cycle(self, name: str, only: Mapping[str, list[str]] | None = None) -> CycleReport:
        """One cycle in a worker thread, on its own event loop; then its alerts (as `leadrelay sync` does)."""
        async def cycle() -> CycleReport:
            report = await run_cycle(self.settings, name, self.store, clock=self.clock, transports=self.transports,
                                     model=self.model(), agent=self.agent, stop=self.stop_requested.is_set,
                                     only=only)
            try:
                from sync.alerts import evaluate_run, send

                with self.store.unit() as unit:
                    alerts = evaluate_run(unit, self.settings, report, self.clock())
                for alert in alerts:
                    log.warning("%s", alert.line())
                if alerts:
                    await send(alerts, self.settings)
            except Exception as exc:  # noqa: BLE001 - an alert that cannot be judged or sent never stops the agent
                log.warning("pipeline %s: alerts not evaluated: %s: %s", name, type(exc).__name__, exc)
            return report

        return asyncio.run(cycle())

    # -- triggers -----------------------------------------------------------------------------------

    def on_trigger(self, connection: str, ids: list[str]) -> None:
        """A verified change notification: an immediate cycle on the named records of every pipeline reading
        from ``connection`` that this agent holds (the others' holders pick the change up on their next cycle)."""
        received = self.monotonic()
        self.metrics.triggers.labels(connection).inc()
        for name in self.pipelines:
            if self.settings.pipelines[name].source != connection:
                continue
            if name not in self.leases.tokens:
                log.info("webhook for %s: pipeline %s is held by another agent; it picks the change up on its "
                         "next cycle", connection, name)
                continue
            self.request(name, "webhook", received, ids)
        log.info("webhook for %s: %d record id(s)", connection, len(ids))

    # -- leases -------------------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        period = self.settings.daemon.lease_seconds / 4
        while not self.stop_requested.is_set():
            try:
                gained, lost = await asyncio.to_thread(self.leases.balance, self.pipelines, busy=self.busy,
                                                       guard=self.busy_guard)
            except Exception as exc:  # noqa: BLE001 - the store may be away for a moment; runs check their lease
                log.warning("lease heartbeat failed: %s: %s", type(exc).__name__, str(exc).splitlines()[0])
                gained, lost = set(), set()
            for name in sorted(gained):
                self.metrics.leased.labels(name).set(1)
                log.info("pipeline %s: lease taken by agent %s", name, self.agent)
                self.request(name, "lease")  # catch up at once: a previous holder may have died mid-run
            for name in sorted(lost):
                self.metrics.leased.labels(name).set(0)
                log.info("pipeline %s: lease given up or lost by agent %s", name, self.agent)
            assert self._stopping is not None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), timeout=period)

    async def _scheduled(self, name: str, reason: str) -> None:
        """A schedule tick: the job lasts as long as the cycle, so a tick during a cycle is a misfire that
        apscheduler coalesces (max_instances=1), not a queue of cycles."""
        if name not in self.leases.tokens:
            return
        with contextlib.suppress(asyncio.CancelledError):  # the scheduler shutting down (SIGTERM)
            await asyncio.shield(self.request(name, reason))

    # -- readiness ----------------------------------------------------------------------------------

    async def ready(self) -> dict[str, str]:
        checks: dict[str, str] = {}

        def ping() -> None:
            import sqlalchemy as sa

            with self.store.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))

        try:
            await asyncio.to_thread(ping)
            checks["store"] = "ok"
        except Exception as exc:  # noqa: BLE001 - reported, not raised
            checks["store"] = f"unreachable: {type(exc).__name__}"
        retry = retry_settings(self.settings)
        for source in sorted({p.source for p in self.settings.pipelines.values()}):
            connector = build_connector(self.settings.connections[source], source, retry,
                                        transport=self.transports.get(source))
            try:
                await asyncio.wait_for(connector.check(), timeout=self.settings.retry.timeout)
                checks[f"source:{source}"] = "ok"
            except Exception as exc:  # noqa: BLE001 - a failed check is the answer
                checks[f"source:{source}"] = f"failed: {type(exc).__name__}: {str(exc)[:200]}"
            finally:
                await connector.http.client.aclose()
        return checks

    def refresh_metrics(self) -> None:
        self.metrics.refresh_store(self.store)
        self.metrics.refresh_rate_budgets()

    # -- the whole life ------------------------------------------------------------------------------

    def request_stop(self) -> None:
        if self.stop_requested.is_set():
            return
        log.info("stop requested: finishing the batch in flight, then checkpointing and exiting")
        self.stop_requested.set()
        if self._stopping is not None:
            self._stopping.set()

    def _app(self) -> Any:
        from sync.server import build_app
        from sync.webhooks import webhook_routes

        # An empty secret ("${HUBSPOT_APP_SECRET:-}" unset) turns that connection's webhook off: never verify
        # against an empty key.
        secrets = {name: s.get_secret_value() for name, s in self.settings.daemon.webhook_secrets.items()
                   if s.get_secret_value()}
        routes = webhook_routes(secrets, self.on_trigger, public_url=self.settings.daemon.public_url) \
            if secrets else []
        return build_app(self.metrics, ready=self.ready, refresh=self.refresh_metrics, extra_routes=routes)

    async def main(self, sock: socket.socket, *, announce: Callable[[str], None] | None = None) -> int:
        """Run until stopped; the exit code (0: clean)."""
        import uvicorn
        from apscheduler.schedulers.asyncio import AsyncIOScheduler

        loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread (tests)
                loop.add_signal_handler(sig, self.request_stop)
        config = uvicorn.Config(self._app(), log_level="warning", lifespan="off", access_log=False)
        self.server = _QuietServer(config)
        server_task = asyncio.create_task(self.server.serve(sockets=[sock]), name="http")
        daemon = self.settings.daemon
        # apscheduler logs every tick at INFO and every coalesced misfire at WARNING: our own lines say what ran.
        logging.getLogger("apscheduler").setLevel(logging.ERROR)
        self.scheduler = AsyncIOScheduler(timezone=UTC, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": daemon.misfire_grace_seconds})
        from apscheduler.triggers.interval import IntervalTrigger

        for name in self.pipelines:
            pipe = self.settings.pipelines[name]
            self.scheduler.add_job(self._scheduled, schedule_trigger(pipe), args=[name, "schedule"],
                                   id=f"{name}:schedule", name=f"{name} batch cycle")
            if pipe.fast_poll_seconds is not None:
                self.scheduler.add_job(self._scheduled, IntervalTrigger(seconds=pipe.fast_poll_seconds, timezone=UTC),
                                       args=[name, "fast-poll"], id=f"{name}:fast-poll", name=f"{name} fast poll")
        self.scheduler.start()
        heartbeat = asyncio.create_task(self._heartbeat(), name="heartbeat")
        while not self.server.started and not server_task.done():  # noqa: ASYNC110 - uvicorn has no start-up event
            await asyncio.sleep(0.01)
        url = f"http://{daemon.host}:{self.port}"
        log.info("agent %s listening on %s (%d pipeline(s): %s)", self.agent, url, len(self.pipelines),
                 ", ".join(self.pipelines))
        if announce is not None:
            announce(url)
        if self.stop_requested.is_set():
            self._stopping.set()
        await self._stopping.wait()
        code = await self._shutdown(server_task, heartbeat)
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.remove_signal_handler(sig)
        return code

    async def _shutdown(self, server_task: asyncio.Task[None], heartbeat: asyncio.Task[None]) -> int:
        assert self.scheduler is not None
        assert self.server is not None
        self.scheduler.shutdown(wait=False)
        running = [r.task for r in self.runners.values() if r.task is not None and not r.task.done()]
        code = 0
        if running:
            log.info("waiting for %d cycle(s) in flight", len(running))
            _, pending = await asyncio.wait(running, timeout=self.settings.daemon.stop_grace_seconds)
            if pending:
                code = 1
                log.error("%d cycle(s) did not finish within daemon.stop_grace_seconds; their runs resume "
                          "from the store on the next start", len(pending))
        await heartbeat
        try:
            await asyncio.to_thread(self.leases.leave)
            log.info("leases released by agent %s", self.agent)
        except Exception as exc:  # noqa: BLE001 - the leases then run out on their own
            log.warning("could not release leases (%s); they expire in %.0fs", type(exc).__name__,
                        self.settings.daemon.lease_seconds)
        self.server.should_exit = True
        await server_task
        self._pool.shutdown(wait=code == 0, cancel_futures=True)
        return code


class _QuietServer:
    """uvicorn's server without its own signal handling: the daemon owns SIGTERM/SIGINT."""

    def __new__(cls, config: uvicorn.Config) -> uvicorn.Server:
        import uvicorn

        class Server(uvicorn.Server):
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return Server(config)


def run_daemon(settings: Settings, *, agent: str | None = None, announce: Callable[[str], None] | None = None
               ) -> int:
    """Check everything, then run the agent until SIGTERM; the exit code."""
    store = Daemon.prepare_store(settings)
    daemon = Daemon(settings, store, agent=agent)
    try:
        daemon.model()  # a model that does not match the feature spec is refused before anything starts
        sock = daemon.bind()
    except (DaemonError, FixConfiguration):
        store.close()
        raise
    try:
        return asyncio.run(daemon.main(sock, announce=announce))
    finally:
        store.close()




# --------------------------------------------------------------------------------------------------
# `leadrelay status`


def model_version(settings: Settings, directory: str | Path | None = None) -> str | None:
    """The serving model's version from its card in ``directory`` (default: the lead model's
    ``scoring.model_dir``); ``None`` when no model was trained yet."""
    import json

    card = Path(directory if directory is not None else settings.scoring.model_dir) / "card.json"
    try:
        return str(json.loads(card.read_text(encoding="utf-8")).get("version")) or None
    except (OSError, ValueError, AttributeError):
        return None


def pipeline_status(settings: Settings, store: Store, *, now: datetime | None = None, runs: int = 5,
                    only: str | None = None) -> list[dict[str, Any]]:
    """Per pipeline: schedule, last runs with counts, next run, lease, outbox depth, dead letters, model
    version, the last recorded drift, the account model's version and drift (with ``[scoring.account]``) and the
    alerts active now. Reads only."""
    import sqlalchemy as sa

    from sync.alerts import active_alerts
    from sync.leases import lease_table
    from sync.store import OPEN_STATUSES, OutboxRow

    now = now or utcnow()
    leases = lease_table(store)
    version = model_version(settings)
    account_dir = settings.scoring.account.model_dir if settings.scoring.account is not None else None
    account_version = model_version(settings, account_dir) if account_dir is not None else None
    t = OutboxRow.__table__
    out = []
    with store.unit(dry_run=True) as unit:
        by_status: dict[tuple[str, str], int] = {
            (p, s): int(n) for p, s, n in unit.conn.execute(
                sa.select(t.c.pipeline, t.c.status, sa.func.count()).group_by(t.c.pipeline, t.c.status))}
        alerts: dict[str, list[dict[str, Any]]] = {}
        if sa.inspect(unit.conn).has_table("alert_state"):  # a store no run has judged yet has none
            for row in active_alerts(unit):
                since = _utc(row["since"])
                alerts.setdefault(row["pipeline"], []).append({
                    "condition": row["condition"], "since": since.isoformat() if since else None,
                    "message": row["message"]})
        for name in sorted(settings.pipelines):
            if only is not None and name != only:
                continue
            pipe = settings.pipelines[name]
            rows = [r for r in unit.runs(name, limit=runs * 3) if not r["dry_run"]][:runs]
            last_started = next((_utc(r["started_at"]) for r in rows if r["status"] != "skipped"), None)
            lease = leases.get(name)
            drift = next((r["counts"]["drift"] for r in rows
                          if isinstance(r["counts"].get("drift"), dict) and r["counts"]["drift"]), None)
            account_drift = next((r["counts"]["account"]["drift"] for r in rows
                                  if isinstance(r["counts"].get("account"), dict)
                                  and r["counts"]["account"].get("drift")), None)
            out.append({
                "pipeline": name,
                "schedule": f"cron {pipe.cron}" if pipe.cron else f"every {pipe.interval_seconds}s",
                "fast_poll_seconds": pipe.fast_poll_seconds,
                "next_run": next_run(pipe, last_started, now).isoformat(),
                "lease": None if lease is None else {
                    "holder": lease.holder if lease.live(now) else None, "expires_at": lease.expires_at.isoformat(),
                    "token": lease.token},
                "outbox_open": sum(by_status.get((name, s), 0) for s in OPEN_STATUSES),
                "dead_letters": by_status.get((name, "rejected"), 0),
                "model_version": version,
                "drift": drift,
                **({"account_model": {"version": account_version, "drift": account_drift}}
                   if account_dir is not None else {}),
                "alerts": alerts.get(name, []),
                "runs": [_run_summary(r) for r in rows],
            })
    return out


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value


def _run_summary(run: Mapping[str, Any]) -> dict[str, Any]:
    counts = run["counts"] or {}
    started, finished = _utc(run["started_at"]), _utc(run["finished_at"])
    delivered: dict[str, int] = {}
    for outcomes in counts.get("delivery", []):
        for outcome, n in outcomes.items():
            delivered[outcome] = delivered.get(outcome, 0) + n
    return {"id": run["id"], "status": run["status"], "agent": run.get("agent"),
            "started_at": started.isoformat() if started else None,
            "seconds": round((finished - started).total_seconds(), 3) if started and finished else None,
            "read": sum((counts.get("read") or {}).values()), "scored": counts.get("scored", 0),
            "delivered": delivered, "error": run["error"]}


def render_status(rows: list[dict[str, Any]]) -> str:
    lines = []
    for p in rows:
        lease = p["lease"]
        holder = (lease or {}).get("holder") or "none"
        lines.append(f"{p['pipeline']}: {p['schedule']}"
                     + (f", fast poll every {p['fast_poll_seconds']:g}s" if p["fast_poll_seconds"] else "")
                     + f"; next run {p['next_run'][:19].replace('T', ' ')} UTC; lease: {holder}")
        drift = p["drift"]
        drift_text = f", score PSI {drift['score_psi']:.3f}" if drift and "score_psi" in drift else ""
        lines.append(f"  outbox open {p['outbox_open']}, dead letters {p['dead_letters']}, model "
                     f"{p['model_version'] or 'none'}{drift_text}")
        if "account_model" in p:
            account = p["account_model"]
            psi = (account["drift"] or {}).get("score_psi")
            lines.append(f"  account model {account['version'] or 'none'}"
                         + (f", score PSI {psi:.3f}" if psi is not None else ""))
        for a in p.get("alerts", []):
            lines.append(f"  ALERT {a['condition']} since {(a['since'] or '')[:19].replace('T', ' ')}: "
                         f"{a['message']}")
        if not p["runs"]:
            lines.append("  no runs yet")
        for r in p["runs"]:
            seconds = f"{r['seconds']:.1f}s" if r["seconds"] is not None else "-"
            delivered = ", ".join(f"{k} {v}" for k, v in sorted(r["delivered"].items())) or "nothing"
            lines.append(f"  #{r['id']:<6} {r['status']:<10} {(r['started_at'] or '')[:19].replace('T', ' ')} "
                         f"{seconds:>7}  read {r['read']}, scored {r['scored']}, delivered {delivered}"
                         + (f"  [{r['agent']}]" if r["agent"] else ""))
    return "\n".join(lines)


__all__ = ["Daemon", "DaemonError", "Runner", "default_agent_id", "model_version", "next_run", "pipeline_status",
           "render_status", "run_daemon", "schedule_trigger"]
