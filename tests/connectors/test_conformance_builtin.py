"""The conformance kit against the built-in connectors and their sandboxes, over loopback sockets."""

from __future__ import annotations

from connectors.testing import ConnectorConformance, DestinationConformance
from tests.connectors.kit.builtin import HubSpotKit, MetaKit


class TestHubSpotConformance(HubSpotKit, ConnectorConformance):
    """HubSpot as a source (leads, accounts) and a destination (update_lead, create_task)."""


class TestMetaConformance(MetaKit, DestinationConformance):
    """Meta Custom Audiences as a destination (audience_add, audience_remove)."""
