"""Connector discovery through the ``leadrelay.connectors`` entry-point group.

Built-in connectors register exactly as plugins do (see pyproject.toml), so the framework has one path
for both. A plugin that fails to import, or that does not honour the contract, is reported with the
reason instead of taking the agent down.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from connectors.base import CONTRACT_VERSION, Connector, ConnectorConfig

GROUP = "leadrelay.connectors"


@dataclass(frozen=True, slots=True)
class Discovered:
    """One entry point: the connector class, or the reason it could not be used."""

    name: str
    target: str
    package: str | None
    version: str | None
    connector: type[Connector] | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.connector is not None


def _validate(cls: object, name: str) -> type[Connector]:
    if not isinstance(cls, type) or not issubclass(cls, Connector):
        raise TypeError(f"{cls!r} is not a subclass of connectors.base.Connector")
    for attribute in ("name", "config_model", "capabilities"):
        if not hasattr(cls, attribute):
            raise TypeError(f"missing class attribute {attribute!r}")
    if cls.name != name:
        raise TypeError(f"declares name {cls.name!r} but is registered as {name!r}")
    if not (isinstance(cls.config_model, type) and issubclass(cls.config_model, ConnectorConfig)):
        raise TypeError("config_model must subclass connectors.base.ConnectorConfig")
    if cls.contract_version != CONTRACT_VERSION:
        raise TypeError(
            f"built for contract version {cls.contract_version}, this leadrelay speaks {CONTRACT_VERSION}"
        )
    return cls


def _load(ep: EntryPoint) -> Discovered:
    dist = ep.dist
    package = dist.metadata["Name"] if dist is not None else None
    version = dist.version if dist is not None else None
    try:
        cls = _validate(ep.load(), ep.name)
    except Exception as exc:  # noqa: BLE001 - any plugin failure is reported, never fatal
        return Discovered(ep.name, ep.value, package, version, error=f"{type(exc).__name__}: {exc}")
    return Discovered(ep.name, ep.value, package, version, connector=cls)


def discover() -> list[Discovered]:
    """Every registered connector, sorted by name; duplicates after the first are reported as errors."""
    found: dict[str, Discovered] = {}
    extra: list[Discovered] = []
    for ep in sorted(entry_points(group=GROUP), key=lambda e: (e.name, e.value)):
        item = _load(ep)
        if ep.name in found:
            extra.append(
                Discovered(ep.name, ep.value, item.package, item.version,
                           error=f"name already registered by {found[ep.name].target}")
            )
            continue
        found[ep.name] = item
    return [*found.values(), *extra]


class UnknownConnector(LookupError):
    """The config names a connector that is not installed or failed to load."""


def get(name: str) -> type[Connector]:
    """The connector class registered as ``name``."""
    for item in discover():
        if item.name == name:
            if item.connector is None:
                raise UnknownConnector(f"connector {name!r} failed to load: {item.error}")
            return item.connector
    names = ", ".join(sorted(d.name for d in discover() if d.ok)) or "none"
    raise UnknownConnector(f"no connector named {name!r} is installed (installed: {names})")


__all__ = ["GROUP", "Discovered", "UnknownConnector", "discover", "get"]
