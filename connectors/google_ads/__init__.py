"""Google Ads Customer Match destination: people added to and removed from CRM-based user lists through
offline user data jobs, their identifiers normalised and SHA-256 hashed first
(:mod:`connectors.google_ads.hashing`). Registered as ``google_ads`` in the ``leadrelay.connectors``
entry-point group."""

from __future__ import annotations

from ._config import MAX_IDENTIFIERS_PER_REQUEST, GoogleAdsConfig
from ._connector import GoogleAdsConnector
from ._errors import ListUnavailable
from ._jobs import JobStatus

__all__ = ["MAX_IDENTIFIERS_PER_REQUEST", "GoogleAdsConfig", "GoogleAdsConnector", "JobStatus", "ListUnavailable"]
