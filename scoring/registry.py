"""The model registry: every trained version kept with its card, one champion served, one challenger.

Layout of a registry folder (the configured ``scoring.model_dir``, or ``--out`` of a tabular model)::

    registry.json              {"champion": "v2", "challenger": "v3", "history": [...]}
    versions/<version>/        model.onnx, card.json, reference.json, report.md, report.html, *.png
    model.onnx, card.json ...  a copy of the champion's files: what the pipeline and `score` load

Serving keeps loading the folder itself, so a registry is a drop-in for a plain model folder. Promotion
copies a version's files up (model first, card last, each by atomic rename) and records the previous
champion in the history; rollback promotes the champion before it. A plain model folder left by an
earlier release is adopted as a version on first use. Pure file operations; no heavy imports.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scoring.card import CARD_FILE, MODEL_FILE, _atomic_write
from scoring.errors import ModelLoadError, ScoringError

__all__ = ["REGISTRY_FILE", "Registry", "RegistryError", "VersionInfo"]

REGISTRY_FILE = "registry.json"
VERSIONS = "versions"
# Copied on promotion in this order: the card last, so it never describes a model not yet in place.
_FILES = ("model.onnx", "reference.json", "report.md", "report.html", "reliability.png", "bands.png", "card.json")


class RegistryError(ScoringError):
    """A registry operation cannot be done as asked (unknown version, nothing to roll back to)."""


@dataclass(frozen=True, slots=True)
class VersionInfo:
    version: str
    role: str  # "champion", "challenger" or ""
    trained_at: str
    kind: str  # "store" or "tabular"
    champion_model: str
    metrics: Mapping[str, float]


class Registry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    # -- state ------------------------------------------------------------------------------------

    def _state(self) -> dict[str, Any]:
        path = self.root / REGISTRY_FILE
        if path.exists():
            return dict(json.loads(path.read_text()))
        return {"champion": None, "challenger": None, "history": []}

    def _save(self, state: Mapping[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        _atomic_write(self.root / REGISTRY_FILE, (json.dumps(state, indent=2) + "\n").encode())

    def version_dir(self, version: str) -> Path:
        if not version or "/" in version or version.startswith("."):
            raise RegistryError(f"invalid version name {version!r}")
        return self.root / VERSIONS / version

    def versions(self) -> list[str]:
        self._adopt()
        folder = self.root / VERSIONS
        found = [p.name for p in folder.iterdir() if (p / CARD_FILE).exists()] if folder.exists() else []
        return sorted(found, key=lambda v: (_card(self.version_dir(v)).get("trained_at", ""), v))

    @property
    def champion(self) -> str | None:
        self._adopt()
        return self._state().get("champion")

    @property
    def challenger(self) -> str | None:
        return self._state().get("challenger")

    def _adopt(self) -> None:
        """A plain model folder (no registry.json) becomes a registry whose champion is that model."""
        if (self.root / REGISTRY_FILE).exists() or not (self.root / CARD_FILE).exists():
            return
        version = str(_card(self.root).get("version") or "adopted")
        target = self.version_dir(version)
        target.mkdir(parents=True, exist_ok=True)
        for name in _FILES:
            if (self.root / name).exists():
                shutil.copy2(self.root / name, target / name)
        self._save({"champion": version, "challenger": None, "served": [version],
                    "history": [{"action": "adopted", "version": version, "at": datetime.now(UTC).isoformat()}]})

    # -- changes ----------------------------------------------------------------------------------

    def register(self, version: str, *, at: datetime, promote: bool) -> None:
        """Record a trained version (already written into :meth:`version_dir`) as champion or challenger."""
        if not (self.version_dir(version) / CARD_FILE).exists():
            raise RegistryError(f"version {version!r} has no {CARD_FILE} in {self.version_dir(version)}")
        self._adopt()
        if promote or self.champion is None:
            self.promote(version, at=at)
            return
        state = self._state()
        state["challenger"] = version
        state["history"].append({"action": "challenger", "version": version, "at": at.isoformat()})
        self._save(state)

    def promote(self, version: str, *, at: datetime, action: str = "promote") -> None:
        """Serve ``version``: copy its files to the root and make it the champion."""
        self._adopt()
        source = self.version_dir(version)
        if not (source / CARD_FILE).exists():
            known = ", ".join(self.versions()) or "none"
            raise RegistryError(f"no version {version!r} in {self.root} (versions: {known})")
        for name in _FILES:
            if (source / name).exists():
                _atomic_write(self.root / name, (source / name).read_bytes())
            elif name != MODEL_FILE and (self.root / name).exists():
                (self.root / name).unlink()  # a file of the previous champion must not describe this one
        state = self._state()
        previous = state.get("champion")
        state["champion"] = version
        if state.get("challenger") == version:
            state["challenger"] = None
        # "served" is the stack of champions: promotion pushes, rollback pops back to the one before.
        served = list(state.get("served") or ([previous] if previous else []))
        if action != "rollback":
            served = [v for v in served if v != version] + [version]
        state["served"] = served
        state["history"].append({"action": action, "version": version, "previous": previous, "at": at.isoformat()})
        self._save(state)

    def rollback(self, *, at: datetime) -> str:
        """Serve again the champion before the current one; return its version."""
        state = self._state()
        current = state.get("champion")
        served = [v for v in state.get("served", []) if v != current]
        while served and not (self.version_dir(served[-1]) / CARD_FILE).exists():
            served.pop()  # a version folder deleted by hand cannot be served again
        if not served:
            raise RegistryError(f"nothing to roll back to: {current!r} has no earlier champion on record")
        previous = served[-1]
        state["served"] = served
        self._save(state)
        self.promote(previous, at=at, action="rollback")
        return previous

    # -- reading ----------------------------------------------------------------------------------

    def info(self, version: str) -> VersionInfo:
        card = _card(self.version_dir(version))
        state = self._state()
        role = {state.get("champion"): "champion", state.get("challenger"): "challenger"}.get(version, "")
        return VersionInfo(version, role, str(card.get("trained_at", "")),
                           "tabular" if card.get("kind") == "tabular" else "store", str(card.get("champion", "")),
                           {k: float(v) for k, v in dict(card.get("metrics", {})).items()})

    def history(self) -> list[dict[str, Any]]:
        return list(self._state()["history"])


def _card(directory: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((directory / CARD_FILE).read_text()))
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {directory / CARD_FILE}: {exc}") from exc
