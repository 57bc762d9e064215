"""CLI commands for models: training on an exported file, scoring a file, and the model registry.

``leadrelay train --csv`` (dispatched here from ``sync.cli.train``), ``leadrelay score`` and
``leadrelay model list|promote|rollback|status``. Thin shells over :mod:`scoring.tabular`,
:mod:`scoring.tabular_model`, :mod:`scoring.registry` and :mod:`scoring.monitor`; every heavy import
happens inside a command, so ``leadrelay --help`` loads none of scikit-learn, onnxruntime or matplotlib.
Expected failures print one line: a refused model or bad data exits 5, a configuration problem 2.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

F = TypeVar("F", bound=Callable[..., Any])


def _clean(func: F) -> F:
    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from connectors.base import LeadrelayError
        from scoring.errors import ScoringError

        try:
            return func(*args, **kwargs)
        except ScoringError as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(5)
        except (LeadrelayError, FileNotFoundError) as exc:
            click.secho(f"error: {exc}", fg="red", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def _now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------------------------------
# train --csv


def train_csv_command(*, csv_path: str, label: str | None, drop: Sequence[str], sep: str | None,
                      positive: str | None, points: str | None, allow_leaky: Sequence[str], leak_auc: float,
                      split: str, out: str | None, version: str | None, challenger: bool, as_json: bool) -> None:
    """``leadrelay train --csv``: train into the registry at ``out`` and print the comparison."""
    _clean(_train_csv)(csv_path=csv_path, label=label, drop=drop, sep=sep, positive=positive, points=points,
                       allow_leaky=allow_leaky, leak_auc=leak_auc, split=split, out=out, version=version,
                       challenger=challenger, as_json=as_json)


def _train_csv(*, csv_path: str, label: str | None, drop: Sequence[str], sep: str | None, positive: str | None,
               points: str | None, allow_leaky: Sequence[str], leak_auc: float, split: str, out: str | None,
               version: str | None, challenger: bool, as_json: bool) -> None:
    from scoring._csv import split_names
    from scoring.registry import Registry
    from scoring.tabular import train_csv

    if not label:
        raise click.UsageError("--csv needs --label COLUMN (the column that says whether the lead converted)")
    if not out:
        raise click.UsageError("--csv needs --out DIR (the model folder to write)")
    now = _now()
    registry = Registry(out)
    name = version or now.strftime("%Y%m%d-%H%M%S")
    card = train_csv(csv_path, registry.version_dir(name), label=label, version=name, trained_at=now,
                     drop=split_names(drop), sep=sep, positive=positive, points_path=points,
                     allow_leaky=split_names(allow_leaky), leak_auc=leak_auc, split=split)
    registry.register(name, at=now, promote=not challenger)
    if as_json:
        click.echo(json.dumps(card.to_dict(), indent=2))
        return
    c = card.counts
    click.echo(f"model {name}: {card.label} = {card.positive!r}; {c['rows']} rows, {c['positives']} positive; "
               f"{card.split} hold-out of {c['validation_rows']} rows")
    click.echo(f"{'model':<40} {'ROC-AUC':>8} {'PR-AUC':>8} {'Brier':>8} {'lift@10%':>9}")
    rows = [(f"{n}{' (champion)' if n == card.champion else ''}", m) for n, m in card.candidates.items()]
    rows.append((f"points baseline: {card.baseline['name']}", card.baseline))
    for n, m in rows:
        click.echo(f"{n[:40]:<40} {m['roc_auc']:>8.4f} {m['pr_auc']:>8.4f} {m['brier']:>8.4f} "
                   f"{m['top_decile_lift']:>9.2f}")
    role = "champion (served)" if registry.champion == name else "challenger (not served; `leadrelay model promote`)"
    click.echo(f"{role}; report: {registry.version_dir(name) / 'report.md'}")
    for w in card.warnings:
        click.secho(f"warning: {w}", fg="yellow")


# --------------------------------------------------------------------------------------------------
# score


@click.command("score")
@click.option("--csv", "csv_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Export to score (one row per lead, the model's columns among its columns).")
@click.option("--model", "model_dir", required=True, type=click.Path(exists=True, file_okay=False),
              help="Model folder written by `leadrelay train --csv --out DIR`.")
@click.option("--out", type=click.Path(dir_okay=False),
              help="Write the rows back with leadrelay_probability, leadrelay_score and leadrelay_band.")
@click.option("--sep", help="Column separator (default: detected).")
@click.option("--warn", type=float, default=0.1, show_default=True, help="PSI from which drift is a warning.")
@click.option("--alert", type=float, default=0.25, show_default=True, help="PSI from which drift is an alert.")
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@_clean
def score(csv_path: str, model_dir: str, out: str | None, sep: str | None, warn: float, alert: float,
          as_json: bool) -> None:
    """Score an exported file with a tabular model; show bands and drift against the training data."""
    from scoring.tabular_model import score_csv

    result = score_csv(model_dir, csv_path, out=out, sep=sep, thresholds=_thresholds(warn, alert))
    if as_json:
        click.echo(json.dumps({"rows": result.rows, "out": str(result.out) if result.out else None,
                               "bands": dict(result.bands), "unparsable": dict(result.unparsable),
                               "drift": result.drift.as_dict() if result.drift else None}, indent=2))
        return
    click.echo(f"{result.rows} rows scored" + (f" -> {result.out}" if result.out else ""))
    click.echo("bands: " + ", ".join(f"{b} {n}" for b, n in sorted(result.bands.items())))
    for column, n in result.unparsable.items():
        click.secho(f"warning: {n} values of {column!r} are not numbers; scored as missing", fg="yellow")
    if result.drift is not None:
        for line in result.drift.lines():
            click.echo(f"drift: {line}")


# --------------------------------------------------------------------------------------------------
# model list | promote | rollback | status


def _model_dir(ctx: click.Context, given: str | None, entity: str = "lead") -> Path:
    if given:
        return Path(given)
    from sync import config

    path = (ctx.obj or {}).get("config", "leadrelay.toml")
    if not Path(path).exists():
        raise click.UsageError(f"no config file {path}: give the model folder with --dir")
    scoring = config.load(path).scoring
    if entity == "account":
        if scoring.account is None:
            raise click.UsageError("--entity account: the config has no [scoring.account] table (or give --dir)")
        return Path(scoring.account.model_dir)
    return Path(scoring.model_dir)


_DIR = click.option("--dir", "directory", type=click.Path(file_okay=False),
                    help="Model registry folder (default: the config's scoring.model_dir, or [scoring.account] "
                         "model_dir with --entity account).")
_ENTITY = click.option("--entity", type=click.Choice(["lead", "account"]), default="lead", show_default=True,
                       help="Which model's registry: the lead model or the account model ([scoring.account]).")


@click.group("model")
def model() -> None:
    """The model registry: versions, champion and challenger, promotion, rollback, drift."""


@model.command("list")
@_DIR
@_ENTITY
@click.pass_context
@_clean
def model_list(ctx: click.Context, directory: str | None, entity: str) -> None:
    """Every version with its role, training time, champion estimator and out-of-sample metrics."""
    from scoring.registry import Registry

    registry = Registry(_model_dir(ctx, directory, entity))
    versions = registry.versions()
    if not versions:
        click.echo(f"no models in {registry.root}")
        return
    for v in versions:
        i = registry.info(v)
        m = i.metrics
        click.echo(f"{v:<20} {i.role or '-':<11} {i.kind:<8} {i.trained_at[:19]:<20} {i.champion_model:<24} "
                   f"ROC-AUC {m.get('roc_auc', float('nan')):.4f}  PR-AUC {m.get('pr_auc', float('nan')):.4f}")


@model.command("promote")
@click.argument("version")
@_DIR
@_ENTITY
@click.pass_context
@_clean
def model_promote(ctx: click.Context, version: str, directory: str | None, entity: str) -> None:
    """Serve VERSION from now on (the current champion stays available for rollback)."""
    from scoring.registry import Registry

    registry = Registry(_model_dir(ctx, directory, entity))
    registry.promote(version, at=_now())
    click.echo(f"{version} is the champion in {registry.root}")


@model.command("rollback")
@_DIR
@_ENTITY
@click.pass_context
@_clean
def model_rollback(ctx: click.Context, directory: str | None, entity: str) -> None:
    """Serve again the champion before the current one."""
    from scoring.registry import Registry

    registry = Registry(_model_dir(ctx, directory, entity))
    version = registry.rollback(at=_now())
    click.echo(f"rolled back: {version} is the champion in {registry.root}")


@model.command("status")
@_DIR
@_ENTITY
@click.option("--csv", "csv_path", type=click.Path(exists=True, dir_okay=False),
              help="Live rows to measure drift on (tabular models; store models use the store).")
@click.option("--pipeline", "-p", help="Pipeline whose stored scores to summarise (store models).")
@click.option("--warn", type=float, default=0.1, show_default=True, help="PSI from which drift is a warning.")
@click.option("--alert", type=float, default=0.25, show_default=True, help="PSI from which drift is an alert.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@_clean
def model_status(ctx: click.Context, directory: str | None, entity: str, csv_path: str | None,
                 pipeline: str | None, warn: float, alert: float, as_json: bool) -> None:
    """Champion version and age, challenger, drift (PSI of score and top features), live score spread, and the
    challenger against the champion on outcomes once they are known."""
    report = _status(ctx, _model_dir(ctx, directory, entity), csv_path=csv_path, pipeline=pipeline, warn=warn,
                    alert=alert, now=_now(), entity=entity)
    if as_json:
        click.echo(json.dumps(report, indent=2, default=str))
        return
    for line in report["lines"]:
        click.echo(line)


def _thresholds(warn: float, alert: float) -> Any:
    from scoring.monitor import DriftThresholds

    try:
        return DriftThresholds(warn, alert)
    except ValueError as exc:
        raise click.UsageError(f"--warn/--alert: {exc}") from None


def _status(ctx: click.Context, root: Path, *, csv_path: str | None, pipeline: str | None, warn: float,
            alert: float, now: datetime, entity: str = "lead") -> dict[str, Any]:
    import numpy as np

    from scoring.monitor import Reference, drift
    from scoring.registry import Registry

    registry = Registry(root)
    champion = registry.champion
    if champion is None:
        return {"champion": None, "lines": [f"no model in {root}"]}
    info = registry.info(champion)
    trained = datetime.fromisoformat(info.trained_at.replace("Z", "+00:00"))
    age_days = (now - trained).total_seconds() / 86_400
    out: dict[str, Any] = {"entity": entity, "champion": champion, "trained_at": info.trained_at,
                           "age_days": round(age_days, 1), "challenger": registry.challenger, "kind": info.kind}
    whose = "account model " if entity == "account" else ""
    lines = [f"{whose}champion {champion} ({info.kind}, {info.champion_model}), trained {info.trained_at[:19]}, "
             f"{age_days:.1f} days ago; challenger: {registry.challenger or 'none'}"]
    thresholds = _thresholds(warn, alert)
    reference = Reference.read(root)
    proba, columns = _live(ctx, root, info.kind, csv_path, pipeline, now, entity)
    if proba is None:
        lines.append("drift: no live rows (give --csv for a tabular model, or run `leadrelay sync` first)")
    else:
        from scoring.model import to_score

        scores = to_score(proba)
        q = np.percentile(scores, [10, 50, 90]) if len(scores) else [0, 0, 0]
        out["live"] = {"rows": len(proba), "score_p10": float(q[0]), "score_p50": float(q[1]),
                       "score_p90": float(q[2]), "mean_probability": float(np.mean(proba)) if len(proba) else 0.0}
        lines.append(f"live scores: {len(proba)} rows; score p10/p50/p90 {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}; "
                     f"mean probability {out['live']['mean_probability']:.3f}")
        if reference is not None:
            report = drift(reference, proba, columns, thresholds)
            out["drift"] = report.as_dict()
            lines += [f"drift: {line}" for line in report.lines()]
        else:
            lines.append("drift: no training reference saved with this model (retrain to get one)")
    if info.kind != "tabular":
        lines += _from_runs(ctx, pipeline, registry.challenger, now, out, entity)
    out["lines"] = lines
    return out


def _from_runs(ctx: click.Context, pipeline: str | None, challenger: str | None, now: datetime,
               out: dict[str, Any], entity: str = "lead") -> list[str]:
    """The last real run's drift (computed over the leads — or, for the account model, the accounts — it
    scored) and the challenger scored in shadow, compared with the champion on outcomes once the horizon has
    passed (an account's outcome: its question's target event on any of its leads)."""
    from sync import config
    from sync.cli import _pipeline_name
    from sync.serving import compare_on_outcomes
    from sync.store import Store, store_ready

    path = (ctx.obj or {}).get("config", "leadrelay.toml")
    if not Path(path).exists():
        return []
    settings = config.load(path)
    if not store_ready(settings.store.url):
        return []
    name = _pipeline_name(settings, pipeline)
    if entity == "account":
        from sync.training import account_question

        question = account_question(settings)
        horizon, event = question.horizon_days, question.target.event
    else:
        horizon = int(settings.scoring.question.get("horizon_days", settings.scoring.horizon_days))
        event = str(dict(settings.scoring.question.get("target", {})).get("event", "conversion"))

    def drift_of(run: dict[str, Any]) -> Any:
        counts = run["counts"] or {}
        return (counts.get("account") or {}).get("drift") if entity == "account" else counts.get("drift")

    lines = []
    store = Store(settings.store.url)
    with store.unit(dry_run=True) as unit:
        last = next((r for r in unit.runs(name, limit=50) if not r["dry_run"] and drift_of(r)), None)
        if last is not None:
            d = drift_of(last)
            out["last_run"] = {"id": last["id"], "started_at": str(last["started_at"]), "drift": d}
            top = ", ".join(f"{k} {v:.3f}" for k, v in list(d.get("features", {}).items())[:5])
            lines.append(f"last run #{last['id']} ({last['started_at']:%Y-%m-%d %H:%M}): drift {d['status']}, score "
                         f"PSI {d['score_psi']:.3f} over {d['rows']} scored {entity}(s)" + (f"; {top}" if top else ""))
        if challenger is not None:
            compared = compare_on_outcomes(unit, settings.pipelines[name].source, challenger, horizon_days=horizon,
                                           now=now, event=event, entity=entity)
            out["challenger_comparison"] = compared
            auc = compared.get("roc_auc")
            lines.append(f"challenger {challenger}: {compared[entity + 's']} {entity}(s) scored in shadow; "
                         + (f"on {compared['labelled']} outcome(s) ({compared['converted']} with {event}) ROC-AUC "
                            f"champion {auc['champion']:.3f} vs challenger {auc['challenger']:.3f}" if auc else
                            f"{compared['labelled']} outcome(s) known so far (horizon {horizon} days): "
                            "not enough to compare"))
    store.close()
    return lines


def _live(ctx: click.Context, root: Path, kind: str, csv_path: str | None, pipeline: str | None, now: datetime,
          entity: str = "lead") -> tuple[Any, dict[str, Any]]:
    """Live probabilities and feature columns: scored from ``csv_path`` (tabular) or, for a store model,
    the stored scores (the account model's: ``account_score``) and the features computed as of now from the
    store (the serving code path)."""
    import numpy as np

    if kind == "tabular":
        if csv_path is None:
            return None, {}
        from scoring._csv import read_csv
        from scoring.tabular_model import TabularModel

        tab = TabularModel.load(root)
        feed, _ = tab.feed(read_csv(csv_path))
        return tab.run(feed), {c.name: feed[c.input].ravel() for c in tab.card.columns}
    from scoring import ScoringModel, compute_features
    from sync import config
    from sync.cli import _pipeline_name
    from sync.store import Store, store_ready
    from sync.subjects import build_account_subjects, build_subjects

    settings = config.load((ctx.obj or {}).get("config", "leadrelay.toml"))
    if not store_ready(settings.store.url):
        return None, {}
    source = settings.pipelines[_pipeline_name(settings, pipeline)].source
    model = ScoringModel.load(root)
    store = Store(settings.store.url)
    with store.unit(dry_run=True) as unit:
        if entity == "account":
            from sync.decision_store import account_scores

            stored = account_scores(unit, source)
            keys = list(stored)
            accounts = unit.load_accounts(source, keys)
            leads = unit.load_leads(source, sorted(unit.leads_of_accounts(source, keys)))
        else:
            stored = unit.scores(source)
            keys = list(stored)
            leads = unit.load_leads(source, keys)
            accounts = unit.load_accounts(source, [x["account_key"] for x in leads if x["account_key"]])
        activities = unit.load_all_activities(source)
    store.close()
    if not keys:
        return None, {}
    if entity == "account":
        members: dict[str, list[dict[str, Any]]] = {}
        for lead in leads:
            members.setdefault(lead["account_key"], []).append(lead)
        subjects = build_account_subjects(accounts, members, activities, as_of=now)
    else:
        subjects = build_subjects(leads, accounts, activities)
    frame = compute_features(model.spec, subjects, now)
    columns = {n: frame.numeric[:, j] for j, n in enumerate(frame.numeric_names)}
    columns.update({n: frame.categorical[:, j] for j, n in enumerate(frame.categorical_names)})
    return np.array([float(stored[k]["probability"]) for k in keys]), columns
