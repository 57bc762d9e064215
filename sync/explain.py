"""One person's whole story, and the lift of each holdout rule: read-only views over the store.

``leadrelay explain PERSON`` answers "why did this happen to this lead?" from what the cycles stored: the
lead, its latest score and reasons, the feature values the model saw for that score, its consent timeline,
its audience stays, its routing, its holdout entries, and every operation planned for it with its outcome.

The feature values are not stored with each score: they are recomputed through the serving code path
(:func:`sync.subjects.build_subjects` and :func:`scoring.compute_features`, the same retention window) as of
the score's time, with the model version that scored it, and checked by scoring them again — when the
probability comes out as stored, they are exactly what the model saw; when not (the record, its account or
its activities changed since), the story says so. ``leadrelay explain --account KEY`` tells an account's story
the same way: its account-model score, and the features and reasons behind it recomputed through the serving
path (account scores are stored without reasons; they are worded here). ``leadrelay report lift`` compares the
conversion of treated and control subjects of each holdout rule (:func:`sync.holdouts.lift`). Personal data
is masked unless the caller reveals it for an authorised audit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from sync import decision_store as memory
from sync.masking import mask_record
from sync.store import ActivityRow, OutboxRow, Unit, utc

_CONVERSION = "conversion"
# A recomputed probability this close to the stored one reproduces the score (float32 model output).
REPRODUCED = 1e-6


def explain(unit: Unit, source: str, person: str, *, reveal: bool = False, model_dir: str | Path | None = None,
            retention_days: int = 180) -> dict[str, Any] | None:
    """Everything the store knows about ``person`` (a lead key of ``source``); ``None`` if it knows nothing.
    With ``model_dir`` (the model registry), the story includes the features behind the latest score."""
    leads = unit.load_leads(source, [person])
    if not leads:
        return None
    lead = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in leads[0].items()
            if k not in ("source", "content_hash")}
    score = unit.scores(source, [person]).get(person)
    features = None
    if score is not None and model_dir is not None:
        features = score_features(unit, source, person, score, model_dir=model_dir, retention_days=retention_days)
    if score is not None:
        score = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in score.items()
                 if k not in ("source", "lead_key")}
    story: dict[str, Any] = {
        "person": person,
        "lead": lead,
        "score": score,
        "features": features,
        "consent": memory.consent_history(unit, source, person),
        "audiences": memory.membership_history(unit, person),
        "routing": memory.assignment_of(unit, person),
        "holdouts": [{**h, "decided_at": h["decided_at"].isoformat()} for h in _holdouts_of(unit, person)],
        "operations": operations_for(unit, person),
    }
    return dict(mask_record(story, reveal=reveal))


def score_features(unit: Unit, source: str, person: str, score: Mapping[str, Any], *, model_dir: str | Path,
                   retention_days: int = 180) -> dict[str, Any]:
    """The feature values behind ``score`` (a stored score row), recomputed as of its time with the model
    version that produced it, and whether they reproduce its probability (see the module docstring)."""
    from scoring import compute_features
    from sync.subjects import build_subjects

    version, at = str(score["model_version"]), score["scored_at"]
    model = _model_version(model_dir, version)
    if isinstance(model, str):
        return {"note": model}
    leads = unit.load_leads(source, [person])
    accounts = unit.load_accounts(source, [x["account_key"] for x in leads if x["account_key"]])
    activities = unit.load_activities(source, [person], at - timedelta(days=retention_days))
    frame = compute_features(model.spec, build_subjects(leads, accounts, activities), at)
    probability = float(model.predict_proba(frame)[0])
    return _recomputed(frame, version, at, probability, score,
                       "the lead, its account or its activities changed since it was scored")


def _model_version(model_dir: str | Path, version: str) -> Any:
    """Model ``version`` from the registry at ``model_dir`` (its version folder, else the root), or a note
    saying why it cannot be loaded."""
    from scoring import ModelLoadError, ScoringError, ScoringModel
    from scoring.card import CARD_FILE
    from scoring.registry import Registry, RegistryError

    root = Path(model_dir)
    try:
        folder = Registry(root).version_dir(version)
    except RegistryError:
        folder = root
    if not (folder / CARD_FILE).exists():
        folder = root
    try:
        model = ScoringModel.load(folder)
    except (ModelLoadError, ScoringError) as exc:
        return f"model {version} cannot be loaded: {exc}"
    if model.version != version:
        return f"model {version} is no longer in {root}: its features cannot be recomputed"
    return model


def _recomputed(frame: Any, version: str, at: datetime, probability: float, score: Mapping[str, Any],
                changed: str) -> dict[str, Any]:
    """Row 0 of ``frame`` as the story shows it, and whether ``probability`` reproduces the stored score."""
    values: dict[str, Any] = {}
    for j, name in enumerate(frame.numeric_names):
        v = float(frame.numeric[0, j])
        values[name] = None if math.isnan(v) else round(v, 6)
    values.update((name, str(frame.categorical[0, j])) for j, name in enumerate(frame.categorical_names))
    reproduced = abs(probability - float(score["probability"])) <= REPRODUCED
    return {
        "model_version": version, "as_of": at.isoformat(),
        "method": "recomputed through the serving path as of the score's time",
        "reproduces_score": reproduced, "probability_recomputed": round(probability, 6),
        "note": None if reproduced else (f"{changed} since it was scored: these values are today's record as of "
                                         "that time, not what the model saw"),
        "values": values,
    }


def explain_account(unit: Unit, source: str, account_key: str, *, reveal: bool = False,
                    model_dir: str | Path | None = None, retention_days: int = 180) -> dict[str, Any] | None:
    """What the store knows about account ``account_key`` of ``source`` and its account-model score; ``None`` if
    it knows nothing. With ``model_dir`` (the account model's registry), the features and the reasons behind
    the latest score, recomputed through the serving path (see :func:`account_score_features`)."""
    found = unit.load_accounts(source, [account_key])
    if account_key not in found:
        return None
    record = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in found[account_key].items()
              if k not in ("source", "content_hash")}
    score = memory.account_score(unit, source, account_key)
    features = None
    if score is not None and model_dir is not None:
        features = account_score_features(unit, source, account_key, score, model_dir=model_dir,
                                          retention_days=retention_days)
    if score is not None:
        score = {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in score.items()
                 if k not in ("source", "account_key")}
    story: dict[str, Any] = {
        "account": account_key,
        "record": record,
        "leads": sorted(unit.leads_of_accounts(source, [account_key])),
        "score": score,
        "features": features,
        "operations": operations_for(unit, account_key),
    }
    return dict(mask_record(story, reveal=reveal))


def account_score_features(unit: Unit, source: str, account_key: str, score: Mapping[str, Any], *,
                           model_dir: str | Path, retention_days: int = 180) -> dict[str, Any]:
    """The account subject behind ``score`` (a stored ``account_score`` row) rebuilt as the cycle builds it —
    its leads, their activities in the retention window, as of the score's time — scored again by the model
    version that produced it, with its reasons (the model-agnostic occlusion of :mod:`scoring.model`, worded by
    ``scoring._reasons``) and whether the probability reproduces the stored one."""
    from scoring import compute_features
    from sync.subjects import build_account_subjects

    version, at = str(score["model_version"]), score["scored_at"]
    model = _model_version(model_dir, version)
    if isinstance(model, str):
        return {"note": model}
    accounts = unit.load_accounts(source, [account_key])
    members = unit.load_leads(source, sorted(unit.leads_of_accounts(source, [account_key])))
    activities = unit.load_activities(source, [lead["key"] for lead in members], at - timedelta(days=retention_days))
    subjects = build_account_subjects(accounts, {account_key: members}, activities, as_of=at)
    frame = compute_features(model.spec, subjects, at)
    batch = model.score(frame)
    out = _recomputed(frame, version, at, float(batch.probability[0]), score,
                      "the account, its leads or their activities changed")
    out.update(score=int(batch.score[0]), band=str(batch.band[0]),
               reasons_positive=list(batch.reasons_positive[0]), reasons_negative=list(batch.reasons_negative[0]))
    return out


def _holdouts_of(unit: Unit, person: str) -> list[dict[str, Any]]:
    t = memory.HoldoutRow.__table__
    return [{"rule": r.rule, "control": r.control, "share": r.share, "action": r.action,
             "decided_at": utc(r.decided_at)}
            for r in unit.conn.execute(sa.select(t).where(t.c.subject == person).order_by(t.c.rule))]


def operations_for(unit: Unit, person: str) -> list[dict[str, Any]]:
    """Operations on the person's record (``person``, ``person#n``) or on one of their audience stays
    (``<audience>:<person>@<time>``), oldest first, with status and the destination's last answer."""
    t = OutboxRow.__table__
    query = sa.select(t).where(sa.or_(
        t.c.target == person,
        t.c.target.startswith(f"{person}#", autoescape=True),
        t.c.target.contains(f":{person}@", autoescape=True),
    )).order_by(t.c.id)
    return [{"id": r.id, "destination": r.destination, "operation": r.operation, "target": r.target,
             "status": r.status, "reason": r.reason, "last_error": r.last_error, "attempts": r.attempts,
             "remote_id": r.remote_id, "created_at": utc(r.created_at).isoformat()}  # type: ignore[union-attr]
            for r in unit.conn.execute(query)]


def lift_report(unit: Unit, source: str, *, rule: str | None = None, confidence: float = 0.95
                ) -> list[dict[str, Any]]:
    """Per holdout rule: treated and control sizes, who converted after their decision, and the lift with its
    confidence interval (or why it cannot be computed yet)."""
    from sync.holdouts import lift

    cohort = memory.holdout_cohort(unit, rule)
    converted = _first_conversions(unit, source, sorted({c["subject"] for c in cohort}))
    groups: dict[str, dict[str, list[int]]] = {}
    for entry in cohort:
        at = converted.get(entry["subject"])
        won = int(at is not None and at >= entry["decided_at"])
        group = groups.setdefault(entry["rule"], {"treated": [0, 0], "control": [0, 0]})
        counts = group["control" if entry["control"] else "treated"]
        counts[0] += won
        counts[1] += 1
    out = []
    for name, group in sorted(groups.items()):
        (tc, tn), (cc, cn) = group["treated"], group["control"]
        row: dict[str, Any] = {"rule": name, "treated": tn, "treated_converted": tc, "control": cn,
                               "control_converted": cc}
        try:
            result = lift(tc, tn, cc, cn, confidence)
        except ValueError as exc:
            row["note"] = str(exc)
        else:
            row.update(treated_rate=result.treated_rate, control_rate=result.control_rate,
                       difference=result.difference, difference_ci=list(result.difference_ci),
                       relative=result.relative, relative_ci=list(result.relative_ci) if result.relative_ci else None,
                       confidence=result.confidence, significant=result.significant, method=result.method)
        out.append(row)
    return out


def _first_conversions(unit: Unit, source: str, people: list[str]) -> Mapping[str, datetime]:
    t = ActivityRow.__table__
    out: dict[str, datetime] = {}
    for chunk in unit._chunks(people):
        for lead_key, at in unit.conn.execute(
                sa.select(t.c.lead_key, sa.func.min(t.c.occurred_at))
                .where(t.c.source == source, t.c.type == _CONVERSION, unit._among(t.c.lead_key, chunk))
                .group_by(t.c.lead_key)):
            when = utc(at)
            assert when is not None
            out[lead_key] = when
    return out


__all__ = ["account_score_features", "explain", "explain_account", "lift_report", "operations_for",
           "score_features"]
