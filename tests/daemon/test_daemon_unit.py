"""The daemon's parts in one process: schedule config, next-run arithmetic, coalescing of triggers, the stop
hook of a cycle, `leadrelay status`."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from sync import config
from sync.cli import main
from sync.daemon import Daemon, next_run, pipeline_status
from sync.leases import ensure_tables
from sync.pipeline import CycleReport
from sync.store import Store
from tests.daemon.agents import write_config
from tests.sync.rig import ledger_mismatches

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)


def _parse(pipeline: dict, daemon: dict | None = None) -> config.Settings:
    return config.parse({"connections": {"h": {"type": "hubspot", "token": "t"}}, "daemon": daemon or {},
                         "pipelines": {"p": {"source": "h", "destination": "h", **pipeline}}}, env={})


def test_schedule_settings_are_checked_with_the_field_named() -> None:
    """cron and interval together, a bad cron, a too-short fast poll, an unknown webhook connection: refused."""
    cases = [({"cron": "*/5 * * * *", "interval_seconds": 60}, {}, "pipelines.p: Value error, cron: give either"),
             ({"cron": "* * *"}, {}, "pipelines.p.cron: Value error, must have 5 fields"),
             ({"fast_poll_seconds": 0.1}, {}, "pipelines.p.fast_poll_seconds"),
             ({}, {"webhook_secrets": {"crm": "s"}}, "daemon.webhook_secrets.crm: no connection named 'crm'"),
             ({}, {"lease_seconds": 0}, "daemon.lease_seconds")]
    for pipeline, daemon, message in cases:
        with pytest.raises(config.ConfigError) as caught:
            _parse(pipeline, daemon)
        assert message in str(caught.value)
    assert _parse({"cron": "0 */2 * * 1-5"}).pipelines["p"].cron == "0 */2 * * 1-5"


def test_next_run_follows_interval_or_cron_from_the_last_run() -> None:
    """Interval: last start + interval (now when overdue or never run); cron: the next fire after the last start."""
    every = _parse({"interval_seconds": 600}).pipelines["p"]
    assert next_run(every, None, T0) == T0
    assert next_run(every, T0 - timedelta(seconds=100), T0) == T0 + timedelta(seconds=500)
    assert next_run(every, T0 - timedelta(hours=1), T0) == T0
    cron = _parse({"cron": "30 9 * * *"}).pipelines["p"]
    assert next_run(cron, T0 - timedelta(minutes=5), T0) == T0 + timedelta(minutes=30)
    assert next_run(cron, T0 + timedelta(minutes=30), T0) == T0 + timedelta(days=1, minutes=30)


def test_triggers_during_a_cycle_coalesce_into_one_follow_up(tmp_path: Path) -> None:
    """Ten triggers while a cycle runs give exactly one more cycle, on the union of their ids (the scheduled
    one was incremental), and each trigger's latency is recorded."""
    settings = _parse({}).model_copy(update={"store": config.StoreSettings(url=f"sqlite:///{tmp_path / 's.db'}")})
    store = Store(settings.store.url)
    store.create_all()
    ensure_tables(store)
    daemon = Daemon(settings, store, agent="unit")
    assert daemon.leases.acquire("p")
    release = threading.Event()
    cycles: list[str] = []
    targets: list[Any] = []

    def fake_cycle(name: str, only: Any = None) -> CycleReport:
        cycles.append(name)
        targets.append(only)
        release.wait(10)
        return CycleReport(pipeline=name, dry_run=False, started_at=T0, status="succeeded", finished_at=T0)

    daemon._cycle = fake_cycle  # type: ignore[method-assign]

    async def scenario() -> None:
        first = daemon.request("p", "schedule")
        while not daemon.runners["p"].running:  # noqa: ASYNC110 - waiting on the runner's own state
            await asyncio.sleep(0.001)
        for i in range(10):
            daemon.on_trigger("h", [str(i), str(i // 2)])
        release.set()
        await first
        runner = daemon.runners["p"]
        assert runner.task is not None
        await runner.task

    asyncio.run(scenario())
    daemon._pool.shutdown()
    assert cycles == ["p", "p"]
    assert targets == [None, {"leads": [str(i) for i in range(10)]}]
    assert daemon.metrics.latency.labels("p")._sum.get() >= 0  # observed
    text = daemon.metrics.exposition()[0].decode()
    assert 'leadrelay_trigger_to_delivery_seconds_count{pipeline="p"} 10.0' in text
    assert 'leadrelay_runs_total{outcome="succeeded",pipeline="p"} 2.0' in text
    store.close()


def test_too_many_ids_or_a_scheduled_request_make_the_cycle_incremental(tmp_path: Path) -> None:
    """Ids over daemon.trigger_max_ids, or a schedule tick waiting beside a webhook, give an incremental cycle."""
    settings = _parse({}, {"trigger_max_ids": 3}).model_copy(
        update={"store": config.StoreSettings(url=f"sqlite:///{tmp_path / 's.db'}")})
    store = Store(settings.store.url)
    store.create_all()
    ensure_tables(store)
    daemon = Daemon(settings, store, agent="unit")
    assert daemon.leases.acquire("p")
    targets: list[Any] = []

    def fake_cycle(name: str, only: Any = None) -> CycleReport:
        targets.append(only)
        return CycleReport(pipeline=name, dry_run=False, started_at=T0, status="succeeded", finished_at=T0)

    daemon._cycle = fake_cycle  # type: ignore[method-assign]

    async def scenario() -> None:
        daemon.on_trigger("h", ["1", "2", "3", "4"])  # over the limit
        await daemon.runners["p"].task  # type: ignore[misc]
        daemon.on_trigger("h", ["5"])
        await daemon.request("p", "schedule")  # waiting together with the webhook
        daemon.on_trigger("h", ["6", "7"])
        await daemon.runners["p"].task  # type: ignore[misc]

    asyncio.run(scenario())
    daemon._pool.shutdown()
    assert targets == [None, None, {"leads": ["6", "7"]}]
    store.close()


def test_a_pipeline_without_its_lease_is_not_run(tmp_path: Path) -> None:
    """A request for a pipeline another agent holds runs nothing."""
    settings = _parse({}).model_copy(update={"store": config.StoreSettings(url=f"sqlite:///{tmp_path / 's.db'}")})
    store = Store(settings.store.url)
    store.create_all()
    ensure_tables(store)
    other = Daemon(settings, store, agent="other")
    assert other.leases.acquire("p")
    daemon = Daemon(settings, store, agent="me")
    daemon.leases.tokens["p"] = 99  # it believes it holds the lease under a stale token
    ran: list[str] = []
    daemon._cycle = lambda name, only=None: ran.append(name)  # type: ignore[method-assign,assignment,return-value]

    async def scenario() -> None:
        await daemon.request("p", "schedule")

    asyncio.run(scenario())
    daemon._pool.shutdown()
    other._pool.shutdown()
    assert ran == []
    assert "p" not in daemon.leases.tokens
    store.close()


def test_stop_request_ends_the_cycle_after_the_batch_in_flight(rig_factory) -> None:  # type: ignore[no-untyped-def]
    """With a stop requested the cycle stores the page in flight, delivers nothing and says so; the next cycle
    picks up from the stored cursor and the CRM ends up matching the ledger."""
    rig = rig_factory(300)
    from sync.pipeline import run_cycle

    calls = []

    def stop() -> bool:  # SIGTERM arrives once the cycle has begun: after the check before its first stream
        calls.append(1)
        return len(calls) > 1

    report = asyncio.run(run_cycle(rig.settings, "main", rig.store, clock=rig.clock, timing=rig.time.timing(),
                                   model=rig.model, stop=stop))
    assert report.status == "stopped"
    assert report.delivery == []
    assert 0 < sum(report.read.values()) < 900  # one page of the first stream, not the whole portal
    assert any("stopped on request" in w for w in report.warnings)
    with rig.store.unit(dry_run=True) as unit:
        assert unit.runs("main")[0]["status"] == "stopped"
    reports = asyncio.run(rig.drain())
    assert reports[-1].status == "succeeded"
    assert rig.open_operations() == 0
    assert ledger_mismatches(rig.store, rig.sandbox) == []


def test_status_shows_runs_next_run_lease_and_outbox(tmp_path: Path, rig_factory) -> None:  # type: ignore[no-untyped-def]
    """`leadrelay status --json` lists the pipeline's runs with counts, its next run, lease, outbox and the
    alerts active now (and only those)."""
    import sqlalchemy as sa

    from sync.alerts import AlertStateRow

    rig = rig_factory(120)
    asyncio.run(rig.cycle())
    with rig.store.unit() as unit:
        AlertStateRow.__table__.create(unit.conn, checkfirst=True)
        unit.conn.execute(sa.insert(AlertStateRow.__table__), [
            {"pipeline": "main", "condition": "dead_letters", "active": True, "since": T0,
             "message": "7 dead letters", "updated_at": T0},
            {"pipeline": "main", "condition": "slow_run", "active": False, "since": T0, "message": "over",
             "updated_at": T0}])
    rows = pipeline_status(rig.settings, rig.store, now=rig.clock())
    assert rows[0]["pipeline"] == "main"
    assert rows[0]["runs"][0]["status"] == "succeeded"
    assert rows[0]["runs"][0]["read"] > 0
    assert rows[0]["runs"][0]["delivered"].get("acknowledged", 0) > 0
    assert rows[0]["outbox_open"] == 0
    assert rows[0]["lease"] is None
    assert rows[0]["alerts"] == [{"condition": "dead_letters", "since": T0.isoformat(), "message": "7 dead letters"}]
    cfg = write_config(tmp_path / "c.toml", store_url=rig.settings.store.url,
                       model_dir=Path(rig.settings.scoring.model_dir),
                       connections={"hubspot": "http://127.0.0.1:9"},
                       pipelines={"main": {"source": "hubspot", "destination": "hubspot"}}, daemon={})
    result = CliRunner().invoke(main, ["-c", str(cfg), "status"])
    assert result.exit_code == 0, result.output
    assert "main: every 900s" in result.output
    assert "lease: none" in result.output
    assert "succeeded" in result.output
    assert "ALERT dead_letters since 2026-06-01 09:00:00: 7 dead letters" in result.output
    assert "slow_run" not in result.output


def test_endpoint_liveness_readiness_and_webhook_secrets(tmp_path: Path) -> None:
    """/livez answers; /readyz is 503 naming an unreachable source; a connection whose secret is empty has no
    webhook (404), one with a secret refuses an unsigned call (401) and takes a signed one (202)."""
    import httpx

    from connectors.sandbox import serve_on_loopback
    from sync.webhooks import sign_generic

    settings = config.parse({
        "store": {"url": f"sqlite:///{tmp_path / 's.db'}"}, "retry": {"attempts": 1, "timeout": 2},
        "connections": {"h": {"type": "hubspot", "token": "t", "base_url": "http://127.0.0.1:9"},
                        "crm": {"type": "hubspot", "token": "t", "base_url": "http://127.0.0.1:9"}},
        "daemon": {"webhook_secrets": {"h": "", "crm": "${SECRET}"}},
        "pipelines": {"p": {"source": "crm", "destination": "h"}}}, env={"SECRET": "s3cret"})
    store = Store(settings.store.url)
    store.create_all()
    daemon = Daemon(settings, store, agent="unit")
    triggered: list[tuple[str, list[str]]] = []
    daemon.on_trigger = lambda connection, ids: triggered.append((connection, ids))  # type: ignore[method-assign]
    with serve_on_loopback(daemon._app()) as url, httpx.Client(base_url=url, timeout=30) as client:
        assert client.get("/livez").status_code == 200
        ready = client.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["checks"]["store"] == "ok"
        assert ready.json()["checks"]["source:crm"].startswith("failed")
        body = b'{"ids": ["42"]}'
        assert client.post("/webhooks/h", content=body, headers=sign_generic("", body, int(time.time()))
                           ).status_code == 404
        assert client.post("/webhooks/crm", content=body).status_code == 401
        signed = client.post("/webhooks/crm", content=body, headers=sign_generic("s3cret", body,
                                                                                 int(time.time())))
        assert signed.status_code == 202
        assert "leadrelay_outbox_depth" in client.get("/metrics").text
    assert triggered == [("crm", ["42"])]
    daemon._pool.shutdown()
    store.close()
