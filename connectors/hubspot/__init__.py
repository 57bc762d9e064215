"""HubSpot CRM connector: contacts → leads, companies → accounts, events → activities; writes scores,
owners and tasks back. Registered as ``hubspot`` in the ``leadrelay.connectors`` entry-point group."""

from __future__ import annotations

from ._config import HubSpotConfig
from ._connector import HubSpotConnector
from ._write import TASK_PROPERTIES

__all__ = ["TASK_PROPERTIES", "HubSpotConfig", "HubSpotConnector"]
