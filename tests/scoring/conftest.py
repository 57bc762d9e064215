"""Shared fixtures: one small synthetic history, its examples and one trained model for the session."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scoring.card import ModelCard
from scoring.features import FeatureSpec, Subject
from scoring.labels import Examples, build_examples, default_cutoffs
from scoring.synthetic import synthetic_history, synthetic_spec

START = datetime(2024, 1, 1, tzinfo=UTC)
END = START + timedelta(days=360)
HORIZON = 30


@pytest.fixture(scope="session")
def spec() -> FeatureSpec:
    return synthetic_spec()


@pytest.fixture(scope="session")
def history() -> list[Subject]:
    return synthetic_history(700, start=START, seed=3)


@pytest.fixture(scope="session")
def cutoffs() -> list[datetime]:
    return default_cutoffs(START + timedelta(days=60), END, HORIZON, 28)


@pytest.fixture(scope="session")
def examples(spec: FeatureSpec, history: list[Subject], cutoffs: list[datetime]) -> Examples:
    return build_examples(spec, history, cutoffs, horizon_days=HORIZON)


@pytest.fixture(scope="session")
def model_dir(examples: Examples, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from scoring.train import train

    folder = tmp_path_factory.mktemp("model")
    train(examples, folder, version="test-1", trained_at=END)
    return folder


@pytest.fixture(scope="session")
def card(model_dir: Path) -> ModelCard:
    return ModelCard.read(model_dir)
