"""Alerts on a change of state: each condition alerts once when it starts and once when it clears, never on
every run; messages reach a Slack-compatible webhook (a loopback receiver) with retries, URL never logged."""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.base import Lead
from connectors.sandbox import serve_on_loopback
from sync import config
from sync.alerts import Alert, active_alerts, evaluate_run, observe_fields, send, slack_payload
from sync.logs import add_secrets, configure_logging, settings_secrets
from sync.pipeline import CycleReport
from sync.store import Store

T0 = datetime(2026, 6, 1, 9, 0, tzinfo=UTC)
HOOK_PATH = "/services/T000/B000/very-secret-token-4242"


@dataclass
class Receiver:
    """A Slack-compatible webhook on loopback that can answer 503 a number of times first."""

    fail_first: int = 0
    received: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)

    def app(self) -> Starlette:
        async def hook(request: Request) -> JSONResponse:
            if self.fail_first > 0:
                self.fail_first -= 1
                self.statuses.append(503)
                return JSONResponse({"ok": False}, status_code=503)
            self.received.append(await request.json())
            self.statuses.append(200)
            return JSONResponse({"ok": True})

        return Starlette(routes=[Route(HOOK_PATH, hook, methods=["POST"])])


@pytest.fixture
def agent_log() -> Iterator[io.StringIO]:
    """leadrelay's own log handler (JSON, debug level, with redaction) writing to a buffer."""
    buffer = io.StringIO()
    root = logging.getLogger()
    level = root.level
    handler = configure_logging("json", "DEBUG", stream=buffer)
    yield buffer
    root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    r = Receiver()
    with serve_on_loopback(r.app()) as base:
        yield r, base + HOOK_PATH


def settings_for(url: str | None, **alerts: Any) -> config.Settings:
    env = {"SLACK_WEBHOOK": url} if url else {}
    return config.parse({
        "alerts": {**({"webhook_url": "${SLACK_WEBHOOK}"} if url else {}), **alerts},
        "connections": {"h": {"type": "hubspot", "token": "t0k3n-for-alerts"}},
        "pipelines": {"main": {"source": "h", "destination": "h"}},
    }, env=env)


class Runs:
    """Finished runs recorded in a real store, each judged as the CLI and the daemon judge them."""

    def __init__(self, store: Store, settings: config.Settings) -> None:
        self.store, self.settings = store, settings
        self.at = T0

    def run(self, *, status: str = "succeeded", read: int = 1000, seconds: float = 30, quarantined: int = 0,
            rejected: int = 0, drift: dict[str, Any] | None = None, errors: tuple[str, ...] = (),
            fields: dict[str, dict[str, str]] | None = None, sampled: int = 0) -> list[Alert]:
        self.at += timedelta(minutes=15)
        report = CycleReport(pipeline="main", dry_run=False, started_at=self.at, status=status,
                             read=Counter({"leads": read}), quarantined=quarantined, drift=drift or {},
                             errors=list(errors), delivery=[{"outcomes": {"acknowledged": 5, "rejected": rejected}}],
                             finished_at=self.at + timedelta(seconds=seconds), fields=fields or {},
                             fields_sampled=Counter(dict.fromkeys(fields or {}, sampled)))
        with self.store.unit() as unit:
            report.run_id = unit.start_run("main", report.started_at, dry_run=False)
            unit.finish_run(report.run_id, report.finished_at, status, {"read": dict(report.read)})
            return evaluate_run(unit, self.settings, report, report.finished_at)


def kinds(alerts: list[Alert]) -> list[tuple[str, str]]:
    return [(a.condition, a.state) for a in alerts]


def test_failing_alerts_once_then_recovery_once(store: Store) -> None:
    """A failing pipeline alerts on the first failed run only; the first good run after says it recovered."""
    runs = Runs(store, settings_for(None))
    assert runs.run() == []
    assert kinds(runs.run(status="failed", errors=("credentials refused (401)",))) == [("failing", "started")]
    assert runs.run(status="failed", errors=("credentials refused (401)",)) == []
    assert kinds(runs.run()) == [("failing", "cleared")]
    assert runs.run() == []
    with store.unit(dry_run=True) as unit:
        assert active_alerts(unit) == []


def test_rejected_rows_over_threshold(store: Store) -> None:
    """Dead letters plus quarantined rows over the threshold start an alert once; under it, it clears."""
    runs = Runs(store, settings_for(None, rejected_threshold=10))
    assert runs.run(quarantined=4, rejected=6) == []  # 10 is not over 10
    started = runs.run(quarantined=3, rejected=9)
    assert kinds(started) == [("rejected", "started")]
    assert "12 rejected row(s)" in started[0].message
    assert runs.run(quarantined=30) == []
    assert kinds(runs.run()) == [("rejected", "cleared")]


def test_record_count_far_from_recent_median(store: Store) -> None:
    """Records read far below (or above) the median of recent runs alert once, and clear when back; with too
    little history nothing is judged."""
    runs = Runs(store, settings_for(None, min_history_runs=5))
    assert [runs.run(read=n) for n in (1000, 1100, 900, 1000)] == [[]] * 4
    assert runs.run(read=10) == []  # only four earlier runs: not judged yet
    for n in (1000, 1050):
        assert runs.run(read=n) == []
    dropped = runs.run(read=20)
    assert kinds(dropped) == [("volume:leads", "started")]
    assert "read 20 record(s), recent median 1000" in dropped[0].message
    assert runs.run(read=15) == []
    assert kinds(runs.run(read=990)) == [("volume:leads", "cleared")]
    assert kinds(runs.run(read=9000)) == [("volume:leads", "started")]


def test_slow_run(store: Store) -> None:
    """A run over slow_ratio × the median duration (and over the floor) alerts once; a normal one clears it."""
    runs = Runs(store, settings_for(None, min_history_runs=3, slow_min_seconds=60))
    for _ in range(3):
        assert runs.run(seconds=40) == []
    assert runs.run(seconds=100) == []  # over 3 × 40 s? no: 100 < 120
    assert kinds(runs.run(seconds=400)) == [("slow", "started")]
    assert runs.run(seconds=500) == []
    assert kinds(runs.run(seconds=45)) == [("slow", "cleared")]


def test_drift_over_threshold(store: Store) -> None:
    """Score drift at the alert level alerts once; a run without drift figures keeps the state; ok clears."""
    runs = Runs(store, settings_for(None))
    alert = {"score_psi": 0.41, "status": "alert", "rows": 800, "features": {}}
    started = runs.run(drift=alert)
    assert kinds(started) == [("drift", "started")]
    assert "PSI 0.410" in started[0].message
    assert runs.run(drift=alert) == []
    assert runs.run(drift={}) == []
    assert runs.run(drift={"score_psi": 0.5, "status": "ok", "rows": 20, "note": "too few"}) == []
    assert kinds(runs.run(drift={"score_psi": 0.02, "status": "ok", "rows": 800})) == [("drift", "cleared")]


def test_mapped_field_vanishing_or_changing_type(store: Store) -> None:
    """A field the source delivered before that is now empty in every sampled record, or whose values changed
    type, alerts once; it clears when the field is delivered again as before; small samples are not judged."""
    runs = Runs(store, settings_for(None, schema_min_records=50))
    full = {"leads": {"email": "text", "title": "text", "attributes.employees": "number"}}
    assert runs.run(fields=full, sampled=200) == []
    no_title = {"leads": {"email": "text", "attributes.employees": "number"}}
    assert runs.run(fields=no_title, sampled=10) == []  # 10 records sampled: too few to say
    vanished = runs.run(fields=no_title, sampled=200)
    assert kinds(vanished) == [("schema:leads.title", "started")]
    assert "now empty" in vanished[0].message
    assert runs.run(fields=no_title, sampled=200) == []
    retyped = {"leads": {"email": "text", "title": "text", "attributes.employees": "text"}}
    assert kinds(runs.run(fields=retyped, sampled=200)) == [("schema:leads.attributes.employees", "started"),
                                                           ("schema:leads.title", "cleared")]
    assert kinds(runs.run(fields=full, sampled=200)) == [("schema:leads.attributes.employees", "cleared")]


def test_observe_fields_profiles_values_and_types() -> None:
    """Fields with a value and their kinds are profiled from canonical records, capped per stream."""
    profile: dict[str, dict[str, str]] = {}
    sampled: Counter[str] = Counter()
    leads = [Lead(key="1", updated_at=T0, email="a@b.co", attributes={"employees": 5, "plan": None}),
             Lead(key="2", updated_at=T0, title="CTO", attributes={"employees": "many"})]
    observe_fields(profile, sampled, "leads", leads)
    assert profile["leads"] == {"attributes.employees": "number|text", "email": "text", "key": "text",
                                "read_only": "bool", "title": "text", "updated_at": "datetime"}
    assert sampled["leads"] == 2


def test_send_posts_slack_payload_with_retries_and_never_logs_the_url(
        receiver: tuple[Receiver, str], agent_log: io.StringIO) -> None:
    """Two 503s then 200: one Slack-compatible message arrives; waits go through the injected sleep; the
    webhook URL appears in no log line, even at debug level where the HTTP client logs its requests."""
    hook, url = receiver
    settings = settings_for(url)
    add_secrets(settings_secrets(settings))
    hook.fail_first = 2
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    alerts = [Alert("main", "failing", "started", "pipeline failing: boom for jane@acme.com", T0, 7),
              Alert("main", "drift", "cleared", "score drift ok", T0, 7)]
    assert asyncio.run(send(alerts, settings, sleep=sleep)) is True
    assert hook.statuses == [503, 503, 200]
    assert len(waits) == 2
    [message] = hook.received
    assert message["text"] == "leadrelay: 1 alert(s), 1 resolved"
    assert [b["type"] for b in message["blocks"]] == ["section", "section", "context"]
    assert "`failing` started" in message["blocks"][0]["text"]["text"]
    assert "jane@acme.com" not in str(message)  # personal data masked like in reports
    logged = agent_log.getvalue()
    assert "sent 2 alert(s)" in logged
    assert "very-secret-token" not in logged


def test_send_gives_up_quietly_and_without_the_url(receiver: tuple[Receiver, str],
                                                   agent_log: io.StringIO) -> None:
    """A webhook that keeps failing costs the run nothing: send returns False after its attempts, and the log
    names the failure without the URL; no URL configured sends nothing."""
    hook, url = receiver
    hook.fail_first = 10

    async def sleep(_: float) -> None:
        return None

    alert = [Alert("main", "failing", "started", "x", T0, 1)]
    settings = settings_for(url)
    add_secrets(settings_secrets(settings))
    assert asyncio.run(send(alert, settings, sleep=sleep, attempts=3)) is False
    assert hook.statuses == [503, 503, 503]
    logged = agent_log.getvalue()
    assert "unreachable after 3 attempt(s)" in logged
    assert "very-secret-token" not in logged
    with contextlib.closing(asyncio.new_event_loop()) as loop:
        assert loop.run_until_complete(send(alert, settings_for(None))) is False
    assert slack_payload(alert)["text"] == "[ALERT] main: x"
