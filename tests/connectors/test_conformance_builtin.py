"""The conformance kit against the built-in connectors and their sandboxes, over loopback sockets."""

from __future__ import annotations

from connectors.testing import ConnectorConformance, DestinationConformance
from tests.connectors.kit.builtin import GoogleAdsKit, HubSpotKit, LinkedInKit, MetaKit, SalesforceKit


class TestHubSpotConformance(HubSpotKit, ConnectorConformance):
    """HubSpot as a source (leads, accounts, opportunities) and a destination (update_lead, create_task,
    update_account)."""


class TestMetaConformance(MetaKit, DestinationConformance):
    """Meta Custom Audiences as a destination (audience_add, audience_remove)."""


class TestSalesforceConformance(SalesforceKit, ConnectorConformance):
    """Salesforce as a source (leads, accounts, opportunities, activities, consent) and a destination (update_lead,
    assign_owner, create_task, update_account)."""


class TestGoogleAdsConformance(GoogleAdsKit, DestinationConformance):
    """Google Ads Customer Match as a destination (audience_add, audience_remove)."""


class TestLinkedInConformance(LinkedInKit, DestinationConformance):
    """LinkedIn DMP segments as a destination (audience_add, audience_remove)."""
