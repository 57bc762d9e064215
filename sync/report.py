"""Human-readable reports of a cycle (the dry-run plan included) and of a training run."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sync.pipeline import CycleReport
    from sync.training import TrainResult


def _kv(counts: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "nothing"


def _drift_text(d: dict[str, Any], entity: str) -> str:
    top = ", ".join(f"{k} {v:.3f}" for k, v in list(d["features"].items())[:3])
    return (f"{d['status']}: score PSI {d['score_psi']:.3f} over {d['rows']} {entity}(s)"
            + (f"; top features {top}" if top else ""))


def _challenger_text(c: dict[str, Any], entity: str) -> str:
    if not c.get("scored"):
        return f"{c['version']} in shadow: nothing scored"
    return (f"{c['version']} in shadow on {c['scored']} {entity}(s): mean |Δp| {c['mean_abs_delta']:.4f}, rank "
            f"agreement {c['rank_agreement']:.3f}, bands differ {c['bands_differ']:.1%} (stored, never pushed)")


def render_cycle(report: CycleReport) -> str:
    title = "DRY RUN — nothing was written anywhere" if report.dry_run else f"run #{report.run_id}"
    lines = [f"pipeline {report.pipeline}: {title}  [{report.status}]"]
    lines.append(f"  read:        {_kv(dict(report.read))}")
    lines.append(f"  changed:     {_kv(dict(report.changed))}")
    lines.append(f"  quarantined: {report.quarantined}")
    for q in report.quarantine_samples[:5]:
        lines.append(f"    - {q['stream']} {q['key']}: {q['reason']}")
    if report.scoring_note:
        lines.append(f"  scoring:     {report.scoring_note}")
    else:
        lines.append(f"  scored:      {report.scored} lead(s) with model {report.model_version}")
        if report.read_only:
            lines.append(f"  read-only:   {report.read_only} of them not written (the source refuses writes to "
                         "them, e.g. converted leads)")
    if report.drift:
        lines.append(f"  drift:       {_drift_text(report.drift, 'lead')}")
    if report.challenger:
        lines.append(f"  challenger:  {_challenger_text(report.challenger, 'lead')}")
    if report.account:
        a = report.account
        written = a.get("not_written") or "written to the accounts by update_account where changed"
        lines.append(f"  accounts:    {a['scored']} scored with account model {a['model_version']} ({written})")
        if a.get("drift"):
            lines.append(f"    drift:     {_drift_text(a['drift'], 'account')}")
        if a.get("challenger"):
            lines.append(f"    challenger: {_challenger_text(a['challenger'], 'account')}")
    plan = report.plan
    if plan:
        verb = "would enqueue" if report.dry_run else "enqueued"
        ops = plan.get("operations", [])
        lines.append(f"  plan:        {verb} " + (", ".join(
            f"{o['count']} {o['operation']} → {o['destination']}" for o in ops) or "no operations"))
        lines.append(f"               unchanged {plan.get('unchanged', 0)}, below min change "
                     f"{plan.get('immaterial', 0)}, already queued {plan.get('already_queued', 0)}")
    for sample in report.samples[:5]:
        payload = json.dumps(sample["payload"], default=str)
        if len(payload) > 120:
            payload = payload[:117] + "..."
        lines.append(f"    - {sample['operation']} {sample['target']}: {sample['reason']}")
        lines.append(f"      {payload}")
    for d in report.delivery:
        lines.append(f"  delivered:   {d['destination']}: {_kv(d['outcomes'])} in {d['batches']} batch(es)")
        for r in d.get("rejected_samples", [])[:5]:
            lines.append(f"    - rejected {r['operation']} {r['target']}: {r['reason']}")
    identity = report.decisions.get("identity") or {}
    if identity:
        dup, acc = identity["duplicates"], identity["accounts"]
        lines.append(f"  identity:    {dup['people']} lead(s) share a mailbox in {dup['groups']} group(s) (reported, "
                     f"never merged); of {acc['without_account']} without an account, {acc['matched']} matched by "
                     f"domain, {acc['ambiguous']} ambiguous, {acc['low_confidence']} below confidence")
        for sample in dup["samples"][:3]:
            lines.append(f"    - {sample['address']}: {', '.join(sample['leads'])}")
    for warning in report.warnings:
        lines.append(f"  warning:     {warning}")
    for err in report.errors:
        lines.append(f"  error:       {err}")
    return "\n".join(lines)


def render_training(result: TrainResult) -> str:
    card = result.card
    counts = dict(card.counts)
    lines = [
        f"model {card.version} ({card.champion}) written to {result.out_dir}",
        f"  {result.subjects} {result.entity}s -> {result.examples} examples at freeze times "
        f"{card.training_window[0]} .. {card.validation_window[1]}; base rate {card.base_rate:.1%}",
        f"  counts: {', '.join(f'{k} {v}' for k, v in counts.items())}",
        "  out-of-time validation (" + card.validation_window[0] + " .. " + card.validation_window[1] + "):",
    ]
    for name, metrics in card.candidates.items():
        shown = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        mark = "*" if name == card.champion else " "
        lines.append(f"   {mark} {name:<22} " + ", ".join(f"{k} {v:.3f}" for k, v in list(shown.items())[:6]))
    lines.append(f"  ONNX/sklearn parity: max |diff| {card.parity_max_diff:.1e}")
    lines.append("  bands: " + ", ".join(f"{b.name} >= p {b.min_probability:.3f}" for b in card.bands))
    for warning in card.warnings:
        lines.append(f"  warning: {warning}")
    return "\n".join(lines)


__all__ = ["render_cycle", "render_training"]
