"""Scoring: numbers only, no I/O to outside systems.

Where it sits in DESIGN.md's flow (step 3, *Score*)::

    store rows --sync--> Subject/Event --compute_features(as_of=now)--> FeatureFrame
                                                                          |
                      model folder (model.onnx + card.json) --ScoringModel.load--> .score(frame)
                                                                          |
                          ScoreBatch: probability, score 1-99, band, reasons, model version --> decide

Offline, ``build_examples`` lays freeze times over the stored history (same ``compute_features``) and
``train`` fits, gates and exports the next model folder. ``scoring`` never imports ``sync`` or
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
    from scoring.model import Score, ScoreBatch, ScoringModel
    from scoring.train import train

__all__ = [
    "Event",
    "Examples",
    "FeatureFrame",
    "FeatureSpec",
    "FeatureSpecError",
    "IcpSpec",
    "ModelCard",
    "ModelLoadError",
    "ModelMismatchError",
    "ReleaseGateError",
    "Score",
    "ScoreBatch",
    "ScoringError",
    "ScoringModel",
    "Subject",
    "build_examples",
    "compute_features",
    "default_cutoffs",
    "train",
]

# Names whose modules pull in heavy libraries on use; resolved on first attribute access.
_LAZY = {
    "ModelCard": "scoring.card",
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
