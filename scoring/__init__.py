"""Scoring: numbers only, no I/O to outside systems.

Where it sits in DESIGN.md's flow (step 3, *Score*)::

    store rows --sync--> Subject/Event --compute_features(as_of=now)--> FeatureFrame
                                                                          |
                      model folder (model.onnx + card.json) --ScoringModel.load--> .score(frame)
                                                                          |
                          ScoreBatch: probability, score 1-99, band, reasons, model version --> decide

Offline, ``build_examples`` lays freeze times over the stored history (same ``compute_features``;
a ``PredictiveQuestion`` from config says population, target and "assuming" filter) and ``train`` fits,
gates (the ``PointsModel`` baseline among them) and exports the next version into a ``Registry``,
with an evaluation report and a drift reference (``DriftReport``). ``train_csv``/``TabularModel`` do the
same for exported files. ``scoring`` never imports ``sync`` or
``connectors``; ``import scoring`` imports numpy only — scikit-learn, skl2onnx and onnxruntime load when
``train`` or ``ScoringModel`` is first used.

Errors::

    ScoringError
     ├── FeatureSpecError     fix the named [scoring] key
     ├── ReleaseGateError     the new model may not ship; keep the previous one
     ├── ModelLoadError       model folder missing or unreadable
     └── ModelMismatchError   model, spec and frame disagree; retrain
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from scoring.errors import (
    FeatureSpecError,
    ModelLoadError,
    ModelMismatchError,
    ReleaseGateError,
    ScoringError,
)
from scoring.features import Event, FeatureFrame, FeatureSpec, IcpSpec, Subject, compute_features
from scoring.labels import Examples, build_examples, default_cutoffs

if TYPE_CHECKING:
    from scoring.card import ModelCard
    from scoring.heuristic import PointsModel
    from scoring.model import Score, ScoreBatch, ScoringModel
    from scoring.monitor import DriftReport, DriftThresholds
    from scoring.question import PredictiveQuestion
    from scoring.registry import Registry
    from scoring.tabular import train_csv
    from scoring.tabular_model import TabularModel
    from scoring.train import train

__all__ = [
    "DriftReport",
    "DriftThresholds",
    "Event",
    "Examples",
    "FeatureFrame",
    "FeatureSpec",
    "FeatureSpecError",
    "IcpSpec",
    "ModelCard",
    "ModelLoadError",
    "ModelMismatchError",
    "PointsModel",
    "PredictiveQuestion",
    "Registry",
    "ReleaseGateError",
    "Score",
    "ScoreBatch",
    "ScoringError",
    "ScoringModel",
    "Subject",
    "TabularModel",
    "build_examples",
    "compute_features",
    "default_cutoffs",
    "train",
    "train_csv",
]

# Names whose modules pull in heavy libraries on use; resolved on first attribute access.
_LAZY = {
    "DriftReport": "scoring.monitor",
    "DriftThresholds": "scoring.monitor",
    "ModelCard": "scoring.card",
    "PointsModel": "scoring.heuristic",
    "PredictiveQuestion": "scoring.question",
    "Registry": "scoring.registry",
    "TabularModel": "scoring.tabular_model",
    "train_csv": "scoring.tabular",
    "Score": "scoring.model",
    "ScoreBatch": "scoring.model",
    "ScoringModel": "scoring.model",
    "train": "scoring.train",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scoring' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
