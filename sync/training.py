"""`leadrelay train` from the store's history: subjects -> freeze-time examples -> scoring.train.

The sync layer gathers the data (the same :func:`sync.subjects.build_subjects` the cycle serves with);
``scoring`` does the numbers. Training reads the store and writes only the model registry
(``scoring.model_dir``): the new version goes to ``versions/<version>/`` and, unless it is trained as a
challenger, is promoted — its files copied up to where the pipeline loads them, the previous champion
kept for ``leadrelay model rollback``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from connectors.base import LeadrelayError
from sync.config import Settings
from sync.store import Store
from sync.subjects import build_subjects

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


def _serving(directory: Path) -> Any:
    """The model in service now, for the report's comparison; None when there is none or it cannot load."""
    from scoring import ScoringError, ScoringModel

    if not (directory / "card.json").exists():
        return None
    try:
        return ScoringModel.load(directory)
    except ScoringError:
        return None


def train_from_store(settings: Settings, pipeline: str, store: Store, *, now: datetime,
                     out_dir: str | Path | None = None, version: str | None = None,
                     challenger: bool = False, progress: Callable[[str], None] | None = None) -> TrainResult:
    """Train from the pipeline's stored history; ``progress`` (the CLI's stderr lines) is told each step."""
    tell = progress or (lambda step: None)
    from scoring import FeatureSpec, PredictiveQuestion, build_examples, default_cutoffs
    from scoring.registry import Registry
    from scoring.train import train

    pipe = settings.pipelines[pipeline]
    source = pipe.source
    tell(f"reading the history of {source!r} from the store")
    with store.unit(dry_run=True) as unit:  # read-only: nothing to keep
        keys = unit.lead_keys(source)
        span = unit.activity_span(source)
        if not keys or span is None:
            raise NothingToTrain(f"the store has no leads or activities from {source!r}: run `leadrelay sync` first")
        leads = unit.load_leads(source, keys)
        accounts = unit.load_accounts(source, [x["account_key"] for x in leads if x["account_key"]])
        activities = unit.load_all_activities(source)
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
    registry = Registry(target)
    name = version or now.strftime("%Y%m%d-%H%M%S")
    folder = registry.version_dir(name)
    card = train(examples, folder, version=name, trained_at=now, serving=_serving(target),
                 min_examples=settings.scoring.min_examples, min_positives=settings.scoring.min_positives)
    registry.register(name, at=now, promote=not challenger)
    tell(f"model {name} registered in {target}")
    return TrainResult(card=card, out_dir=target, subjects=len(subjects), examples=len(examples.y),
                       version_dir=folder, promoted=registry.champion == name)


def describe(result: TrainResult) -> dict[str, Any]:
    return {"out_dir": str(result.out_dir), "subjects": result.subjects, "examples": result.examples,
            "card": result.card.to_dict()}


__all__ = ["NothingToTrain", "TrainResult", "describe", "train_from_store"]
