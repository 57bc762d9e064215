"""LinkedIn Matched Audiences destination: people added to and removed from DMP segments with
BATCH_CREATE, e-mails SHA-256 (or SHA-512) hashed first (:mod:`connectors.linkedin.hashing`). Registered
as ``linkedin`` in the ``leadrelay.connectors`` entry-point group."""

from __future__ import annotations

from ._config import MAX_ELEMENTS_PER_REQUEST, LinkedInConfig
from ._connector import LinkedInConnector
from ._errors import SegmentUnavailable

__all__ = ["MAX_ELEMENTS_PER_REQUEST", "LinkedInConfig", "LinkedInConnector", "SegmentUnavailable"]
