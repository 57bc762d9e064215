"""Salesforce connector: Leads (and Contacts) → leads, Accounts → accounts, Tasks and campaign responses →
activities, e-mail opt-outs → consent; writes scores, owners and follow-up tasks back through sObject
Collections. Registered as ``salesforce`` in the ``leadrelay.connectors`` entry-point group."""

from __future__ import annotations

from ._config import SalesforceConfig
from ._connector import SalesforceConnector

__all__ = ["SalesforceConfig", "SalesforceConnector"]
