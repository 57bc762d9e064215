"""Connector discovery: built-ins and plugins through one entry-point group; broken plugins reported."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from connectors import registry
from connectors.hubspot import HubSpotConnector


def _fake_entry_points(*eps: EntryPoint) -> object:
    def select(*, group: str) -> list[EntryPoint]:
        assert group == registry.GROUP
        return list(eps)

    return select


def test_builtin_hubspot_registers_through_the_entry_point_group() -> None:
    """The built-in HubSpot connector is found exactly as a plugin would be."""
    found = {d.name: d for d in registry.discover()}
    assert found["hubspot"].connector is HubSpotConnector
    assert found["hubspot"].package == "leadrelay"


def test_broken_plugins_are_reported_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """A plugin that fails to import, or is not a Connector, is listed with why; the good one still loads."""
    eps = (
        EntryPoint("hubspot", "connectors.hubspot:HubSpotConnector", registry.GROUP),
        EntryPoint("ghost", "no_such_module_xyz:Ghost", registry.GROUP),
        EntryPoint("notaconnector", "json:dumps", registry.GROUP),
        EntryPoint("misnamed", "connectors.hubspot:HubSpotConnector", registry.GROUP),
    )
    monkeypatch.setattr(registry, "entry_points", _fake_entry_points(*eps))
    found = {d.name: d for d in registry.discover()}
    assert found["hubspot"].ok
    assert "ModuleNotFoundError" in (found["ghost"].error or "")
    assert "not a subclass" in (found["notaconnector"].error or "")
    assert "registered as 'misnamed'" in (found["misnamed"].error or "")
    with pytest.raises(registry.UnknownConnector, match="failed to load"):
        registry.get("ghost")
    with pytest.raises(registry.UnknownConnector, match="installed: hubspot"):
        registry.get("salesforce")
