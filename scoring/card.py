"""The model card: everything serving, monitoring and people need to know about one trained model.

``scoring.train`` writes it as ``card.json`` beside ``model.onnx``; ``scoring.model`` reads it back to
rebuild the feature spec, map features to ONNX inputs, cut bands and word reasons; the monitor compares
live features with its reference values. Plain JSON, stable key order, no heavy imports.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scoring.errors import ModelLoadError
from scoring.features import FeatureSpec

__all__ = ["CARD_FILE", "CARD_SCHEMA", "MODEL_FILE", "Band", "ModelCard", "ModelInput"]

CARD_FILE = "card.json"
MODEL_FILE = "model.onnx"
CARD_SCHEMA = 1


@dataclass(frozen=True, slots=True)
class ModelInput:
    """One ONNX input: the feature it carries, its (sanitised) input name and its kind."""

    feature: str
    input: str
    kind: str  # "numeric" (float32 [N, 1]) or "categorical" (string [N, 1])


@dataclass(frozen=True, slots=True)
class Band:
    """Rows with probability at or above ``min_probability`` (and below the band above) get ``name``."""

    name: str
    min_probability: float


@dataclass(frozen=True, slots=True)
class ModelCard:
    version: str
    trained_at: str
    champion: str
    spec: FeatureSpec
    inputs: tuple[ModelInput, ...]
    probability_output: str
    target_event: str
    horizon_days: int
    training_window: tuple[str, str]
    validation_window: tuple[str, str]
    counts: Mapping[str, int]
    base_rate: float
    candidates: Mapping[str, Mapping[str, Any]]
    metrics: Mapping[str, float]
    parity_max_diff: float
    bands: tuple[Band, ...]
    band_validation: tuple[Mapping[str, Any], ...]
    reference_numeric: Mapping[str, float]
    reference_categorical: Mapping[str, str]
    refit_on_all: bool
    warnings: tuple[str, ...] = field(default=())
    #: The points baseline's name and validation metrics (empty for cards written before it existed).
    baseline: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": CARD_SCHEMA,
            "version": self.version,
            "trained_at": self.trained_at,
            "champion": self.champion,
            "target_event": self.target_event,
            "horizon_days": self.horizon_days,
            "feature_spec": self.spec.to_mapping(),
            "inputs": [{"feature": i.feature, "input": i.input, "kind": i.kind} for i in self.inputs],
            "probability_output": self.probability_output,
            "training_window": {
                "first_cutoff": self.training_window[0],
                "last_cutoff": self.training_window[1],
            },
            "validation_window": {
                "first_cutoff": self.validation_window[0],
                "last_cutoff": self.validation_window[1],
            },
            "counts": dict(self.counts),
            "base_rate": self.base_rate,
            "metrics": dict(self.metrics),
            "candidates": {k: dict(v) for k, v in self.candidates.items()},
            "parity_max_diff": self.parity_max_diff,
            "bands": [{"band": b.name, "min_probability": b.min_probability} for b in self.bands],
            "band_validation": [dict(b) for b in self.band_validation],
            # JSON has no NaN: a reference that is unknown (all training values missing) is null.
            "reference": {
                "numeric": {k: (None if math.isnan(v) else v) for k, v in self.reference_numeric.items()},
                "categorical": dict(self.reference_categorical),
            },
            "refit_on_all": self.refit_on_all,
            "warnings": list(self.warnings),
            "baseline": dict(self.baseline),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ModelCard:
        try:
            if data.get("schema") != CARD_SCHEMA:
                raise ModelLoadError(f"card schema {data.get('schema')!r} is not {CARD_SCHEMA}")
            ref = data["reference"]
            return cls(
                version=str(data["version"]),
                trained_at=str(data["trained_at"]),
                champion=str(data["champion"]),
                spec=FeatureSpec.from_mapping(data["feature_spec"]),
                inputs=tuple(ModelInput(i["feature"], i["input"], i["kind"]) for i in data["inputs"]),
                probability_output=str(data["probability_output"]),
                target_event=str(data["target_event"]),
                horizon_days=int(data["horizon_days"]),
                training_window=(
                    data["training_window"]["first_cutoff"],
                    data["training_window"]["last_cutoff"],
                ),
                validation_window=(
                    data["validation_window"]["first_cutoff"],
                    data["validation_window"]["last_cutoff"],
                ),
                counts=dict(data["counts"]),
                base_rate=float(data["base_rate"]),
                candidates=dict(data["candidates"]),
                metrics=dict(data["metrics"]),
                parity_max_diff=float(data["parity_max_diff"]),
                bands=tuple(Band(b["band"], float(b["min_probability"])) for b in data["bands"]),
                band_validation=tuple(data["band_validation"]),
                reference_numeric={
                    k: (math.nan if v is None else float(v)) for k, v in ref["numeric"].items()
                },
                reference_categorical={k: str(v) for k, v in ref["categorical"].items()},
                refit_on_all=bool(data["refit_on_all"]),
                warnings=tuple(data.get("warnings", ())),
                baseline=dict(data.get("baseline", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ModelLoadError(f"card is incomplete or malformed: {exc!r}") from exc

    def write(self, directory: Path) -> None:
        text = json.dumps(self.to_dict(), indent=2, sort_keys=False, allow_nan=False) + "\n"
        _atomic_write(directory / CARD_FILE, text.encode())

    @classmethod
    def read(cls, directory: Path) -> ModelCard:
        path = directory / CARD_FILE
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError as exc:
            raise ModelLoadError(f"no {CARD_FILE} in {directory}") from exc
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelLoadError(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(data)


def _atomic_write(path: Path, data: bytes) -> None:
    # Write then rename, so a crash never leaves a half-written model for the scorer to pick up.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
