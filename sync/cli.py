"""`leadrelay ...`: a thin shell over functions the tests call directly.

Expected failures (bad config, bad credentials, a refused model) print one clear line and exit with the
code of their class; only a bug prints a traceback. Heavy modules (onnxruntime, scikit-learn, the
sandbox) are imported inside the commands that need them, so `leadrelay --help` stays fast.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from connectors.base import ConnectorError, FixConfiguration, LeadrelayError

F = TypeVar("F", bound=Callable[..., Any])

EXIT_CODES: list[tuple[type[BaseException], int]] = [
    (FixConfiguration, 3),   # credentials or scopes: a person must act
    (ConnectorError, 4),     # the outside system failed
    (LeadrelayError, 2),     # configuration, models, data
]


def _fail_cleanly(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except LeadrelayError as exc:
            code = next(c for kind, c in EXIT_CODES if isinstance(exc, kind))
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(code)
        except Exception as exc:
            from scoring.errors import ScoringError  # numbers-only package: its own error tree

            if not isinstance(exc, ScoringError):
                raise
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(5)
        except KeyError as exc:  # an unknown pipeline name
            click.secho(f"error: {exc.args[0]}", fg="red", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _settings(ctx: click.Context) -> Any:
    from sync import config
    from sync.logs import add_secrets, settings_secrets

    settings = config.load(ctx.obj["config"])
    add_secrets(settings_secrets(settings))  # from here on, no log line can carry them
    return settings


def _pipeline_name(settings: Any, name: str | None) -> str:
    if name is not None:
        return name
    if len(settings.pipelines) == 1:
        return next(iter(settings.pipelines))
    raise KeyError(f"several pipelines are configured ({', '.join(settings.pipelines)}): pick one with --pipeline")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leadrelay")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              default=lambda: os.environ.get("LEADRELAY_CONFIG", "leadrelay.toml"), show_default="leadrelay.toml",
              help="Config file (TOML). Also $LEADRELAY_CONFIG.")
@click.option("--log-format", type=click.Choice(["human", "json"]), show_default="human",
              default=lambda: os.environ.get("LEADRELAY_LOG_FORMAT", "human"),
              help="Logs on stderr: human lines, or JSON lines with run and operation ids. Also $LEADRELAY_LOG_FORMAT.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
              default=lambda: os.environ.get("LEADRELAY_LOG_LEVEL"), show_default="info for run, else warning",
              help="Least severe level logged. Also $LEADRELAY_LOG_LEVEL.")
@click.pass_context
def main(ctx: click.Context, config_path: str, log_format: str, log_level: str | None) -> None:
    """leadrelay: pull leads from your CRM, score them with ONNX models, push scores back (idempotent retries)."""
    from sync.logs import configure_logging

    ctx.ensure_object(dict)
    ctx.obj["config"] = config_path
    # The agent reports as it goes; one-shot commands print their result and log only what went wrong.
    level = log_level or ("info" if ctx.invoked_subcommand == "run" else "warning")
    configure_logging(log_format, level)  # type: ignore[arg-type]


@main.group()
def connectors() -> None:
    """Installed connector plugins."""


@connectors.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def connectors_list(as_json: bool) -> None:
    """Each connector, its package and version, and any plugin that failed to load with the reason."""
    from connectors.registry import discover

    rows = []
    for item in discover():
        caps = item.connector.capabilities if item.connector else None
        rows.append({
            "name": item.name, "package": item.package, "version": item.version, "target": item.target,
            "ok": item.ok, "error": item.error,
            "streams": list(caps.streams) if caps else [],
            "operations": sorted(caps.operations) if caps else [],
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        where = f"{row['package']} {row['version']}"
        if row["ok"]:
            roles = ", ".join(filter(None, [
                f"source of {'/'.join(row['streams'])}" if row["streams"] else "",
                f"destination for {'/'.join(row['operations'])}" if row["operations"] else ""]))
            click.echo(f"{row['name']:<14} {where:<24} {roles}")
        else:
            click.secho(f"{row['name']:<14} {where:<24} FAILED TO LOAD: {row['error']}", fg="red")


@main.group("config")
def config_group() -> None:
    """Configuration."""


@config_group.command("check")
@click.pass_context
@_fail_cleanly
def config_check(ctx: click.Context) -> None:
    """Validate the config file (secrets are resolved, never printed)."""
    settings = _settings(ctx)
    click.echo(f"{ctx.obj['config']}: OK — {len(settings.connections)} connection(s), "
               f"{len(settings.pipelines)} pipeline(s): {', '.join(settings.pipelines)}")


@main.command()
@click.option("--pipeline", "-p", help="Pipeline to run (default: the only one).")
@click.option("--dry-run", is_flag=True, help="Show the whole plan; write nothing anywhere.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.pass_context
@_fail_cleanly
def sync(ctx: click.Context, pipeline: str | None, dry_run: bool, as_json: bool) -> None:
    """Run one cycle: pull, score, plan, deliver (or, with --dry-run, stop after planning)."""
    from sync.pipeline import run_cycle_sync
    from sync.report import render_cycle
    from sync.store import Store, store_ready

    settings = _settings(ctx)
    name = _pipeline_name(settings, pipeline)
    if dry_run and not store_ready(settings.store.url):
        store = Store("sqlite://")  # nothing stored yet: plan against an empty in-memory store
        store.create_all()
    else:
        store = Store(settings.store.url)
        if not dry_run:
            store.create_all()
    progress = _CycleProgress.on_tty(name)
    report = run_cycle_sync(settings, name, store, dry_run=dry_run, progress=progress)
    if progress is not None:
        progress.done()
    if not dry_run:
        _alert(settings, store, report)
    store.close()
    click.echo(json.dumps(report.as_dict(), indent=2, default=str) if as_json else render_cycle(report))
    if report.status == "failed":
        sys.exit(4)
    if report.status == "skipped":
        click.echo(f"skipped: {'; '.join(report.errors)}", err=True)


class _CycleProgress:
    """Progress of a cycle on stderr, at most one line a second (and a last one), only when stderr is a
    terminal: never mixed into what stdout prints (--json), never in logs or pipes."""

    def __init__(self, name: str, every: float = 1.0) -> None:
        import time

        self.name, self.every, self.clock = name, every, time.monotonic
        self.last = self.clock()
        self.counts: dict[str, int] | None = None

    @classmethod
    def on_tty(cls, name: str) -> _CycleProgress | None:
        return cls(name) if sys.stderr.isatty() else None

    def __call__(self, counts: dict[str, int]) -> None:
        self.counts = dict(counts)
        if self.clock() - self.last >= self.every:
            self.last = self.clock()
            self._line()

    def _line(self) -> None:
        c = self.counts or {}
        click.echo(f"{self.name}: {c.get('pages', 0)} page(s) pulled ({c.get('read', 0)} records), "
                   f"{c.get('scored', 0)} lead(s) scored, {c.get('delivered', 0)} operation(s) delivered", err=True)

    def done(self) -> None:
        if self.counts is not None:
            self._line()


def _train_progress() -> Callable[[str], None] | None:
    """Training's steps on stderr with the seconds since start, only when stderr is a terminal."""
    if not sys.stderr.isatty():
        return None
    import time

    start = time.monotonic()
    return lambda step: click.echo(f"[{time.monotonic() - start:6.1f}s] {step}", err=True)


def _alert(settings: Any, store: Any, report: Any) -> None:
    """Judge the finished run's alert conditions; send what started or cleared (see sync.alerts)."""
    import asyncio

    from sync.alerts import evaluate_run, send

    with store.unit() as unit:
        alerts = evaluate_run(unit, settings, report, datetime.now(UTC))
    for alert in alerts:
        click.echo(alert.line(), err=True)
    if alerts:
        asyncio.run(send(alerts, settings))


@main.command()
@click.option("--pipeline", "-p", help="Pipeline whose store history to learn from.")
@click.option("--out", type=click.Path(file_okay=False), help="Model registry folder (default: scoring.model_dir).")
@click.option("--json", "as_json", is_flag=True, help="Print the model card as JSON.")
@click.option("--challenger", is_flag=True, help="Register the new model as challenger; keep serving the champion.")
@click.option("--entity", type=click.Choice(["lead", "account"]), default="lead", show_default=True,
              help="account: the account model of [scoring.account], into its model_dir (store history only).")
@click.option("--version", "version", help="Version name (default: the training time, YYYYmmdd-HHMMSS).")
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False),
              help="Train on an exported file instead of the store (needs --label and --out).")
@click.option("--label", help="--csv: the column saying whether the row converted.")
@click.option("--positive", help="--csv: the label value meaning converted (default: detected, e.g. yes/true/1).")
@click.option("--drop", multiple=True, help="--csv: columns to leave out (repeatable or comma-separated).")
@click.option("--sep", help="--csv: column separator (default: detected).")
@click.option("--points", type=click.Path(exists=True, dir_okay=False),
              help="--csv: TOML file of hand-written points rules, the baseline to beat.")
@click.option("--allow-leaky", multiple=True, help="--csv: confirm a column the leakage guard flagged.")
@click.option("--leak-auc", type=float, default=0.80, show_default=True,
              help="--csv: single-column ROC-AUC from which the leakage guard flags a column.")
@click.option("--split", type=click.Choice(["random", "ordered"]), default="random", show_default=True,
              help="--csv: stratified random hold-out, or the last rows when the file is in time order.")
@click.pass_context
@_fail_cleanly
def train(ctx: click.Context, pipeline: str | None, out: str | None, as_json: bool, challenger: bool, entity: str,
          version: str | None, csv_path: str | None, label: str | None, positive: str | None,
          drop: tuple[str, ...], sep: str | None, points: str | None, allow_leaky: tuple[str, ...],
          leak_auc: float, split: str) -> None:
    """Train a lead model (from the store's history, or from an exported file with --csv), gate it against
    the points baseline, and export it as ONNX with a model card and an evaluation report. With --entity
    account: the account model ([scoring.account]), whose scores ride on the leads' score updates."""
    if csv_path is not None and entity == "account":
        raise click.UsageError("--entity account trains from the store's history; it does not take --csv")
    if csv_path is not None:
        from sync._cli_models import train_csv_command

        train_csv_command(csv_path=csv_path, label=label, drop=drop, sep=sep, positive=positive, points=points,
                          allow_leaky=allow_leaky, leak_auc=leak_auc, split=split, out=out, version=version,
                          challenger=challenger, as_json=as_json)
        return
    from sync.report import render_training
    from sync.store import Store
    from sync.training import describe, train_accounts_from_store, train_from_store

    settings = _settings(ctx)
    if entity == "account" and settings.scoring.account is None:
        raise click.UsageError("--entity account: add a [scoring.account] table first (the cycle serves the "
                               "account model from its model_dir)")
    name = _pipeline_name(settings, pipeline)
    store = Store(settings.store.url)
    store.create_all()
    trainer = train_accounts_from_store if entity == "account" else train_from_store
    result = trainer(settings, name, store, now=datetime.now(UTC), out_dir=out, version=version,
                     challenger=challenger, progress=_train_progress())
    store.close()
    click.echo(json.dumps(describe(result), indent=2, default=str) if as_json else render_training(result))


@main.command()
@click.option("--pipeline", "-p", help="Pipeline (default: all).")
@click.option("--runs", default=5, show_default=True, type=click.IntRange(1, 100), help="Last runs per pipeline.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_fail_cleanly
def status(ctx: click.Context, pipeline: str | None, runs: int, as_json: bool) -> None:
    """Each pipeline: last runs with counts, next run, lease holder, outbox depth, dead letters, model, drift
    and active alerts. (Rate-budget use is live state of a running agent: see its /metrics.)"""
    from sync.daemon import pipeline_status, render_status
    from sync.store import Store, store_ready

    settings = _settings(ctx)
    if pipeline is not None and pipeline not in settings.pipelines:
        raise KeyError(f"no pipeline named {pipeline!r} (configured: {', '.join(settings.pipelines)})")
    if not store_ready(settings.store.url):
        store = Store("sqlite://")  # nothing stored yet: every pipeline shows as never run
        store.create_all()
    else:
        store = Store(settings.store.url)
    rows = pipeline_status(settings, store, runs=runs, only=pipeline)
    store.close()
    click.echo(json.dumps(rows, indent=2, default=str) if as_json else render_status(rows))


@main.command()
@click.option("--agent-id", help="This agent's name in the store's leases (default: daemon.agent_id, else host-pid).")
@click.pass_context
@_fail_cleanly
def run(ctx: click.Context, agent_id: str | None) -> None:
    """Run the agent: every pipeline on its schedule, webhooks and fast polls in between, and an HTTP endpoint
    (/livez, /readyz, /metrics, /webhooks/...). Stops cleanly on SIGTERM. Several agents sharing a PostgreSQL
    store split the pipelines by lease."""
    from sync.daemon import run_daemon

    settings = _settings(ctx)  # a bad config stops here: nothing has started
    code = run_daemon(settings, agent=agent_id,
                      announce=lambda url: click.echo(f"leadrelay agent listening on {url}", err=True))
    sys.exit(code)


@main.command()
@click.argument("person", required=False)
@click.option("--account", "account_key", metavar="KEY",
              help="Explain an account instead: its account-model score, band, version and top reasons.")
@click.option("--pipeline", "-p", help="Pipeline whose source the person belongs to (default: the only one).")
@click.option("--reveal", is_flag=True, help="Show personal data unmasked (an authorised audit only).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_fail_cleanly
def explain(ctx: click.Context, person: str | None, account_key: str | None, pipeline: str | None, reveal: bool,
            as_json: bool) -> None:
    """One person's whole story: record, score and reasons, consent, audiences, routing, holdouts, operations
    and their outcomes, and the audit entries about them. Personal data is masked unless --reveal.

    With --account KEY, an account's: its latest account-model score, band and model version, the features
    and top reasons behind it recomputed through the serving path (and whether they reproduce the stored
    score), its leads and the operations on it."""
    from sync import audit
    from sync.explain import explain as story_of
    from sync.masking import mask_record
    from sync.store import Store, store_ready

    if (person is None) == (account_key is None):
        raise click.UsageError("give either PERSON (a lead key) or --account KEY")
    settings = _settings(ctx)
    source = settings.pipelines[_pipeline_name(settings, pipeline)].source
    if not store_ready(settings.store.url):
        raise click.ClickException("no runs yet: nothing to explain")
    if account_key is not None:
        _explain_account(settings, source, account_key, pipeline=pipeline, reveal=reveal, as_json=as_json)
        return
    assert person is not None
    store = Store(settings.store.url)
    with store.unit(dry_run=True) as unit:
        story = story_of(unit, source, person, reveal=reveal, model_dir=settings.scoring.model_dir,
                         retention_days=settings.pipelines[_pipeline_name(settings, pipeline)].activity_retention_days)
        if story is not None:
            entries = audit.read(unit.conn, subject=person)
            story["audit"] = [dict(mask_record({"id": e.id, "at": e.at.isoformat(), "kind": e.kind, **e.data},
                                               reveal=reveal)) for e in entries]
    store.close()
    if story is None:
        raise click.ClickException(f"no lead {person!r} in source {source!r}")
    click.echo(json.dumps(story, indent=2, default=str) if as_json else _render_story(story))


def _explain_account(settings: Any, source: str, account_key: str, *, pipeline: str | None, reveal: bool,
                     as_json: bool) -> None:
    from sync.explain import explain_account
    from sync.store import Store

    account = settings.scoring.account
    store = Store(settings.store.url)
    with store.unit(dry_run=True) as unit:
        story = explain_account(
            unit, source, account_key, reveal=reveal, model_dir=account.model_dir if account is not None else None,
            retention_days=settings.pipelines[_pipeline_name(settings, pipeline)].activity_retention_days)
    store.close()
    if story is None:
        raise click.ClickException(f"no account {account_key!r} in source {source!r}")
    click.echo(json.dumps(story, indent=2, default=str) if as_json else _render_account_story(story))


def _render_account_story(story: dict[str, Any]) -> str:
    record, score, features = story["record"], story["score"], story.get("features") or {}
    lines = [f"account {story['account']}: {record.get('name') or ''} ({record.get('domain') or 'no domain'}), "
             f"{len(story['leads'])} lead(s)"]
    if score is None:
        lines.append("  not scored by the account model yet")
    else:
        lines.append(f"  account score {score['score']} (band {score['band']}, p={score['probability']:.3f}, model "
                     f"{score['model_version']}, {score['scored_at']})")
        lines += [f"    + {r}" for r in features.get("reasons_positive", [])]
        lines += [f"    - {r}" for r in features.get("reasons_negative", [])]
    lines += _feature_lines(features)
    for o in story["operations"]:
        error = f" — {o['last_error']}" if o["last_error"] else ""
        lines.append(f"  op #{o['id']} {o['operation']} → {o['destination']}: {o['status']}{error} ({o['reason']})")
    return "\n".join(lines)


def _feature_lines(features: dict[str, Any]) -> list[str]:
    """The explained features (lead or account): their values and whether they reproduce the stored score."""
    if features.get("values"):
        check = "reproduces the stored score" if features["reproduces_score"] else features["note"]
        return [f"  features as of {features['as_of']} ({features['method']}; {check}):",
                *(f"    {name} = {value}" for name, value in features["values"].items())]
    return [f"  features: {features['note']}"] if features.get("note") else []


def _render_story(story: dict[str, Any]) -> str:
    lead, score = story["lead"], story["score"]
    lines = [f"{story['person']}: {lead.get('first_name') or ''} {lead.get('last_name') or ''} <{lead.get('email')}>"
             f"  owner {lead.get('owner_id')}  account {lead.get('account_key')}"]
    if score:
        lines.append(f"  score {score['score']} (band {score['band']}, p={score['probability']:.3f}, model "
                     f"{score['model_version']}, {score['scored_at']})")
        lines += [f"    + {r}" for r in score["reasons_positive"][:3]]
        lines += [f"    - {r}" for r in score["reasons_negative"][:3]]
    features = story.get("features") or {}
    lines += _feature_lines(features)
    for c in story["consent"]:
        lines.append(f"  consent {c['channel']}: {c['status']} from {c['effective_at']} ({c['source']})")
    for m in story["audiences"]:
        left = f", left {m['exited_at']}: {m['exit_reason']}" if m["exited_at"] else ""
        lines.append(f"  audience {m['audience']}: entered {m['entered_at']}: {m['entry_reason']}{left}")
    for r in story["routing"]:
        lines.append(f"  routing {r['rule']}: {r['status']} to {r['rep_id']} "
                     f"(attempt {r['attempt']}, due {r['due_at']})")
    for h in story["holdouts"]:
        lines.append(f"  holdout {h['rule']}: {'control' if h['control'] else 'treated'} ({h['share']:.0%})")
    for o in story["operations"]:
        error = f" — {o['last_error']}" if o["last_error"] else ""
        lines.append(f"  op #{o['id']} {o['operation']} → {o['destination']}: {o['status']}{error} ({o['reason']})")
    lines.append(f"  audit: {len(story.get('audit', []))} entries (--json shows them)")
    return "\n".join(lines)


@main.group()
def report() -> None:
    """Reports over what the cycles stored."""


@report.command("lift")
@click.option("--pipeline", "-p", help="Pipeline whose source's conversions count (default: the only one).")
@click.option("--rule", help="One holdout rule (e.g. routing:sdr or audience:hot_leads); default: all.")
@click.option("--confidence", default=0.95, show_default=True, type=click.FloatRange(0.5, 0.999))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@_fail_cleanly
def report_lift(ctx: click.Context, pipeline: str | None, rule: str | None, confidence: float, as_json: bool) -> None:
    """Conversion of treated against control per holdout rule, with a confidence interval."""
    from sync.explain import lift_report
    from sync.store import Store, store_ready

    settings = _settings(ctx)
    source = settings.pipelines[_pipeline_name(settings, pipeline)].source
    if not store_ready(settings.store.url):
        raise click.ClickException("no runs yet: no holdouts to compare")
    store = Store(settings.store.url)
    with store.unit(dry_run=True) as unit:
        rows = lift_report(unit, source, rule=rule, confidence=confidence)
    store.close()
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no holdout decisions recorded yet")
    for r in rows:
        head = (f"{r['rule']}: treated {r['treated_converted']}/{r['treated']}, "
                f"control {r['control_converted']}/{r['control']}")
        if "note" in r:
            click.echo(f"{head} — {r['note']}")
            continue
        low, high = r["difference_ci"]
        verdict = "significant" if r["significant"] else "not significant"
        click.echo(f"{head}; difference {r['difference']:+.2%} ({r['confidence']:.0%} CI {low:+.2%} … {high:+.2%}, "
                   f"{verdict})")


@main.group("audit")
def audit_group() -> None:
    """The hash-chained log of every decision and operation."""


@audit_group.command("verify")
@click.option("--head", "known_head", help="A head hash copied elsewhere earlier: it must still be in the chain.")
@click.pass_context
@_fail_cleanly
def audit_verify(ctx: click.Context, known_head: str | None) -> None:
    """Walk the whole log; exit 5 if any entry was altered or removed (each problem is named)."""
    from sync import audit
    from sync.store import Store, store_ready

    settings = _settings(ctx)
    if not store_ready(settings.store.url):
        click.echo("no audit log yet")
        return
    store = Store(settings.store.url)
    with store.unit(dry_run=True) as unit:
        result = audit.verify(unit.conn, unit.dialect, known_head=known_head)
    store.close()
    if result.ok:
        click.echo(f"audit log intact: {result.checked} entries, {result.anchors} anchors, head {result.head_hash}")
        return
    for problem in result.problems:
        click.echo(f"  {problem}", err=True)
    click.echo(f"audit log TAMPERED: {len(result.problems)} problem(s) in {result.checked} entries", err=True)
    sys.exit(5)


@main.group()
def deadletters() -> None:
    """Operations a destination rejected: list them, replay them, or discard them."""


def _dead_letter_filters(func: F) -> F:
    options = [
        click.option("--id", "ids", type=int, multiple=True, help="Outbox id (repeatable)."),
        click.option("--pipeline", "-p", help="Only this pipeline's."),
        click.option("--destination", help="Only this destination connection's."),
        click.option("--operation", help="Only this operation (update_lead, create_task, ...)."),
        click.option("--target", help="Only this record (the destination's key for it)."),
        click.option("--reason", "reason_contains", help="Only those whose reason contains this text."),
        click.option("--since", type=click.DateTime(), help="Only those rejected at or after (UTC)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _filter(kwargs: dict[str, Any]) -> Any:
    from sync.store import DeadLetterFilter

    since = kwargs.pop("since")
    return DeadLetterFilter(ids=tuple(kwargs.pop("ids")), since=since.replace(tzinfo=UTC) if since else None,
                            **kwargs)


@deadletters.command("list")
@_dead_letter_filters
@click.option("--limit", default=100, show_default=True, type=int)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per dead letter, for machines.")
@click.pass_context
@_fail_cleanly
def deadletters_list(ctx: click.Context, limit: int, as_json: bool, **kwargs: Any) -> None:
    """List dead letters with the destination's reason."""
    from sync.store import Store, store_ready

    settings = _settings(ctx)
    if not store_ready(settings.store.url):
        click.echo("no dead letters (no store yet)")
        return
    store = Store(settings.store.url)
    with store.unit(dry_run=True) as unit:
        rows = unit.dead_letters(_filter(kwargs), limit=limit)
    store.close()
    if as_json:
        for row in rows:
            click.echo(json.dumps({k: row[k] for k in ("id", "pipeline", "destination", "operation", "target",
                                                         "last_error", "attempts", "updated_at", "payload")},
                                  default=str))
        return
    if not rows:
        click.echo("no dead letters")
        return
    for row in rows:
        click.echo(f"#{row['id']:<6} {row['pipeline']:<14} {row['destination']}/{row['operation']:<14} "
                   f"{row['target']:<14} {row['updated_at']:%Y-%m-%d %H:%M}  {row['last_error']}")
    click.echo(f"{len(rows)} dead letter(s){' (limit reached)' if len(rows) == limit else ''}")


def _act_on_dead_letters(ctx: click.Context, verb: str, every: bool, kwargs: dict[str, Any]) -> None:
    from sync.store import Store, store_ready

    where = _filter(kwargs)
    if not where.narrowed and not every:
        raise click.UsageError(f"say which dead letters to {verb} (--id or a filter), or --all for every one")
    settings = _settings(ctx)
    if not store_ready(settings.store.url):
        click.echo("no dead letters (no store yet)")
        return
    store = Store(settings.store.url)
    with store.unit() as unit:
        act = unit.replay_dead_letters if verb == "replay" else unit.discard_dead_letters
        count = act(where, datetime.now(UTC))
    store.close()
    if verb == "replay":
        click.echo(f"{count} operation(s) queued again; they are sent on their pipeline's next run")
    else:
        click.echo(f"{count} operation(s) discarded; they will not be sent")


@deadletters.command("replay")
@_dead_letter_filters
@click.option("--all", "every", is_flag=True, help="Every dead letter (when no filter is given).")
@click.pass_context
@_fail_cleanly
def deadletters_replay(ctx: click.Context, every: bool, **kwargs: Any) -> None:
    """Queue dead letters again (after fixing what the destination refused)."""
    _act_on_dead_letters(ctx, "replay", every, kwargs)


@deadletters.command("discard")
@_dead_letter_filters
@click.option("--all", "every", is_flag=True, help="Every dead letter (when no filter is given).")
@click.pass_context
@_fail_cleanly
def deadletters_discard(ctx: click.Context, every: bool, **kwargs: Any) -> None:
    """Give up on dead letters: they stay on record as discarded and are never sent."""
    _act_on_dead_letters(ctx, "discard", every, kwargs)


@main.group("store")
def store_group() -> None:
    """The store's schema: which version it is at, and upgrading it (`sync` and `run` upgrade on start)."""


@store_group.command("version")
@click.pass_context
@_fail_cleanly
def store_version(ctx: click.Context) -> None:
    """The store's schema revision and the newest this leadrelay knows."""
    from sync.store import Store

    store = Store(_settings(ctx).store.url)
    current, newest = store.schema_revision()
    store.close()
    if current == newest:
        click.echo(f"store schema {current}: up to date")
    else:
        click.echo(f"store schema {current or 'unversioned (empty, or from before migrations)'}; newest {newest}: "
                   "run `leadrelay store upgrade`")


@store_group.command("upgrade")
@click.pass_context
@_fail_cleanly
def store_upgrade(ctx: click.Context) -> None:
    """Migrate the store to the newest schema (one transaction; data kept)."""
    from sync.store import Store

    store = Store(_settings(ctx).store.url)
    before, after = store.migrate()
    store.close()
    click.echo(f"store schema {before or 'unversioned'} -> {after}")


@main.group()
def sandbox() -> None:
    """The built-in fake vendor APIs (for trying leadrelay without a CRM)."""


@sandbox.command("serve")
@click.option("--vendor", default="hubspot", show_default=True,
              type=click.Choice(["hubspot", "salesforce", "marketo", "meta", "google_ads", "linkedin", "all"]),
              help="Which fake to serve; `all` serves every one, each on its own port (PORT, PORT+1, ...).")
@click.option("--port", default=8765, show_default=True, type=int, help="The (first) port; 0 picks free ports.")
@click.option("--contacts", default=2000, show_default=True, type=int,
              help="People seeded into HubSpot, Salesforce and Marketo.")
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--token", default="sandbox-token", show_default=True, help="The HubSpot sandbox's token.")
def sandbox_serve(vendor: str, port: int, contacts: int, seed: int, token: str) -> None:
    """Serve seeded vendor fakes on 127.0.0.1 until interrupted; print each base URL and the
    [connections.*] settings (sandbox credentials) that reach it."""
    from sync.demo import serve_forever

    serve_forever(port=port, contacts=contacts, seed=seed, token=token, vendor=vendor, echo=click.echo)


@main.command()
@click.option("--contacts", default=3000, show_default=True, type=int, help="Sandbox contacts to seed.")
@click.option("--workdir", default=".leadrelay/demo", show_default=True, type=click.Path(file_okay=False),
              help="Where the demo keeps its store, model and config.")
@click.option("--seed", default=7, show_default=True, type=int)
@_fail_cleanly
def demo(contacts: int, workdir: str, seed: int) -> None:
    """End to end on the sandbox: seed, pull, train, dry-run, sync, re-sync; print what happened."""
    from sync.demo import run_demo

    run_demo(Path(workdir), contacts=contacts, seed=seed, echo=click.echo)


# Model commands live in their own module (registered here so `leadrelay --help` lists them; the module
# imports nothing heavy at import time).
from sync._cli_models import model as _model_group  # noqa: E402
from sync._cli_models import score as _score_command  # noqa: E402

main.add_command(_score_command)
main.add_command(_model_group)


if __name__ == "__main__":
    main()
