"""Alerts on a change of state, not on every run.

After a real run, :func:`evaluate_run` judges the conditions below against the run's report and its recent
history (the ``run`` table); each condition's state is kept in ``alert_state``, so an alert goes out once
when a condition starts and once when it clears. :func:`send` posts them to a Slack-compatible webhook
(``{"text", "blocks"}``; ``[alerts] webhook_url = "${SLACK_WEBHOOK}"``), retrying transient failures.

Conditions (thresholds in ``[alerts]``, see :class:`sync.config.AlertSettings`):

* ``failing`` — the run failed (cleared by the next run that does not);
* ``rejected`` — dead-lettered plus quarantined rows of one run over ``rejected_threshold``;
* ``volume:<stream>`` — records read far from the median of recent runs (``volume_ratio`` either way);
* ``slow`` — a run over ``slow_ratio`` × the median duration (and over ``slow_min_seconds``);
* ``drift`` — score drift at the ``alert`` level (``report.drift``, PSI against the training reference);
  ``drift:account`` — the same for the account model (``report.account["drift"]``, its own reference);
* ``schema:<stream>.<field>`` — a field the source delivered before now never has a value, or its values
  changed type (fields and types are sampled while pulling: :func:`observe_fields`; the last seen set is
  kept in ``source_fields``).

A condition that cannot be judged in a run (no drift computed, too little history, too few records
sampled) keeps its state. Dry, skipped and stopped runs are not judged. The webhook URL is a secret: it is
never logged, and failures are reported by kind and status only.
"""

from __future__ import annotations

import dataclasses
import logging
import statistics
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa
from sqlmodel import JSON, Column, Field, SQLModel

if TYPE_CHECKING:
    from sync.config import Settings
    from sync.pipeline import CycleReport
    from sync.store import Unit

log = logging.getLogger("leadrelay.alerts")

SAMPLE_PER_STREAM = 2_000  # records per stream and run whose fields are profiled: enough to see a field
JUDGED_STATUSES = ("succeeded", "partial", "failed")
_HEALTHY = ("succeeded", "partial")


class AlertStateRow(SQLModel, table=True):
    """Which conditions are active per pipeline: an alert goes out when one starts and when it clears."""

    __tablename__ = "alert_state"
    pipeline: str = Field(primary_key=True)
    condition: str = Field(primary_key=True)
    active: bool = False
    since: datetime = Field(sa_type=sa.DateTime())
    message: str = ""
    updated_at: datetime = Field(sa_type=sa.DateTime())


class SourceFieldsRow(SQLModel, table=True):
    """The fields (and their value types) a pipeline's source delivered per stream, as last seen."""

    __tablename__ = "source_fields"
    pipeline: str = Field(primary_key=True)
    stream: str = Field(primary_key=True)
    fields: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = Field(sa_type=sa.DateTime())


@dataclass(frozen=True, slots=True)
class Alert:
    pipeline: str
    condition: str
    state: Literal["started", "cleared"]
    message: str
    at: datetime
    run_id: int | None = None

    def line(self) -> str:
        head = "RESOLVED" if self.state == "cleared" else "ALERT"
        return f"[{head}] {self.pipeline}: {self.message}"


# --------------------------------------------------------------------------------------------------
# Field profiles (called by the pipeline for every page it stores)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, datetime | date):
        return "datetime"
    if isinstance(value, str):
        return "text"
    return type(value).__name__


def observe_fields(profile: dict[str, dict[str, str]], sampled: Counter[str], stream: str,
                   records: Sequence[Any]) -> None:
    """Add the fields of ``records`` that carry a value, with their value kinds, to ``profile[stream]``
    (``"number"``, ``"text|number"``…); at most :data:`SAMPLE_PER_STREAM` records per stream are looked at."""
    room = SAMPLE_PER_STREAM - sampled[stream]
    if room <= 0 or not records:
        return
    seen = profile.setdefault(stream, {})
    kinds: dict[str, set[str]] = {k: set(v.split("|")) for k, v in seen.items()}
    for record in records[:room]:
        if not dataclasses.is_dataclass(record):
            continue
        for f in dataclasses.fields(record):
            value = getattr(record, f.name)
            if f.name == "attributes" and isinstance(value, Mapping):
                for key, item in value.items():
                    if item is not None:
                        kinds.setdefault(f"attributes.{key}", set()).add(_kind(item))
            elif value is not None:
                kinds.setdefault(f.name, set()).add(_kind(value))
    sampled[stream] += min(room, len(records))
    profile[stream] = {k: "|".join(sorted(v)) for k, v in sorted(kinds.items())}


# --------------------------------------------------------------------------------------------------
# Judging a run


def _median(values: Iterable[float]) -> float | None:
    items = list(values)
    return statistics.median(items) if items else None


def _history(unit: Unit, pipeline: str, run_id: int | None, limit: int) -> list[dict[str, Any]]:
    """Recent finished real runs of the pipeline other than this one, newest first."""
    return [r for r in unit.runs(pipeline, limit=limit * 3 + 1)
            if r["id"] != run_id and not r["dry_run"] and r["status"] in _HEALTHY and r["finished_at"]][:limit]


def _conditions(unit: Unit, settings: Settings, report: CycleReport) -> dict[str, tuple[bool, str]]:
    """Each judged condition: (active, what to say). Conditions that cannot be judged are left out."""
    a = settings.alerts
    out: dict[str, tuple[bool, str]] = {}
    first_error = report.errors[0] if report.errors else "no error recorded"
    out["failing"] = ((True, f"pipeline failing: {first_error}") if report.status == "failed"
                      else (False, f"pipeline recovered: run #{report.run_id} {report.status}"))
    dead = sum(int(d.get("outcomes", {}).get("rejected", 0)) for d in report.delivery)
    rejected = dead + report.quarantined
    out["rejected"] = (rejected > a.rejected_threshold,
                       f"{rejected} rejected row(s) in run #{report.run_id} ({dead} dead-lettered, "
                       f"{report.quarantined} quarantined; threshold {a.rejected_threshold})"
                       if rejected > a.rejected_threshold else
                       f"rejected rows back under the threshold: {rejected} in run #{report.run_id}")
    history = _history(unit, report.pipeline, report.run_id, a.history_runs)
    if len(history) >= a.min_history_runs and report.status in _HEALTHY:
        streams = set(report.read) | {s for r in history for s in (r["counts"] or {}).get("read", {})}
        for stream in sorted(streams):
            median = _median(float((r["counts"] or {}).get("read", {}).get(stream, 0)) for r in history)
            if median is None or median < a.volume_min_records:
                continue
            got = report.read.get(stream, 0)
            far = got > median * a.volume_ratio or got < median / a.volume_ratio
            out[f"volume:{stream}"] = (far, f"{stream}: read {got} record(s), recent median {median:g}"
                                       + (" — far from usual" if far else " — back to usual"))
        durations = [(r["finished_at"] - r["started_at"]).total_seconds() for r in history]
        median_s = _median(durations)
        if report.finished_at is not None and median_s is not None:
            took = (report.finished_at - report.started_at).total_seconds()
            slow = took > median_s * a.slow_ratio and took > a.slow_min_seconds
            out["slow"] = (slow, f"run #{report.run_id} took {took:.0f}s, recent median {median_s:.0f}s"
                           + (" — slow" if slow else " — back to usual"))
    for condition, entity, drift in (("drift", "lead", report.drift or {}),
                                     ("drift:account", "account", (report.account or {}).get("drift") or {})):
        if drift.get("score_psi") is not None and "note" not in drift:
            alert = drift.get("status") == "alert"
            train = "`leadrelay train`" if entity == "lead" else "`leadrelay train --entity account`"
            head = "score drift" if entity == "lead" else "account model score drift"
            out[condition] = (alert, f"{head} {drift.get('status')}: PSI {drift['score_psi']:.3f} over "
                              f"{drift.get('rows')} scored {entity}(s)" + (f" — retrain ({train})" if alert else ""))
    return out


def _schema_conditions(unit: Unit, settings: Settings, report: CycleReport, now: datetime
                       ) -> dict[str, tuple[bool, str]]:
    """Fields that vanished or changed type since the last profile of each stream; stores the new profile.

    The stored profile keeps a vanished field and a field's earlier type, so the condition stays active
    until the field comes back (and then clears) instead of clearing by forgetting it."""
    t = SourceFieldsRow.__table__
    out: dict[str, tuple[bool, str]] = {}
    floor = settings.alerts.schema_min_records
    for stream, now_fields in report.fields.items():
        if report.fields_sampled.get(stream, 0) < floor:
            continue
        row = unit.conn.execute(sa.select(t.c.fields).where(t.c.pipeline == report.pipeline,
                                                            t.c.stream == stream)).scalar_one_or_none()
        before: dict[str, str] = dict(row or {})
        for name, kinds in before.items():
            cond = f"schema:{stream}.{name}"
            current = now_fields.get(name)
            if current is None:
                out[cond] = (True, f"{stream}.{name}: delivered with values before, now empty in all "
                                   f"{report.fields_sampled[stream]} record(s) sampled (mapping or source field "
                                   "removed or renamed?)")
            elif not set(current.split("|")) & set(kinds.split("|")):
                out[cond] = (True, f"{stream}.{name}: type changed from {kinds} to {current}")
            else:
                out[cond] = (False, f"{stream}.{name}: delivered again as {current}")
        merged = {**now_fields, **{k: v for k, v in before.items() if out.get(f"schema:{stream}.{k}", (False,))[0]}}
        unit._exec_many(t, [{"pipeline": report.pipeline, "stream": stream, "fields": merged,
                             "updated_at": now.astimezone(UTC).replace(tzinfo=None)}], ["pipeline", "stream"])
    return out


def evaluate_run(unit: Unit, settings: Settings, report: CycleReport, now: datetime) -> list[Alert]:
    """The alerts a finished run calls for: conditions that started or cleared with it (state is updated in
    ``unit``'s transaction; the caller commits, then :func:`send` s them)."""
    if report.dry_run or report.status not in JUDGED_STATUSES:
        return []
    judged = _conditions(unit, settings, report)
    judged.update(_schema_conditions(unit, settings, report, now))
    t = AlertStateRow.__table__
    stored = {r.condition: r for r in unit.conn.execute(sa.select(t).where(t.c.pipeline == report.pipeline))}
    naive = now.astimezone(UTC).replace(tzinfo=None)
    alerts: list[Alert] = []
    rows: list[dict[str, Any]] = []
    for condition, (active, message) in sorted(judged.items()):
        was = stored.get(condition)
        was_active = bool(was is not None and was.active)
        if active == was_active:
            continue
        alerts.append(Alert(report.pipeline, condition, "started" if active else "cleared", message, now,
                            report.run_id))
        rows.append({"pipeline": report.pipeline, "condition": condition, "active": active, "since": naive,
                     "message": message, "updated_at": naive})
    if rows:
        unit._exec_many(t, rows, ["pipeline", "condition"])
    return alerts


def active_alerts(unit: Unit, pipeline: str | None = None) -> list[dict[str, Any]]:
    """Conditions active now (for ``status`` and the daemon's endpoint)."""
    t = AlertStateRow.__table__
    query = sa.select(t).where(t.c.active.is_(True)).order_by(t.c.pipeline, t.c.condition)
    if pipeline is not None:
        query = query.where(t.c.pipeline == pipeline)
    return [dict(r._mapping) for r in unit.conn.execute(query)]


# --------------------------------------------------------------------------------------------------
# Sending


def slack_payload(alerts: Sequence[Alert]) -> dict[str, Any]:
    """A Slack incoming-webhook message (also accepted by Mattermost, Rocket.Chat, Discord's /slack)."""
    started = sum(1 for x in alerts if x.state == "started")
    cleared = len(alerts) - started
    text = f"leadrelay: {started} alert(s), {cleared} resolved" if len(alerts) > 1 else alerts[0].line()
    blocks: list[dict[str, Any]] = [{"type": "section", "text": {"type": "mrkdwn", "text": (
        f"{':rotating_light:' if x.state == 'started' else ':white_check_mark:'} *{x.pipeline}* "
        f"`{x.condition}` {'started' if x.state == 'started' else 'resolved'}\n{x.message}")}} for x in alerts]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"run #{alerts[-1].run_id} · {alerts[-1].at.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC")}]})
    return {"text": text, "blocks": blocks}


Sleep = Callable[[float], Awaitable[None]]


async def send(alerts: Sequence[Alert], settings: Settings, *, sleep: Sleep | None = None,
               attempts: int = 4) -> bool:
    """Post ``alerts`` as one message to ``[alerts] webhook_url``; retry connection errors, 429 and 5xx.
    Returns whether it was delivered (no URL configured or nothing to say: ``False``, nothing sent)."""
    url = settings.alerts.webhook_url
    if url is None or not alerts:
        return False
    import asyncio

    import httpx
    import tenacity

    from sync.logs import redact

    class _Transient(Exception):
        pass

    payload = slack_payload(alerts)
    payload = {"text": redact(payload["text"]), "blocks": [_redacted(b, redact) for b in payload["blocks"]]}
    retrying = tenacity.AsyncRetrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential(multiplier=0.5, max=10),
        retry=tenacity.retry_if_exception_type((httpx.TransportError, _Transient)),
        sleep=sleep or asyncio.sleep,
        reraise=True,
    )
    try:
        async with httpx.AsyncClient(timeout=settings.alerts.timeout) as client:
            async for attempt in retrying:
                with attempt:
                    response = await client.post(url.get_secret_value(), json=payload)
                    if response.status_code == 429 or response.status_code >= 500:
                        raise _Transient(f"HTTP {response.status_code}")
                    if response.status_code >= 400:
                        log.error("alert webhook refused the message: HTTP %d (check [alerts] webhook_url)",
                                  response.status_code)
                        return False
    except (httpx.HTTPError, _Transient) as exc:
        # The exception text can carry the URL (a credential): only its kind goes to the log.
        log.error("alert webhook unreachable after %d attempt(s): %s", attempts, type(exc).__name__)
        return False
    log.info("sent %d alert(s): %s", len(alerts), ", ".join(f"{x.condition} {x.state}" for x in alerts))
    return True


def _redacted(block: Any, redact: Callable[[str], str]) -> Any:
    if isinstance(block, str):
        return redact(block)
    if isinstance(block, dict):
        return {k: _redacted(v, redact) for k, v in block.items()}
    if isinstance(block, list):
        return [_redacted(v, redact) for v in block]
    return block


__all__ = ["Alert", "AlertStateRow", "SourceFieldsRow", "active_alerts", "evaluate_run", "observe_fields",
           "send", "slack_payload"]
