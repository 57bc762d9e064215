"""The model registry: versions with cards, champion and challenger, promotion and rollback by one call."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from scoring.registry import Registry, RegistryError

T0 = datetime(2025, 1, 1, tzinfo=UTC)


def add(registry: Registry, version: str, *, day: int, promote: bool = True) -> None:
    folder = registry.version_dir(version)
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(f"onnx {version}".encode())
    card = {"version": version, "trained_at": (T0 + timedelta(days=day)).isoformat(),
            "champion": "logistic_regression", "metrics": {"pr_auc": 0.1 * day}}
    (folder / "card.json").write_text(json.dumps(card))
    registry.register(version, at=T0 + timedelta(days=day), promote=promote)


def served(root: Path) -> str:
    return (root / "model.onnx").read_bytes().decode()


def test_first_model_is_served_and_promotion_replaces_it(tmp_path: Path) -> None:
    """The root folder always holds the champion's files, which is what serving loads."""
    reg = Registry(tmp_path)
    add(reg, "v1", day=1)
    assert reg.champion == "v1"
    assert served(tmp_path) == "onnx v1"
    add(reg, "v2", day=2)
    assert reg.champion == "v2"
    assert served(tmp_path) == "onnx v2"
    assert json.loads((tmp_path / "card.json").read_text())["version"] == "v2"
    assert reg.versions() == ["v1", "v2"]


def test_challenger_is_kept_but_not_served_until_promoted(tmp_path: Path) -> None:
    """A challenger is registered beside the champion; promoting it serves it and clears the role."""
    reg = Registry(tmp_path)
    add(reg, "v1", day=1)
    add(reg, "v2", day=2, promote=False)
    assert (reg.champion, reg.challenger) == ("v1", "v2")
    assert served(tmp_path) == "onnx v1"
    assert reg.info("v2").role == "challenger"
    reg.promote("v2", at=T0 + timedelta(days=3))
    assert (reg.champion, reg.challenger) == ("v2", None)
    assert served(tmp_path) == "onnx v2"


def test_rollback_walks_back_through_earlier_champions(tmp_path: Path) -> None:
    """Each rollback serves the champion before the current one, until none is left."""
    reg = Registry(tmp_path)
    for day, v in enumerate(("v1", "v2", "v3"), start=1):
        add(reg, v, day=day)
    assert reg.rollback(at=T0 + timedelta(days=4)) == "v2"
    assert served(tmp_path) == "onnx v2"
    assert reg.rollback(at=T0 + timedelta(days=5)) == "v1"
    assert served(tmp_path) == "onnx v1"
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        reg.rollback(at=T0 + timedelta(days=6))
    assert [h["action"] for h in reg.history()][-2:] == ["rollback", "rollback"]


def test_unknown_version_cannot_be_promoted(tmp_path: Path) -> None:
    """Promoting a version that does not exist names the versions that do."""
    reg = Registry(tmp_path)
    add(reg, "v1", day=1)
    with pytest.raises(RegistryError, match=r"no version 'v9' .*\(versions: v1\)"):
        reg.promote("v9", at=T0)
    with pytest.raises(RegistryError, match="invalid version name"):
        reg.version_dir("../escape")


def test_plain_model_folder_is_adopted_as_the_champion(tmp_path: Path) -> None:
    """A model folder from before the registry becomes version history, so it can be rolled back to."""
    (tmp_path / "model.onnx").write_bytes(b"onnx old")
    (tmp_path / "card.json").write_text(json.dumps({"version": "old", "trained_at": T0.isoformat()}))
    reg = Registry(tmp_path)
    assert reg.champion == "old"
    add(reg, "new", day=3)
    assert reg.rollback(at=T0 + timedelta(days=4)) == "old"
    assert served(tmp_path) == "onnx old"
