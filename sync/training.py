"""`leadrelay train` from the store's history: subjects -> freeze-time examples -> scoring.train.

The sync layer gathers the data (the same :func:`sync.subjects.build_subjects` the cycle serves with);
``scoring`` does the numbers. Training reads the store and writes only the model registry
(``scoring.model_dir``): the new version goes to ``versions/<version>/`` and, unless it is trained as a
challenger, is promoted — its files copied up to where the pipeline loads them, the previous champion
kept for ``leadrelay model rollback``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import LeadrelayError
from sync.config import Settings
from sync.store import Store
from sync.subjects import OPPORTUNITY_EVENT, build_account_subjects, build_subjects

if TYPE_CHECKING:
    from scoring.train import ModelCard


class NothingToTrain(LeadrelayError):
    """The store holds no history for this pipeline yet."""


@dataclass(frozen=True, slots=True)
class TrainResult:
    card: ModelCard
    out_dir: Path
    subjects: int
    examples: int
    version_dir: Path | None = None
    promoted: bool = True
    entity: str = "lead"  # what `subjects` counts: leads, or accounts for the account model


def _serving(directory: Path) -> Any:
    """The model in service now, for the report's comparison; None when there is none or it cannot load."""
    from scoring import ScoringError, ScoringModel

    if not (directory / "card.json").exists():
        return None
    try:
        return ScoringModel.load(directory)
    except ScoringError:
        return None


def _read_history(store: Store, source: str) -> tuple[list[dict[str, Any]], dict[str, dict[str, Any]], Any,
                                                    tuple[datetime, datetime]]:
    """The source's leads, their accounts, every activity and the activities' time span, read in one
    rolled-back unit (training keeps nothing in the store)."""
    with store.unit(dry_run=True) as unit:
        keys = unit.lead_keys(source)
        span = unit.activity_span(source)
        if not keys or span is None:
            raise NothingToTrain(f"the store has no leads or activities from {source!r}: run `leadrelay sync` first")
        leads = unit.load_leads(source, keys)
        accounts = unit.load_accounts(source, [x["account_key"] for x in leads if x["account_key"]])
        activities = unit.load_all_activities(source)
    return leads, accounts, activities, span


def train_from_store(settings: Settings, pipeline: str, store: Store, *, now: datetime,
                     out_dir: str | Path | None = None, version: str | None = None,
                     challenger: bool = False, progress: Callable[[str], None] | None = None) -> TrainResult:
    """Train from the pipeline's stored history; ``progress`` (the CLI's stderr lines) is told each step."""
    tell = progress or (lambda step: None)
    from scoring import FeatureSpec, PredictiveQuestion, build_examples, default_cutoffs

    pipe = settings.pipelines[pipeline]
    source = pipe.source
    tell(f"reading the history of {source!r} from the store")
    leads, accounts, activities, span = _read_history(store, source)
    subjects = build_subjects(leads, accounts, activities)
    tell(f"{len(leads)} leads, {len(accounts)} accounts, {len(activities)} activities read; building examples")
    mapping = settings.scoring.feature_mapping()
    spec = FeatureSpec.from_mapping(mapping) if mapping else FeatureSpec.default()
    # [scoring.question] (population, target, assuming filter, dispositions as labels), when configured.
    question_map = settings.scoring.question
    question = PredictiveQuestion.from_mapping(question_map, path="scoring.question") if question_map else None
    horizon = question.horizon_days if question is not None else settings.scoring.horizon_days
    first, last = span[0], min(span[1], now)
    cutoffs = default_cutoffs(first, last, horizon_days=horizon, step_days=settings.scoring.cutoff_step_days)
    examples = build_examples(spec, subjects, cutoffs, horizon_days=horizon, question=question)
    tell(f"{len(examples.y)} examples at {len(cutoffs)} cutoff(s); training and checking against the baseline")
    target = Path(out_dir or settings.scoring.model_dir)
    return _train_and_register(settings, examples, target, now=now, version=version, challenger=challenger,
                               subjects=len(subjects), what="model", tell=tell)


def account_feature_spec() -> Any:
    """The account model's inputs: its leads' intent (the default windows, recency and velocity over all
    their activities) and the account's firmographics plus ``leads``; no title or free-mail, which are a
    person's."""
    from scoring import FeatureSpec

    return FeatureSpec(numeric_attributes=(("employees", "log1p"), ("annual_revenue", "log1p"), ("leads", "log1p")),
                       categorical_attributes=("industry", "country"), title_attribute=None,
                       free_mail_attribute=None)


def account_question(settings: Settings) -> Any:
    """``[scoring.account]``'s question (entity "account"; its horizon, else the table's ``horizon_days``;
    its target, else an opportunity created)."""
    from scoring import PredictiveQuestion
    from scoring.question import DEFAULT_TARGET_EVENTS, Target

    account = settings.scoring.account
    if account is None:
        return PredictiveQuestion(entity="account", target=Target(DEFAULT_TARGET_EVENTS["account"]))
    return PredictiveQuestion.from_mapping({"entity": "account", "horizon_days": account.horizon_days,
                                            **account.question}, path="scoring.account.question")


def account_examples(spec: Any, accounts: dict[str, dict[str, Any]], by_account: dict[str, list[dict[str, Any]]],
                     activities: Any, cutoffs: list[datetime], question: Any,
                     opportunities: Mapping[str, Sequence[Mapping[str, Any]]] | None = None) -> Any:
    """Examples at each cutoff from account subjects built as of that cutoff (their ``leads`` count moves
    with it), through the same :func:`scoring.build_examples` the lead model uses; ``opportunities`` (by
    account) become the ``opportunity`` events the default target labels with."""
    import numpy as np

    from scoring import build_examples
    from scoring.features import FeatureFrame
    from scoring.labels import Examples

    parts = [build_examples(spec, build_account_subjects(accounts, by_account, activities, as_of=cutoff,
                                                         opportunities=opportunities), [cutoff],
                            horizon_days=question.horizon_days, question=question) for cutoff in sorted(cutoffs)]
    parts = [p for p in parts if len(p)] or parts[:1]
    if not parts:
        return build_examples(spec, [], [], horizon_days=question.horizon_days, question=question)
    frame = FeatureFrame.concat([p.frame for p in parts])
    return Examples(frame=frame, y=np.concatenate([p.y for p in parts]),
                    cutoff=np.concatenate([p.cutoff for p in parts]), keys=frame.keys, spec=spec,
                    horizon_days=question.horizon_days, target_event=question.target.event)


def train_accounts_from_store(settings: Settings, pipeline: str, store: Store, *, now: datetime,
                              out_dir: str | Path | None = None, version: str | None = None,
                              challenger: bool = False, progress: Callable[[str], None] | None = None
                              ) -> TrainResult:
    """Train the account model (``[scoring.account]``) from the pipeline's stored history: the accounts its
    leads belong to, labelled by their opportunities (the ``opportunities`` stream) unless the question's
    target says otherwise, through the same ``scoring.train`` (gates, report, card, registry) as the lead
    model."""
    tell = progress or (lambda step: None)
    from scoring import default_cutoffs

    source = settings.pipelines[pipeline].source
    tell(f"reading the accounts of {source!r} from the store")
    leads, accounts, activities, span = _read_history(store, source)
    if not accounts:
        raise NothingToTrain(f"no lead from {source!r} belongs to a stored account: nothing to train an account "
                             "model on")
    by_account: dict[str, list[dict[str, Any]]] = {}
    for lead in leads:
        if lead["account_key"] in accounts:
            by_account.setdefault(lead["account_key"], []).append(lead)
    question = account_question(settings)
    with store.unit(dry_run=True) as unit:
        opportunities = unit.opportunities_of_accounts(source)
    if question.target.event == OPPORTUNITY_EVENT and not opportunities:
        raise NothingToTrain(
            f"the store holds no opportunities of {source!r} on an account, and the account model's target is an "
            "opportunity created: pull the `opportunities` stream (add it to the pipeline's streams and run "
            "`leadrelay sync`; the source must offer it), or label with its leads' conversions instead: "
            '[scoring.account] question = { target = { event = "conversion" } }')
    spec = account_feature_spec()
    cutoffs = default_cutoffs(span[0], min(span[1], now), horizon_days=question.horizon_days,
                              step_days=settings.scoring.cutoff_step_days)
    tell(f"{len(accounts)} accounts with {sum(map(len, by_account.values()))} leads and "
         f"{sum(len(v) for k, v in opportunities.items() if k in accounts)} opportunities; building examples")
    examples = account_examples(spec, accounts, by_account, activities, cutoffs, question, opportunities)
    tell(f"{len(examples.y)} examples at {len(cutoffs)} cutoff(s); training and checking against the baseline")
    account = settings.scoring.account
    target = Path(out_dir or (account.model_dir if account is not None else ".leadrelay/models/account"))
    return _train_and_register(settings, examples, target, now=now, version=version, challenger=challenger,
                               subjects=len(accounts), what="account model", tell=tell)

def _train_and_register(settings: Settings, examples: Any, target: Path, *, now: datetime, version: str | None,
                        challenger: bool, subjects: int, what: str, tell: Any) -> TrainResult:
    """Train into the registry at ``target`` (gates, report, card) and register the version: promoted unless
    it is a challenger."""
    from scoring.registry import Registry
    from scoring.train import train

    registry = Registry(target)
    name = version or now.strftime("%Y%m%d-%H%M%S")
    folder = registry.version_dir(name)
    card = train(examples, folder, version=name, trained_at=now, serving=_serving(target),
                 min_examples=settings.scoring.min_examples, min_positives=settings.scoring.min_positives,
                 title=what[0].upper() + what[1:])
    registry.register(name, at=now, promote=not challenger)
    tell(f"{what} {name} registered in {target}")
    return TrainResult(card=card, out_dir=target, subjects=subjects, examples=len(examples.y),
                       version_dir=folder, promoted=registry.champion == name,
                       entity="account" if what == "account model" else "lead")


def describe(result: TrainResult) -> dict[str, Any]:
    return {"out_dir": str(result.out_dir), "subjects": result.subjects, "examples": result.examples,
            "card": result.card.to_dict()}


__all__ = ["NothingToTrain", "TrainResult", "account_feature_spec", "account_question", "describe",
           "train_accounts_from_store", "train_from_store"]
